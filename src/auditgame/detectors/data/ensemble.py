"""`ensemble`: the other non-LLM data detectors combined, calibrated on clean data only.

Each component's sample scores become tail probabilities against the component's own
within-dataset null (median and spread of the dataset, which is mostly clean), the pooled
anomaly is their mean, and every component's anomalous groups plus the pooled top tail go
through one association test, Bonferroni-corrected over all of them together; so the claim
bar keeps its false-alarm bound however many components are combined.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from auditgame.detectors.base import Detector, OrganismView, Verdict, register_detector
from auditgame.detectors.data._answers import analyse_answers
from auditgame.detectors.data._assoc import Group
from auditgame.detectors.data._findings import Findings, conclude
from auditgame.detectors.data._text import robust_z, tail
from auditgame.organisms.data import Sample

BASE_COMPONENTS = ("spectral", "activation_clustering", "perplexity_outliers")


def combine(samples: list[Sample], base: Any | None = None,
            components: tuple[str, ...] = ()) -> Findings:
    """The lexical analysis plus any base-model components named in `components`."""
    a = analyse_answers(samples)
    layers = [a.anomaly]
    groups = list(a.groups())
    used = ["phrase_association", "answer_clusters"]
    for name in components:
        if name not in BASE_COMPONENTS or base is None:
            continue
        from importlib import import_module

        mod = import_module(f"auditgame.detectors.data.{name}")
        outlier = np.asarray(mod.outlier_scores(samples, base), dtype=float)
        layers.append(tail(robust_z(outlier)))
        groups += top_groups(outlier, name)
        used.append(name)
    pooled = np.mean([tail(robust_z(x)) if i else x for i, x in enumerate(layers)], axis=0)
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

    def audit(self, organism: OrganismView) -> Verdict:
        comps = tuple(self.kwargs.get("components", ()))
        base = organism.base if any(c in BASE_COMPONENTS for c in comps) else None
        f = combine(organism.dataset, base, comps)
        return self.verdict(organism, score=f.score, **f.verdict_kwargs())
