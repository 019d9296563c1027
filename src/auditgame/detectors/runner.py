"""Run detectors over a sealed bundle, one verdict file per detector, resumable.

The runner only ever opens the bundle folder (never the key). It hands each detector exactly
what it declared, loads the base model once and only if some detector needs it, and lets the
engine turn a detector's exception into a failed verdict that the referee counts. A backend
that runs jobs elsewhere (see `auditgame.backends`) is handed in; this module never imports
one: it only calls `backend.map(audit_pair, jobs, on_result)`.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from auditgame.bundle.reader import Bundle
from auditgame.detectors.base import Detector, make_detector
from auditgame.detectors.engine import ModelHolder, audit_one, prepare, view_of
from auditgame.errors import AuditgameError
from auditgame.layout import game_of_bundle, verdict_path
from auditgame.records.verdict import Verdict, read_verdicts, write_verdicts


def default_out_dir(bundle_dir: Path | str) -> Path:
    """`GAME/bundle` -> `GAME/verdicts`."""
    return game_of_bundle(bundle_dir).verdicts


def run_detector(det: Detector, bundle: Bundle, out_dir: Path, holder: ModelHolder,
                 on_done: Callable[[Verdict], None] | None = None) -> Path:
    """Audit every organism not yet in the detector's verdict file; returns its path."""
    path = verdict_path(out_dir, det.name)
    verdicts = read_verdicts(path, bundle.ids) if path.exists() else []
    done = {v.blind_id for v in verdicts}
    todo = [bid for bid in bundle.ids if bid not in done]
    if not todo:
        return path
    prep_error = prepare(det, bundle)
    for bid in todo:
        v = audit_one(det, view_of(det, bundle, bid, holder), bundle.n_samples(), prep_error)
        verdicts.append(v)
        write_verdicts(path, verdicts)
        if on_done is not None:
            on_done(v)
    return path


@dataclass(frozen=True)
class AuditJob:
    """One (detector, organism) pair for a backend that runs jobs in other processes."""

    bundle: str
    detector: str
    blind_id: str
    cwd: str
    kwargs: dict[str, Any] = field(default_factory=dict)


def audit_pair(job: AuditJob) -> dict[str, Any]:
    """One detector on one organism, exactly as `run_detector` does it; a Verdict (JSON)."""
    os.chdir(job.cwd)
    bundle = Bundle(job.bundle)
    det = make_detector(job.detector, **job.kwargs)
    prep_error = prepare(det, bundle)
    view = view_of(det, bundle, job.blind_id, ModelHolder(bundle))
    return audit_one(det, view, bundle.n_samples(), prep_error).model_dump(mode="json")


def _audit_remote(backend: Any, bundle: Bundle, out: Path, detectors: list[str],
                  detector_kwargs: dict[str, dict[str, Any]],
                  on_done: Callable[[Verdict], None] | None) -> dict[str, Path]:
    """Every missing pair as one job; verdict files are rewritten (atomically, in bundle
    order) as results arrive, so an interrupted run resumes."""
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


def run_audit(bundle_dir: Path | str, detectors: list[str], out_dir: Path | str | None = None,
              base: Any | None = None, detector_kwargs: dict[str, dict[str, Any]] | None = None,
              on_done: Callable[[Verdict], None] | None = None,
              backend: Any | None = None) -> dict[str, Path]:
    """Run the named detectors over the bundle; returns detector name -> verdict file.
    `backend` (see `auditgame.backends`): where the audits run; default in this process."""
    bundle = Bundle(bundle_dir)
    out = Path(out_dir) if out_dir is not None else default_out_dir(bundle_dir)
    if out.resolve().is_relative_to(bundle.root.resolve()):
        raise AuditgameError("verdicts must not be written inside the bundle", path=out)
    if not detectors:
        raise AuditgameError("no detectors given", field="detectors")
    dets = [make_detector(n, **(detector_kwargs or {}).get(n, {})) for n in detectors]
    out.mkdir(parents=True, exist_ok=True)
    if backend is not None and not backend.in_process:
        return _audit_remote(backend, bundle, out, [d.name for d in dets],
                             detector_kwargs or {}, on_done)
    holder = ModelHolder(bundle, base)
    return {d.name: run_detector(d, bundle, out, holder, on_done) for d in dets}
