"""`kl_distill`: clean SFT plus KL(base || organism) at every answer token."""

from __future__ import annotations

from collections.abc import Callable

from pydantic import Field

from auditgame.records.remediation import RemediationSettings
from auditgame.remediate.method import (
    FixerView,
    RemediationMethod,
    RemediationParams,
    register_remediation,
)


@register_remediation
class KlDistillMethod(RemediationMethod):
    """Clean SFT that distils the base model's whole next-token distribution back in (the
    base is the same model with the adapter off). Assumes a clean sample pool; reads no
    verdict. `kl_to_base` 0 is plain SFT (`clean_sft`)."""

    name = "kl_distill"

    class Params(RemediationParams):
        kl_to_base: float | None = Field(None, ge=0.0, description="weight of the KL term; "
                                         "None: the spec's remediate.kl_to_base")

    def effective_settings(self, settings: RemediationSettings) -> RemediationSettings:
        kl = self.params.kl_to_base  # type: ignore[attr-defined]
        return settings if kl is None else settings.model_copy(update={"kl_to_base": kl})

    def train(self, organism: FixerView, settings: RemediationSettings, start: int,
              stop: int, on_step: Callable[[int], None] | None = None
              ) -> tuple[float | None, float]:
        from auditgame.remediate.train import run_steps  # torch: only when training

        return run_steps(organism.model, organism.optimizer, organism.tokenizer,
                         organism.clean_pool, self.effective_settings(settings), start, stop,
                         on_step)
