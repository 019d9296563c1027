"""The stage runner behind `auditgame run`: make -> seal -> audit -> score -> remediate -> report.

Every stage first checks whether its outputs already exist and are up to date, so running the
same command again after a crash (or after adding a detector) redoes only what is missing:

- make: every organism of the spec is a finished folder (`organism_done`).
- seal: key.json matches commitment.txt, the bundle is unchanged, and the key covers exactly
  the organisms of the game.
- audit: each selected detector's verdict file holds a verdict for every blind id.
- score: results.json exists, is newer than the key and every verdict file, and scores
  exactly the verdict files present.
- remediate: handed to `remediate_game`, which resumes per organism and budget by itself.
- report: report.html is newer than everything it shows.
`run` audits with `--detectors`, else every detector within the budget (`select_detectors`).
"""

from __future__ import annotations

import importlib
import inspect
import platform
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

from auditgame.detectors.base import COSTS
from auditgame.errors import AuditgameError
from auditgame.layout import VERDICT_SUFFIX, GameFolder, verdict_path
from auditgame.records._io import write_record
from auditgame.records.pipeline import Machine, PipelineLog, StageRecord

DEFAULT_BUDGET = "moderate"
BACKENDS = ("local", "ray")


def detector_cost(cls: type) -> str:
    """A detector class's declared cost (part of the contract, checked at registration)."""
    return str(cls.cost)  # type: ignore[attr-defined]


def select_detectors(names: Iterable[str] | None = None,
                     budget: str = DEFAULT_BUDGET) -> list[str]:
    """The detectors to audit with: `names` exactly, else all registered ones within budget."""
    from auditgame.detectors import detector_names, get_detector

    if budget not in COSTS:
        raise AuditgameError(f"unknown budget {budget!r}; known: {', '.join(COSTS)}",
                             field="--budget")
    known = detector_names()
    if names is not None:
        chosen = [n for n in dict.fromkeys(n.strip() for n in names) if n]
        bad = [n for n in chosen if n not in known]
        if bad or not chosen:
            raise AuditgameError(f"unknown detector(s) {', '.join(bad) or '(none given)'}; "
                                 f"known: {', '.join(known)}", field="--detectors")
        return chosen
    limit = COSTS.index(budget)
    return [n for n in known if COSTS.index(detector_cost(get_detector(n))) <= limit]


def spec_budget(spec_path: Path) -> str:
    """The audit budget the spec asks `run` for (`audit.budget`, default moderate)."""
    from auditgame.organisms.load import load_spec
    return str(load_spec(Path(spec_path)).audit.budget)


def resolve_backend(name: str, address: str | None) -> Any:
    """The execution backend, or None for in-process (local) execution.

    The backends package is optional: without it only `local` works, and `ray` is a clean
    error rather than a traceback.
    """
    if name not in BACKENDS:
        raise AuditgameError(f"unknown backend {name!r}; known: {', '.join(BACKENDS)}",
                             field="--backend")
    if address is not None and name == "local":
        raise AuditgameError("--address is for a Ray cluster; add --backend ray",
                             field="--address")
    try:
        get_backend = importlib.import_module("auditgame.backends").get_backend
    except (ModuleNotFoundError, AttributeError) as e:
        if isinstance(e, ModuleNotFoundError) and e.name != "auditgame.backends":
            raise
        if name == "local":
            return None
        raise AuditgameError(f"the {name!r} backend is not available in this installation "
                             "(no auditgame.backends.get_backend); use --backend local",
                             field="--backend") from None
    return get_backend(name, address)


def _with_backend(fn: Callable[..., Any], backend: Any, **kwargs: Any) -> tuple[Any, str]:
    """Call `fn`, handing it the backend when it takes one; a stage without backend support
    runs in this process (same results) and says so in the returned note."""
    note = ""
    if backend is not None:
        if "backend" in inspect.signature(fn).parameters:
            kwargs["backend"] = backend
        elif not getattr(backend, "in_process", True):
            note = f" (in this process: no {getattr(backend, 'name', '?')} support)"
    return fn(**kwargs), note


@dataclass
class Pipeline:
    """One game folder and the options of one `auditgame run`."""

    spec_path: Path
    game: Path
    detectors: list[str]
    spec_budget: bool = False  # the detectors are those of the spec's `audit.budget`
    backend_name: str = "local"
    address: str | None = None
    n_bootstrap: int = 1000
    bootstrap_seed: int = 0
    skip: frozenset[str] = frozenset()
    console: Console = field(default_factory=lambda: Console(stderr=True))
    backend: Any = None
    records: list[StageRecord] = field(default_factory=list)

    @property
    def folder(self) -> GameFolder:
        return GameFolder(self.game)

    # --- checks: None when the stage must run, else why it is up to date ----------------

    def _spec(self) -> Any:
        from auditgame.organisms.load import load_spec

        return load_spec(self.spec_path)

    def make_done(self) -> str | None:
        names = [o.name for o in self._spec().organisms]
        if all(self.folder.organism_done(n) for n in names):
            return f"{len(names)} organisms already built"
        return None

    def seal_done(self) -> str | None:
        from auditgame.bundle import verify_key

        g = self.folder
        if not g.key.exists() and not g.commitment.exists():
            return None
        key = verify_key(g.root)  # raises on a key that does not match its commitment
        have = {p.name for p in g.organism_folders()}
        sealed = {e.organism for e in key.organisms.values()}
        if have != sealed:
            raise AuditgameError(
                "the game was sealed with other organisms "
                f"(new: {sorted(have - sealed)}, gone: {sorted(sealed - have)}); reseal with "
                "`auditgame seal --force` (this invalidates the published commitment)",
                path=g.key)
        return f"sealed, commitment {g.commitment.read_text().strip()[:12]}..."

    def _missing_pairs(self) -> dict[str, list[str]]:
        """Detector -> blind ids still without a verdict."""
        from auditgame.bundle import Bundle
        from auditgame.records.verdict import read_verdicts

        ids = Bundle(self.folder.bundle).ids
        out: dict[str, list[str]] = {}
        for name in self.detectors:
            path = verdict_path(self.folder.verdicts, name)
            done = {v.blind_id for v in read_verdicts(path, ids)} if path.exists() else set()
            missing = [b for b in ids if b not in done]
            if missing:
                out[name] = missing
        return out

    def audit_done(self) -> str | None:
        if self._missing_pairs():
            return None
        return f"verdicts complete for {len(self.detectors)} detector(s)"

    def score_done(self) -> str | None:
        from pydantic import ValidationError

        from auditgame.records.results import Results

        g = self.folder
        if not g.results.exists():
            return None
        files = g.verdict_files()
        newest = max([p.stat().st_mtime for p in files] + [g.key.stat().st_mtime])
        if g.results.stat().st_mtime < newest:
            return None
        try:
            res = Results.model_validate_json(g.results.read_bytes())
        except (OSError, ValidationError):
            return None
        if {d.detector for d in res.detectors} != {p.name[: -len(VERDICT_SUFFIX)]
                                                   for p in files}:
            return None
        if (res.n_bootstrap, res.bootstrap_seed) != (self.n_bootstrap, self.bootstrap_seed):
            return None
        return "results.json is newer than every verdict file"

    def remediate_done(self) -> str | None:
        """Always hand over: `remediate_game` resumes per (organism, budget) by itself and
        returns at once when everything is done; a partial remediation.json (a crash
        mid-way) cannot be told from a finished one here."""
        return None

    def report_done(self) -> str | None:
        from auditgame.report import report_inputs

        out = self.folder.report
        if not out.exists():
            return None
        newest = max((p.stat().st_mtime for p in report_inputs(self.game)), default=0.0)
        if out.stat().st_mtime < newest:
            return None
        return f"{out.name} is newer than everything it shows"

    # --- stages -------------------------------------------------------------------------

    def run_make(self, prog: Progress, task: TaskID) -> str:
        from auditgame.organisms.factory import make_game

        spec = self._spec()
        built, note = _with_backend(make_game, self.backend, spec=spec, out=self.game,
                                    spec_text=self.spec_path.read_text(encoding="utf-8"),
                                    console=self.console)
        return f"built {len(built)} of {len(spec.organisms)} organisms{note}"

    def run_seal(self, prog: Progress, task: TaskID) -> str:
        from auditgame.bundle import seal_game

        key = seal_game(self.game)
        return f"sealed {len(key.organisms)} organisms"

    def run_audit(self, prog: Progress, task: TaskID) -> str:
        from auditgame.detectors import run_audit

        missing = self._missing_pairs()
        total = sum(len(v) for v in missing.values())
        prog.update(task, total=total, completed=0)
        per_det: dict[str, float] = {}

        def done(v: Any) -> None:
            per_det[v.detector] = per_det.get(v.detector, 0.0) + v.runtime_s
            note = f"{v.detector} {v.blind_id} {v.score:.2f}"
            if v.error:
                note += " [red]failed[/red]"
            prog.update(task, advance=1, info=note)

        _, note = _with_backend(run_audit, self.backend, bundle_dir=self.folder.bundle,
                                detectors=list(missing), on_done=done)
        self._detail = {k: round(v, 3) for k, v in per_det.items()}
        return f"{total} verdicts from {len(missing)} detector(s){note}"

    def run_score(self, prog: Progress, task: TaskID) -> str:
        from auditgame.referee import score_game

        res = score_game(self.game, n_boot=self.n_bootstrap, seed=self.bootstrap_seed)
        best = max(res.detectors, key=lambda d: d.groups["all"].auroc or 0.0)
        auc = best.groups["all"].auroc
        return (f"{len(res.detectors)} detector(s); best AUROC {best.detector} "
                f"{'-' if auc is None else f'{auc:.3f}'}")

    def run_remediate(self, prog: Progress, task: TaskID) -> str:
        fn = remediate_entry()
        if fn is None:  # checked by run_stage; only a module removed meanwhile gets here
            return "auditgame.remediate is not installed"
        _, note = _with_backend(fn, self.backend, game=self.game, console=self.console)
        return (f"{self.folder.remediation.name} up to date"
                if self.folder.remediation.exists() else "done") + note

    def run_report(self, prog: Progress, task: TaskID) -> str:
        from auditgame.report import build_report

        path = build_report(self.game)
        return f"wrote {path} ({path.stat().st_size // 1024} KiB)"

    # --- driver -------------------------------------------------------------------------

    def check(self, stage: str) -> str | None:
        return STAGE_TABLE[stage].done(self)

    def run_stage(self, stage: str, prog: Progress, task: TaskID) -> StageRecord:
        """Run one stage unless it is up to date; records status and wall time."""
        t0 = time.perf_counter()
        self._detail: dict[str, float] = {}
        if stage in self.skip:
            rec = StageRecord(stage=stage, status="skipped", seconds=0.0,
                              note="skipped by --skip")
        elif stage == "remediate" and remediate_entry() is None:
            rec = StageRecord(stage=stage, status="unavailable", seconds=0.0,
                              note="auditgame.remediate is not installed; skipped")
        else:
            why = self.check(stage)
            if why is not None:
                rec = StageRecord(stage=stage, status="skipped", seconds=0.0, note=why)
            else:
                note = STAGE_TABLE[stage].run(self, prog, task)
                rec = StageRecord(stage=stage, status="ran",
                                  seconds=round(time.perf_counter() - t0, 3), note=note,
                                  detail=dict(self._detail))
        self.records.append(rec)
        return rec

    def run(self, stages: Iterable[str] = ()) -> list[StageRecord]:
        """All stages in order under one progress display; writes GAME/pipeline.json."""
        stages = list(stages) or list(STAGES)
        self.backend = resolve_backend(self.backend_name, self.address)
        if self.spec_budget:  # after the options' checks, before anything is written
            self.detectors = select_detectors(None, spec_budget(self.spec_path))
        self.game.mkdir(parents=True, exist_ok=True)
        prog = Progress(SpinnerColumn(), TextColumn("[bold]{task.description:<10}"), BarColumn(),
                        MofNCompleteColumn(), TimeElapsedColumn(),
                        TextColumn("{task.fields[info]}"), console=self.console, transient=False)
        tasks = {s: prog.add_task(s, total=1, start=False, info="waiting") for s in stages}
        t_all = time.perf_counter()
        try:
            with prog:
                for s in stages:
                    prog.start_task(tasks[s])
                    prog.update(tasks[s], info="checking")
                    rec = self.run_stage(s, prog, tasks[s])
                    color = {"ran": "green", "skipped": "cyan"}.get(rec.status, "yellow")
                    t = prog.tasks[tasks[s]].total or 1
                    prog.update(tasks[s], total=t, completed=t,
                                info=f"[{color}]{rec.status}[/{color}] {rec.note}")
                    prog.stop_task(tasks[s])
                    self._write_log(time.perf_counter() - t_all)
        finally:
            self._write_log(time.perf_counter() - t_all)
        return self.records

    def _write_log(self, total_s: float) -> None:
        from auditgame import __version__

        write_record(self.folder.pipeline_log, PipelineLog(
            auditgame=__version__, spec=str(self.spec_path), detectors=self.detectors,
            backend=self.backend_name, address=self.address, n_bootstrap=self.n_bootstrap,
            machine=Machine(python=platform.python_version(), platform=platform.platform()),
            total_s=round(total_s, 3), stages=list(self.records)))


@dataclass(frozen=True)
class Stage:
    """One stage as data: its name, its up-to-date check and its run."""

    name: str
    done: Callable[[Pipeline], str | None]
    run: Callable[[Pipeline, Progress, TaskID], str]


STAGE_LIST = (
    Stage("make", Pipeline.make_done, Pipeline.run_make),
    Stage("seal", Pipeline.seal_done, Pipeline.run_seal),
    Stage("audit", Pipeline.audit_done, Pipeline.run_audit),
    Stage("score", Pipeline.score_done, Pipeline.run_score),
    Stage("remediate", Pipeline.remediate_done, Pipeline.run_remediate),
    Stage("report", Pipeline.report_done, Pipeline.run_report),
)
STAGE_TABLE = {s.name: s for s in STAGE_LIST}
STAGES = tuple(s.name for s in STAGE_LIST)


def remediate_entry() -> Callable[..., Any] | None:
    """`auditgame.remediate.remediate_game(game, console)` if that module provides it."""
    try:
        mod = importlib.import_module("auditgame.remediate")
    except ModuleNotFoundError as e:
        if e.name in ("auditgame.remediate",):
            return None
        raise
    fn = getattr(mod, "remediate_game", None)
    return fn if callable(fn) else None


def run_pipeline(spec_path: Path, game: Path, detectors: list[str] | None = None,
                 budget: str | None = None, backend: str = "local",
                 address: str | None = None, n_bootstrap: int = 1000,
                 skip: Iterable[str] = (), console: Console | None = None) -> list[StageRecord]:
    """Run (or resume) the whole game; returns what each stage did."""
    bad = sorted(set(skip) - set(STAGES))
    if bad:
        raise AuditgameError(f"unknown stage(s) {', '.join(bad)}; stages: {', '.join(STAGES)}",
                             field="--skip")
    p = Pipeline(spec_path=Path(spec_path), game=Path(game),
                 detectors=select_detectors(detectors, budget or DEFAULT_BUDGET),
                 spec_budget=detectors is None and budget is None, backend_name=backend,
                 address=address, n_bootstrap=n_bootstrap, skip=frozenset(skip),
                 console=console or Console(stderr=True))
    return p.run()
