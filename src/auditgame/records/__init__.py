"""Every versioned record the project writes, as pydantic models, and their readers.

`SCHEMAS` maps the names of `auditgame schema` to their classes.
"""

from auditgame.records._io import read_record, validation_error, write_record
from auditgame.records.key import GameKey, KeyEntry, Manifest
from auditgame.records.organism import BaseMetrics, OrganismCard, OrganismMetrics, PublicMeta
from auditgame.records.pipeline import PipelineLog, StageRecord
from auditgame.records.remediation import (
    BudgetResult,
    OrganismRemediation,
    Remediation,
    RemediationSettings,
)
from auditgame.records.results import DetectorResult, GroupResult, OrganismScore, Results
from auditgame.records.sample import Sample
from auditgame.records.scan import ScanReport
from auditgame.records.verdict import Verdict, read_verdicts, write_verdicts

SCHEMAS = {
    "sample": Sample,
    "card": OrganismCard,
    "metrics": OrganismMetrics,
    "public": PublicMeta,
    "base-metrics": BaseMetrics,
    "manifest": Manifest,
    "key": GameKey,
    "verdict": Verdict,
    "results": Results,
    "remediation": Remediation,
    "pipeline": PipelineLog,
    "scan": ScanReport,
}
"""Record name -> pydantic class, for `auditgame schema NAME`."""

__all__ = ["SCHEMAS", "BaseMetrics", "BudgetResult", "DetectorResult", "GameKey",
           "GroupResult", "KeyEntry", "Manifest", "OrganismCard", "OrganismMetrics",
           "OrganismRemediation", "OrganismScore", "PipelineLog", "PublicMeta", "Remediation",
           "RemediationSettings", "Results", "Sample", "ScanReport", "StageRecord", "Verdict",
           "read_record", "read_verdicts", "validation_error", "write_record", "write_verdicts"]
