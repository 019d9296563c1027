"""`spectral`: spectral signatures (Tran et al. 2018) on base-model representations.

Each sample is the base model's residual stream mean-pooled over its answer tokens, read in
the context of the prompt (`_representations.answer_reps`);
representations are centred and robustly scaled, and a sample's outlier score is its squared
projection on a top singular vector: the largest over the top `K` = 3 (Tran et al. use
the top one within each label; a dataset has no labels, so its biggest direction is usually
topic), each normalised by its singular value. Poisoned samples share a direction the
clean ones do not, so they sit in the tail. The top 1/3/10 % then go through the shared
association test, so a trigger is claimed only at a Bonferroni-corrected p < 1e-3, which
bounds clean-data claims.
"""

from __future__ import annotations

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
from auditgame.detectors.data._findings import conclude
from auditgame.detectors.data._representations import answer_reps, standardise
from auditgame.detectors.data.ensemble import top_groups
from auditgame.organisms.data import Sample

K = 3  # top directions; Tran et al. use 1 per label, an unlabelled dataset mixes many "labels"


def spectrum(samples: list[Sample], base: Any, k: int = K) -> tuple[np.ndarray, np.ndarray]:
    """(per-sample outlier score, singular values) of the standardised representations."""
    Z = standardise(answer_reps(samples, base))
    _, s, vt = np.linalg.svd(Z, full_matrices=False)
    k = max(1, min(k, len(s)))
    proj = Z @ vt[:k].T / np.maximum(s[:k], 1e-9) * np.sqrt(len(Z))
    return (proj**2).max(axis=1), s


def sv_ratio(s: np.ndarray) -> float:
    """Top squared singular value over the mean of the next nine: how much one direction
    dominates (a small poisoned subpopulation adds a dominant direction)."""
    if len(s) < 3:
        return 1.0
    return float(s[0] ** 2 / np.mean(s[1:10] ** 2))


@register_detector
class SpectralDetector(Detector):
    """Outliers along the top singular direction of base-model sample representations."""

    name = "spectral"
    needs = frozenset({"dataset", "activations"})
    scores_samples = True
    cost = "moderate"

    class Params(DetectorParams):
        k: int = Field(K, description="top singular directions a sample is projected on "
                       "(its score is the largest squared projection)")

    params: Params

    def outlier_scores(self, samples: list[Sample], base: Any) -> np.ndarray:
        """Squared projection on the top singular vector(s): the ensemble's component hook."""
        return spectrum(samples, base, self.params.k)[0]

    def audit(self, organism: OrganismView) -> Verdict:
        data = organism.dataset
        score, s = spectrum(data, organism.base, self.params.k)
        f = conclude(data, normal_tail_score(dataset_z(score)), top_groups(score, "spectral"), None,
                     extra={"top_sv_ratio": round(sv_ratio(s), 3),
                            "top_1pct_score_over_median": round(
                                float(np.quantile(score, 0.99) / max(np.median(score), 1e-9)),
                                2)})
        return self.verdict(organism, score=f.score, **f.verdict_kwargs())
