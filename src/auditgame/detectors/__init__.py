"""Detectors: plug-ins that judge organisms from what they declared, and the runner.

Built-in detectors live one per file in `detectors/data/`, `detectors/model/` and
`detectors/meta/`; others arrive through the `auditgame.detectors` entry-point group
(see `auditgame.plugins`).
"""

from auditgame.detectors.base import (
    COSTS,
    DETECTORS,
    Detector,
    DetectorParams,
    detector_names,
    get_detector,
    make_detector,
    register_detector,
    unregister_detector,
)
from auditgame.detectors.engine import FAILED_SCORE, ModelHolder, audit_one
from auditgame.detectors.runner import run_audit, run_detector
from auditgame.detectors.view import (
    MODEL_NEEDS,
    NEEDS,
    BundleInfo,
    NeedNotDeclared,
    OrganismView,
    Source,
    Weights,
)
from auditgame.layout import verdict_path
from auditgame.records.verdict import Verdict, read_verdicts, write_verdicts

__all__ = ["COSTS", "DETECTORS", "FAILED_SCORE", "MODEL_NEEDS", "NEEDS", "BundleInfo",
           "Detector", "DetectorParams", "ModelHolder", "NeedNotDeclared", "OrganismView",
           "Source", "Verdict", "Weights", "audit_one", "detector_names", "get_detector",
           "make_detector", "read_verdicts", "register_detector", "run_audit", "run_detector",
           "unregister_detector", "verdict_path", "write_verdicts"]
