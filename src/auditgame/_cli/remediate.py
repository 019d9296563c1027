"""The `remediate` command: persistence of each behaviour under clean fine-tuning."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from auditgame._cli.main import app, at_least, clean_errors, err, out
from auditgame.records.remediation import Remediation


def _fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}"


@app.command()
@clean_errors
def remediate(
    game: Path = typer.Argument(..., help="game folder built by `auditgame make`"),
    budgets: str | None = typer.Option(
        None, help="clean SFT step budgets, comma-separated (default: the spec's remediate "
        "section, 0,16,48 unless set)"),
    detectors: str | None = typer.Option(
        None, "--detectors", "-d", help="detectors to re-audit on the fixed organisms "
        "(default: those needing only weights and activations; 'none' for none)"),
    n_samples: int | None = typer.Option(
        None, help="clean samples in the remediation pool (default: the spec's, 256)"),
    method: str | None = typer.Option(
        None, "--method", help="remediation method, e.g. kl_distill or clean_sft (default: "
        "the spec's remediate.method with its method_params; another one runs with its "
        "defaults)"),
    force: bool = typer.Option(False, "--force", help="discard earlier results and redo"),
    depth: bool = typer.Option(False, "--depth", help="also run the depth tests on the "
                               "largest budget's fix (re-emergence, variants, read-out, "
                               "distance) and make the shallow/deep call"),
) -> None:
    """Fine-tune every organism on clean data it never saw; writes GAME/remediation.json (and
    GAME/remediation.<method>.json for each method the spec compares)."""
    from auditgame.layout import GameFolder
    from auditgame.organisms.load import load_spec
    from auditgame.organisms.spec import RemediateSpec

    if GameFolder(game).spec.exists():
        load_spec(GameFolder(game).spec)  # unreadable YAML: one line naming the line at fault
    from auditgame.remediate import parse_budgets, read_remediation, remediate_game

    floor = next(m.ge for m in RemediateSpec.model_fields["n_samples"].metadata
                 if hasattr(m, "ge"))
    at_least(n_samples, floor, "--n-samples")
    dets: list[str] | None = None
    if detectors is not None:
        if detectors.strip().lower() == "none":
            dets = []
        else:
            from auditgame._cli.blind import _detector_list

            dets = _detector_list(detectors)
    remediate_game(game, console=err,
                   budgets=None if budgets is None else parse_budgets(budgets),
                   detectors=dets, n_samples=n_samples, force=force, method=method,
                   depth=depth)
    compared = [n for n, _ in load_spec(GameFolder(game).spec).remediate.compared()]
    for name in [None, *compared]:
        rec = read_remediation(game, name)
        if rec is not None:
            _print_round(game, rec)


def _print_round(game: Path, rec: Remediation) -> None:
    """One round's persistence table, and its depth tests when they ran."""
    table = Table(title=f"remediation of {game} by {rec.settings.method} "
                  f"(budgets {', '.join(map(str, rec.budgets))})")
    for col in ("organism", "attack", "metric", "curve", "persistence", "relapse asr",
                "near miss", "utility change", "detector change"):
        table.add_column(col, no_wrap=col in ("organism", "attack"))
    for o in rec.organisms.values():
        m = o.primary_metric
        curve = " → ".join(_fmt(o.results[str(b)].rates.get(m)) if m else "-"
                           for b in rec.budgets if str(b) in o.results)
        delta = ", ".join(f"{d} {v:+.2f}" for d, v in o.detector_delta.items() if v is not None)
        uc = "-" if o.utility_change is None else f"{100 * o.utility_change:+.1f} %"
        table.add_row(o.organism, o.attack, m or "-", curve if m else "-", _fmt(o.persistence),
                      _fmt(o.relapse_asr), _fmt(o.near_miss_after), uc, delta or "-")
    out.print(table)
    if any(o.depth is not None for o in rec.organisms.values()):
        out.print(_depth_table(rec))


def _depth_table(rec: Remediation) -> Table:
    """Organism x the depth tests of this method, and the call."""
    table = Table(title=f"depth tests of {rec.settings.method} at step "
                  f"{rec.depth_settings.budget if rec.depth_settings else '-'}")
    for col in ("organism", "before", "after", "re-emergence", "variants max", "probe auroc",
                "read-out kept", "weight dist.", "call"):
        table.add_column(col, no_wrap=col == "organism")
    for o in rec.organisms.values():
        d = o.depth
        if d is None:
            continue
        table.add_row(o.organism, _fmt(d.behaviour_before), _fmt(d.behaviour_after),
                      _fmt(d.reemergence), _fmt(d.variant_max), _fmt(d.probe_auroc),
                      _fmt(d.readout_retained), _fmt(d.weight_distance), d.call)
    return table
