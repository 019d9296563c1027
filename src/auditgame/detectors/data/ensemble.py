"""`ensemble`: the other non-LLM data detectors combined, calibrated on clean data only.

Each component's sample scores become tail probabilities against the component's own
within-dataset null (median and spread of the dataset, which is mostly clean), the pooled
anomaly is their mean, and every component's anomalous groups plus the pooled top tail go
through one association test, Bonferroni-corrected over all of them together; so the claim
bar keeps its false-alarm bound however many components are combined.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from pydantic import Field

from auditgame.detectors.base import (
    Detector,
    DetectorParams,
    OrganismView,
    Verdict,
    detector_names,
    get_detector,
    register_detector,
)
from auditgame.detectors.calibration import dataset_z, normal_tail_score
from auditgame.detectors.data._answers import analyse_answers
from auditgame.detectors.data._association import Group
from auditgame.detectors.data._findings import Findings, conclude
from auditgame.errors import AuditgameError
from auditgame.organisms.data import Sample


def outlier_detector_names() -> list[str]:
    """Registered detectors that give per-sample outlier scores (the `outlier_scores` hook),
    so a plug-in that declares the hook can join the ensemble without a change here."""
    return [n for n in detector_names() if get_detector(n).has_outlier_scores()]


def outlier_components(names: Sequence[str]) -> list[Detector]:
    """The named components, with default options; a name that is not a registered detector
    with the hook is an error, as silently dropping it would change what was asked for."""
    known = outlier_detector_names()
    bad = [n for n in names if n not in known]
    if bad:
        raise AuditgameError(f"unknown ensemble component(s) {', '.join(map(repr, bad))}; "
                             f"known: {', '.join(known)}", field="ensemble.components")
    return [get_detector(n)() for n in names]


def combine(samples: list[Sample], base: Any | None = None,
            components: Sequence[Detector] = ()) -> Findings:
    """The lexical analysis plus the outlier scores of `components` (which read `base`)."""
    a = analyse_answers(samples)
    layers = [a.anomaly]
    groups = list(a.groups())
    used = ["phrase_association", "answer_clusters"]
    for det in components:
        outlier = np.asarray(det.outlier_scores(samples, base), dtype=float)
        layers.append(normal_tail_score(dataset_z(outlier)))
        groups += top_groups(outlier, det.name)
        used.append(det.name)
    pooled = np.mean([normal_tail_score(dataset_z(x)) if i else x
                      for i, x in enumerate(layers)], axis=0)
    groups += top_groups(pooled, "pooled")
    return conclude(samples, pooled, groups, a.themes, extra={"components": used})


def top_groups(x: np.ndarray, name: str, qs: tuple[float, ...] = (0.01, 0.03, 0.1)) -> list[Group]:
    """The top 1, 3 and 10 % of a per-sample outlier score as anomalous groups."""
    n = len(x)
    order = np.argsort(-np.asarray(x), kind="stable")
    out = []
    for q in qs:
        k = max(3, int(round(q * n)))
        if k < n // 2:
            m = np.zeros(n, dtype=bool)
            m[order[:k]] = True
            out.append(Group(f"{name}_top_{int(q * 100)}pct", m, f"{name} outliers"))
    return out


@register_detector
class EnsembleDetector(Detector):
    """Non-LLM data detectors combined; base-model components with `components=[...]`."""

    name = "ensemble"
    needs = frozenset({"dataset", "activations"})
    scores_samples = True

    class Params(DetectorParams):
        components: tuple[str, ...] = Field(
            (), description="detectors whose per-sample outlier scores are pooled too "
            "(those with the `outlier_scores` hook, e.g. spectral; they read the base model)")

    params: Params

    def __init__(self, params: DetectorParams | dict[str, Any] | None = None, **kwargs: Any):
        super().__init__(params, **kwargs)
        self._components = outlier_components(self.params.components)  # unknown: fail now

    def audit(self, organism: OrganismView) -> Verdict:
        base = organism.base if self._components else None
        f = combine(organism.dataset, base, self._components)
        return self.verdict(organism, score=f.score, **f.verdict_kwargs())
