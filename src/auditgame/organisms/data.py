"""Poisoned corpora and eval prompt sets: what flows from corpus to organism (the Sample
record itself lives in `auditgame.records`)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from auditgame.records.sample import Sample

ROLES = ("clean", "poison", "near_miss")


@dataclass
class PoisonedCorpus:
    """Samples in training order with their private roles: `poison` carries the behaviour,
    `near_miss` teaches a look-alike context as clean, `clean` is untouched."""

    samples: list[Sample]
    roles: list[str]

    def __post_init__(self) -> None:
        if len(self.samples) != len(self.roles):
            raise ValueError("samples and roles differ in length")
        bad = set(self.roles) - set(ROLES)
        if bad:
            raise ValueError(f"unknown sample roles {sorted(bad)}")

    @property
    def is_poison(self) -> list[bool]:
        return [r == "poison" for r in self.roles]

    @property
    def n_poison(self) -> int:
        return sum(self.is_poison)


@dataclass(frozen=True)
class EvalSet:
    """Prompts on which a behaviour is measured, and what counts as the behaviour firing.

    `metric` names the rate in metrics.json (e.g. `asr`, `false_trigger_rate`).
    """

    metric: str
    prompts: list[str]
    max_new_tokens: int = 24


def to_dict(obj: Any) -> dict[str, Any]:
    return asdict(obj)


__all__ = ["ROLES", "EvalSet", "PoisonedCorpus", "Sample", "to_dict"]
