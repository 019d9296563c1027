"""auditgame: blind auditing games on language-model organisms.

The public API, one call per stage, each reading and writing the game folder
(`auditgame.layout`)::

    import auditgame

    spec = auditgame.load_spec("examples/quick.yaml")
    auditgame.make(spec, "game")                       # build organisms and clean controls
    auditgame.seal("game")                             # bundle + committed key
    auditgame.audit("game/bundle", ["weight_diff"])    # verdicts/<detector>.jsonl
    results = auditgame.score("game")                  # results.json
    auditgame.remediate("game")                        # remediation.json
    report = auditgame.scan("data.json")               # a dataset on its own
    game = auditgame.load_game("game")                 # the folder's records, read back

Plug-ins (attacks, detectors, remediation methods) register with `auditgame.plugins`.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as _version
from typing import Any

try:
    __version__ = _version("auditgame")
except PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0+unknown"

_API = {
    "load_spec": ("auditgame.organisms.load", "load_spec"),
    "make": ("auditgame.organisms.factory", "make_game"),
    "seal": ("auditgame.bundle.seal", "seal_game"),
    "audit": ("auditgame.detectors.runner", "run_audit"),
    "score": ("auditgame.referee.score", "score_game"),
    "remediate": ("auditgame.remediate.round", "remediate_game"),
    "scan": ("auditgame.scan._run", "scan_dataset"),
    "report": ("auditgame.report", "build_report"),
    "run": ("auditgame.pipeline", "run_pipeline"),
    "load_game": ("auditgame.game_view", "load_game"),
    "Game": ("auditgame.game_view", "Game"),
    "AuditgameError": ("auditgame.errors", "AuditgameError"),
}


def __getattr__(name: str) -> Any:
    """The API is imported on first use: `import auditgame` stays cheap (no torch)."""
    if name in _API:
        import importlib

        mod, attr = _API[name]
        return getattr(importlib.import_module(mod), attr)
    raise AttributeError(f"module 'auditgame' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*_API, "__version__"])


__all__ = ["__version__", *_API]
