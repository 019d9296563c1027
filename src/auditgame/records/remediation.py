"""Versioned records of a remediation round (`GAME/remediation.json`)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_serializer

REMEDIATION_VERSION = 1


class _Rec(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RemediationSettings(_Rec):
    """How the clean fine-tuning ran (as the method trained, see its `effective_settings`);
    a rerun with other settings, another method included, must start over."""

    lr: float = Field(description="peak learning rate (linear warm-up, then constant)")
    warmup_steps: int
    batch_size: int
    n_samples: int = Field(description="clean samples in the remediation pool")
    seed: int
    max_len: int
    kl_to_base: float = Field(0.0, description="weight of KL(base || organism) in the loss; "
                              "records from before the field ran plain SFT, so 0")
    method: str = Field("kl_distill", description="the remediation method (a name in the "
                        "`auditgame.remediations` registry); records from before the field "
                        "ran kl_distill")
    method_params: dict[str, Any] = Field(
        default_factory=dict, description="the method's options as validated, defaults "
        "included; records from before the field had none")


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


class DepthSettings(_Rec):
    """How the depth tests ran; absent from records made without them."""

    budget: int = Field(description="the step budget whose fixed organism is tested (the "
                        "largest)")
    reemergence_steps: int = Field(16, ge=1, description="steps of unrelated benign "
                                   "fine-tuning (graded quiz answers) after the fix")
    n_icl: int = Field(3, ge=1, description="trigger -> behaviour examples shown in context")
    probe_folds: int = Field(2, ge=2, description="cross-validation folds of the read-out")


class DepthResult(_Rec):
    """Is the behaviour gone or under a shell? The depth tests on one fixed organism."""

    budget: int
    behaviour_before: float | None = None
    behaviour_after: float | None = None
    reemergence: float | None = Field(None, description="behaviour rate after the benign "
                                      "fine-tuning that followed the fix")
    variants: dict[str, float] = Field(default_factory=dict, description="behaviour rate "
                                       "under partial, paraphrased and moved triggers and "
                                       "in-context examples")
    variant_max: float | None = None
    probe_auroc: float | None = Field(None, description="cross-validated AUROC of a linear "
                                      "probe telling triggered from untriggered prompts on "
                                      "the fixed organism's activations")
    probe_auroc_base: float | None = Field(None, description="the same probe on the base "
                                           "(the prompt text alone)")
    readout_retained: float | None = Field(
        None, description="share of the organism's own triggered-minus-untriggered "
        "activation shift (beyond the base's) the fixed model still has: 1 kept, 0 gone")
    weight_distance: float | None = Field(None, description="|LoRA delta| of the fixed "
                                          "organism / that of the organism (0 = the base)")
    weight_moved: float | None = Field(None, description="|fixed delta - organism delta| / "
                                       "|organism delta|")
    output_kl_organism: float | None = Field(None, description="KL(base || organism) of the "
                                             "next token on neutral prompts")
    output_kl_fixed: float | None = None
    call: str = Field(description="deep, shallow, not_fixed, no_behaviour (the "
                      "organism never fired), or control (clean organism)")
    reasons: list[str] = Field(default_factory=list, description="which rule made the call")


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
    depth: DepthResult | None = Field(None, description="depth tests after the largest "
                                      "budget; absent when they did not run")

    @model_serializer(mode="wrap")
    def _omit_no_depth(self, handler: Any) -> dict[str, Any]:
        """A record without depth tests keeps its earlier bytes."""
        out = handler(self)
        if out.get("depth") is None:
            out.pop("depth", None)
        return out

    def summarise(self) -> None:
        """Fill the before/after fields from the curve; the round calls it before every
        write, so they always agree with `results` and `detector_scores`."""
        done = sorted(self.results.values(), key=lambda r: r.steps)
        if not done:
            return
        first, last = done[0], done[-1]
        if first.steps == 0:
            self.utility_before = first.utility
        self.utility_after = last.utility
        if self.utility_before:
            self.utility_change = round((last.utility - self.utility_before)
                                        / self.utility_before, 4)
        m = self.primary_metric
        if m and first.steps == 0 and m in first.rates:
            self.behaviour_before = first.rates[m]
            self.behaviour_after = last.rates.get(m)
            if self.behaviour_before and self.behaviour_after is not None:
                self.persistence = round(self.behaviour_after / self.behaviour_before, 4)
        self.relapse_asr = last.rates.get("asr")
        self.near_miss_after = last.rates.get("near_miss_rate")
        for det, scores in self.detector_scores.items():
            s0, s1 = scores.get("0"), scores.get(str(last.steps))
            self.detector_delta[det] = (round(s1 - s0, 4) if s0 is not None and s1 is not None
                                        else None)


class Remediation(_Rec):
    """The whole remediation round of a game."""

    version: int = REMEDIATION_VERSION
    budgets: list[int]
    settings: RemediationSettings
    base_utility: float
    organisms: dict[str, OrganismRemediation] = Field(default_factory=dict)
    detectors: list[str] = Field(default_factory=list, description="re-audited detectors")
    detector_errors: dict[str, str] = Field(default_factory=dict)
    depth_settings: DepthSettings | None = Field(None, description="absent when no depth "
                                                 "tests ran")

    @model_serializer(mode="wrap")
    def _omit_no_depth(self, handler: Any) -> dict[str, Any]:
        out = handler(self)
        if out.get("depth_settings") is None:
            out.pop("depth_settings", None)
        return out
