"""Run detectors over a sealed bundle, one verdict file per detector, resumable.

The runner only ever opens the bundle folder (never the key). It hands each detector exactly
what it declared, loads the base model once and only if some detector needs it, and turns a
detector's exception into a failed verdict (score 0.5, `error` set) that the referee counts.
"""

from __future__ import annotations

import copy
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from auditgame.detectors.base import (
    MODEL_NEEDS,
    BundleInfo,
    Detector,
    OrganismView,
    Verdict,
    make_detector,
)
from auditgame.detectors.verdicts import read_verdicts, verdict_path, write_verdicts
from auditgame.errors import AuditgameError
from auditgame.game.bundle import VERDICTS, Bundle

FAILED_SCORE = 0.5


def default_out_dir(bundle_dir: Path | str) -> Path:
    """`GAME/bundle` -> `GAME/verdicts`."""
    return Path(bundle_dir).resolve().parent / VERDICTS


class _BaseHolder:
    """Loads the bundle's base model on first use, once for all detectors."""

    def __init__(self, bundle: Bundle, base: Any | None = None):
        self.bundle = bundle
        self.base = base

    def get(self) -> Any:
        if self.base is None:
            from auditgame.models.base import load_base

            meta = self.bundle.public.base
            self.base = load_base(str(meta["name"]), str(meta.get("dtype", "float32")))
        want = self.bundle.public.base.get("model_id")
        if want is not None and self.base.model_id != want:
            raise AuditgameError(f"base model {self.base.model_id!r} is not the one the "
                                 f"organisms were trained on ({want!r})", field="base")
        return self.base

    def organism(self, blind_id: str) -> tuple[Any, Any]:
        """A private copy of the base with this adapter: detectors cannot corrupt the base."""
        from peft import PeftModel

        bm = self.get()
        model = PeftModel.from_pretrained(copy.deepcopy(bm.model),
                                          str(self.bundle.adapter_dir(blind_id)))
        return model.eval(), bm


def run_detector(det: Detector, bundle: Bundle, out_dir: Path, holder: _BaseHolder,
                 on_done: Callable[[Verdict], None] | None = None) -> Path:
    """Audit every organism not yet in the detector's verdict file; returns its path."""
    path = verdict_path(out_dir, det.name)
    verdicts = read_verdicts(path, bundle.ids) if path.exists() else []
    done = {v.blind_id for v in verdicts}
    todo = [bid for bid in bundle.ids if bid not in done]
    if not todo:
        return path
    prep_error: str | None = None
    try:
        det.prepare(BundleInfo(ids=bundle.ids, public=bundle.public.model_dump(mode="json"),
                               file_stats={b: bundle.file_stats(b) for b in bundle.ids}))
    except Exception as e:  # noqa: BLE001 - a plug-in's failure is a result, not a crash
        prep_error = f"prepare: {e.__class__.__name__}: {e}"
    loader = holder.organism if det.needs & MODEL_NEEDS else None
    base_loader = holder.get if det.needs & MODEL_NEEDS else None
    for bid in todo:
        t0 = time.perf_counter()
        if prep_error is not None:
            v = _failed(det, bid, prep_error)
        else:
            view = OrganismView(bundle, bid, frozenset(det.needs), loader, base_loader)
            try:
                v = det.audit(view)
                _check(v, det, bid, bundle.public.n_train)
            except Exception as e:  # noqa: BLE001
                tb = traceback.extract_tb(e.__traceback__)
                at = f" at {tb[-1].filename.rsplit('/', 1)[-1]}:{tb[-1].lineno}" if tb else ""
                v = _failed(det, bid, f"{e.__class__.__name__}: {e}{at}")
        v = v.model_copy(update={"runtime_s": round(time.perf_counter() - t0, 4)})
        verdicts.append(v)
        write_verdicts(path, verdicts)
        if on_done is not None:
            on_done(v)
    return path


def _failed(det: Detector, bid: str, error: str) -> Verdict:
    return Verdict(blind_id=bid, detector=det.name, score=FAILED_SCORE, error=error[:2000])


def _check(v: Any, det: Detector, bid: str, n_train: int) -> None:
    if not isinstance(v, Verdict):
        raise TypeError(f"audit returned {type(v).__name__}, not a Verdict")
    if v.blind_id != bid or v.detector != det.name:
        raise ValueError(f"verdict is for {v.detector}/{v.blind_id}, not {det.name}/{bid}")
    if v.sample_scores is not None and len(v.sample_scores) != n_train:
        raise ValueError(f"{len(v.sample_scores)} sample scores for {n_train} samples")


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
    holder = _BaseHolder(bundle, base)
    out.mkdir(parents=True, exist_ok=True)
    if backend is not None and not backend.in_process:
        from auditgame.backends.tasks import audit_remote

        return audit_remote(backend, bundle, out, [d.name for d in dets],
                            detector_kwargs or {}, on_done)
    return {d.name: run_detector(d, bundle, out, holder, on_done) for d in dets}
