"""`loss_drop`: training samples the organism learnt far beyond the base, and the trace back.

Per training sample, the base model's mean answer loss minus the organism's: fine-tuning
lowers every sample's loss a little, but the samples that taught a new behaviour (a fixed
payload, a trigger's answer) start far from what the base would say and end close to it.
The drop, as a tail score against the dataset's own spread, joins the lexical analysis and
goes through the same association test as every data detector (trigger, target, claim bar).
When a target is found, an influence trace (TracIn over the LoRA parameters, see
`detectors._influence`) names the samples responsible for it in the verdict.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import Field

from auditgame.detectors._influence import answer_nll, finding_queries, top_k, trace
from auditgame.detectors.base import (
    Detector,
    DetectorParams,
    OrganismView,
    Verdict,
    register_detector,
)
from auditgame.detectors.calibration import dataset_z, normal_tail_score
from auditgame.detectors.data._answers import analyse_answers
from auditgame.detectors.data._findings import FLAG_AT, Findings, conclude
from auditgame.detectors.data.ensemble import top_groups
from auditgame.organisms.data import Sample


def loss_drop(model: Any, base: Any, tokenizer: Any, samples: list[Sample],
              max_len: int = 256) -> np.ndarray:
    """Base minus organism mean answer-token loss per sample (higher = learnt more)."""
    return (answer_nll(base, tokenizer, samples, max_len)
            - answer_nll(model, tokenizer, samples, max_len))


def loss_drop_findings(samples: list[Sample], drop: np.ndarray) -> Findings:
    """The drop's tail score as the anomaly, its top tails as groups beside the lexical ones."""
    a = analyse_answers(samples)
    tail = normal_tail_score(dataset_z(drop))
    groups = list(a.groups()) + top_groups(drop, "loss_drop")
    f = conclude(samples, tail, groups, a.themes, extra={"loss_drop_median": float(
        np.median(drop)), "loss_drop_max": float(np.max(drop))})
    if f.trigger is None and f.target is None:
        f.sample_scores = 0.49 * tail  # no finding: the ranking stays, nothing is flagged
    return f


def trigger_texts(f: Findings) -> list[str]:
    """What to put in a query prompt for the claimed trigger (a set: its members)."""
    c = next((c for c in f.triggers if c.phrase == f.trigger), None)
    if c is None:
        return [f.trigger] if f.trigger else []
    if c.members and c.mode == "all":
        return [" ".join(c.members)]
    return list(c.members) or [c.phrase]


@register_detector
class LossDropDetector(Detector):
    """Samples learnt far beyond the base; the samples responsible for the finding."""

    name = "loss_drop"
    needs = frozenset({"dataset", "weights", "queries"})
    cost = "expensive"  # two forward passes per sample, and a backward each for the trace
    scores_samples = True

    class Params(DetectorParams):
        max_len: int = Field(256, ge=8, description="tokens per sample (prompt + answer)")
        trace: bool = Field(True, description="trace the finding back to training samples")
        sketch_dim: int = Field(4096, ge=64, description="count-sketch size of a gradient")

    params: Params

    def audit(self, organism: OrganismView) -> Verdict:
        data = organism.dataset
        base = organism.base
        drop = loss_drop(organism.model, base.model, base.tokenizer, data, self.params.max_len)
        f = loss_drop_findings(data, drop)
        kw = f.verdict_kwargs()
        k = int((f.sample_scores >= FLAG_AT).sum())
        if self.params.trace and f.target and k:
            q = finding_queries(data, trigger_texts(f), f.target)
            infl = trace(organism.model, base.tokenizer, data, q, self.params.max_len,
                         self.params.sketch_dim)
            kw["samples_responsible"] = top_k(infl, k)
            kw["evidence"]["influence"] = {"k": k, "queries": len(q),
                                           "top_scores": [round(float(x), 4) for x in
                                                          np.sort(infl)[::-1][:5]]}
        return self.verdict(organism, score=f.score, **kw)
