"""Bundle-relative calibration: a statistic becomes a score by where it sits among all
organisms of the bundle, so plain fine-tuning drift (shared by clean controls) is not flagged.

Only the bundle is used (every organism, never the key). Values are computed lazily, once per
organism, through `OrganismView.peer`, and kept on the detector instance.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from auditgame.detectors.base import OrganismView


def robust_z(value: float, values: list[float], floor: float = 0.0) -> float:
    """(value - median) / (1.4826 * MAD) over the bundle, with a floor on the scale so that a
    bundle of near-identical organisms does not blow up."""
    arr = np.asarray(values, dtype=float)
    med = float(np.median(arr))
    mad = float(np.median(np.abs(arr - med))) * 1.4826
    scale = max(mad, floor, 0.05 * abs(med), 1e-8)
    return (value - med) / scale


def z_to_score(z: float, shift: float = 2.0, slope: float = 1.0) -> float:
    """A bundle-typical organism (z ~ 0) scores ~0.12; z = 2 scores 0.5; z = 5 ~0.95."""
    return 1.0 / (1.0 + math.exp(-slope * (z - shift)))


def bundle_values(organism: OrganismView, ids: list[str] | None,
                  cache: dict[str, dict[str, float]],
                  compute: Callable[[OrganismView], dict[str, float]]) -> dict[str, list[float]]:
    """Per statistic, the values of every organism of the bundle (computed once each)."""
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
