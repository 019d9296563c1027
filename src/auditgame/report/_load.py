"""Everything the report shows, read from the game folder: results.json, the organisms'
private cards and metrics, the key's verification, remediation.json and pipeline.json.

The report is for the referee and researchers after the game, so it may show the key. Files
written by other stages are read defensively: a missing or malformed optional file becomes a
note in the report, never a crash.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from auditgame.errors import AuditgameError
from auditgame.layout import (
    BASE_METRICS,
    CARD,
    COMMITMENT,
    KEY,
    METRICS,
    ORGANISMS,
    PIPELINE_LOG,
    REMEDIATION,
    RESULTS,
    SPEC,
)
from auditgame.records.results import Results


@dataclass
class OrganismInfo:
    """One organism's private card and metrics as raw JSON (any record version)."""

    name: str
    blind_id: str | None
    card: dict[str, Any]
    metrics: dict[str, Any]


@dataclass
class ReportData:
    game: Path
    name: str
    results: Results
    commitment: str | None
    verify_ok: bool
    verify_message: str
    organisms: list[OrganismInfo]
    base_metrics: dict[str, Any] | None
    remediation: dict[str, Any] | None
    remediation_note: str | None
    pipeline: dict[str, Any] | None
    notes: list[str] = field(default_factory=list)


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def _optional_json(path: Path, notes: list[str]) -> Any | None:
    if not path.exists():
        return None
    try:
        return _read_json(path)
    except (OSError, ValueError) as e:
        notes.append(f"{path.name} is unreadable ({e.__class__.__name__}); not shown")
        return None


def game_name(game: Path) -> str:
    """The spec's `name`, else the folder name."""
    spec = game / SPEC
    if spec.exists():
        import yaml

        try:
            data = yaml.safe_load(spec.read_text(encoding="utf-8"))
            if isinstance(data, dict) and data.get("name"):
                return str(data["name"])
        except (OSError, yaml.YAMLError):
            pass
    return game.resolve().name


def load_results(game: Path) -> Results:
    path = game / RESULTS
    if not path.exists():
        raise AuditgameError("no results; run `auditgame score` first", path=path)
    try:
        return Results.model_validate_json(path.read_text(encoding="utf-8"))
    except ValidationError as e:
        err = e.errors()[0]
        raise AuditgameError(err["msg"], path=path,
                             field=".".join(str(p) for p in err.get("loc", ()))) from None


def report_inputs(game: Path | str) -> list[Path]:
    """Files whose content the report shows (a newer one makes the report stale)."""
    game = Path(game)
    paths = [game / RESULTS, game / KEY, game / COMMITMENT, game / REMEDIATION,
             game / BASE_METRICS]
    root = game / ORGANISMS
    if root.is_dir():
        for folder in sorted(root.iterdir()):
            paths += [folder / CARD, folder / METRICS]
    return [p for p in paths if p.exists()]


def load_report_data(game: Path | str) -> ReportData:
    game = Path(game)
    notes: list[str] = []
    results = load_results(game)
    commitment: str | None = None
    blind: dict[str, str] = {}
    try:
        from auditgame.bundle.seal import read_commitment, verify_key

        commitment = read_commitment(game)
        key = verify_key(game)
        blind = {e.organism: bid for bid, e in key.organisms.items()}
        if commitment != results.commitment:
            ok, msg = False, "results.json was scored against another commitment"
        else:
            ok, msg = True, "key matches the commitment; bundle unchanged"
    except AuditgameError as e:
        ok, msg = False, str(e)
    orgs: list[OrganismInfo] = []
    root = game / ORGANISMS
    if root.is_dir():
        for folder in sorted(p for p in root.iterdir()
                             if p.is_dir() and not p.name.startswith(".")):
            card = _optional_json(folder / CARD, notes)
            metrics = _optional_json(folder / METRICS, notes)
            if not isinstance(card, dict):
                notes.append(f"organism {folder.name}: no readable card; not shown")
                continue
            orgs.append(OrganismInfo(folder.name, blind.get(folder.name), card,
                                     metrics if isinstance(metrics, dict) else {}))
    rem = _optional_json(game / REMEDIATION, notes)
    rem_note = None
    if rem is not None and not isinstance(rem, dict):
        rem, rem_note = None, f"{REMEDIATION} is not a JSON object; not shown"
    pipe = _optional_json(game / PIPELINE_LOG, notes)
    base = _optional_json(game / BASE_METRICS, notes)
    return ReportData(game=game, name=game_name(game), results=results, commitment=commitment,
                      verify_ok=ok, verify_message=msg, organisms=orgs,
                      base_metrics=base if isinstance(base, dict) else None,
                      remediation=rem, remediation_note=rem_note,
                      pipeline=pipe if isinstance(pipe, dict) else None, notes=notes)
