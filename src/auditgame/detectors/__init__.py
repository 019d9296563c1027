"""Detectors: plug-ins that judge organisms from the sealed bundle, and the runner.

`VERDICT_SCHEMAS` maps the record names of `auditgame schema` to their pydantic classes.
"""

import importlib as _importlib
import pkgutil as _pkgutil
from typing import Any

from auditgame.detectors import data as _data
from auditgame.detectors import metadata as _metadata  # noqa: F401  (registers `metadata`)
from auditgame.detectors import model as _model
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


def _register_plugins() -> None:
    """One plug-in per file: every module of `detectors/data/` and `detectors/model/`
    registers its detector on import (modules starting with `_` are helpers)."""
    for pkg in (_data, _model):
        for m in sorted(_pkgutil.iter_modules(pkg.__path__), key=lambda m: m.name):
            if not m.name.startswith("_"):
                _importlib.import_module(f"{pkg.__name__}.{m.name}")


_register_plugins()


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
