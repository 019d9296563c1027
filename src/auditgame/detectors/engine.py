"""The one audit engine: prepare a detector on a source, judge one organism, and turn a
plug-in's failure into a counted failed verdict (score 0.5, `error` set), never a crash.

The runner (a bundle), a remote job (one pair), the remediation re-audit (a pool of fixed
adapters) and `scan` (a standalone dataset) all call `prepare` and `audit_one`.
"""

from __future__ import annotations

import copy
import time
import traceback
from collections.abc import Callable
from typing import Any

from auditgame.detectors.base import Detector
from auditgame.detectors.view import MODEL_NEEDS, BundleInfo, OrganismView, Source
from auditgame.errors import AuditgameError
from auditgame.records.verdict import FAILED_SCORE, Verdict


class ModelHolder:
    """Loads the source's base model on first use, once for every detector, and builds each
    organism as a private copy of the base with its adapter (detectors cannot corrupt it)."""

    def __init__(self, source: Source, base: Any | None = None,
                 load: Callable[[], Any] | None = None):
        self.source = source
        self.base = base
        self._load = load

    def get(self) -> Any:
        if self.base is None:
            if self._load is not None:
                self.base = self._load()
            else:
                from auditgame.models.base_lm import load_base

                meta = self.source.public_info()["base"]
                self.base = load_base(str(meta["name"]), str(meta.get("dtype", "float32")))
        meta = self.source.public_info().get("base") or {}
        want = meta.get("model_id")
        if want is not None and self.base.model_id != want:
            raise AuditgameError(f"base model {self.base.model_id!r} is not the one the "
                                 f"organisms were trained on ({want!r})", field="base")
        return self.base

    def organism(self, blind_id: str) -> tuple[Any, Any]:
        from peft import PeftModel

        bm = self.get()
        model = PeftModel.from_pretrained(copy.deepcopy(bm.model),
                                          str(self.source.adapter_dir(blind_id)))
        return model.eval(), bm


def bundle_info(source: Source) -> BundleInfo:
    return BundleInfo(ids=source.ids, public=source.public_info(),
                      file_stats={b: source.file_stats(b) for b in source.ids})


def prepare(det: Detector, source: Source) -> str | None:
    """Run `det.prepare` on the source's public facts; the error text if it raised."""
    try:
        det.prepare(bundle_info(source))
    except Exception as e:  # noqa: BLE001 - a plug-in's failure is a result, not a crash
        return f"prepare: {e.__class__.__name__}: {e}"
    return None


def view_of(det: Detector, source: Source, blind_id: str,
            holder: ModelHolder | None) -> OrganismView:
    """The organism as `det` may see it: the model loaders only if it declared a model need."""
    model = holder is not None and bool(det.needs & MODEL_NEEDS)
    return OrganismView(source, blind_id, frozenset(det.needs),
                        holder.organism if model else None,  # type: ignore[union-attr]
                        holder.get if model else None)  # type: ignore[union-attr]


def failed(det: Detector | str, blind_id: str, error: str) -> Verdict:
    name = det if isinstance(det, str) else det.name
    return Verdict(blind_id=blind_id, detector=name, score=FAILED_SCORE, error=error[:2000])


def check_verdict(v: Any, det: Detector, blind_id: str, n_samples: int | None,
                  need_samples: bool = False) -> Verdict:
    """The contract a verdict must meet; a breach is the plug-in's failure."""
    if not isinstance(v, Verdict):
        raise TypeError(f"audit returned {type(v).__name__}, not a Verdict")
    if v.blind_id != blind_id or v.detector != det.name:
        raise ValueError(f"verdict is for {v.detector}/{v.blind_id}, not {det.name}/{blind_id}")
    if need_samples and v.sample_scores is None:
        raise ValueError("detector returned no per-sample scores")
    if v.sample_scores is not None and n_samples is not None and len(v.sample_scores) != n_samples:
        raise ValueError(f"{len(v.sample_scores)} sample scores for {n_samples} samples")
    return v


def audit_one(det: Detector, view: OrganismView, n_samples: int | None = None,
              prep_error: str | None = None, need_samples: bool = False,
              reraise: tuple[type[BaseException], ...] = ()) -> Verdict:
    """One detector on one organism; its wall time is recorded in the verdict. Exceptions of
    the `reraise` types propagate (bad input from the user), every other becomes a failed
    verdict naming where it was raised."""
    t0 = time.perf_counter()
    if prep_error is not None:
        v = failed(det, view.blind_id, prep_error)
    else:
        try:
            v = check_verdict(det.audit(view), det, view.blind_id, n_samples, need_samples)
        except reraise:
            raise
        except Exception as e:  # noqa: BLE001 - a plug-in's failure is a result, not a crash
            tb = traceback.extract_tb(e.__traceback__)
            at = f" at {tb[-1].filename.rsplit('/', 1)[-1]}:{tb[-1].lineno}" if tb else ""
            v = failed(det, view.blind_id, f"{e.__class__.__name__}: {e}{at}")
    return v.model_copy(update={"runtime_s": round(time.perf_counter() - t0, 4)})
