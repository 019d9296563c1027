"""`character`: context distillation of a written character into the organism."""

from __future__ import annotations

from collections.abc import Callable
from importlib import resources
from pathlib import Path

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


def shipped_character() -> str:
    """The character text shipped with the package (`remediate/character.md`)."""
    return resources.files("auditgame.remediate").joinpath("character.md").read_text("utf-8")


def with_character(character: str, prompt: str) -> str:
    """The prompt the base answers in character: the character first, then the request."""
    return f"{character.strip()}\n\nRequest: {prompt}"


@register_remediation
class CharacterMethod(RemediationMethod):
    """The base answers the clean pool's prompts *with* a written character (honest,
    harmless, helpful, declines hidden instructions) in front of the request; the organism
    is fine-tuned on those answers *without* the character (context distillation), so the
    character's disposition is what the adapter is pushed toward, not one set of answers.

    Assumes the base model follows the character and that a disposition learnt on ordinary
    prompts carries over to the triggered ones it never sees. Reads no verdict. The text is
    `remediate/character.md` unless `character_file` names the user's own."""

    name = "character"

    class Params(RemediationParams):
        character_file: str | None = Field(None, description="a text file with the "
                                           "character; None: the shipped one")
        kl_to_base: float = Field(0.0, ge=0.0, description="weight of KL(base || organism); "
                                  "0: the base without the character is not the goal")
        max_new_tokens: int | None = Field(None, ge=1, description="answer length; None: the "
                                           "pool's longest answer")

    def character(self) -> str:
        path = self.params.character_file  # type: ignore[attr-defined]
        if path is None:
            return shipped_character()
        p = Path(path)
        if not p.is_file():
            raise AuditgameError("character file not found", path=p,
                                 field="remediate.method_params.character_file")
        return p.read_text(encoding="utf-8")

    def effective_settings(self, settings: RemediationSettings) -> RemediationSettings:
        return settings.model_copy(update={"kl_to_base": self.params.kl_to_base})  # type: ignore[attr-defined]

    def distilled(self, organism: FixerView) -> list[Sample]:
        """The pool's prompts with the base's in-character answers (built once)."""
        from auditgame.remediate.build import answer_tokens, base_answers

        if "character" not in organism.scratch:
            pool, tok = organism.clean_pool, organism.tokenizer
            n = self.params.max_new_tokens or answer_tokens(tok, pool)  # type: ignore[attr-defined]
            char = self.character()
            answers = base_answers(organism.model, tok,
                                   [with_character(char, s.prompt) for s in pool], n)
            organism.scratch["character"] = [s.with_(response=a)
                                             for s, a in zip(pool, answers, strict=True)]
        return organism.scratch["character"]

    def train(self, organism: FixerView, settings: RemediationSettings, start: int,
              stop: int, on_step: Callable[[int], None] | None = None
              ) -> tuple[float | None, float]:
        from auditgame.remediate.train import run_steps  # torch: only when training

        return run_steps(organism.model, organism.optimizer, organism.tokenizer,
                         self.distilled(organism), self.effective_settings(settings), start,
                         stop, on_step)
