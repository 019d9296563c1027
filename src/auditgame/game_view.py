"""A game folder read back through its records: what a researcher opens after a run."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from auditgame.errors import AuditgameError
from auditgame.layout import CARD, METRICS, GameFolder
from auditgame.records._io import read_record
from auditgame.records.organism import OrganismCard, OrganismMetrics
from auditgame.records.remediation import Remediation
from auditgame.records.results import Results


@dataclass
class Game:
    """The records of one game folder; the optional ones are None until their stage ran.
    It reads the private cards, so it is for the red team and the referee, not auditors."""

    folder: GameFolder
    cards: dict[str, OrganismCard]
    metrics: dict[str, OrganismMetrics]
    results: Results | None
    remediation: Remediation | None

    @property
    def names(self) -> list[str]:
        return sorted(self.cards)


def load_game(path: Path | str) -> Game:
    """Read every finished organism's card and metrics, results and remediation if present."""
    g = GameFolder(path)
    if not g.organisms.is_dir():
        raise AuditgameError("not a game folder (no organisms/)", path=g.root)
    cards, metrics = {}, {}
    for folder in g.organism_folders():
        if (folder / CARD).exists():
            cards[folder.name] = read_record(folder / CARD, OrganismCard, "card")
            metrics[folder.name] = read_record(folder / METRICS, OrganismMetrics, "metrics")
    results = read_record(g.results, Results) if g.results.exists() else None
    rem = read_record(g.remediation, Remediation) if g.remediation.exists() else None
    return Game(folder=g, cards=cards, metrics=metrics, results=results, remediation=rem)
