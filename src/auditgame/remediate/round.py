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

import json
import shutil
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.progress import Progress

from auditgame._util.io import atomic_write_json, sha256_file
from auditgame.errors import AuditgameError
from auditgame.layout import ADAPTER_CONFIG, ADAPTER_DIR, ADAPTER_WEIGHTS, GameFolder
from auditgame.models.base_lm import BaseLM, load_base
from auditgame.organisms.corpus import build_corpus
from auditgame.organisms.factory import plan, progress_bar, read_card, read_metrics
from auditgame.organisms.game_measure import Planned, check_task_set, spec_tasks
from auditgame.organisms.load import load_spec
from auditgame.organisms.measure import run_sets, utility
from auditgame.organisms.spec import GameSpec
from auditgame.plugins import PluginError
from auditgame.records._io import write_record
from auditgame.records.remediation import (
    BudgetResult,
    DepthSettings,
    OrganismRemediation,
    Remediation,
    RemediationSettings,
)
from auditgame.records.sample import Sample
from auditgame.records.verdict import Verdict, read_verdicts
from auditgame.remediate.data import clean_pool
from auditgame.remediate.method import FixerView, RemediationMethod, get_remediation
from auditgame.remediate.reaudit import cheap_detectors, reaudit_round
from auditgame.remediate.train import (
    OPT_STATE,
    load_optimizer,
    load_trainable,
    make_optimizer,
    save_optimizer,
)

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


def read_remediation(game: Path) -> Remediation | None:
    path = GameFolder(game).remediation
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


def _budget_dir(game: Path, name: str, budget: int) -> Path:
    return GameFolder(game).remediation_dir / name / f"step-{budget}"


def _adapter_dir(game: Path, name: str, budget: int) -> Path:
    if budget == 0:
        return GameFolder(game).organism(name) / ADAPTER_DIR
    return _budget_dir(game, name, budget) / ADAPTER_DIR


@dataclass
class _Round:
    """What every organism of one round shares (instead of ten arguments each)."""

    game: Path
    spec: GameSpec
    settings: RemediationSettings
    method: RemediationMethod
    bm: BaseLM
    base_util: float
    rec: Remediation
    prog: Progress
    depth: DepthSettings | None = None


def _save(game: Path, rec: Remediation) -> None:
    for o in rec.organisms.values():
        o.summarise()
    write_record(GameFolder(game).remediation, rec)


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
    """Remediate every organism of GAME at each step budget; writes GAME/remediation.json.
    `budgets`, `n_samples` and `method` default to the spec's `remediate` section. `detectors`:
    to re-audit on the fixed organisms (default: those that need only weights and
    activations; `[]` for none). `depth`: also run the depth tests (see `remediate.depth`)
    on the largest budget's fix."""
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
    fixer = resolve_method(spec, method)
    if fixer.requires_verdicts and not GameFolder(game).verdict_files():
        raise AuditgameError(f"method {fixer.name!r} needs the blue team's verdicts; run "
                             "`auditgame audit` first", path=GameFolder(game).verdicts,
                             field="verdicts")
    settings = round_settings(spec, n_samples, fixer)
    rec = _open_record(game, settings, force)
    dets = cheap_detectors() if detectors is None else list(detectors)
    todo, audits_todo = _pending(rec, names, budgets, dets)
    ds = DepthSettings(budget=max(budgets) if rec is None else max(set(rec.budgets) | set(
        budgets))) if depth else None
    deep = [n for n in names if ds is not None and (
        rec is None or rec.depth_settings != ds or n not in rec.organisms
        or rec.organisms[n].depth is None)]
    if not todo and not audits_todo and not deep:
        console.print(f"remediation of {len(names)} organisms already done in {game}")
        return
    bm = base or load_base(spec.base, spec.dtype)
    base_util = _base_utility(game, spec)
    if rec is None:
        rec = Remediation(budgets=budgets, settings=settings, base_utility=base_util)
    rec.budgets = sorted(set(rec.budgets) | set(budgets))
    if ds is not None and rec.depth_settings != ds:
        rec.depth_settings = ds
        for o in rec.organisms.values():
            o.depth = None
    with progress_bar(console) as prog:
        r = _Round(game, spec, settings, fixer, bm, base_util, rec, prog, ds)
        _remediate_all(r, names, todo, deep)
        for d in dets:
            reaudit_round(game, d, names, rec, bm, spec.seed, prog, _adapter_dir, _save)
    console.print(f"remediation written to {GameFolder(game).remediation}")


def _open_record(game: Path, settings: RemediationSettings, force: bool) -> Remediation | None:
    """The earlier record to resume (None: start afresh); other settings need --force."""
    rec = None if force else read_remediation(game)
    if force:
        shutil.rmtree(GameFolder(game).remediation_dir, ignore_errors=True)
    if rec is not None and rec.settings != settings:
        raise AuditgameError("remediation.json was made with other settings; rerun with "
                             "--force to start over", path=GameFolder(game).remediation)
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


def _remediate_all(r: _Round, names: list[str], todo: list[tuple[str, int]],
                   deep: list[str]) -> None:
    """Every organism with budgets to do, on its attack's own clean samples if it has
    some, else on the shared clean pool (self-distilled once, on first need)."""
    spec, n_samples = r.spec, r.settings.n_samples
    corpus = build_corpus(spec.corpus, spec.seed, r.bm)
    planned = {p.org.name: p for p in plan(spec, corpus, r.bm)}
    all_sets = [es for p in planned.values() for es in p.sets]
    pool: list[Sample] | None = None
    for name in names:
        need = [b for n, b in todo if n == name]
        if not need and name not in deep:
            continue
        p = planned[name]
        card = read_card(GameFolder(r.game).organism(name))
        own = p.attack.clean_samples(n_samples, np.random.default_rng(spec.seed + 1))
        if own is not None:
            samples = own
        else:
            if pool is None:
                t = r.prog.add_task("remediation data", total=None, info="self-distilling")
                pool = clean_pool(spec, corpus, all_sets, n_samples, r.bm)
                r.prog.update(t, completed=1, total=1, info=f"{len(pool)} clean samples")
            samples = pool
        o = r.rec.organisms.get(name) or OrganismRemediation(
            organism=name, attack=card.attack, poisoned=card.attack != "clean",
            primary_metric=p.sets[0].metric if p.sets else None)
        r.rec.organisms[name] = o
        _remediate_one(r, p, o, need, samples)
        if r.depth is not None and name in deep:
            _depth_one(r, p, o)


def _record_before(r: _Round, name: str, o: OrganismRemediation) -> None:
    """Budget 0 is the organism as built: what `make` measured, no training."""
    folder = GameFolder(r.game).organism(name)
    m = read_metrics(folder)
    o.results["0"] = BudgetResult(
        steps=0, rates=dict(m.rates), utility=m.utility,
        utility_ratio=round(m.utility / r.base_util, 4) if r.base_util else 0.0,
        wall_time_s=0.0, adapter_sha256=sha256_file(folder / ADAPTER_DIR / ADAPTER_WEIGHTS))
    _save(r.game, r.rec)


def _resume_from(game: Path, name: str, o: OrganismRemediation, first: int) -> int:
    """The largest finished budget below `first` whose optimizer state was kept (0: start
    from the organism); training is continuous, so the result is the same either way."""
    for b in sorted((int(k) for k in o.results), reverse=True):
        if 0 < b < first and (_budget_dir(game, name, b) / OPT_STATE).exists():
            return b
    return 0


def _remediate_one(r: _Round, p: Planned, o: OrganismRemediation, need: list[int],
                   samples: list[Sample]) -> None:
    """Train one organism through its missing budgets, saving and measuring after each."""
    name = p.org.name
    if 0 in need:
        _record_before(r, name, o)
    steps = sorted(b for b in need if b > 0)
    if not steps:
        return
    start = _resume_from(r.game, name, o, steps[0])
    model = load_trainable(r.bm.model, _adapter_dir(r.game, name, start))
    opt = make_optimizer(model, r.settings)
    if start:
        load_optimizer(_budget_dir(r.game, name, start) / OPT_STATE, opt)
    view = FixerView(r.method.needs, model=model, optimizer=opt, tokenizer=r.bm.tokenizer,
                     clean_pool=samples, verdicts=partial(_verdicts_of, r.game, name),
                     as_built=partial(load_trainable, r.bm.model, _adapter_dir(r.game, name, 0)))
    task = r.prog.add_task(f"remediate {name}", total=steps[-1], completed=start, info="")
    for b in steps:
        t0 = time.perf_counter()
        loss, _ = r.method.train(view, r.settings, start, b,
                                 lambda d: r.prog.update(task, completed=d))
        out = _save_budget(r.game, name, b, model, opt)
        r.prog.update(task, info="measuring")
        o.results[str(b)] = _measure(r, p, o, model, b, loss, t0, out)
        _save(r.game, r.rec)
        if start:  # only the newest optimizer state is needed to resume
            (_budget_dir(r.game, name, start) / OPT_STATE).unlink(missing_ok=True)
        start = b
        r.prog.update(task, info=f"{b} steps done")


def _depth_one(r: _Round, p: Planned, o: OrganismRemediation) -> None:
    """The depth tests on the fix at the depth budget (see `remediate.depth`)."""
    from auditgame.remediate.depth import run_depth

    assert r.depth is not None
    task = r.prog.add_task(f"depth tests {o.organism}", total=None, info="")
    o.depth = run_depth(r, p, o, r.depth, _adapter_dir(r.game, o.organism, r.depth.budget),
                        _adapter_dir(r.game, o.organism, 0))
    _save(r.game, r.rec)
    r.prog.update(task, completed=1, total=1, info=o.depth.call)


def _save_budget(game: Path, name: str, budget: int, model: object, opt: object) -> Path:
    """The adapter and optimizer state after `budget` steps, moved into place whole."""
    out = _budget_dir(game, name, budget)
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(str(tmp / ADAPTER_DIR))  # type: ignore[attr-defined]
    _sort_target_modules(tmp / ADAPTER_DIR / ADAPTER_CONFIG)
    save_optimizer(tmp / OPT_STATE, opt)  # type: ignore[arg-type]
    shutil.rmtree(out, ignore_errors=True)
    tmp.replace(out)
    return out


def _sort_target_modules(path: Path) -> None:
    """PEFT keeps `target_modules` as a set and saves it in hash order, which differs from
    one process to the next (PYTHONHASHSEED): sorted, a fix's config is the same bytes in
    every run, as an organism's is (`factory._portable_adapter_config`)."""
    cfg = json.loads(path.read_text(encoding="utf-8"))
    if isinstance(cfg.get("target_modules"), list):
        cfg["target_modules"] = sorted(cfg["target_modules"])
        atomic_write_json(path, cfg)


def _measure(r: _Round, p: Planned, o: OrganismRemediation, model: object, budget: int,
             loss: float | None, t0: float, out: Path) -> BudgetResult:
    """The attack's held-out rates and the utility of the fixed organism."""
    sets = [(p.attack, es) for es in p.sets] if o.poisoned or p.sets else []
    bs = r.spec.eval.batch_size
    rates, _ = run_sets(model, r.bm.tokenizer, sets, bs) if sets else ([], [])  # type: ignore[arg-type]
    util = utility(model, r.bm.tokenizer, bs, spec_tasks(r.spec))  # type: ignore[arg-type]
    return BudgetResult(
        steps=budget, rates={es.metric: round(x, 4) for (_, es), x in zip(sets, rates,
                                                                          strict=True)},
        utility=round(util, 4), utility_ratio=round(util / r.base_util, 4) if r.base_util
        else 0.0, train_loss=loss, wall_time_s=round(time.perf_counter() - t0, 1),
        adapter_sha256=sha256_file(out / ADAPTER_DIR / ADAPTER_WEIGHTS))


def _verdicts_of(game: Path, name: str) -> list[Verdict]:
    """Every detector's verdict on organism `name`, looked up by its blind id. The round
    reads the key (it is the referee's side); the method gets the verdicts only."""
    from auditgame.bundle.seal import verify_key

    if not GameFolder(game).verdict_files():
        return []
    key = verify_key(game, check_bundle=False)
    ids = {b for b, e in key.organisms.items() if e.organism == name}
    return [v for path in GameFolder(game).verdict_files() for v in read_verdicts(path)
            if v.blind_id in ids]
