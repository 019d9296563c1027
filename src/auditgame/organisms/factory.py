"""Build every organism of a game spec: poison, train, measure, and write its folder.

Finished organisms are skipped; a crash leaves at most a checkpoint under `GAME/.work/`,
never a half-written organism folder (each is written to a temporary folder and renamed).
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from auditgame._util.io import (
    atomic_replace_dir,
    atomic_write_json,
    atomic_write_jsonl,
    atomic_write_text,
    hash_tree,
    sha256_text,
)
from auditgame.errors import AuditgameError
from auditgame.layout import (
    ADAPTER_CONFIG,
    ADAPTER_DIR,
    CARD,
    FLAGS,
    HASHES,
    METRICS,
    PUBLIC,
    SPEC,
    TRAIN_DATA,
    GameFolder,
)
from auditgame.models.base_lm import BaseLM, describe, load_base
from auditgame.organisms.attacks import Attack, make_attack
from auditgame.organisms.corpus import GameCorpus, build_corpus, user_corpus
from auditgame.organisms.data import EvalSet, Sample
from auditgame.organisms.game_measure import (
    Planned,
    base_metrics,
    check_task_set,
    measure_organism,
)
from auditgame.organisms.hiding import BuildContext, Hiding, HidingError, check_layers, make_hidings
from auditgame.organisms.measure import run_sets
from auditgame.organisms.spec import GameSpec
from auditgame.organisms.train import AuxLoss, train_lora
from auditgame.records._io import read_record, write_record
from auditgame.records.organism import OrganismCard, OrganismMetrics, PublicMeta


def progress_bar(console: Console | None = None) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TextColumn("eta"),
        TimeRemainingColumn(), console=console, transient=False,
    )


def plan(spec: GameSpec, corpus: GameCorpus, bm: BaseLM | None = None) -> list[Planned]:
    """Attack objects, hiding kinds and held-out eval sets, fixed by each organism's seed.
    Every organism's poison and hiding are tried on its data here, so a bad option fails
    before anything is trained. An attack that `needs_base` writes its answers with `bm`
    first (without it, poisoning it fails)."""
    out: list[Planned] = []
    for i, org in enumerate(spec.organisms):
        attack = make_attack(org.attack, org.params)
        hidings = make_hidings(org, attack, i, SPEC)
        seed = spec.organism_seed(org)
        try:
            if attack.needs_base and bm is not None:
                attack.prepare(bm, corpus.train + corpus.ordinary, spec.corpus)
            pc = attack.poison(corpus.draw(spec.corpus.n_train, seed),
                               np.random.default_rng(seed))
        except ValueError as e:
            raise AuditgameError(str(e), path=SPEC, field=f"organisms[{i}].params") from None
        for j, h in enumerate(hidings):
            with _hiding_field(i, j, h):
                h.check_data(corpus, pc)
        sets = attack.eval_sets(corpus.heldout, spec.eval.n_prompts,
                                np.random.default_rng(seed + 1))
        out.append(Planned(org, attack, seed, sets, hidings, i))
        if any(h.needs_twin for h in hidings):
            _twin_attack(out[-1], spec)
    return out


class _hiding_field:  # noqa: N801 - used as a `with` block
    """Turn a HidingError into the one-line spec error naming the option."""

    def __init__(self, i: int, j: int, h: Hiding):
        self.field = f"organisms[{i}].hiding[{j}].{h.name}"

    def __enter__(self) -> None:
        return None

    def __exit__(self, typ: object, exc: BaseException | None, tb: object) -> bool:
        if isinstance(exc, HidingError):
            raise AuditgameError(exc.message, path=SPEC, field=self.field
                                 + (f".{exc.option}" if exc.option else "")) from None
        return False


def make_game(
    spec: GameSpec,
    out: Path,
    spec_text: str | None = None,
    console: Console | None = None,
    base: BaseLM | None = None,
    stop_after_steps: int | None = None,
    backend: Any | None = None,
) -> list[str]:
    """Build all organisms of `spec` under `out/organisms/`; returns the names built now.
    `backend` (see `auditgame.backends`): where the builds run; default in this process. It
    is handed in by the caller; this module only calls `backend.map(build_organism, jobs)`."""
    console = console or Console(stderr=True)
    g = GameFolder(out)
    spec_hash = sha256_text(json.dumps(spec.model_dump(mode="json", exclude={"audit"}),
                                       sort_keys=True))
    todo = [o for o in spec.organisms if not g.organism_done(o.name)]
    if not todo:
        console.print(f"all {len(spec.organisms)} organisms already built in {out}")
        return []
    check_task_set(out, spec)
    if spec.corpus.source != "bank":  # a bad dataset: one line before the base model loads
        user_corpus(spec.corpus)  # and before any progress bar or file is drawn
    t_load = time.perf_counter()
    bm = base or load_base(spec.base, spec.dtype)
    check_layers(spec, int(bm.model.config.num_hidden_layers), SPEC)
    load_s = time.perf_counter() - t_load
    built: list[str] = []
    with progress_bar(console) as prog:
        task = prog.add_task("corpus", total=None, info="self-distilling")
        corpus = build_corpus(spec.corpus, spec.seed, bm,
                              lambda d, t: prog.update(task, completed=d, total=t))
        prog.update(task, completed=1, total=1, info=f"clean pool of {len(corpus.train)}")
        try:  # every option is tried on the data before anything is written
            planned = plan(spec, corpus, bm)
        except AuditgameError:
            prog.live.transient = True  # the error is the one line left
            raise
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(g.spec, spec_text if spec_text is not None else yaml.safe_dump(
            spec.model_dump(mode="json"), sort_keys=False))
        base_m = base_metrics(out, bm, corpus, spec)
        poisoned = [p for p in planned if p.org.attack != "clean"]
        if backend is not None and not backend.in_process:
            return _build_remote(backend, spec, out, [p.org.name for p in planned
                                                      if p.org in todo], spec_hash, base_m,
                                 console)
        for p in planned:
            if p.org not in todo:
                continue
            t0 = time.perf_counter()
            _build_one(p, poisoned, spec, spec_hash, corpus, bm, base_m, out, prog,
                       stop_after_steps)
            if stop_after_steps is not None and not g.organism_done(p.org.name):
                return built
            built.append(p.org.name)
            console.print(f"built {p.org.name} in {time.perf_counter() - t0 + load_s:.0f} s")
            load_s = 0.0
    return built


@dataclass(frozen=True)
class BuildJob:
    """One organism build for a backend that runs jobs in other processes."""

    spec: dict[str, Any]
    out: str
    name: str
    spec_hash: str
    base_metrics: dict[str, float]
    cwd: str


def build_organism(job: BuildJob) -> str:
    """Build one organism into `out/organisms/<name>` (atomic rename); returns its name.
    Rebuilds the base and the corpus (from the distillation cache) and runs exactly the code
    of a local build, so its output is the same bytes."""
    import os

    os.chdir(job.cwd)
    spec = GameSpec.model_validate(job.spec)
    bm = load_base(spec.base, spec.dtype)
    corpus = build_corpus(spec.corpus, spec.seed, bm)
    planned = plan(spec, corpus, bm)
    poisoned = [p for p in planned if p.org.attack != "clean"]
    p = next(q for q in planned if q.org.name == job.name)
    with Progress(disable=True) as prog:
        _build_one(p, poisoned, spec, job.spec_hash, corpus, bm, job.base_metrics,
                   Path(job.out), prog, None)
    return job.name


def _build_remote(backend: Any, spec: GameSpec, out: Path, names: list[str], spec_hash: str,
                  base_metrics: dict[str, float], console: Console) -> list[str]:
    """Fan the organisms out over the backend; returns the names built."""
    import os

    jobs = [BuildJob(spec=spec.model_dump(mode="json"), out=str(Path(out).resolve()), name=n,
                     spec_hash=spec_hash, base_metrics=base_metrics, cwd=os.getcwd())
            for n in names]
    t0 = time.perf_counter()
    return backend.map(build_organism, jobs, lambda i, n: console.print(
        f"built {n} on {backend.name} ({time.perf_counter() - t0:.0f} s since start)"))


def _build_one(p: Planned, poisoned: list[Planned], spec: GameSpec, spec_hash: str,
               corpus: GameCorpus, bm: BaseLM, base_m: dict[str, float], out: Path,
               prog: Progress, stop_after_steps: int | None) -> None:
    """Poison, train, measure and write one organism folder (atomically)."""
    t0 = time.perf_counter()
    name = p.org.name
    g = GameFolder(out)
    work = g.work(name)
    pc = p.attack.poison(corpus.draw(spec.corpus.n_train, p.seed),
                         np.random.default_rng(p.seed))
    task = prog.add_task(f"train {name}", total=None, info="")

    def train(samples: list[Sample], seed: int, ckpt: Path, aux: Sequence[AuxLoss] = (),
              stop: int | None = None, run_id: str = "") -> tuple[Any, Any]:
        return train_lora(
            bm.model, bm.tokenizer, samples, spec.train, seed, ckpt,
            on_step=lambda d, t, loss: prog.update(task, completed=d, total=t,
                                                   info=f"loss {loss:.3f}"),
            stop_after=stop, run_id=run_id or sha256_text(f"{spec_hash}:{_data_hash(samples)}:"
                                                          f"{seed}"), aux=aux)

    ctx = _context(p, spec, corpus, bm, work, train) if p.hidings else None
    reports: dict[str, dict[str, Any]] = {}
    aux: list[AuxLoss] = []
    if ctx is not None:
        for j, h in enumerate(p.hidings):
            with _hiding_field(p.index, j, h):
                pc, reports[h.name] = h.edit_data(ctx, pc, p.seed)
        for j, h in enumerate(p.hidings):
            with _hiding_field(p.index, j, h):
                a = h.aux_loss(ctx, pc)
            if a is not None:
                aux.append(a)
    data_hash = _data_hash(pc.samples)
    model, result = train(pc.samples, p.seed, work / "ckpt", aux, stop_after_steps,
                          sha256_text(f"{spec_hash}:{data_hash}:{p.seed}"))
    if stop_after_steps is not None and result.steps > len(result.losses):
        return
    if ctx is not None:  # every reshaping first, then every measurement of the result
        for h in p.hidings:
            reports[h.name].update(h.after_train(ctx, model))
        for h in p.hidings:
            reports[h.name].update(h.report(ctx, model))
    if result.resumed_from:  # said, not recorded: a record holds what was built, not how
        prog.console.print(f"{name}: resumed from step {result.resumed_from} of "
                           f"{result.steps}")
    metrics = measure_organism(p, poisoned, spec, corpus, bm, base_m, model, prog)
    metrics = metrics.model_copy(update=dict(
        train_steps=result.steps, train_tokens=result.tokens,
        train_padded_tokens=result.padded_tokens,
        train_tokens_per_s=round(result.tokens_per_s, 1),
        train_wall_time_s=round(result.wall_time_s, 1), final_loss=result.final_loss,
        wall_time_s=round(time.perf_counter() - t0, 1)))
    card = OrganismCard(
        name=name, attack=str(p.attack.key_info().get("attack", p.org.attack)),
        params=p.attack.params.model_dump(mode="json"),
        key=p.attack.key_info(), seed=p.seed, game_seed=spec.seed, n_train=len(pc.samples),
        n_poison=pc.n_poison, n_near_miss=sum(r == "near_miss" for r in pc.roles),
        spec_sha256=spec_hash, rung=p.org.rung,
        hiding=[{"kind": h.name, "params": h.params.model_dump(mode="json"),
                 "report": reports[h.name]} for h in p.hidings],
    )
    public = PublicMeta(base=describe(bm), train=spec.train.model_dump(mode="json"),
                        n_train=len(pc.samples))
    tmp = work / "final"
    if tmp.exists():
        shutil.rmtree(tmp)
    model.save_pretrained(str(tmp / ADAPTER_DIR))
    _portable_adapter_config(tmp / ADAPTER_DIR / ADAPTER_CONFIG, bm.model_id)
    atomic_write_jsonl(tmp / TRAIN_DATA, [s.to_json() for s in pc.samples])
    atomic_write_jsonl(tmp / FLAGS, [{"index": k, "role": r} for k, r in enumerate(pc.roles)])
    write_record(tmp / CARD, card)
    write_record(tmp / METRICS, metrics)
    write_record(tmp / PUBLIC, public)
    atomic_write_json(tmp / HASHES, hash_tree(tmp))
    atomic_replace_dir(tmp, g.organism(name))
    shutil.rmtree(work, ignore_errors=True)


def _data_hash(samples: list[Sample]) -> str:
    return sha256_text(json.dumps([s.to_json() for s in samples], sort_keys=True))


def _context(p: Planned, spec: GameSpec, corpus: GameCorpus, bm: BaseLM, work: Path,
             train: Any) -> BuildContext:
    """What the organism's hiding kinds may use: its clean twin is built like the game's
    clean control of its track (plain `clean` on the shared corpus unless the attack brings
    its own data), with this organism's data-side hiding applied under the twin's seed."""

    def clean_twin(seed: int) -> list[Sample]:
        twin = _twin_attack(p, spec)
        pc = twin.poison(corpus.draw(spec.corpus.n_train, seed), np.random.default_rng(seed))
        for j, h in enumerate(p.hidings):
            with _hiding_field(p.index, j, h):
                pc, _ = h.edit_data(ctx, pc, seed)
        return pc.samples

    def rates(model: Any, sets: list[EvalSet]) -> list[float]:
        return run_sets(model, bm.tokenizer, [(p.attack, es) for es in sets],
                        spec.eval.batch_size)[0]

    ctx = BuildContext(bm=bm, spec=spec, corpus=corpus, attack=p.attack, seed=p.seed,
                       work=work, sets=p.sets, clean_twin=clean_twin,
                       train=lambda samples, seed, ckpt, aux: train(samples, seed, ckpt,
                                                                    aux)[0],
                       rates=rates)
    return ctx


def _twin_attack(p: Planned, spec: GameSpec) -> Attack:
    """The attack of a clean control of `p`'s track: the first clean organism of the spec
    that brings its own data exactly when `p`'s attack does (and is of the same attack
    when it does); plain `clean` for the shared corpus when the spec has none."""
    own = type(p.attack).replaces_corpus
    for org in spec.organisms:
        a = make_attack(org.attack, org.params)
        if a.key_info().get("attack") != "clean" or type(a).replaces_corpus != own:
            continue
        if not own or org.attack == p.org.attack:
            return a
    if own:
        raise AuditgameError(f"a clean twin of attack {p.org.attack!r} needs a clean control "
                             "of that attack in the spec", path=SPEC,
                             field=f"organisms[{p.index}].hiding")
    return make_attack("clean")


def _portable_adapter_config(path: Path, model_id: str) -> None:
    """Name the base by its id, not a machine-local cache path (same bytes on every host)."""
    cfg = json.loads(path.read_text())
    cfg["base_model_name_or_path"] = model_id
    if isinstance(cfg.get("target_modules"), list):  # peft writes a set: hash-seed order
        cfg["target_modules"] = sorted(cfg["target_modules"])
    atomic_write_json(path, cfg)


def read_metrics(folder: Path) -> OrganismMetrics:
    return read_record(folder / METRICS, OrganismMetrics, "metrics")


def read_card(folder: Path) -> OrganismCard:
    return read_record(folder / CARD, OrganismCard, "card")
