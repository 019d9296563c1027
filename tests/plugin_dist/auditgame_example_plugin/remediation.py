"""`example_sft`: plain clean SFT at a scaled learning rate."""

from __future__ import annotations

from collections.abc import Callable

from pydantic import Field

from auditgame.records.remediation import RemediationSettings
from auditgame.remediate.method import FixerView, RemediationMethod, RemediationParams
from auditgame.remediate.train import run_steps


class ExampleSftMethod(RemediationMethod):
    """Clean SFT at `lr_scale` times the spec's rate, no KL term (an example plug-in)."""

    name = "example_sft"

    class Params(RemediationParams):
        lr_scale: float = Field(0.5, gt=0.0)

    def effective_settings(self, settings: RemediationSettings) -> RemediationSettings:
        scale = self.params.lr_scale  # type: ignore[attr-defined]
        return settings.model_copy(update={"lr": settings.lr * scale, "kl_to_base": 0.0})

    def train(self, organism: FixerView, settings: RemediationSettings, start: int,
              stop: int, on_step: Callable[[int], None] | None = None
              ) -> tuple[float | None, float]:
        return run_steps(organism.model, organism.optimizer, organism.tokenizer,
                         organism.clean_pool, self.effective_settings(settings), start, stop,
                         on_step)
