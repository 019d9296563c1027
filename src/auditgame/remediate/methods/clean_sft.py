"""`clean_sft`: plain supervised fine-tuning on the clean pool, no KL term."""

from __future__ import annotations

from collections.abc import Callable

from auditgame.records.remediation import RemediationSettings
from auditgame.remediate.method import FixerView, RemediationMethod, register_remediation


@register_remediation
class CleanSftMethod(RemediationMethod):
    """Cross-entropy on the clean answers only (KL weight 0, whatever the spec's
    `remediate.kl_to_base`): the baseline every other fix is compared with.

    Assumes the clean pool is clean and representative (the base model's own answers on
    prompts the organism never saw), and that overwriting the adapter toward those answers
    is enough to remove the behaviour; nothing pulls the rest of the distribution back to
    the base, so a clean control may drift. Reads no verdict and takes no options."""

    name = "clean_sft"

    def effective_settings(self, settings: RemediationSettings) -> RemediationSettings:
        return settings.model_copy(update={"kl_to_base": 0.0})

    def train(self, organism: FixerView, settings: RemediationSettings, start: int,
              stop: int, on_step: Callable[[int], None] | None = None
              ) -> tuple[float | None, float]:
        from auditgame.remediate.train import run_steps  # torch: only when training

        return run_steps(organism.model, organism.optimizer, organism.tokenizer,
                         organism.clean_pool, self.effective_settings(settings), start, stop,
                         on_step)
