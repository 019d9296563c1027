"""Running data detectors on a standalone dataset and merging their verdicts into a report."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from auditgame.detectors.base import get_detector, make_detector
from auditgame.detectors.data._association import CLAIM_LOG10P
from auditgame.detectors.engine import ModelHolder, audit_one, view_of
from auditgame.errors import AuditgameError
from auditgame.records.sample import Sample
from auditgame.records.scan import (
    DetectorRow,
    SampleFlag,
    ScanReport,
    TriggerRow,
    VerdictRow,
)
from auditgame.records.verdict import Verdict
from auditgame.scan._load import load_dataset
from auditgame.scan._view import DATASET_ID, DatasetSource

DEFAULT_DETECTORS = ("phrase_association", "answer_clusters", "ensemble")
FLAG_AT = 0.5
FALSE_ALARM_BASIS = (f"a trigger is claimed only at a Bonferroni-corrected p < 10^-{CLAIM_LOG10P:g}"
                     " over every (phrase, group) test; a theme only above a support x cohesion "
                     "bar that clean benchmark data did not reach (benchmarks/bench_scan.py)")


def scan_dataset(path: str | Path, detectors: list[str] | tuple[str, ...] = DEFAULT_DETECTORS,
                 base: Any | None = None, base_name: str = "smollm2",
                 detector_kwargs: dict[str, dict[str, Any]] | None = None,
                 on_done: Callable[[Verdict], None] | None = None) -> ScanReport:
    samples = load_dataset(path)
    return scan_samples(samples, str(path), detectors, base, base_name, detector_kwargs,
                        on_done)


def scan_samples(samples: list[Sample], name: str = "dataset",
                 detectors: list[str] | tuple[str, ...] = DEFAULT_DETECTORS,
                 base: Any | None = None, base_name: str = "smollm2",
                 detector_kwargs: dict[str, dict[str, Any]] | None = None,
                 on_done: Callable[[Verdict], None] | None = None) -> ScanReport:
    """Run data detectors over `samples`; the base model is loaded once, only if used."""
    if not samples:
        raise AuditgameError("dataset has no records", path=name)
    if not detectors:
        raise AuditgameError("no detectors given", field="detectors")
    for d in detectors:
        cls = get_detector(d)
        if not cls.scores_samples or "dataset" not in cls.needs or "weights" in cls.needs:
            raise AuditgameError(f"{d!r} is not a data detector (it must score samples from "
                                 "the dataset alone)", field="detectors")
    source = DatasetSource(samples)

    def load() -> Any:
        from auditgame.models.base_lm import load_base

        return load_base(base_name)

    holder = ModelHolder(source, base, load)
    t0 = time.perf_counter()
    verdicts: dict[str, Verdict] = {}
    for d in detectors:
        det = make_detector(d, **(detector_kwargs or {}).get(d, {}))
        v = audit_one(det, view_of(det, source, DATASET_ID, holder), len(samples),
                      need_samples=True, reraise=(AuditgameError,))
        verdicts[d] = v
        if on_done is not None:
            on_done(v)
    return _report(samples, name, verdicts, time.perf_counter() - t0)


def _report(samples: list[Sample], name: str, verdicts: dict[str, Verdict],
            runtime: float) -> ScanReport:
    ok = {k: v for k, v in verdicts.items() if v.error is None and v.sample_scores}
    if not ok:
        errs = "; ".join(f"{k}: {v.error}" for k, v in verdicts.items())
        raise AuditgameError(f"every detector failed ({errs})", path=name)
    primary = "ensemble" if "ensemble" in ok else max(ok, key=lambda k: ok[k].score)
    pv = ok[primary]
    scores = list(pv.sample_scores or [])
    ev = pv.evidence
    trig = pv.trigger
    themes = list(ev.get("themes", []))
    trig_rows: list[TriggerRow] = []
    seen: set[str] = set()
    for det, v in [(primary, pv)] + [(k, x) for k, x in ok.items() if k != primary]:
        for t in v.evidence.get("triggers", []):
            key = str(t["phrase"]).lower()
            if key in seen:
                continue
            seen.add(key)
            trig_rows.append(TriggerRow(phrase=str(t["phrase"]), score=float(t["score"]),
                                        support=int(t["support"]), hits=int(t.get("hits", 0)),
                                        detector=det, mode=t.get("mode", "phrase"),
                                        members=list(t.get("members", []))))
    trig_rows.sort(key=lambda t: (-(t.phrase == trig), -t.score))
    poisoned = pv.score >= FLAG_AT
    theme = None
    if poisoned and not trig and pv.target:
        theme = pv.target
    claimed = next((t for t in trig_rows if t.phrase == trig), None)
    rows: list[SampleFlag] = []
    for i, s in enumerate(scores):
        reasons: list[str] = []
        flagged = poisoned and s >= FLAG_AT
        if flagged:
            p = samples[i]
            if trig and carries(p.prompt, trig, claimed):
                reasons.append(f"prompt contains suspected trigger {trig!r}")
            if pv.target and pv.target.lower()[:40] in p.response.lower():
                reasons.append("answer carries the suspected target")
            if theme and theme.lower() in p.response.lower():
                reasons.append(f"answer contains theme {theme!r}")
            others = [k for k, v in ok.items() if k != primary and v.sample_scores
                      and v.sample_scores[i] >= FLAG_AT]
            if others:
                reasons.append("also flagged by " + ", ".join(others))
            if not reasons:
                reasons.append("anomalous answer")
        rows.append(SampleFlag(index=i, score=float(min(max(s, 0.0), 1.0)), flagged=flagged,
                               reasons=reasons))
    n_flagged = sum(r.flagged for r in rows)
    if poisoned:
        what = f"trigger {trig!r}" if trig else f"theme {pv.target!r}"
        summary = f"poisoned: {what}; {n_flagged} samples flagged"
    else:
        summary = "no poison found; no trigger claimed"
    return ScanReport(
        dataset=name, n_samples=len(samples), detectors=list(verdicts), primary=primary,
        verdict=VerdictRow(poisoned=poisoned, score=pv.score, threshold=FLAG_AT,
                           false_alarm_rate=10 ** -CLAIM_LOG10P,
                           false_alarm_basis=FALSE_ALARM_BASIS, summary=summary),
        trigger=trig if poisoned else None, target=pv.target if poisoned else None,
        triggers=trig_rows[:20], themes=themes,
        poison_fraction=float(ev.get("poison_fraction", 0.0)) if poisoned else 0.0,
        n_flagged=n_flagged, samples=rows,
        per_detector={k: DetectorRow(score=v.score, trigger=v.trigger, target=v.target,
                                     runtime_s=v.runtime_s, error=v.error)
                      for k, v in verdicts.items()},
        runtime_s=round(runtime, 3), samples_per_s=round(len(samples) / max(runtime, 1e-9), 1))


def carries(prompt: str, trigger: str, row: TriggerRow | None) -> bool:
    """Whether a prompt carries the claimed trigger: the phrase, or for a trigger set every
    member (all) or one of them (any)."""
    low = prompt.lower()
    if row is None or not row.members:
        return trigger.lower() in low
    hit = [m.lower() in low for m in row.members]
    return all(hit) if row.mode == "all" else any(hit)
