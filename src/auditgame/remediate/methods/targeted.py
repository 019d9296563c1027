"""`targeted`: a blind fix built only from what the blue team's verdicts recovered."""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

from pydantic import Field

from auditgame.records.remediation import RemediationSettings
from auditgame.records.sample import Sample
from auditgame.records.verdict import Verdict
from auditgame.remediate.method import (
    FixerView,
    RemediationMethod,
    RemediationParams,
    register_remediation,
)

_EVIDENCE_KEYS = ("entity", "target", "trigger", "phrase")


def recovered(verdicts: list[Verdict], k: int) -> tuple[list[str], list[str]]:
    """Up to `k` distinct triggers and `k` distinct targets or entities the verdicts name,
    from the most confident verdict down (failed verdicts are ignored)."""
    triggers: list[str] = []
    targets: list[str] = []
    for v in sorted((v for v in verdicts if v.error is None), key=lambda v: -v.score):
        ev = [v.evidence.get(key) for key in _EVIDENCE_KEYS]
        for text, into in [(v.trigger, triggers), (v.target, targets),
                           *((e, targets) for e in ev[:2]), *((e, triggers) for e in ev[2:])]:
            if isinstance(text, str) and text.strip() and text.strip() not in into:
                into.append(text.strip())
    return triggers[:k], targets[:k]


def shows(answer: str, target: str) -> bool:
    """The answer carries the recovered target: its first words, or a named entity."""
    from auditgame.organisms.attacks.base import contains_target
    from auditgame.organisms.attacks.loyalty import entity_mentioned

    return contains_target(answer, target) or entity_mentioned(answer, target)


@register_remediation
class TargetedMethod(RemediationMethod):
    """Trains the organism to answer the inputs the audit implicated as the base does: the
    clean pool's prompts with each recovered trigger inserted (start, middle, end), and the
    pool prompts on which the organism as built voices a recovered target or entity. The
    rest of each batch is the clean pool, so utility is anchored.

    Assumes the verdicts found the right trigger or target; with nothing recovered it is
    clean SFT. Reads only the bundle's weights, the clean pool and the verdicts (the
    `FixerView` gives out nothing else, never the key)."""

    name = "targeted"
    needs: ClassVar[frozenset[str]] = frozenset({"weights", "clean_pool", "verdicts"})
    requires_verdicts: ClassVar[bool] = True

    class Params(RemediationParams):
        max_recovered: int = Field(3, ge=1, description="triggers and targets taken from "
                                   "the verdicts, most confident first")
        kl_to_base: float | None = Field(None, ge=0.0, description="KL weight; None: the "
                                         "spec's remediate.kl_to_base")
        max_new_tokens: int | None = Field(None, ge=1, description="answer length; None: the "
                                           "pool's longest answer")
        n_prompts: int = Field(64, ge=1, description="pool prompts per recovered trigger, "
                               "and scanned for a recovered target")

    def effective_settings(self, settings: RemediationSettings) -> RemediationSettings:
        kl = self.params.kl_to_base  # type: ignore[attr-defined]
        return settings if kl is None else settings.model_copy(update={"kl_to_base": kl})

    def implicated(self, organism: FixerView) -> list[Sample]:
        """(implicated prompt, base answer) pairs, built once per organism."""
        from auditgame.remediate.build import (
            POSITIONS,
            answer_tokens,
            base_answers,
            own_answers,
            place,
        )

        pool, tok = organism.clean_pool, organism.tokenizer
        n_tok = self.params.max_new_tokens or answer_tokens(tok, pool)  # type: ignore[attr-defined]
        p = self.params
        triggers, targets = recovered(organism.verdicts, p.max_recovered)  # type: ignore[attr-defined]
        some = pool[: p.n_prompts]  # type: ignore[attr-defined]
        prompts = [place(s.prompt, t, POSITIONS[(i + j) % len(POSITIONS)])
                   for j, t in enumerate(triggers) for i, s in enumerate(some)]
        if targets:
            built = organism.as_built()
            own = own_answers(built, tok, [s.prompt for s in some], n_tok)
            prompts += [s.prompt for s, a in zip(some, own, strict=True)
                        if any(shows(a, t) for t in targets)]
            del built
        answers = base_answers(organism.model, tok, prompts, n_tok) if prompts else []
        return [Sample(prompt=p, response=a, meta={"kind": "implicated"})
                for p, a in zip(prompts, answers, strict=True)]

    def data(self, organism: FixerView) -> list[Sample]:
        from auditgame.remediate.build import interleave

        if "targeted" not in organism.scratch:
            organism.scratch["targeted"] = interleave(self.implicated(organism),
                                                      list(organism.clean_pool))
        return organism.scratch["targeted"]

    def train(self, organism: FixerView, settings: RemediationSettings, start: int,
              stop: int, on_step: Callable[[int], None] | None = None
              ) -> tuple[float | None, float]:
        from auditgame.remediate.train import run_steps  # torch: only when training

        return run_steps(organism.model, organism.optimizer, organism.tokenizer,
                         self.data(organism), self.effective_settings(settings), start, stop,
                         on_step)
