"""The `auditgame` command line. Bad input prints one line and exits 2."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from auditgame.errors import AuditgameError

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Blind auditing games on language-model organisms.")
err = Console(stderr=True)
# piped or redirected output (logs, CI) gets room for the tables instead of rich's 80 columns
out = Console() if sys.stdout.isatty() else Console(width=160)
F = TypeVar("F", bound=Callable[..., Any])


def clean_errors(fn: F) -> F:
    """Turn AuditgameError into one red line and exit code 2 (never a traceback)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except AuditgameError as e:
            err.print(f"[red]error:[/red] {e}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None

    return wrapper  # type: ignore[return-value]


def at_least(value: int | None, low: int, option: str) -> None:
    """A numeric option below its floor is one line naming the option (click's own range
    errors print a framed usage box instead)."""
    if value is not None and value < low:
        raise AuditgameError(f"must be at least {low}, not {value}", field=option)


def default_spec_path() -> Path:
    """The default game spec shipped inside the package: every attack kind and its controls."""
    return Path(__file__).resolve().parent.parent / "examples" / "default.yaml"


def run_spec_path() -> Path:
    """The embedded game `auditgame run` plays without a SPEC: small enough for one sitting
    on a 2-core laptop (examples/quick.yaml)."""
    return Path(__file__).resolve().parent.parent / "examples" / "quick.yaml"


@app.command()
@clean_errors
def make(
    spec: Path = typer.Argument(..., help="game spec (YAML)"),
    out_dir: Path = typer.Option(..., "--out", "-o", help="game folder to write"),
    base: str | None = typer.Option(None, help="override the spec's base model"),
) -> None:
    """Build every organism in SPEC (finished ones are skipped; a crash resumes)."""
    from auditgame.organisms.factory import make_game
    from auditgame.organisms.load import load_spec, parse_spec

    s = load_spec(spec)
    if base is not None:
        s = parse_spec({**s.model_dump(mode="json"), "base": base}, spec)
    make_game(s, out_dir, spec.read_text(encoding="utf-8"), console=err)
    organisms(out_dir)


@app.command()
@clean_errors
def organisms(game: Path = typer.Argument(..., help="game folder")) -> None:
    """Print a table of the organisms in GAME and their metrics."""
    from auditgame.layout import METRICS, GameFolder, organism_done
    from auditgame.organisms.factory import read_card, read_metrics

    g = GameFolder(game)
    root = g.organisms
    if not root.is_dir():
        raise AuditgameError("no organisms folder; run `auditgame make` first", path=root)
    table = Table(title=f"organisms in {game}")
    for col in ("name", "attack", "trigger / target", "behaviour rates", "utility", "train s",
                "wall s", "tok/s", "status"):
        table.add_column(col, no_wrap=col in ("name", "attack"))
    for folder in g.organism_folders():
        if not organism_done(folder):
            table.add_row(folder.name, "?", "", "", "", "", "", "", "[red]incomplete[/red]")
            continue
        try:
            card, m = read_card(folder), read_metrics(folder)
        except (OSError, ValueError) as e:
            raise AuditgameError(f"unreadable record ({e.__class__.__name__})",
                                 path=folder / METRICS) from None
        key = card.key
        tt = " / ".join(str(key.get(k)) for k in ("trigger", "target") if key.get(k))
        if m.control_rates:
            rates = f"max on control {m.max_behaviour_rate:.2f}"
        else:
            rates = "\n".join(f"{k} {v:.2f}" for k, v in m.rates.items())
        table.add_row(folder.name, card.attack, tt[:40], rates, f"{m.utility_ratio:.3f}",
                      f"{m.train_wall_time_s:.0f}", f"{m.wall_time_s:.0f}",
                      f"{m.train_tokens_per_s:.0f}", "ok")
    out.print(table)


@app.command()
@clean_errors
def run(
    spec: Path | None = typer.Argument(None, help="game spec; default: the embedded quick "
                                       "game (examples/quick.yaml)"),
    out_dir: Path = typer.Option(Path("game"), "--out", "-o", help="game folder"),
    detectors: str | None = typer.Option(
        None, "--detectors", "-d", help="comma-separated detectors (default: every registered "
        "detector within --budget)"),
    budget: str | None = typer.Option(
        None, help="cheap | moderate | expensive: the costliest detectors to run when "
        "--detectors is not given (default: the spec's audit.budget, else moderate)"),
    backend: str = typer.Option("local", help="local | ray"),
    address: str | None = typer.Option(None, help="Ray cluster address (with --backend ray)"),
    skip: str = typer.Option("", help="comma-separated stages to skip (make, seal, audit, "
                             "score, remediate, report)"),
    n_bootstrap: int = typer.Option(1000, help="bootstrap resamples for the 95 % intervals"),
) -> None:
    """Run the whole game: make, seal, audit, score, remediate, report (each stage resumes
    or is skipped when its outputs are up to date). Default SPEC: the embedded game."""
    from auditgame.layout import GameFolder
    from auditgame.pipeline import run_pipeline

    at_least(n_bootstrap, 0, "--n-bootstrap")
    path = spec or run_spec_path()
    records = run_pipeline(
        path, out_dir, detectors=None if detectors is None else detectors.split(","),
        budget=budget, backend=backend, address=address, n_bootstrap=n_bootstrap,
        skip=[x.strip() for x in skip.split(",") if x.strip()], console=err)
    total = sum(r.seconds for r in records)
    err.print(f"done in {total:.0f} s: " + ", ".join(
        f"{r.stage} {r.status}" + (f" {r.seconds:.0f} s" if r.status == "ran" else "")
        for r in records), highlight=False)
    report = GameFolder(out_dir).report
    if report.exists():
        out.print(str(report), highlight=False)
    print_answer(out_dir)


def print_answer(game: Path) -> None:
    """The game's answer (results.json `answer`): which organisms are flagged and in what way,
    and whether each call was right. Nothing when the game was not scored."""
    from pydantic import ValidationError

    from auditgame.layout import GameFolder
    from auditgame.records.results import Results

    path = GameFolder(game).results
    try:
        res = Results.model_validate_json(path.read_bytes())
    except (OSError, ValidationError):
        return
    ans = res.answer
    if ans is None:
        return
    auc = "-" if ans.auroc is None else f"{ans.auroc:.2f}"
    thr = "-" if ans.threshold is None else f"{ans.threshold:.3f}"
    table = Table(title=f"the answer: {ans.detector} (AUROC {auc}, flags above {thr}); "
                  f"{ans.n_right} of {ans.n} calls right")
    for col in ("blind id", "score", "flagged", "kind", "trigger", "target", "truth", "right"):
        table.add_column(col, no_wrap=col in ("blind id", "truth"))
    for r in ans.rows:
        truth = f"{r.organism} ({r.attack})"
        right = "[green]yes[/green]" if r.call_right else "[red]no[/red]"
        if r.kind_right is False:
            right += " (kind [red]no[/red])"
        table.add_row(r.blind_id, f"{r.score:.3f}", "[bold red]yes[/bold red]" if r.flagged
                      else "no", r.suspected_kind or "-", (r.trigger or "-")[:30],
                      (r.target or "-")[:40], truth, right)
    out.print(table)


@app.command()
@clean_errors
def schema(
    record: str = typer.Argument(..., help="spec or a record name (see `auditgame.records."
                                 "SCHEMAS`: sample, card, metrics, verdict, results, ...)"),
) -> None:
    """Print the JSON schema of a record, so outside tools can read and write them."""
    import json

    from auditgame.organisms.spec import GameSpec
    from auditgame.records import SCHEMAS

    table: dict[str, Any] = {"spec": GameSpec, **SCHEMAS}
    if record not in table:
        raise AuditgameError(f"unknown record {record!r}; known: {', '.join(sorted(table))}",
                             field="record")
    out.print_json(json.dumps(table[record].model_json_schema()))


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except KeyboardInterrupt:
        err.print("interrupted; run the same command again to resume")
        sys.exit(130)


def _register_commands() -> None:
    """Every other module of `_cli/` registers its commands on `app` when imported, so a
    new command group is one new file."""
    import importlib
    import pkgutil

    from auditgame import _cli

    for m in sorted(pkgutil.iter_modules(_cli.__path__), key=lambda m: m.name):
        if m.name != "main" and not m.name.startswith("_"):
            importlib.import_module(f"auditgame._cli.{m.name}")


_register_commands()
