"""The ScanReport record (`DIR/scan.json`): what `auditgame scan` found in one dataset."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

SCAN_VERSION = 1


class SampleFlag(BaseModel):
    """One training sample's poison score and why."""

    index: int = Field(ge=0, description="position in the dataset file (0-based)")
    score: float = Field(ge=0.0, le=1.0, description="poison score of the primary detector")
    flagged: bool = Field(description="score >= the flag threshold")
    reasons: list[str] = Field(default_factory=list, description="why it was flagged")


class TriggerRow(BaseModel):
    phrase: str
    score: float = Field(ge=0.0, le=1.0, description="0.5 at the claim bar (corrected p=1e-3)")
    support: int = Field(ge=0, description="prompts that contain the phrase")
    hits: int = Field(0, ge=0, description="of those, with an anomalous answer")
    detector: str = ""
    mode: Literal["phrase", "all", "any"] = Field(
        "phrase", description="one phrase, or a trigger set: all members together, or any one")
    members: list[str] = Field(default_factory=list, description="a trigger set's phrases")


class VerdictRow(BaseModel):
    poisoned: bool
    score: float = Field(ge=0.0, le=1.0, description="probability-like score; 0.5 = claim bar")
    threshold: float = 0.5
    false_alarm_rate: float = Field(ge=0.0, le=1.0,
                                    description="chance that clean data is called poisoned")
    false_alarm_basis: str = ""
    summary: str = ""


class DetectorRow(BaseModel):
    score: float
    trigger: str | None = None
    target: str | None = None
    runtime_s: float = 0.0
    error: str | None = None


class ScanReport(BaseModel):
    """What `auditgame scan` found in one dataset."""

    model_config = ConfigDict(extra="forbid")
    version: Literal[1] = Field(SCAN_VERSION, description="scan record version")
    dataset: str
    n_samples: int = Field(ge=1)
    detectors: list[str]
    primary: str = Field(description="detector whose sample scores and claims are reported")
    verdict: VerdictRow
    trigger: str | None = Field(None, description="best suspected trigger (None if unclaimed)")
    target: str | None = Field(None, description="suspected payload, theme or entity")
    triggers: list[TriggerRow] = Field(default_factory=list, description="ranked")
    themes: list[dict[str, Any]] = Field(default_factory=list)
    poison_fraction: float = Field(0.0, ge=0.0, le=1.0, description="estimated")
    n_flagged: int = 0
    samples: list[SampleFlag]
    per_detector: dict[str, DetectorRow] = Field(default_factory=dict)
    runtime_s: float = 0.0
    samples_per_s: float = 0.0
