"""Jobs a non-local backend runs: one organism build, or one (detector, organism) audit.

Each job rebuilds what it needs from the spec or the bundle (the base model, the corpus
from the distillation cache) and runs exactly the code the local backend runs, so its output
is the same bytes; the driver only collects and writes.
"""

from __future__ import annotations

import os
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console


@dataclass(frozen=True)
class BuildJob:
    spec: dict[str, Any]
    out: str
    name: str
    spec_hash: str
    base_metrics: dict[str, float]
    cwd: str


@dataclass(frozen=True)
class AuditJob:
    bundle: str
    detector: str
    blind_id: str
    cwd: str
    kwargs: dict[str, Any] = field(default_factory=dict)


def build_organism(job: BuildJob) -> str:
    """Build one organism into `out/organisms/<name>` (atomic rename); returns its name."""
    from rich.progress import Progress

    from auditgame.models.base import load_base
    from auditgame.organisms import factory as F
    from auditgame.organisms.corpus import build_corpus
    from auditgame.organisms.spec import GameSpec

    os.chdir(job.cwd)
    spec = GameSpec.model_validate(job.spec)
    bm = load_base(spec.base, spec.dtype)
    corpus = build_corpus(spec.corpus, spec.seed, bm)
    planned = F.plan(spec, corpus)
    poisoned = [p for p in planned if p.org.attack != "clean"]
    p = next(q for q in planned if q.org.name == job.name)
    with Progress(disable=True) as prog:
        F._build_one(p, poisoned, spec, job.spec_hash, corpus, bm, job.base_metrics,
                     Path(job.out), prog, None)
    return job.name


def build_remote(backend: Any, spec: Any, out: Path, names: list[str], spec_hash: str,
                 base_metrics: dict[str, float], console: Console) -> list[str]:
    """Fan the organisms out over the backend; returns the names built."""
    jobs = [BuildJob(spec=spec.model_dump(mode="json"), out=str(Path(out).resolve()), name=n,
                     spec_hash=spec_hash, base_metrics=base_metrics, cwd=os.getcwd())
            for n in names]
    t0 = time.perf_counter()
    return backend.map(build_organism, jobs, lambda i, n: console.print(
        f"built {n} on {backend.name} ({time.perf_counter() - t0:.0f} s since start)"))


def audit_pair(job: AuditJob) -> dict[str, Any]:
    """One detector on one organism, exactly as the local runner does it; a Verdict (JSON)."""
    from auditgame.detectors.base import MODEL_NEEDS, BundleInfo, OrganismView, make_detector
    from auditgame.detectors.runner import _BaseHolder, _check, _failed
    from auditgame.game.bundle import Bundle

    os.chdir(job.cwd)
    bundle = Bundle(job.bundle)
    det = make_detector(job.detector, **job.kwargs)
    holder = _BaseHolder(bundle)
    t0 = time.perf_counter()
    try:
        det.prepare(BundleInfo(ids=bundle.ids, public=bundle.public.model_dump(mode="json"),
                               file_stats={b: bundle.file_stats(b) for b in bundle.ids}))
    except Exception as e:  # noqa: BLE001 - a plug-in's failure is a result, not a crash
        v = _failed(det, job.blind_id, f"prepare: {e.__class__.__name__}: {e}")
    else:
        loader = holder.organism if det.needs & MODEL_NEEDS else None
        base_loader = holder.get if det.needs & MODEL_NEEDS else None
        view = OrganismView(bundle, job.blind_id, frozenset(det.needs), loader, base_loader)
        t0 = time.perf_counter()
        try:
            v = det.audit(view)
            _check(v, det, job.blind_id, bundle.public.n_train)
        except Exception as e:  # noqa: BLE001
            tb = traceback.extract_tb(e.__traceback__)
            at = f" at {tb[-1].filename.rsplit('/', 1)[-1]}:{tb[-1].lineno}" if tb else ""
            v = _failed(det, job.blind_id, f"{e.__class__.__name__}: {e}{at}")
    v = v.model_copy(update={"runtime_s": round(time.perf_counter() - t0, 4)})
    return v.model_dump(mode="json")


def audit_remote(backend: Any, bundle: Any, out: Path, detectors: list[str],
                 detector_kwargs: dict[str, dict[str, Any]], on_done: Any) -> dict[str, Path]:
    """Every missing (detector, organism) pair as one job; verdict files are rewritten
    (atomically, in bundle order) as results arrive, so an interrupted run resumes."""
    from auditgame.detectors.base import Verdict
    from auditgame.detectors.verdicts import read_verdicts, verdict_path, write_verdicts

    order = {b: i for i, b in enumerate(bundle.ids)}
    have: dict[str, list[Verdict]] = {}
    jobs: list[AuditJob] = []
    for d in detectors:
        path = verdict_path(out, d)
        have[d] = read_verdicts(path, bundle.ids) if path.exists() else []
        done = {v.blind_id for v in have[d]}
        jobs += [AuditJob(bundle=str(bundle.root.resolve()), detector=d, blind_id=b,
                          cwd=os.getcwd(), kwargs=detector_kwargs.get(d, {}))
                 for b in bundle.ids if b not in done]
    n_old = {d: len(v) for d, v in have.items()}

    def collect(i: int, raw: dict[str, Any]) -> None:
        v = Verdict.model_validate(raw)
        d = jobs[i].detector
        old, new = have[d][: n_old[d]], have[d][n_old[d]:] + [v]
        have[d] = old + sorted(new, key=lambda x: order[x.blind_id])
        write_verdicts(verdict_path(out, d), have[d])
        if on_done is not None:
            on_done(v)

    backend.map(audit_pair, jobs, collect)
    return {d: verdict_path(out, d) for d in detectors}
