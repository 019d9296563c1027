"""The `scan` command: audit a standalone dataset for poison (registered on the main app)."""

from __future__ import annotations

from pathlib import Path

import typer

from auditgame._cli.main import app, clean_errors, err, out
from auditgame.errors import AuditgameError

SCAN_FILE = "scan.json"


def _names(text: str) -> list[str]:
    from auditgame.detectors import detector_names

    names = [n.strip() for n in text.split(",") if n.strip()]
    bad = [n for n in names if n not in detector_names()]
    if bad or not names:
        raise AuditgameError(f"unknown detector(s) {', '.join(bad) or '(none given)'}; "
                             f"known: {', '.join(detector_names())}", field="--detectors")
    return names


@app.command()
@clean_errors
def scan(
    dataset: Path = typer.Argument(..., help="Alpaca JSON, chat JSONL, or an organism's "
                                   "train.jsonl (or its folder)"),
    out_dir: Path = typer.Option(..., "--out", "-o", help="folder for scan.json"),
    detectors: str = typer.Option(",".join(("phrase_association", "answer_clusters",
                                            "ensemble")), "--detectors", "-d",
                                  help="comma-separated data detectors"),
    base: str = typer.Option("smollm2", help="base model for detectors that need one"),
) -> None:
    """Scan DATASET for poison: per-sample scores, suspected trigger and target."""
    from auditgame._util.io import atomic_write_json
    from auditgame.scan import scan_dataset, summary_lines

    names = _names(detectors)
    report = scan_dataset(dataset, names, base_name=base,
                          on_done=lambda v: err.print(
                              f"{v.detector}: {v.score:.3f} in {v.runtime_s:.1f}s"
                              + (f" [red]failed: {v.error[:80]}[/red]" if v.error else ""),
                              highlight=False))
    path = out_dir / SCAN_FILE
    atomic_write_json(path, report.model_dump(mode="json"))
    for line in summary_lines(report):
        out.print(line, highlight=False)
    out.print(f"wrote {path}", highlight=False)
