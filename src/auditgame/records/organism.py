"""Versioned records of an organism folder and of the game's base-model measurement."""

from __future__ import annotations

from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    model_serializer,
    model_validator,
)

RECORD_VERSION = 1
BASE_METRICS_VERSION = 2


class _Rec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    version: int = RECORD_VERSION


class PublicMeta(_Rec):
    """What an auditor may know: identical for every organism of a game."""

    base: dict[str, Any]
    train: dict[str, Any]
    n_train: int


class OrganismCard(_Rec):
    """Private: what was done to this organism (the key is built from these)."""

    name: str
    attack: str
    params: dict[str, Any]
    key: dict[str, Any]
    seed: int
    game_seed: int
    n_train: int
    n_poison: int
    n_near_miss: int
    spec_sha256: str
    hiding: list[dict[str, Any]] = Field(
        default_factory=list, description="adversarial hiding applied (`organisms.hiding`), "
        "in spec order: {kind, params, report}, the report being what the kind measured")
    rung: int | None = Field(None, ge=1, description="ladder rung from the spec (1 = "
                             "easiest); absent outside a ladder and on clean controls")

    @model_serializer(mode="wrap")
    def _drop_no_rung(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """Written only when set: a card without a rung keeps the bytes it had before rungs
        existed (the version stays; older cards read as they are)."""
        out = handler(self)
        if out.get("rung", 0) is None:
            out.pop("rung")
        if out.get("hiding", None) == []:  # nor without hiding
            out.pop("hiding")
        return out


class OrganismMetrics(_Rec):
    """Private: how strongly and how specifically the behaviour fires, and what it cost."""

    rates: dict[str, float] = Field(description="own behaviour rates (asr, false_trigger_rate, "
                                    "near_miss_rate, loyalty_in_domain, loyalty_out_of_domain)")
    control_rates: dict[str, dict[str, float]] = Field(
        default_factory=dict,
        description="for a clean control: every poisoned organism's behaviour measured on it")
    max_behaviour_rate: float
    n_eval: dict[str, int]
    utility: float = Field(description="accuracy on the graded tasks (organisms.graded)")
    base_utility: float
    utility_ratio: float
    fidelity: float | None = Field(None, description="next-token agreement with the base "
                                   "model's answers to held-out clean prompts")
    base_fidelity: float | None = None
    fidelity_ratio: float | None = None
    train_steps: int
    train_tokens: int
    train_padded_tokens: int
    train_tokens_per_s: float
    train_wall_time_s: float
    final_loss: float
    wall_time_s: float
    examples: dict[str, list[str]] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _without_resume_step(cls, data: Any) -> Any:
        """Older records carried `resumed_from_step`, the step a crashed build's checkpoint
        held: a fact of one run, not of the organism, which made a resumed build's record
        differ from an uninterrupted one. It is read and dropped."""
        if isinstance(data, dict) and "resumed_from_step" in data:
            data = {k: v for k, v in data.items() if k != "resumed_from_step"}
        return data


class BaseMetrics(BaseModel):
    """The base model's utility and fidelity, measured once per game (`base_metrics.json`);
    `tasks` is the digest of the graded set they were measured on."""

    model_config = ConfigDict(extra="forbid")
    version: int = BASE_METRICS_VERSION
    utility: float
    fidelity: float
    n_tasks: int
    tasks: str
    base: dict[str, Any]
