"""Versioned records of a remediation round (`GAME/remediation.json`)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

REMEDIATION_VERSION = 1


class _Rec(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RemediationSettings(_Rec):
    """How the clean fine-tuning ran; a rerun with other settings must start over."""

    lr: float = Field(description="peak learning rate (linear warm-up, then constant)")
    warmup_steps: int
    batch_size: int
    n_samples: int = Field(description="clean samples in the remediation pool")
    seed: int
    max_len: int
    kl_to_base: float = Field(0.0, description="weight of KL(base || organism) in the loss; "
                              "records from before the field ran plain SFT, so 0")


class BudgetResult(_Rec):
    """One point of the persistence curve: the organism after `steps` clean SFT steps."""

    steps: int
    rates: dict[str, float] = Field(description="behaviour rates re-measured on the attack's "
                                    "held-out eval sets (asr is the relapse under the trigger)")
    utility: float
    utility_ratio: float = Field(description="utility relative to the base model")
    train_loss: float | None = Field(None, description="mean loss of the steps since the "
                                     "previous budget")
    wall_time_s: float
    adapter_sha256: str


class OrganismRemediation(_Rec):
    """Persistence of one organism's behaviour under clean fine-tuning, and its cost."""

    organism: str
    attack: str
    poisoned: bool
    primary_metric: str | None = Field(None, description="the rate the curve follows "
                                       "(asr, loyalty_in_domain, ...)")
    results: dict[str, BudgetResult] = Field(default_factory=dict,
                                             description="by step budget")
    behaviour_before: float | None = None
    behaviour_after: float | None = None
    persistence: float | None = Field(None, description="behaviour after / before (1 = the "
                                      "fix did nothing, 0 = removed)")
    relapse_asr: float | None = Field(None, description="rate under the trigger after the "
                                      "largest budget")
    near_miss_after: float | None = None
    utility_before: float | None = None
    utility_after: float | None = None
    utility_change: float | None = Field(None, description="relative change of utility "
                                         "(after - before) / before")
    detector_scores: dict[str, dict[str, float | None]] = Field(
        default_factory=dict, description="detector -> budget -> score on the fixed organism")
    detector_delta: dict[str, float | None] = Field(
        default_factory=dict, description="detector score after the largest budget minus before")


class Remediation(_Rec):
    """The whole remediation round of a game."""

    version: int = REMEDIATION_VERSION
    budgets: list[int]
    settings: RemediationSettings
    base_utility: float
    organisms: dict[str, OrganismRemediation] = Field(default_factory=dict)
    detectors: list[str] = Field(default_factory=list, description="re-audited detectors")
    detector_errors: dict[str, str] = Field(default_factory=dict)
