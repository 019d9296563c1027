"""`activation_clustering` (Chen et al. 2019) on base-model representations.

Chen et al. split each label's activations into two clusters and call the smaller one poison
when it is small and well separated. A dataset has no labels, so the representations
(`_reps`, robustly standardised, reduced to `dims` principal components) are first split into
coarse groups by k-means (the stand-in for labels); each group is 2-means clustered and its
small cluster's relative size and silhouette recorded. A sample's score is how much nearer it
is to its group's small centroid than to the big one, plus the silhouette of a small cluster
(< 35 % of its group). Small clusters and the top 1/3/10 % go through the shared association
test, so a trigger is claimed only at a Bonferroni-corrected p < 1e-3.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from auditgame.detectors.base import Detector, OrganismView, Verdict, register_detector
from auditgame.detectors.data._assoc import Group
from auditgame.detectors.data._findings import conclude
from auditgame.detectors.data._reps import representations, standardise
from auditgame.detectors.data._text import robust_z, tail
from auditgame.detectors.data.ensemble import top_groups
from auditgame.organisms.data import Sample

SMALL = 0.35  # Chen et al.: a cluster under ~35 % of its class is suspicious
DIMS = 10


@dataclass
class Split:
    """One coarse group's 2-means split."""

    size: int
    small_size: int
    silhouette: float
    small: np.ndarray = field(repr=False)  # mask over the dataset

    @property
    def rel(self) -> float:
        return self.small_size / max(self.size, 1)


def clusters(samples: list[Sample], base: Any, dims: int = DIMS,
             groups: int | None = None) -> tuple[np.ndarray, list[Split]]:
    """Per-sample score and every group's split."""
    from sklearn.cluster import KMeans
    from sklearn.metrics import silhouette_score

    Z = standardise(representations(samples, base))
    n = len(Z)
    _, s, vt = np.linalg.svd(Z, full_matrices=False)
    R = Z @ vt[: min(dims, len(s))].T
    g = groups if groups is not None else int(np.clip(n // 200, 1, 6))
    coarse = (KMeans(g, n_init=4, random_state=0).fit_predict(R) if g > 1
              else np.zeros(n, dtype=int))
    score = np.zeros(n)
    splits: list[Split] = []
    for c in range(g):
        rows = np.flatnonzero(coarse == c)
        if rows.size < 6:
            continue
        km = KMeans(2, n_init=4, random_state=0).fit(R[rows])
        lab = km.labels_
        counts = np.bincount(lab, minlength=2)
        sm = int(np.argmin(counts))
        d = np.linalg.norm(R[rows][:, None, :] - km.cluster_centers_[None], axis=2)
        margin = (d[:, 1 - sm] - d[:, sm]) / (d.sum(axis=1) + 1e-9)
        sil = float(silhouette_score(R[rows], lab, sample_size=min(2000, rows.size),
                                     random_state=0)) if counts.min() > 1 else 0.0
        mask = np.zeros(n, dtype=bool)
        mask[rows[lab == sm]] = True
        sp = Split(int(rows.size), int(counts[sm]), sil, mask)
        splits.append(sp)
        score[rows] = margin + (sil * (lab == sm) if sp.rel < SMALL else 0.0)
    return score, splits


def outlier_scores(samples: list[Sample], base: Any) -> np.ndarray:
    """The ensemble's component hook."""
    return clusters(samples, base)[0]


@register_detector
class ActivationClusteringDetector(Detector):
    """Small, well-separated 2-means clusters of base-model sample representations."""

    name = "activation_clustering"
    needs = frozenset({"dataset", "activations"})
    scores_samples = True
    cost = "moderate"

    def audit(self, organism: OrganismView) -> Verdict:
        data = organism.dataset
        score, splits = clusters(data, organism.base, int(self.kwargs.get("dims", DIMS)))
        groups = top_groups(score, "activation_clustering")
        groups += [Group(f"small_cluster_{i}", sp.small, "small 2-means cluster")
                   for i, sp in enumerate(splits) if sp.rel < SMALL and sp.small_size >= 3]
        f = conclude(data, tail(robust_z(score)), groups, None,
                     extra={"splits": [{"size": sp.size, "small": sp.small_size,
                                        "relative_size": round(sp.rel, 3),
                                        "silhouette": round(sp.silhouette, 3)}
                                       for sp in splits]})
        return self.verdict(organism, score=f.score, **f.verdict_kwargs())
