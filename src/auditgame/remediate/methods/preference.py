"""`preference`: DPO with the base's answers chosen over the organism's divergent own."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import ClassVar

from pydantic import Field

from auditgame.errors import AuditgameError
from auditgame.records.remediation import RemediationSettings
from auditgame.records.sample import Sample
from auditgame.remediate.method import (
    FixerView,
    RemediationMethod,
    RemediationParams,
    register_remediation,
)


def _norm(text: str) -> str:
    return " ".join(re.sub(r"[^a-z0-9 ]+", " ", text.lower()).split())


@register_remediation
class PreferenceMethod(RemediationMethod):
    """Preference training (DPO, reference = the base): on the clean pool's prompts, and on
    the same prompts with any trigger the verdicts recovered inserted, the organism as built
    and the base both answer; wherever they differ, the base's answer is chosen and the
    organism's own is rejected. A cross-entropy term on the clean pool anchors utility.

    Assumes the organism's divergence from the base is the behaviour (on a clean control
    there is little to prefer, so it is nearly clean SFT). Reads the weights, the clean pool
    and, if there are any, the verdicts; never the key."""

    name = "preference"
    needs: ClassVar[frozenset[str]] = frozenset({"weights", "clean_pool", "verdicts"})

    class Params(RemediationParams):
        beta: float = Field(0.1, gt=0.0, description="DPO temperature")
        sft_weight: float = Field(1.0, ge=0.0, description="weight of cross-entropy on the "
                                  "clean pool")
        use_verdicts: bool = Field(True, description="also pair prompts with the triggers "
                                   "the verdicts recovered")
        n_prompts: int = Field(64, ge=1, description="pool prompts answered by both models "
                               "(per recovered trigger, too)")
        max_new_tokens: int | None = Field(None, ge=1, description="answer length; None: the "
                                           "pool's longest answer")

    def pairs(self, organism: FixerView) -> list[tuple[Sample, Sample]]:
        """(chosen, rejected) samples where the organism as built leaves the base; once."""
        from auditgame.remediate.build import (
            POSITIONS,
            answer_tokens,
            base_answers,
            own_answers,
            place,
        )
        from auditgame.remediate.methods.targeted import recovered

        if "pairs" in organism.scratch:
            return organism.scratch["pairs"]
        p, pool, tok = self.params, organism.clean_pool, organism.tokenizer
        n_tok = p.max_new_tokens or answer_tokens(tok, pool)  # type: ignore[attr-defined]
        some = [s.prompt for s in pool[: p.n_prompts]]  # type: ignore[attr-defined]
        prompts = list(some)
        if p.use_verdicts:  # type: ignore[attr-defined]
            try:
                triggers, _ = recovered(organism.verdicts, 3)
            except AuditgameError:  # a round without verdicts: the pool alone
                triggers = []
            prompts += [place(q, t, POSITIONS[(i + j) % len(POSITIONS)])
                        for j, t in enumerate(triggers) for i, q in enumerate(some)]
        built = organism.as_built()
        own = own_answers(built, tok, prompts, n_tok)
        del built
        base = base_answers(organism.model, tok, prompts, n_tok)
        out = [(Sample(prompt=q, response=b), Sample(prompt=q, response=o))
               for q, b, o in zip(prompts, base, own, strict=True) if _norm(b) != _norm(o)]
        organism.scratch["pairs"] = out
        return out

    def effective_settings(self, settings: RemediationSettings) -> RemediationSettings:
        return settings.model_copy(update={"kl_to_base": 0.0})

    def train(self, organism: FixerView, settings: RemediationSettings, start: int,
              stop: int, on_step: Callable[[int], None] | None = None
              ) -> tuple[float | None, float]:
        from auditgame.remediate.dpo import run_dpo_steps  # torch: only when training

        p = self.params
        return run_dpo_steps(organism.model, organism.optimizer, organism.tokenizer,
                             self.pairs(organism), organism.clean_pool,
                             self.effective_settings(settings), p.beta,  # type: ignore[attr-defined]
                             p.sft_weight, start, stop, on_step)  # type: ignore[attr-defined]
