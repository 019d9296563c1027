"""Calibration: how a raw statistic becomes a comparable z-score, and a z-score a score.

Two references, with different floors because they fail differently:

- against the bundle (`bundle_z`, `standard_z`): one value per organism, a handful of
  organisms, often nearly identical (clean controls share the same fine-tuning drift), so
  the spread needs a floor or noise between near-twins reads as a huge z-score;
- against the dataset (`dataset_z`): one value per training sample, thousands of them and
  mostly clean, so the dataset is its own null; the floor only keeps constant or heavily
  tied data (MAD 0) from dividing by zero.

Only the bundle or the dataset is used, never the key. `bundle_values` gathers a statistic
over every organism lazily, once each, through `OrganismView.peer`.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from auditgame.detectors.view import OrganismView


def bundle_z(value: float, values: list[float], floor: float = 0.0) -> float:
    """Robust z of one organism's `value` among the bundle's `values`: (value - median) /
    (1.4826 MAD). The scale is at least `floor` (a detector's smallest meaningful spread
    for the statistic), 5 % of |median| (a bundle of near-identical organisms would
    otherwise turn rounding noise into outliers) and 1e-8 (no division by zero)."""
    arr = np.asarray(values, dtype=float)
    med = float(np.median(arr))
    mad = float(np.median(np.abs(arr - med))) * 1.4826
    scale = max(mad, floor, 0.05 * abs(med), 1e-8)
    return (value - med) / scale


def standard_z(values: dict[str, float]) -> dict[str, float]:
    """Plain within-bundle z-scores (mean, standard deviation) per organism. For leak
    features, where the sound case is every organism identical: then everyone gets 0, and
    no floor is wanted, as any spread at all is the leak."""
    arr = np.array(list(values.values()), dtype=float)
    sd = float(arr.std())
    if sd == 0.0 or not np.isfinite(sd):
        return dict.fromkeys(values, 0.0)
    mu = float(arr.mean())
    return {k: (v - mu) / sd for k, v in values.items()}


def dataset_z(x: np.ndarray) -> np.ndarray:
    """Robust z of every sample's score against its own dataset: (x - median) / (1.4826 MAD).
    The spread is at least 10 % of the standard deviation (scores tied at the median, e.g.
    mostly zeros, give MAD 0 although the tail varies) and 1e-6 (constant data gives 0)."""
    x = np.asarray(x, dtype=float)
    if x.size == 0:
        return x
    med = float(np.median(x))
    mad = 1.4826 * float(np.median(np.abs(x - med)))
    spread = max(mad, 0.1 * float(np.std(x)), 1e-6)
    return (x - med) / spread


def logistic_score(z: float, shift: float = 2.0, slope: float = 1.0) -> float:
    """A bundle z-score to (0, 1) by a logistic: a bundle-typical organism (z ~ 0) scores
    ~0.12, z = `shift` scores 0.5 and z = 5 ~0.95, so only a clear outlier is flagged."""
    return 1.0 / (1.0 + math.exp(-slope * (z - shift)))


def normal_tail_score(z: np.ndarray) -> np.ndarray:
    """Per-sample z-scores to [0, 1] by the standard normal CDF, 1 - P(Z >= z): a sample's
    score is how far into the one-sided upper tail it sits, comparable across detectors."""
    from scipy.special import ndtr

    return np.clip(ndtr(np.asarray(z, dtype=float)), 0.0, 1.0)


def bundle_values(organism: OrganismView, ids: list[str] | None,
                  cache: dict[str, dict[str, float]],
                  compute: Callable[[OrganismView], dict[str, float]]) -> dict[str, list[float]]:
    """Per statistic, the values of every organism of the bundle (computed once each and
    kept in `cache`), so one organism's statistic can be placed among its peers'."""
    if organism.blind_id not in cache:
        cache[organism.blind_id] = compute(organism)
    for bid in ids or []:
        if bid not in cache:
            cache[bid] = compute(organism.peer(bid))
    out: dict[str, list[float]] = {}
    for stats in cache.values():
        for k, v in stats.items():
            out.setdefault(k, []).append(v)
    return out
