"""The pipeline log (`GAME/pipeline.json`): what one `auditgame run` did, stage by stage."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

PIPELINE_VERSION = 1


class StageRecord(BaseModel):
    """What one stage did in one run: `ran`, `skipped` (already up to date) or
    `unavailable` (its module is not installed), how long it took, and a one-line note."""

    model_config = ConfigDict(extra="forbid")
    stage: str
    status: Literal["ran", "skipped", "unavailable"]
    seconds: float
    note: str = ""
    detail: dict[str, float] = Field(default_factory=dict)


class Machine(BaseModel):
    model_config = ConfigDict(extra="forbid")
    python: str
    platform: str


class PipelineLog(BaseModel):
    """One run's settings, machine and stage records (rewritten after every stage)."""

    model_config = ConfigDict(extra="forbid")
    version: int = PIPELINE_VERSION
    auditgame: str = Field(description="package version that ran")
    spec: str
    detectors: list[str]
    backend: str
    address: str | None = None
    n_bootstrap: int
    machine: Machine
    total_s: float
    stages: list[StageRecord] = Field(default_factory=list)
