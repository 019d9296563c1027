"""The `report` command (registered on the main app): GAME/report.html from the results."""

from __future__ import annotations

from pathlib import Path

import typer

from auditgame._cli.main import app, clean_errors, err, out
from auditgame.errors import AuditgameError


@app.command()
@clean_errors
def report(
    game: Path = typer.Argument(..., help="scored game folder (has results.json)"),
    out_path: Path | None = typer.Option(None, "--out", "-o",
                                         help="where to write (default: GAME/report.html)"),
) -> None:
    """Write one self-contained HTML report of GAME: ROC curves, scores, confusion tables,
    recovery, persistence curves and organism cards (figures inlined)."""
    from auditgame.report import build_report

    check_report_inputs(game)
    path = build_report(game, out_path)
    err.print(f"wrote {path} ({path.stat().st_size // 1024} KiB)")
    out.print(str(path), highlight=False)


def check_report_inputs(game: Path) -> None:
    """The report shows every card and metric and the remediation round, so a tampered or
    torn one is refused with one line instead of being drawn as if it were the game's."""
    from auditgame.layout import GameFolder, altered_files
    from auditgame.records._io import read_record
    from auditgame.records.remediation import Remediation

    g = GameFolder(game)
    for folder in g.organism_folders():
        bad = altered_files(folder)
        if bad:
            raise AuditgameError("missing or changed since the organism was built "
                                 "(hashes.json)", path=folder / bad[0])
    if g.remediation.exists():
        read_record(g.remediation, Remediation)
