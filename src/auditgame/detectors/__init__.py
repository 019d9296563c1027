"""Detectors: plug-ins that judge organisms from the sealed bundle, and the runner.

`VERDICT_SCHEMAS` maps the record names of `auditgame schema` to their pydantic classes.
"""

from typing import Any

from auditgame.detectors import metadata as _metadata  # noqa: F401  (registers `metadata`)
from auditgame.detectors.base import (
    NEEDS,
    BundleInfo,
    Detector,
    NeedNotDeclared,
    OrganismView,
    Verdict,
    Weights,
    detector_names,
    get_detector,
    make_detector,
    register_detector,
    unregister_detector,
)
from auditgame.detectors.runner import run_audit, run_detector
from auditgame.detectors.verdicts import read_verdicts, verdict_path, write_verdicts


def __getattr__(name: str) -> Any:
    """`VERDICT_SCHEMAS` is built on first use: the referee imports this package."""
    if name == "VERDICT_SCHEMAS":
        from auditgame.referee.score import Results

        return {"verdict": Verdict, "results": Results}
    raise AttributeError(name)

__all__ = ["NEEDS", "VERDICT_SCHEMAS", "BundleInfo", "Detector", "NeedNotDeclared",
           "OrganismView", "Verdict", "Weights", "detector_names", "get_detector",
           "make_detector", "read_verdicts", "register_detector", "run_audit", "run_detector",
           "unregister_detector", "verdict_path", "write_verdicts"]
