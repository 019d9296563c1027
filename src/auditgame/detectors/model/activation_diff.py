"""`activation_diff`: residual-stream difference organism − base on neutral prompts.

Per layer, the difference at the last prompt token (where the answer starts) has a part every
fine-tune of the bundle shares (the bundle's median difference: plain fine-tuning drift) and a
part specific to this organism. The specific part's size, relative to the base's residual
norm, is placed against the bundle, and its mean is read through the base's logit lens (the
tokens this organism promotes that the others do not).
"""

from __future__ import annotations

import numpy as np
from pydantic import Field

from auditgame.detectors.base import (
    BundleInfo,
    Detector,
    DetectorParams,
    OrganismView,
    Verdict,
    register_detector,
)
from auditgame.detectors.calibration import bundle_z, logistic_score
from auditgame.detectors.model._activations import (
    bundle_pairs,
    hook_name,
    lens_tokens,
    n_layers,
    specific_diff,
)
from auditgame.detectors.model._prompts import N_NEUTRAL, neutral_prompts


@register_detector
class ActivationDiffDetector(Detector):
    """Organism-specific residual difference per layer, logit lens, size against the bundle."""

    name = "activation_diff"
    needs = frozenset({"activations", "weights"})
    calibrates = True

    class Params(DetectorParams):
        n_prompts: int = Field(N_NEUTRAL, description="neutral prompts both models read")

    params: Params

    def prepare(self, bundle: BundleInfo) -> None:
        super().prepare(bundle)
        self.acts_: dict = {}

    def audit(self, organism: OrganismView) -> Verdict:
        store = self.__dict__.setdefault("acts_", {})
        texts = neutral_prompts(self.params.n_prompts)
        bundle_pairs(organism, self.ids_, store, texts)
        base = organism.base
        layers = n_layers(base.model)
        devs: dict[str, list[float]] = {}
        for bid in store:
            for i in range(layers):
                d, b = specific_diff(store, bid, hook_name(i))
                devs.setdefault(bid, []).append(float(d.norm() / (b.norm() + 1e-8)))
        mine = devs[organism.blind_id]
        zs = [bundle_z(mine[i], [devs[b][i] for b in devs]) for i in range(layers)]
        z = float(np.mean(sorted(zs, reverse=True)[:2])) if len(store) >= 3 else 0.0
        score = logistic_score(z) if len(store) >= 3 else 0.5
        lens = []
        for i in range(max(0, layers - 3), layers):
            d, _ = specific_diff(store, organism.blind_id, hook_name(i))
            v = d.mean(0)
            lens.append({"layer": hook_name(i), "specific_rel_norm": round(mine[i], 5),
                         "promoted": [t.strip() for t in lens_tokens(base, v, 8)],
                         "suppressed": [t.strip() for t in lens_tokens(base, -v, 5)]})
        promoted = [t for t in lens[-1]["promoted"] if t]
        return self.verdict(organism, score=score, target=" ".join(promoted[:5]) or None,
                            evidence={"bundle_z": round(z, 4), "lens": lens,
                                      "layer_z": [round(x, 3) for x in zs]})
