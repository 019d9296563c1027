"""`remediate_game`: a remediation method trains every organism further; re-measured at
several step budgets.

For each organism (poisoned and clean controls alike) the spec's `remediate.method` (a
plug-in, default `kl_distill`) trains its own adapter further on clean samples it never saw,
seeing it only through a `FixerView` (what it declared; never the key or the card). After
each budget the attack's held-out eval sets and utility are measured again: a persistence
curve per organism, the relapse under the trigger, and for clean controls the utility cost
of the fix. Each (organism, budget) result is written to `GAME/remediation.json` as soon as
it is done; a rerun skips it (other settings, another method included, need --force).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from rich.console import Console

from auditgame.errors import AuditgameError
from auditgame.layout import GameFolder, RemediationFiles
from auditgame.models.base_lm import BaseLM, load_base
from auditgame.organisms.factory import progress_bar
from auditgame.organisms.game_measure import check_task_set
from auditgame.organisms.load import load_spec
from auditgame.organisms.spec import GameSpec
from auditgame.plugins import PluginError
from auditgame.records.remediation import (
    DepthSettings,
    Remediation,
    RemediationSettings,
)
from auditgame.remediate.fixing import Round, adapter_dir, remediate_all, save_round
from auditgame.remediate.method import RemediationMethod, get_remediation
from auditgame.remediate.reaudit import cheap_detectors, reaudit_round

DEFAULT_BUDGETS = (0, 16, 48)
DEFAULT_SAMPLES = 256


def parse_budgets(text: str) -> list[int]:
    """'0,16,48' -> [0, 16, 48]; one clear error on anything else."""
    try:
        vals = sorted({int(x) for x in text.split(",") if x.strip()})
    except ValueError:
        raise AuditgameError(f"budgets must be comma-separated step counts, not {text!r}",
                             field="--budgets") from None
    if not vals or vals[0] < 0:
        raise AuditgameError("budgets must be non-negative step counts", field="--budgets")
    return vals


def read_remediation(game: Path, compared: str | None = None) -> Remediation | None:
    """The main round's record, or that of a compared method; None before it ran."""
    return _read_record(GameFolder(game).remediation_files(compared).record)


def _read_record(path: Path) -> Remediation | None:
    if not path.exists():
        return None
    try:
        return Remediation.model_validate_json(path.read_text(encoding="utf-8"))
    except ValueError as e:
        raise AuditgameError(f"unreadable remediation record ({e.__class__.__name__}); "
                             "rerun with --force", path=path) from None


def resolve_method(spec: GameSpec, name: str | None = None) -> RemediationMethod:
    """The spec's method with its `method_params`, or `name` (the CLI's --method) with its
    defaults: the spec's params are options of the spec's method, not of another one."""
    if name is None or name == spec.remediate.method:
        return get_remediation(spec.remediate.method)(spec.remediate.method_params)
    try:
        cls = get_remediation(name)
    except PluginError as e:
        raise AuditgameError(e.message, field="--method") from None
    return cls()


def round_settings(spec: GameSpec, n_samples: int,
                   method: RemediationMethod) -> RemediationSettings:
    """The settings as the method trains with them: what the record keeps and a rerun
    compares (the spec's own recipe, the method's name and its validated options)."""
    settings = RemediationSettings(lr=spec.train.lr, warmup_steps=spec.train.warmup_steps,
                                   batch_size=spec.train.batch_size, n_samples=n_samples,
                                   seed=spec.seed, max_len=spec.train.max_len,
                                   kl_to_base=spec.remediate.kl_to_base, method=method.name,
                                   method_params=method.params.model_dump(mode="json"))
    return method.effective_settings(settings)


def _load_spec(game: Path) -> GameSpec:
    """The game's spec, read as `make` reads one: unreadable YAML, non-UTF-8 bytes or a bad
    field is one AuditgameError naming the file and the line or field (every caller, the
    library and `auditgame run` included, not only the `remediate` command)."""
    path = GameFolder(game).spec
    if not path.exists():
        raise AuditgameError("no game spec; run `auditgame make` first", path=path)
    return load_spec(path)


def round_methods(game: Path, spec: GameSpec, name: str | None = None
                  ) -> list[tuple[RemediationMethod, RemediationFiles]]:
    """The rounds to run, each a method and its files: the spec's method, then every method
    it compares (`remediate.compare`). `name` (the CLI's --method) runs that one alone: in
    its own files when the spec compares it, else in the main round's."""
    g = GameFolder(game)
    compared = dict(spec.remediate.compared())
    if name is None:
        return [(resolve_method(spec), g.remediation_files())] + [
            (get_remediation(n)(opts), g.remediation_files(n)) for n, opts in compared.items()]
    if name in compared and name != spec.remediate.method:
        return [(get_remediation(name)(compared[name]), g.remediation_files(name))]
    return [(resolve_method(spec, name), g.remediation_files())]


def remediate_game(
    game: Path,
    console: Console | None = None,
    budgets: list[int] | tuple[int, ...] | None = None,
    detectors: list[str] | None = None,
    base: BaseLM | None = None,
    n_samples: int | None = None,
    force: bool = False,
    method: str | None = None,
    depth: bool = False,
) -> None:
    """Remediate every organism of GAME at each step budget with the spec's method
    (GAME/remediation.json), then with each method it compares (GAME/remediation.<name>.json).
    `budgets`, `n_samples` and `method` default to the spec's `remediate` section. `detectors`:
    to re-audit on the fixed organisms (default: those that need only weights and
    activations; `[]` for none). `depth` (or the spec's `remediate.depth`): also run the depth
    tests (see `remediate.depth`) on the largest budget's fix."""
    game = Path(game)
    console = console or Console(stderr=True)
    spec = _load_spec(game)
    budgets = sorted({int(b) for b in (budgets if budgets is not None
                                       else spec.remediate.budgets)} | {0})
    n_samples = n_samples if n_samples is not None else spec.remediate.n_samples
    names = [o.name for o in spec.organisms]
    missing = [n for n in names if not GameFolder(game).organism_done(n)]
    if missing:
        raise AuditgameError(f"organisms not built: {', '.join(missing)}; run `auditgame make`",
                             path=GameFolder(game).organisms)
    rounds = round_methods(game, spec, method)
    for fixer, _ in rounds:  # every round is checked before the first one trains
        if fixer.requires_verdicts and not GameFolder(game).verdict_files():
            raise AuditgameError(f"method {fixer.name!r} needs the blue team's verdicts; run "
                                 "`auditgame audit` first", path=GameFolder(game).verdicts,
                                 field="verdicts")
    dets = cheap_detectors() if detectors is None else list(detectors)
    plans = [(fixer, files, round_settings(spec, n_samples, fixer)) for fixer, files in rounds]
    opened = [_open_record(files, settings, force) for _, files, settings in plans]
    bm = base
    for (fixer, files, settings), rec in zip(plans, opened, strict=True):
        bm = _one_round(game, spec, fixer, files, settings, rec, budgets, names, dets,
                        depth or spec.remediate.depth, console, bm)


def _one_round(game: Path, spec: GameSpec, fixer: RemediationMethod, files: RemediationFiles,
               settings: RemediationSettings, rec: Remediation | None, budgets: list[int],
               names: list[str], dets: list[str], depth: bool, console: Console,
               bm: BaseLM | None) -> BaseLM | None:
    """One method's round, resumed from its record; returns the base model once loaded, so
    the next round shares it."""
    todo, audits_todo = _pending(rec, names, budgets, dets)
    ds = DepthSettings(budget=max(budgets) if rec is None else max(set(rec.budgets) | set(
        budgets))) if depth else None
    deep = [n for n in names if ds is not None and (
        rec is None or rec.depth_settings != ds or n not in rec.organisms
        or rec.organisms[n].depth is None)]
    if not todo and not audits_todo and not deep:
        console.print(f"remediation of {len(names)} organisms by {fixer.name} already done "
                      f"in {game}")
        return bm
    bm = bm or load_base(spec.base, spec.dtype)
    base_util = _base_utility(game, spec)
    if rec is None:
        rec = Remediation(budgets=budgets, settings=settings, base_utility=base_util)
    rec.budgets = sorted(set(rec.budgets) | set(budgets))
    if ds is not None and rec.depth_settings != ds:
        rec.depth_settings = ds
        for o in rec.organisms.values():
            o.depth = None
    with progress_bar(console) as prog:
        r = Round(game=game, files=files, spec=spec, settings=settings, method=fixer, bm=bm,
                  base_util=base_util, rec=rec, prog=prog, depth=ds)
        remediate_all(r, names, todo, deep)
        for d in dets:
            reaudit_round(game, d, names, rec, bm, spec.seed, prog,
                          lambda g, n, b: adapter_dir(g, files, n, b),
                          lambda g, rec: save_round(files, rec))
    console.print(f"remediation by {fixer.name} written to {files.record}")
    return bm


def _open_record(files: RemediationFiles, settings: RemediationSettings,
                 force: bool) -> Remediation | None:
    """The earlier record to resume (None: start afresh); other settings need --force."""
    rec = None if force else _read_record(files.record)
    if force:
        shutil.rmtree(files.root, ignore_errors=True)
    if rec is not None and rec.settings != settings:
        raise AuditgameError(f"{files.record.name} was made with other settings; rerun with "
                             "--force to start over", path=files.record)
    return rec


def _pending(rec: Remediation | None, names: list[str], budgets: list[int], dets: list[str]
             ) -> tuple[list[tuple[str, int]], list[str]]:
    """(organism, budget) pairs still to train and detectors still to re-audit."""
    todo = [(n, b) for n in names for b in budgets
            if rec is None or n not in rec.organisms or str(b) not in rec.organisms[n].results]
    audits_todo = [d for d in dets if rec is None or any(
        n not in rec.organisms or str(b) not in rec.organisms[n].detector_scores.get(d, {})
        for n in names for b in budgets)]
    return todo, audits_todo


def _base_utility(game: Path, spec: GameSpec) -> float:
    path = GameFolder(game).base_metrics
    if not path.exists():
        raise AuditgameError("no base metrics; run `auditgame make` first", path=path)
    util = (check_task_set(game, spec) or {}).get("utility")
    if not isinstance(util, int | float):
        raise AuditgameError("no base utility; run `auditgame make` again", path=path,
                             field="utility")
    return float(util)


