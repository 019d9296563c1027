"""Blind-game commands: seal, verify-key, audit, score (registered on the main app)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from auditgame._cli.main import app, at_least, clean_errors, err, out
from auditgame.errors import AuditgameError


@app.command()
@clean_errors
def seal(
    game: Path = typer.Argument(..., help="game folder built by `auditgame make`"),
    seed: int | None = typer.Option(None, help="blinding seed (default: from the private spec)"),
    force: bool = typer.Option(False, "--force", help="reseal (invalidates the old commitment "
                               "and removes old verdicts and results)"),
) -> None:
    """Blind GAME's organisms into GAME/bundle/ and commit to the key (publish the hash)."""
    from auditgame.bundle import read_commitment, seal_game
    from auditgame.layout import GameFolder

    key = seal_game(game, seed=seed, force=force)
    g = GameFolder(game)
    err.print(f"sealed {len(key.organisms)} organisms into {g.bundle}; "
              f"key in {g.key} (keep private)")
    err.print(f"publish the commitment ({g.commitment}) before any audit:")
    out.print(read_commitment(game), highlight=False)


@app.command("verify-key")
@clean_errors
def verify_key_cmd(game: Path = typer.Argument(..., help="sealed game folder")) -> None:
    """Check GAME/key.json against GAME/commitment.txt (exit 2 on any mismatch)."""
    from auditgame.bundle import verify_key

    key = verify_key(game)
    out.print(f"key ok: {len(key.organisms)} organisms, matches the commitment", highlight=False)


def _detector_list(text: str) -> list[str]:
    from auditgame.detectors import detector_names

    names = [n.strip() for n in text.split(",") if n.strip()]
    known = detector_names()
    bad = [n for n in names if n not in known]
    if bad or not names:
        raise AuditgameError(f"unknown detector(s) {', '.join(bad) or '(none given)'}; "
                             f"known: {', '.join(known)}", field="--detectors")
    return names


@app.command()
@clean_errors
def audit(
    bundle: Path = typer.Argument(..., help="sealed bundle folder (GAME/bundle)"),
    detectors: str = typer.Option("metadata", "--detectors", "-d",
                                  help="comma-separated detector names (see `auditgame "
                                  "detectors`)"),
    out_dir: Path | None = typer.Option(None, "--out", "-o",
                                        help="verdict folder (default: GAME/verdicts)"),
) -> None:
    """Run detectors over the bundle; writes one verdict file per detector (resumable)."""
    from auditgame.detectors import run_audit

    names = _detector_list(detectors)
    paths = run_audit(bundle, names, out_dir,
                      on_done=lambda v: err.print(
                          f"{v.detector} {v.blind_id}: {v.score:.3f}"
                          + (f" [red]failed: {v.error[:80]}[/red]" if v.error else ""),
                          highlight=False))
    for name, p in paths.items():
        out.print(f"{name}: {p}", highlight=False)


@app.command("detectors")
@clean_errors
def detectors_cmd() -> None:
    """List the registered detectors, what each needs and what it costs."""
    from auditgame.detectors import detector_names, get_detector
    from auditgame.pipeline import detector_cost

    table = Table(title="detectors")
    table.add_column("name")
    table.add_column("needs")
    table.add_column("cost")
    table.add_column("about")
    for n in detector_names():
        cls = get_detector(n)
        doc = (cls.__doc__ or "").strip().splitlines()
        table.add_row(n, ", ".join(sorted(cls.needs)) or "-", detector_cost(cls),
                      doc[0] if doc else "")
    out.print(table)


def _f(x: float | None, ci: tuple[float, float] | None = None) -> str:
    if x is None:
        return "-"
    s = f"{x:.3f}"
    if ci is not None:
        s += f" [{ci[0]:.2f}, {ci[1]:.2f}]"
    return s


@app.command()
@clean_errors
def score(
    game: Path = typer.Argument(..., help="sealed and audited game folder"),
    n_bootstrap: int = typer.Option(1000, help="bootstrap resamples for the 95 % intervals"),
    seed: int = typer.Option(0, help="bootstrap seed"),
    working_triggers: bool = typer.Option(
        False, "--working-triggers", help="also run every organism with each claimed trigger "
        "on fresh prompts (loads the base model): the working-trigger rate (REASR) beside "
        "exact match and F1"),
) -> None:
    """Score every verdict file against the committed key; writes GAME/results.json."""
    from auditgame.referee import score_game

    at_least(n_bootstrap, 0, "--n-bootstrap")
    res = score_game(game, n_boot=n_bootstrap, seed=seed, working_triggers=working_triggers)
    table = Table(title=f"results for {game} (commitment {res.commitment[:12]}...)")
    cols = ["detector", "attack", "pois/clean", "AUROC [95% CI]", "TPR@FPR<=5%", "Brier",
            "CE", "trigger EM/F1", "target F1", "entity", "sample AUROC", "failed"]
    if working_triggers:
        cols.insert(8, "REASR")
    for col in cols:
        table.add_column(col, no_wrap=col in ("detector", "attack"))
    for d in res.detectors:
        for g, r in d.groups.items():
            trig = "-" if r.trigger_exact is None else f"{r.trigger_exact:.2f}/{r.trigger_f1:.2f}"
            cells = [d.detector, g, f"{r.n_poisoned}/{r.n_clean}", _f(r.auroc, r.auroc_ci),
                     _f(r.tpr_at_fpr), _f(r.brier), _f(r.cross_entropy), trig,
                     _f(r.target_f1), _f(r.entity_match), _f(r.sample_auroc),
                     f"[red]{r.n_failed}[/red]" if r.n_failed else "0"]
            if working_triggers:
                cells.insert(8, _f(r.trigger_working))
            table.add_row(*cells)
    out.print(table)
    for d in res.detectors:
        for f in d.failures:
            err.print(f"[yellow]{d.detector} failed on {f.blind_id}:[/yellow] {f.reason[:120]}",
                      highlight=False)
    from auditgame.layout import GameFolder

    err.print(f"wrote {GameFolder(game).results}")
