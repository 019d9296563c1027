"""`activation_probe`: linear probes for generic concepts, applied to organism vs base.

Probes (logistic regression on the base's residual stream at a middle-to-late layer, mean
over a text's tokens) are
trained once per bundle on contrast statements the project wrote (honest vs deceptive,
harmless vs harmful requests, compliant vs refusing answers; see `_prompts.contrast_sets`),
never on anything from an attack. On a neutral prompt bank the organism's mean probe output
is compared with the base's, read where behaviour shows: at the end of each model's own
answer (the organism's activations on its answers vs the base's on the base's answers, as
plain text like the contrast data). The shift is placed against the bundle.
"""

from __future__ import annotations

from typing import Any

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
from auditgame.detectors.calibration import bundle_values, bundle_z, logistic_score
from auditgame.detectors.model._activations import (
    cached_answers,
    default_token_layer,
    hook_name,
    resid_post,
)
from auditgame.detectors.model._prompts import (
    N_NEUTRAL,
    N_NEW_TOKENS,
    contrast_sets,
    neutral_prompts,
)


@register_detector
class ActivationProbeDetector(Detector):
    """Shift of generic concept probes (deception, harm, refusal) from base to organism."""

    name = "activation_probe"
    needs = frozenset({"activations", "queries", "weights"})
    calibrates = True

    class Params(DetectorParams):
        n_prompts: int = Field(N_NEUTRAL, description="neutral prompts both models answer")
        max_new_tokens: int = Field(N_NEW_TOKENS, description="tokens per answer (the probes "
                                    "read the end of each model's own answer)")

    params: Params

    def prepare(self, bundle: BundleInfo) -> None:
        super().prepare(bundle)
        self.stats_: dict[str, dict[str, float]] = {}

    def _probes(self, base: Any) -> dict[str, Any]:
        """Fit one standardized logistic probe per concept on base activations (cached)."""
        probes = self.__dict__.get("probes_")
        if probes is not None:
            return probes
        from sklearn.linear_model import LogisticRegression
        from sklearn.model_selection import cross_val_score
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        layer = default_token_layer(base.model)
        probes = {"layer": layer, "concepts": {}}
        for concept, (neg, pos) in contrast_sets().items():
            acts = resid_post(base.model, base.tokenizer, neg + pos, layer, chat=False)
            x = acts[hook_name(layer) + ".mean"].numpy()
            y = np.array([0] * len(neg) + [1] * len(pos))
            clf = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=2000))
            cv = float(np.mean(cross_val_score(clf, x, y, cv=4)))
            clf.fit(x, y)
            probes["concepts"][concept] = {"clf": clf, "cv_acc": cv}
        self.probes_ = probes
        return probes

    def _stats(self, view: OrganismView) -> dict[str, float]:
        probes = self._probes(view.base)
        layer = probes["layer"]
        base = view.base
        prompts = neutral_prompts(self.params.n_prompts)
        n_new = self.params.max_new_tokens
        ans_b = [a or "." for a in cached_answers(view, prompts, n_new, of_base=True)]
        ans_o = [a or "." for a in cached_answers(view, prompts, n_new)]
        key = ("base", tuple(ans_b))
        memo = self.__dict__.setdefault("base_acts_", {})
        if key not in memo:
            memo[key] = resid_post(base.model, base.tokenizer, ans_b, layer, chat=False)
        b = memo[key]
        o = resid_post(view.model, base.tokenizer, ans_o, layer, chat=False)
        out: dict[str, float] = {}
        for concept, p in probes["concepts"].items():
            clf = p["clf"]
            fb = clf.decision_function(b[hook_name(layer) + ".mean"].numpy())
            fo = clf.decision_function(o[hook_name(layer) + ".mean"].numpy())
            out[concept] = float(np.mean(fo) - np.mean(fb))
        return out

    def audit(self, organism: OrganismView) -> Verdict:
        cache = self.__dict__.setdefault("stats_", {})
        values = bundle_values(organism, self.ids_, cache, self._stats)
        mine = cache[organism.blind_id]
        zs = {k: bundle_z(v, values[k]) for k, v in mine.items()} if len(cache) >= 3 else {}
        top = max(zs, key=lambda k: abs(zs[k])) if zs else None
        score = logistic_score(abs(zs[top])) if top else 0.5
        probes = self._probes(organism.base)
        target = None
        if top and zs[top] > 0:
            target = {"deception": "deceptive answers", "harm": "harmful content",
                      "refusal": "refusals"}.get(top)
        return self.verdict(organism, score=score, target=target, evidence={
            "shift": {k: round(v, 4) for k, v in mine.items()},
            "bundle_z": {k: round(v, 3) for k, v in zs.items()}, "top_concept": top,
            "layer": hook_name(probes["layer"]),
            "probe_cv_acc": {k: round(p["cv_acc"], 3) for k, p in probes["concepts"].items()}})
