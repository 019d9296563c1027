"""`kl_distill`: clean SFT plus KL(base || organism) at every answer token."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import Field

from auditgame.records.remediation import RemediationSettings
from auditgame.records.sample import Sample
from auditgame.remediate.method import RemediationMethod, RemediationParams, register_remediation
from auditgame.remediate.train import run_steps


@register_remediation
class KlDistillMethod(RemediationMethod):
    """Clean SFT that distils the base model's whole next-token distribution back in (the
    base is the same model with the adapter off). Assumes a clean sample pool; reads no
    verdict. `kl_to_base` 0 is plain SFT (`clean_sft`)."""

    name = "kl_distill"

    class Params(RemediationParams):
        kl_to_base: float | None = Field(None, ge=0.0, description="weight of the KL term; "
                                         "None: the spec's remediate.kl_to_base")

    def train(self, model: Any, opt: Any, tokenizer: Any, samples: list[Sample],
              settings: RemediationSettings, start: int, stop: int,
              on_step: Callable[[int], None] | None = None) -> tuple[float | None, float]:
        kl = self.params.kl_to_base  # type: ignore[attr-defined]
        if kl is not None:
            settings = settings.model_copy(update={"kl_to_base": kl})
        return run_steps(model, opt, tokenizer, samples, settings, start, stop, on_step)
