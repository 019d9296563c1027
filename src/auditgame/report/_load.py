"""Everything the report shows, read from the game folder through the record models: the
referee's results, the organisms' private cards and metrics, the key's verification, the
remediation round, the base model's metrics and the pipeline log.

The report is for the referee and researchers after the game, so it may show the key. Only the
results are required; every other record is optional, and a missing, unreadable or invalid one
(an older record version among them) becomes a note in the report, never a crash, so a report
can always be drawn for whatever a game folder holds. An organism folder changed since it was
built (its hashes.json) is refused, not drawn: the report would show as the game's a card or
metrics the game never had.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel

from auditgame.errors import AuditgameError
from auditgame.layout import CARD, METRICS, RESULTS, GameFolder, altered_files
from auditgame.records import (
    BaseMetrics,
    OrganismCard,
    OrganismMetrics,
    PipelineLog,
    Remediation,
    Results,
    read_record,
)

M = TypeVar("M", bound=BaseModel)


@dataclass
class OrganismInfo:
    """One organism's private card and, when readable, its metrics (None: not shown)."""

    name: str
    blind_id: str | None
    card: OrganismCard
    metrics: OrganismMetrics | None


@dataclass
class ReportData:
    """The records one report is drawn from; an optional record that could not be read is
    None, with the reason in `notes` (or in its section's note)."""

    game: Path
    name: str
    results: Results
    commitment: str | None
    verify_ok: bool
    verify_message: str
    organisms: list[OrganismInfo]
    base_metrics: BaseMetrics | None
    remediation: Remediation | None
    remediation_note: str | None
    pipeline: PipelineLog | None
    notes: list[str] = field(default_factory=list)
    pipeline_note: str | None = None
    compared: list[tuple[str, Remediation]] = field(default_factory=list)
    """(method, record) of every other method's round (`remediate.compare`)."""


def _where(path: Path, game: Path) -> str:
    """The path relative to the game folder, so a note reads the same wherever the game is."""
    try:
        return str(path.relative_to(game))
    except ValueError:
        return str(path)


def _version_hint(path: Path, cls: type[BaseModel]) -> str:
    """' (version N record; this auditgame reads version M)' when the file is another record
    version, so an old record's note says why it no longer validates."""
    current = cls.model_fields.get("version")
    try:
        found = json.loads(path.read_bytes()).get("version")
    except (OSError, ValueError, AttributeError):
        return ""
    if current is None or not isinstance(found, int) or found == current.default:
        return ""
    return f" (version {found} record; this auditgame reads version {current.default})"


def read_optional(path: Path, cls: type[M], game: Path) -> tuple[M | None, str | None]:
    """`(record, None)`, `(None, None)` when the file is absent, or `(None, problem)` when it
    is unreadable or does not validate as `cls` (one line naming the file and the field);
    never raises for a bad file."""
    if not path.exists():
        return None, None
    try:
        return read_record(path, cls), None
    except AuditgameError as e:
        at = f"{e.field}: " if e.field else ""
        hint = _version_hint(path, cls)
        return None, f"{_where(path, game)}: {at}{e.message}{hint}"


def game_name(game: Path) -> str:
    """The spec's `name`, else the folder name."""
    spec = GameFolder(game).spec
    if spec.exists():
        import yaml

        try:
            data = yaml.safe_load(spec.read_text(encoding="utf-8"))
            if isinstance(data, dict) and data.get("name"):
                return str(data["name"])
        except (OSError, UnicodeDecodeError, yaml.YAMLError):
            pass
    return game.resolve().name


def load_results(game: Path) -> Results:
    """The referee's results: required, so a missing or invalid file is one AuditgameError."""
    path = GameFolder(game).results
    if not path.exists():
        raise AuditgameError("no results; run `auditgame score` first", path=path)
    return read_record(path, Results)


def report_inputs(game: Path | str) -> list[Path]:
    """Files whose content the report shows (a newer one makes the report stale)."""
    f = GameFolder(game)
    paths = [f.results, f.key, f.commitment, f.remediation, *f.compared_records(),
             f.base_metrics]
    for folder in f.organism_folders():
        paths += [folder / CARD, folder / METRICS]
    return [p for p in paths if p.exists()]


def _verify(game: Path, results: Results) -> tuple[str | None, bool, str, dict[str, str]]:
    """(commitment, ok, message, organism -> blind id): the key checked against the published
    commitment and the bundle, and the commitment against the one results were scored on."""
    from auditgame.bundle.seal import read_commitment, verify_key

    commitment: str | None = None
    try:
        commitment = read_commitment(game)
        key = verify_key(game)
    except AuditgameError as e:
        return commitment, False, str(e), {}
    blind = {e.organism: bid for bid, e in key.organisms.items()}
    if commitment != results.commitment:
        return commitment, False, f"{RESULTS} was scored against another commitment", blind
    return commitment, True, "key matches the commitment; bundle unchanged", blind


def load_organisms(game: Path, blind: dict[str, str], notes: list[str]) -> list[OrganismInfo]:
    """Every organism with a valid card; one without is left out with a note, one with a card
    but without valid metrics is shown without them."""
    orgs: list[OrganismInfo] = []
    for folder in GameFolder(game).organism_folders():
        card, problem = read_optional(folder / CARD, OrganismCard, game)
        if card is None:
            notes.append(f"{problem or f'organism {folder.name}: no {CARD}'}; not shown")
            continue
        metrics, problem = read_optional(folder / METRICS, OrganismMetrics, game)
        if metrics is None:
            notes.append(f"{problem or f'organism {folder.name}: no {METRICS}'}; "
                         "its card is shown without metrics")
        orgs.append(OrganismInfo(folder.name, blind.get(folder.name), card, metrics))
    return orgs


def check_organisms(game: Path | str) -> None:
    """Every organism folder as built: a file missing or changed since (hashes.json) is one
    AuditgameError naming it."""
    for folder in GameFolder(game).organism_folders():
        bad = altered_files(folder)
        if bad:
            raise AuditgameError("missing or changed since the organism was built "
                                 "(hashes.json)", path=folder / bad[0])


def load_report_data(game: Path | str) -> ReportData:
    """Every record of GAME the report shows; raises for an altered organism folder and for
    missing or invalid results, and only for those."""
    game = Path(game)
    f = GameFolder(game)
    check_organisms(game)
    notes: list[str] = []
    results = load_results(game)
    commitment, ok, msg, blind = _verify(game, results)
    orgs = load_organisms(game, blind, notes)
    rem, rem_note = read_optional(f.remediation, Remediation, game)
    compared = []
    for path in f.compared_records():
        other, problem = read_optional(path, Remediation, game)
        if other is not None:
            compared.append((path.name.split(".")[1], other))
        elif problem:
            notes.append(f"{problem}; that method's round is not shown")
    pipe, pipe_note = read_optional(f.pipeline_log, PipelineLog, game)
    base, base_note = read_optional(f.base_metrics, BaseMetrics, game)
    if base_note:
        notes.append(f"{base_note}; the base model's utility is not shown")
    return ReportData(game=game, name=game_name(game), results=results, commitment=commitment,
                      verify_ok=ok, verify_message=msg, organisms=orgs, base_metrics=base,
                      remediation=rem, remediation_note=_not_shown(rem_note), pipeline=pipe,
                      notes=notes, pipeline_note=_not_shown(pipe_note), compared=compared)


def _not_shown(problem: str | None) -> str | None:
    return None if problem is None else f"{problem}; not shown"
