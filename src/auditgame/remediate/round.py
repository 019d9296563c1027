"""`remediate_game`: clean SFT of every organism at several step budgets, re-measured.

For each organism (poisoned and clean controls alike) its own adapter is trained further on
clean self-distilled samples it never saw; after each budget the attack's held-out eval sets
and utility are measured again. That gives a persistence curve per organism, the relapse
under the trigger, and for clean controls the utility cost of the fix. Each (organism,
budget) result is written to `GAME/remediation.json` as soon as it is done; a rerun skips it.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np
import yaml
from rich.console import Console

from auditgame._util.io import sha256_file
from auditgame.errors import AuditgameError
from auditgame.layout import ADAPTER_DIR, ADAPTER_WEIGHTS, PUBLIC, TRAIN_DATA, GameFolder
from auditgame.models.base_lm import BaseLM, load_base
from auditgame.organisms.corpus import build_corpus
from auditgame.organisms.factory import (
    Planned,
    check_task_set,
    plan,
    progress_bar,
    read_card,
    read_metrics,
)
from auditgame.organisms.measure import run_sets, utility
from auditgame.organisms.spec import GameSpec, parse_spec
from auditgame.records._io import write_record
from auditgame.records.organism import PublicMeta
from auditgame.records.remediation import (
    BudgetResult,
    OrganismRemediation,
    Remediation,
    RemediationSettings,
)
from auditgame.remediate.data import clean_pool
from auditgame.remediate.reaudit import AdapterPool, audit_pool, cheap_detectors, neutral_id
from auditgame.remediate.train import (
    OPT_STATE,
    load_optimizer,
    load_trainable,
    make_optimizer,
    run_steps,
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


def _load_spec(game: Path) -> GameSpec:
    path = GameFolder(game).spec
    if not path.exists():
        raise AuditgameError("no game spec; run `auditgame make` first", path=path)
    return parse_spec(yaml.safe_load(path.read_text(encoding="utf-8")), path)


def _budget_dir(game: Path, name: str, budget: int) -> Path:
    return GameFolder(game).remediation_dir / name / f"step-{budget}"


def _adapter_dir(game: Path, name: str, budget: int) -> Path:
    if budget == 0:
        return GameFolder(game).organism(name) / ADAPTER_DIR
    return _budget_dir(game, name, budget) / ADAPTER_DIR


def _summarise(o: OrganismRemediation) -> None:
    """Fill the before/after fields from the curve (recomputed on every write)."""
    done = sorted(o.results.values(), key=lambda r: r.steps)
    if not done:
        return
    first, last = done[0], done[-1]
    if first.steps == 0:
        o.utility_before = first.utility
    o.utility_after = last.utility
    if o.utility_before:
        o.utility_change = round((last.utility - o.utility_before) / o.utility_before, 4)
    m = o.primary_metric
    if m and first.steps == 0 and m in first.rates:
        o.behaviour_before = first.rates[m]
        o.behaviour_after = last.rates.get(m)
        if o.behaviour_before and o.behaviour_after is not None:
            o.persistence = round(o.behaviour_after / o.behaviour_before, 4)
    o.relapse_asr = last.rates.get("asr")
    o.near_miss_after = last.rates.get("near_miss_rate")
    for det, scores in o.detector_scores.items():
        s0, s1 = scores.get("0"), scores.get(str(last.steps))
        o.detector_delta[det] = (round(s1 - s0, 4) if s0 is not None and s1 is not None
                                 else None)


def remediate_game(
    game: Path,
    console: Console | None = None,
    budgets: list[int] | tuple[int, ...] | None = None,
    detectors: list[str] | None = None,
    base: BaseLM | None = None,
    n_samples: int | None = None,
    force: bool = False,
) -> None:
    """Remediate every organism of GAME at each step budget; writes GAME/remediation.json.

    `budgets` and `n_samples` default to the spec's `remediate` section. `detectors`:
    detectors to re-audit on the fixed organisms (default: the registered ones that need
    only weights and activations; `[]` for none).
    """
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
    settings = RemediationSettings(lr=spec.train.lr, warmup_steps=spec.train.warmup_steps,
                                   batch_size=spec.train.batch_size, n_samples=n_samples,
                                   seed=spec.seed, max_len=spec.train.max_len,
                                   kl_to_base=spec.remediate.kl_to_base)
    rec = None if force else read_remediation(game)
    if force:
        shutil.rmtree(GameFolder(game).remediation_dir, ignore_errors=True)
    if rec is not None and rec.settings != settings:
        raise AuditgameError("remediation.json was made with other settings; rerun with "
                             "--force to start over", path=GameFolder(game).remediation)
    dets = cheap_detectors() if detectors is None else list(detectors)
    todo = [(n, b) for n in names for b in budgets
            if rec is None or n not in rec.organisms or str(b) not in rec.organisms[n].results]
    audits_todo = [d for d in dets if rec is None or any(
        n not in rec.organisms or str(b) not in rec.organisms[n].detector_scores.get(d, {})
        for n in names for b in budgets)]
    if not todo and not audits_todo:
        console.print(f"remediation of {len(names)} organisms already done in {game}")
        return
    bm = base or load_base(spec.base, spec.dtype)
    base_util = _base_utility(game, bm)
    if rec is None:
        rec = Remediation(budgets=budgets, settings=settings, base_utility=base_util)
    rec.budgets = sorted(set(rec.budgets) | set(budgets))
    with progress_bar(console) as prog:
        corpus = build_corpus(spec.corpus, spec.seed, bm)
        planned = {p.org.name: p for p in plan(spec, corpus)}
        all_sets = [es for p in planned.values() for es in p.sets]
        pool = None
        for name in names:
            need = [b for n, b in todo if n == name]
            if not need:
                continue
            p = planned[name]
            card = read_card(GameFolder(game).organism(name))
            own = p.attack.clean_samples(n_samples, np.random.default_rng(spec.seed + 1))
            if own is not None:
                samples = own
            else:
                if pool is None:
                    t = prog.add_task("remediation data", total=None, info="self-distilling")
                    pool = clean_pool(spec, corpus, all_sets, n_samples, bm)
                    prog.update(t, completed=1, total=1, info=f"{len(pool)} clean samples")
                samples = pool
            o = rec.organisms.get(name) or OrganismRemediation(
                organism=name, attack=card.attack, poisoned=card.attack != "clean",
                primary_metric=p.sets[0].metric if p.sets else None)
            rec.organisms[name] = o
            _remediate_one(game, p, o, need, samples, settings, bm, base_util,
                           spec, prog, rec)
        for d in dets:
            _reaudit(game, d, names, rec, bm, spec.seed, prog)
    console.print(f"remediation written to {GameFolder(game).remediation}")


def _base_utility(game: Path, bm: BaseLM) -> float:
    path = GameFolder(game).base_metrics
    if not path.exists():
        raise AuditgameError("no base metrics; run `auditgame make` first", path=path)
    util = (check_task_set(game) or {}).get("utility")
    if not isinstance(util, int | float):
        raise AuditgameError("no base utility; run `auditgame make` again", path=path,
                             field="utility")
    return float(util)


def _save(game: Path, rec: Remediation) -> None:
    for o in rec.organisms.values():
        _summarise(o)
    write_record(GameFolder(game).remediation, rec)


def _remediate_one(game: Path, p: Planned, o: OrganismRemediation, need: list[int],
                   samples: list, settings: RemediationSettings, bm: BaseLM,
                   base_util: float, spec: GameSpec, prog, rec: Remediation
                   ) -> None:
    name = p.org.name
    folder = GameFolder(game).organism(name)
    if 0 in need:
        m = read_metrics(folder)
        rates = dict(m.rates)
        o.results["0"] = BudgetResult(
            steps=0, rates=rates, utility=m.utility,
            utility_ratio=round(m.utility / base_util, 4) if base_util else 0.0,
            wall_time_s=0.0, adapter_sha256=sha256_file(folder / ADAPTER_DIR /
                                                         ADAPTER_WEIGHTS))
        _save(game, rec)
    steps = sorted(b for b in need if b > 0)
    if not steps:
        return
    # resume from the largest finished budget below the first missing one whose optimizer
    # state was kept; training is continuous, so the result is the same either way
    start = 0
    for b in sorted((int(k) for k in o.results), reverse=True):
        if 0 < b < steps[0] and (_budget_dir(game, name, b) / OPT_STATE).exists():
            start = b
            break
    model = load_trainable(bm.model, _adapter_dir(game, name, start))
    opt = make_optimizer(model, settings)
    if start:
        load_optimizer(_budget_dir(game, name, start) / OPT_STATE, opt)
    task = prog.add_task(f"remediate {name}", total=steps[-1], completed=start, info="")
    for b in steps:
        t0 = time.perf_counter()
        loss, _ = run_steps(model, opt, bm.tokenizer, samples, settings, start, b,
                            lambda d: prog.update(task, completed=d))
        out = _budget_dir(game, name, b)
        tmp = out.with_name(out.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        model.save_pretrained(str(tmp / ADAPTER_DIR))
        save_optimizer(tmp / OPT_STATE, opt)
        shutil.rmtree(out, ignore_errors=True)
        tmp.replace(out)
        prog.update(task, info="measuring")
        sets = [(p.attack, es) for es in p.sets] if o.poisoned or p.sets else []
        rates, _ = run_sets(model, bm.tokenizer, sets, spec.eval.batch_size) if sets else ([], [])
        util = utility(model, bm.tokenizer, spec.eval.batch_size)
        o.results[str(b)] = BudgetResult(
            steps=b, rates={es.metric: round(r, 4) for (_, es), r in zip(sets, rates,
                                                                            strict=True)},
            utility=round(util, 4), utility_ratio=round(util / base_util, 4) if base_util
            else 0.0, train_loss=loss, wall_time_s=round(time.perf_counter() - t0, 1),
            adapter_sha256=sha256_file(out / ADAPTER_DIR / ADAPTER_WEIGHTS))
        _save(game, rec)
        if start:  # only the newest optimizer state is needed to resume
            (_budget_dir(game, name, start) / OPT_STATE).unlink(missing_ok=True)
        start = b
        prog.update(task, info=f"{b} steps done")


def _reaudit(game: Path, det: str, names: list[str], rec: Remediation, bm: BaseLM,
             seed: int, prog) -> None:
    """Score every organism at every budget with `det`; one pool per budget, resumable."""
    if det not in rec.detectors:
        rec.detectors.append(det)
    public = PublicMeta.model_validate_json(
        (GameFolder(game).organism(names[0]) / PUBLIC).read_text())
    for b in rec.budgets:
        key = str(b)
        if all(key in rec.organisms[n].detector_scores.get(det, {}) for n in names):
            continue
        if not all(key in rec.organisms[n].results for n in names):
            continue
        task = prog.add_task(f"re-audit {det} @ {b}", total=None, info="")
        ids = {neutral_id(n, b, seed): n for n in names}
        pool = AdapterPool({i: (_adapter_dir(game, n, b), GameFolder(game).organism(n) / TRAIN_DATA)
                            for i, n in ids.items()}, public, seed)
        try:
            scores = audit_pool(det, pool, bm)
        except Exception as e:  # noqa: BLE001 - a detector's failure is a result
            rec.detector_errors[det] = f"{e.__class__.__name__}: {e}"[:500]
            scores = {i: None for i in ids}
        for i, n in ids.items():
            rec.organisms[n].detector_scores.setdefault(det, {})[key] = scores[i]
        _save(game, rec)
        prog.update(task, completed=1, total=1)
