"""The game report: one self-contained GAME/report.html with every detector's ROC curve,
score distributions, the confusion table at the referee's threshold, trigger and target
recovery, persistence curves from remediation, and organism cards with their metrics."""

from __future__ import annotations

from pathlib import Path

from auditgame._util.io import atomic_write_text
from auditgame.layout import GameFolder
from auditgame.report._load import ReportData, load_report_data, report_inputs


def build_report(game: Path | str, out: Path | str | None = None) -> Path:
    """Render GAME's report (default GAME/report.html, written atomically); returns its path."""
    from auditgame.report._html import render

    game = Path(game)
    path = Path(out) if out is not None else GameFolder(game).report
    atomic_write_text(path, render(load_report_data(game)))
    path.chmod(0o644)  # a report is for sharing (temporary files are created private)
    return path


__all__ = ["ReportData", "build_report", "load_report_data", "report_inputs"]
