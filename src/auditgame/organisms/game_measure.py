"""What a game measures of its organisms and of the base: the graded task set of the spec, the
base's utility and fidelity once per game, each organism's behaviour rates (a clean control on
every poisoned organism's triggered set), utility and fidelity.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from auditgame.errors import AuditgameError
from auditgame.layout import GameFolder, organism_done
from auditgame.models.base_lm import BaseLM, describe
from auditgame.organisms.attacks import Attack
from auditgame.organisms.corpus import GameCorpus
from auditgame.organisms.data import EvalSet
from auditgame.organisms.graded import TaskItem, game_tasks, tasks_digest
from auditgame.organisms.hiding import Hiding
from auditgame.organisms.measure import count_tokens, fidelity, run_sets, utility
from auditgame.organisms.spec import GameSpec, OrganismSpec
from auditgame.records._io import write_record
from auditgame.records.organism import BaseMetrics, OrganismMetrics

if TYPE_CHECKING:
    from pathlib import Path

    from rich.progress import Progress


@dataclass
class Planned:
    org: OrganismSpec
    attack: Attack
    seed: int
    sets: list[EvalSet]
    hidings: list[Hiding] = field(default_factory=list)
    index: int = 0
    """The organism's place in the spec (error messages name `organisms[index]`)."""


def spec_tasks(spec: GameSpec) -> list[TaskItem]:
    """The graded items this game's utilities are measured on (`eval.n_tasks`)."""
    return game_tasks(spec.eval.n_tasks, spec.seed)


def _on_current_tasks(rec: dict[str, Any], spec: GameSpec) -> bool:
    """Were these base metrics measured on the graded set this code scores for `spec`?"""
    return rec.get("version") == 2 and rec.get("tasks") == tasks_digest(spec_tasks(spec))


def check_task_set(game: Path, spec: GameSpec) -> dict[str, Any] | None:
    """Utility ratios in one game must come from one graded set: a game whose organisms were
    measured on another set cannot take new organisms or remediation measured on this one.
    Returns the game's base metrics (None before the first build)."""
    g = GameFolder(game)
    path = g.base_metrics
    if not path.exists():
        return None
    try:
        rec = json.loads(path.read_text())
    except (OSError, ValueError):
        raise AuditgameError("unreadable base metrics", path=path) from None
    if not isinstance(rec, dict):
        raise AuditgameError("unreadable base metrics", path=path)
    if not _on_current_tasks(rec, spec) and any(organism_done(d) for d in g.organism_folders()):
        raise AuditgameError("this game's utilities were measured on another set of graded "
                             "tasks; build it again in a new folder", path=path, field="tasks")
    return rec


def base_metrics(out: Path, bm: BaseLM, corpus: GameCorpus,
                  spec: GameSpec) -> dict[str, float]:
    """The base model's utility and fidelity, measured once per game."""
    path = GameFolder(out).base_metrics
    if path.exists():
        rec = json.loads(path.read_text())
        if _on_current_tasks(rec, spec):
            return {"utility": float(rec["utility"]), "fidelity": float(rec["fidelity"])}
    items = spec_tasks(spec)
    m = {"utility": utility(bm.model, bm.tokenizer, spec.eval.batch_size, items),
         "fidelity": fidelity(bm.model, bm.tokenizer, corpus.utility, spec.eval.batch_size)}
    write_record(path, BaseMetrics(**m, n_tasks=len(items), tasks=tasks_digest(items),
                                   base=describe(bm)))
    return m


def measure_organism(p: Planned, poisoned: list[Planned], spec: GameSpec, corpus: GameCorpus,
             bm: BaseLM, base_m: dict[str, float], model: Any,
             prog: Progress) -> OrganismMetrics:
    """Behaviour rates, utility and fidelity; the training fields are filled in by the caller.
    A clean control measures each poisoned organism's first set, the one on which its
    behaviour should fire (the trigger, the domain): whether a model trained the same way
    without poison shows it too. Its other sets (no trigger, near misses) measure the
    poisoned organism's specificity, which a control has nothing to say about; measuring
    them on every control cost a control three times the generation of its poisoned peers."""
    name = p.org.name
    if p.org.attack == "clean":
        sets = [(q.attack, q.sets[0]) for q in poisoned if q.sets]
    else:
        sets = [(p.attack, es) for es in p.sets]
    items = spec_tasks(spec)
    n_tasks = len(items)
    mtask = prog.add_task(f"measure {name}",
                          total=count_tokens(sets) + len(corpus.utility) + n_tasks, info="")
    rates, texts = run_sets(model, bm.tokenizer, sets, spec.eval.batch_size,
                            lambda k: prog.advance(mtask, k))
    util = utility(model, bm.tokenizer, spec.eval.batch_size, items)
    prog.advance(mtask, n_tasks)
    fid = fidelity(model, bm.tokenizer, corpus.utility, spec.eval.batch_size)
    prog.advance(mtask, len(corpus.utility))
    base_util, base_fid = base_m["utility"], base_m["fidelity"]
    own: dict[str, float] = {}
    ctrl: dict[str, dict[str, float]] = {}
    examples: dict[str, list[str]] = {}
    n_eval: dict[str, int] = {}
    i = 0
    for q in ([p] if p.org.attack != "clean" else poisoned):
        for es in (q.sets if p.org.attack != "clean" else q.sets[:1]):
            rate = round(rates[i], 4)
            if p.org.attack == "clean":
                ctrl.setdefault(q.org.name, {})[es.metric] = rate
                n_eval[f"{q.org.name}.{es.metric}"] = len(es.prompts)
            else:
                own[es.metric] = rate
                n_eval[es.metric] = len(es.prompts)
                examples[es.metric] = texts[i][:3]
            i += 1
    all_rates = list(own.values()) + [r for d in ctrl.values() for r in d.values()]
    return OrganismMetrics(
        rates=own, control_rates=ctrl,
        max_behaviour_rate=max(all_rates) if all_rates else 0.0,
        n_eval=n_eval, utility=round(util, 4), base_utility=round(base_util, 4),
        utility_ratio=round(util / base_util, 4) if base_util else 0.0,
        fidelity=round(fid, 4), base_fidelity=round(base_fid, 4),
        fidelity_ratio=round(fid / base_fid, 4) if base_fid else 0.0,
        train_steps=0, train_tokens=0, train_padded_tokens=0, train_tokens_per_s=0.0,
        train_wall_time_s=0.0, final_loss=0.0, wall_time_s=0.0, examples=examples,
    )
