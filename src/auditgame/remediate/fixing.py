"""One remediation round's work on each organism: train it through the budgets with the
round's method (seen through a `FixerView`), save and measure every fix, run the depth tests.
`remediate.round` decides what is to do and in which files (`layout.RemediationFiles`).
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
from rich.progress import Progress

from auditgame._util.io import atomic_write_json, sha256_file
from auditgame.layout import (
    ADAPTER_CONFIG,
    ADAPTER_DIR,
    ADAPTER_WEIGHTS,
    GameFolder,
    RemediationFiles,
)
from auditgame.models.base_lm import BaseLM
from auditgame.organisms.corpus import build_corpus
from auditgame.organisms.factory import plan, read_card, read_metrics
from auditgame.organisms.game_measure import Planned, spec_tasks
from auditgame.organisms.measure import run_sets, utility
from auditgame.organisms.spec import GameSpec
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
from auditgame.remediate.method import FixerView, RemediationMethod
from auditgame.remediate.train import (
    OPT_STATE,
    load_optimizer,
    load_trainable,
    make_optimizer,
    save_optimizer,
)


def adapter_dir(game: Path, files: RemediationFiles, name: str, budget: int) -> Path:
    """Organism `name`'s adapter after `budget` steps of this round (0: as built)."""
    if budget == 0:
        return GameFolder(game).organism(name) / ADAPTER_DIR
    return files.budget_dir(name, budget) / ADAPTER_DIR


@dataclass
class Round:
    """What every organism of one round shares (instead of ten arguments each)."""

    game: Path
    files: RemediationFiles
    spec: GameSpec
    settings: RemediationSettings
    method: RemediationMethod
    bm: BaseLM
    base_util: float
    rec: Remediation
    prog: Progress
    depth: DepthSettings | None = None


def save_round(files: RemediationFiles, rec: Remediation) -> None:
    """The round's record, its before/after fields summarised from the curves."""
    for o in rec.organisms.values():
        o.summarise()
    write_record(files.record, rec)


def remediate_all(r: Round, names: list[str], todo: list[tuple[str, int]],
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


def _record_before(r: Round, name: str, o: OrganismRemediation) -> None:
    """Budget 0 is the organism as built: what `make` measured, no training."""
    folder = GameFolder(r.game).organism(name)
    m = read_metrics(folder)
    o.results["0"] = BudgetResult(
        steps=0, rates=dict(m.rates), utility=m.utility,
        utility_ratio=round(m.utility / r.base_util, 4) if r.base_util else 0.0,
        wall_time_s=0.0, adapter_sha256=sha256_file(folder / ADAPTER_DIR / ADAPTER_WEIGHTS))
    save_round(r.files, r.rec)


def _resume_from(files: RemediationFiles, name: str, o: OrganismRemediation, first: int) -> int:
    """The largest finished budget below `first` whose optimizer state was kept (0: start
    from the organism); training is continuous, so the result is the same either way."""
    for b in sorted((int(k) for k in o.results), reverse=True):
        if 0 < b < first and (files.budget_dir(name, b) / OPT_STATE).exists():
            return b
    return 0


def _remediate_one(r: Round, p: Planned, o: OrganismRemediation, need: list[int],
                   samples: list[Sample]) -> None:
    """Train one organism through its missing budgets, saving and measuring after each."""
    name = p.org.name
    if 0 in need:
        _record_before(r, name, o)
    steps = sorted(b for b in need if b > 0)
    if not steps:
        return
    start = _resume_from(r.files, name, o, steps[0])
    model = load_trainable(r.bm.model, adapter_dir(r.game, r.files, name, start))
    opt = make_optimizer(model, r.settings)
    if start:
        load_optimizer(r.files.budget_dir(name, start) / OPT_STATE, opt)
    view = FixerView(r.method.needs, model=model, optimizer=opt, tokenizer=r.bm.tokenizer,
                     clean_pool=samples, verdicts=partial(_verdicts_of, r.game, name),
                     as_built=partial(load_trainable, r.bm.model,
                                      adapter_dir(r.game, r.files, name, 0)))
    task = r.prog.add_task(f"remediate {name}", total=steps[-1], completed=start, info="")
    for b in steps:
        t0 = time.perf_counter()
        loss, _ = r.method.train(view, r.settings, start, b,
                                 lambda d: r.prog.update(task, completed=d))
        out = save_budget(r.files, name, b, model, opt)
        r.prog.update(task, info="measuring")
        o.results[str(b)] = measure_fix(r, p, o, model, b, loss, t0, out)
        save_round(r.files, r.rec)
        if start:  # only the newest optimizer state is needed to resume
            (r.files.budget_dir(name, start) / OPT_STATE).unlink(missing_ok=True)
        start = b
        r.prog.update(task, info=f"{b} steps done")


def _depth_one(r: Round, p: Planned, o: OrganismRemediation) -> None:
    """The depth tests on the fix at the depth budget (see `remediate.depth`)."""
    from auditgame.remediate.depth import run_depth

    assert r.depth is not None
    task = r.prog.add_task(f"depth tests {o.organism}", total=None, info="")
    o.depth = run_depth(r, p, o, r.depth, adapter_dir(r.game, r.files, o.organism, r.depth.budget),
                        adapter_dir(r.game, r.files, o.organism, 0))
    save_round(r.files, r.rec)
    r.prog.update(task, completed=1, total=1, info=o.depth.call)


def save_budget(files: RemediationFiles, name: str, budget: int, model: object,
                opt: object) -> Path:
    """The adapter and optimizer state after `budget` steps, moved into place whole."""
    out = files.budget_dir(name, budget)
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


def measure_fix(r: Round, p: Planned, o: OrganismRemediation, model: object, budget: int,
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
