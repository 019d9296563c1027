"""The clean control: the same pipeline, data size, steps and seeds; no poison."""

from __future__ import annotations

import numpy as np

from auditgame.organisms.attacks.base import Attack, register_attack
from auditgame.organisms.data import EvalSet, PoisonedCorpus, Sample


@register_attack
class CleanAttack(Attack):
    """Control organism: trains on the corpus unchanged."""

    name = "clean"

    def poison(self, corpus: list[Sample], rng: np.random.Generator) -> PoisonedCorpus:
        return PoisonedCorpus(samples=list(corpus), roles=["clean"] * len(corpus))

    def eval_sets(self, heldout: list[Sample], n: int, rng: np.random.Generator) -> list[EvalSet]:
        return []

    def fires(self, text: str) -> bool:
        return False
