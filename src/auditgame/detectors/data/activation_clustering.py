"""`activation_clustering` (Chen et al. 2019) on base-model representations.

Chen et al. split each label's activations into two clusters and call the smaller one poison
when it is small and well separated (relative size, silhouette). A dataset has no labels, and
a 2-means split of a whole dataset follows its topics (on BackdoorLLM it ranked poison below
chance). So the representations (answer tokens read in the context of their prompt,
`_representations.answer_reps`, robustly standardised, reduced to `dims` principal
components) are split by k-means into `k` clusters (default 8) and Chen's two criteria are
applied per cluster: a sample's score is (1 - its cluster's share of the data) + 0.5 x its
silhouette, so members of a small, well-separated cluster score highest. Clusters under 10 %
of the data and the top 1/3/10 % go through the shared association test, so a trigger is
claimed only at a Bonferroni-corrected p < 1e-3.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pydantic import Field

from auditgame.detectors.base import (
    Detector,
    DetectorParams,
    OrganismView,
    Verdict,
    register_detector,
)
from auditgame.detectors.calibration import dataset_z, normal_tail_score
from auditgame.detectors.data._association import Group
from auditgame.detectors.data._findings import conclude
from auditgame.detectors.data._representations import answer_reps, standardise
from auditgame.detectors.data.ensemble import top_groups
from auditgame.organisms.data import Sample

SMALL = 0.10  # clusters under this share of the data are tested as groups
DIMS = 10
K = 8


@dataclass
class Cluster:
    """One k-means cluster: its size and mean silhouette."""

    size: int
    share: float
    silhouette: float
    mask: np.ndarray = field(repr=False)


def clusters(samples: list[Sample], base: Any, dims: int = DIMS,
             k: int = K) -> tuple[np.ndarray, list[Cluster]]:
    """Per-sample score and every cluster."""
    from sklearn.cluster import KMeans
    from sklearn.metrics import silhouette_samples

    Z = standardise(answer_reps(samples, base))
    n = len(Z)
    _, s, vt = np.linalg.svd(Z, full_matrices=False)
    R = Z @ vt[: min(dims, len(s))].T
    k = int(min(k, max(2, n // 10)))
    if n < 6:
        return np.zeros(n), []
    lab = KMeans(k, n_init=4, random_state=0).fit_predict(R)
    counts = np.bincount(lab, minlength=k)
    sil = silhouette_samples(R, lab) if len(set(lab.tolist())) > 1 else np.zeros(n)
    score = (1.0 - counts[lab] / n) + 0.5 * sil
    out = [Cluster(int(counts[c]), float(counts[c] / n),
                   float(sil[lab == c].mean()) if counts[c] else 0.0, lab == c)
           for c in range(k)]
    return score, out


@register_detector
class ActivationClusteringDetector(Detector):
    """Small, well-separated clusters of base-model sample representations."""

    name = "activation_clustering"
    needs = frozenset({"dataset", "activations"})
    scores_samples = True
    cost = "moderate"

    class Params(DetectorParams):
        dims: int = Field(DIMS, description="principal components the representations are "
                          "reduced to before clustering")
        k: int = Field(K, description="k-means clusters (at most a tenth of the samples)")

    params: Params

    def outlier_scores(self, samples: list[Sample], base: Any) -> np.ndarray:
        """Small, well-separated cluster membership per sample: the ensemble's hook."""
        return clusters(samples, base, self.params.dims, self.params.k)[0]

    def audit(self, organism: OrganismView) -> Verdict:
        data = organism.dataset
        score, cl = clusters(data, organism.base, self.params.dims, self.params.k)
        groups = top_groups(score, "activation_clustering")
        groups += [Group(f"small_cluster_{i}", c.mask, "small k-means cluster")
                   for i, c in enumerate(cl) if c.share < SMALL and c.size >= 3]
        f = conclude(data, normal_tail_score(dataset_z(score)), groups, None,
                     extra={"clusters": [{"size": c.size, "share": round(c.share, 4),
                                          "silhouette": round(c.silhouette, 3)}
                                         for c in sorted(cl, key=lambda c: c.size)]})
        return self.verdict(organism, score=f.score, **f.verdict_kwargs())
