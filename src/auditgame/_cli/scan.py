"""The `scan` command: audit a standalone dataset for poison (registered on the main app)."""

from __future__ import annotations

from pathlib import Path

import typer

from auditgame._cli.blind import _detector_list
from auditgame._cli.main import app, clean_errors, err, out
from auditgame.errors import AuditgameError
from auditgame.layout import SCAN_REPORT


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
    components: str = typer.Option("", "--ensemble-components",
                                   help="base-model components for the ensemble: spectral, "
                                   "activation_clustering, perplexity_outliers"),
    judge_url: str = typer.Option("", help="llm_judge: OpenAI-compatible base URL, e.g. "
                                  "http://127.0.0.1:8080/v1 (default: the base model judges)"),
    judge_model: str = typer.Option("gpt-4o-mini", help="llm_judge: model name at the endpoint"),
    judge_key_env: str = typer.Option("OPENAI_API_KEY",
                                      help="llm_judge: environment variable with the API key"),
    judge_timeout: float = typer.Option(30.0, help="llm_judge: seconds per request"),
) -> None:
    """Scan DATASET for poison: per-sample scores, suspected trigger and target."""
    from auditgame._util.io import atomic_write_json
    from auditgame.scan import scan_dataset, summary_lines

    names = _detector_list(detectors)
    kwargs: dict[str, dict[str, object]] = {
        "llm_judge": {"url": judge_url or None, "model": judge_model,
                      "key_env": judge_key_env, "timeout": judge_timeout}}
    if components.strip():
        from auditgame.detectors.data.ensemble import outlier_detector_names

        known = outlier_detector_names()  # from the registry: detectors with the hook
        comps = [c.strip() for c in components.split(",") if c.strip()]
        if set(comps) - set(known):
            raise AuditgameError(f"unknown ensemble component(s) in {components!r}; known: "
                                 f"{', '.join(known)}", field="--ensemble-components")
        kwargs["ensemble"] = {"components": comps}
    report = scan_dataset(dataset, names, base_name=base, detector_kwargs=kwargs,
                          on_done=lambda v: err.print(
                              f"{v.detector}: {v.score:.3f} in {v.runtime_s:.1f}s"
                              + (f" [red]failed: {v.error[:80]}[/red]" if v.error else ""),
                              highlight=False))
    path = out_dir / SCAN_REPORT
    atomic_write_json(path, report.model_dump(mode="json"))
    for line in summary_lines(report):
        out.print(line, highlight=False)
    out.print(f"wrote {path}", highlight=False)
