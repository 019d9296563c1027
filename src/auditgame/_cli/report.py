"""The `report` command (registered on the main app): GAME/report.html from the results."""

from __future__ import annotations

from pathlib import Path

import typer

from auditgame._cli.main import app, clean_errors, err, out


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

    path = build_report(game, out_path)
    err.print(f"wrote {path} ({path.stat().st_size // 1024} KiB)")
    out.print(str(path), highlight=False)
