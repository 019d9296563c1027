"""`features`: a small sparse autoencoder on activation differences organism − base.

At one middle-to-late layer, every token of a neutral prompt bank gives a difference vector
(same input through both models), minus the bundle's median difference (the drift every
fine-tune shares). A seeded SAE (ReLU encoder, unit-norm decoder, L1 penalty,
a few hundred Adam steps) splits those differences into features; each is reported with the
tokens where it fires most and the tokens its decoder direction promotes (logit lens). The
score places the difference energy and how much of it one feature carries against the bundle:
a planted behaviour tends to be one strong direction, fine-tuning drift many weak ones.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
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
    bundle_pairs,
    default_token_layer,
    hook_name,
    lens_tokens,
    specific_diff,
)
from auditgame.detectors.model._prompts import N_NEUTRAL, neutral_prompts


def train_sae(x: torch.Tensor, n_latents: int, steps: int, l1: float, seed: int,
              batch: int = 512, lr: float = 3e-3) -> tuple[torch.Tensor, torch.Tensor,
                                                             torch.Tensor]:
    """(W_enc [d, m], b_enc [m], W_dec [m, d] with unit rows) for a ReLU SAE on `x`."""
    g = torch.Generator().manual_seed(seed)
    n, d = x.shape
    w_dec = torch.randn(n_latents, d, generator=g)
    w_dec = w_dec / w_dec.norm(dim=-1, keepdim=True)
    w_enc = w_dec.T.clone().contiguous().requires_grad_(True)
    w_dec.requires_grad_(True)
    b_enc = torch.zeros(n_latents, requires_grad=True)
    b_dec = x.mean(0).clone().requires_grad_(True)
    opt = torch.optim.Adam([w_enc, b_enc, w_dec, b_dec], lr=lr)
    with torch.enable_grad():
        for _ in range(steps):
            idx = torch.randint(0, n, (min(batch, n),), generator=g)
            xb = x[idx]
            f = torch.relu((xb - b_dec) @ w_enc + b_enc)
            dec = w_dec / w_dec.norm(dim=-1, keepdim=True)
            rec = f @ dec + b_dec
            loss = ((rec - xb) ** 2).sum(-1).mean() + l1 * f.sum(-1).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
    dec = (w_dec / w_dec.norm(dim=-1, keepdim=True)).detach()
    return w_enc.detach(), (b_enc - b_dec.detach() @ w_enc).detach(), dec


@register_detector
class FeaturesDetector(Detector):
    """Sparse dictionary of organism − base differences: top features and their tokens."""

    name = "features"
    needs = frozenset({"activations", "weights"})
    calibrates = True

    class Params(DetectorParams):
        n_prompts: int = Field(N_NEUTRAL, description="neutral prompts both models read")
        last_tokens: int = Field(8, description="tokens at the end of each prompt that are "
                                 "kept (where the answer is decided)")
        n_latents: int = Field(128, description="SAE dictionary size")
        steps: int = Field(200, description="SAE training steps (Adam)")
        l1: float = Field(0.05, description="SAE L1 sparsity penalty")

    params: Params

    def prepare(self, bundle: BundleInfo) -> None:
        super().prepare(bundle)
        self.stats_: dict[str, dict[str, float]] = {}
        self.found_: dict[str, list[dict[str, Any]]] = {}
        self.acts_: dict = {}

    def _analyse(self, view: OrganismView) -> dict[str, float]:
        base = view.base
        layer = default_token_layer(base.model)
        store = self.__dict__.setdefault("acts_", {})
        texts = neutral_prompts(self.params.n_prompts)
        bundle_pairs(view, self.ids_, store, texts, layer)
        name = hook_name(layer) + ".tokens"
        diff, b_acts = specific_diff(store, view.blind_id, name)
        ids = store[view.blind_id][0]["token_ids"]
        # the end of each prompt (end of the user turn, assistant header): where the answer
        # is being decided; the shared system prompt before it adds only repeated rows
        keep = store[view.blind_id][0]["token_rpos"] < self.params.last_tokens
        diff, b_acts, ids = diff[keep], b_acts[keep], ids[keep]
        base_scale = float(b_acts.norm(dim=-1).mean()) + 1e-8
        scale = float(diff.norm(dim=-1).mean()) + 1e-8
        x = diff / scale
        p = self.params
        w_enc, b_enc, w_dec = train_sae(x, p.n_latents, p.steps, p.l1, seed=0)
        f = torch.relu(x @ w_enc + b_enc)  # [T, m]
        energy = (f**2).sum(0)  # decoder rows have unit norm
        total = float(energy.sum()) + 1e-12
        order = torch.argsort(energy, descending=True).tolist()
        tok = base.tokenizer
        found: list[dict[str, Any]] = []
        for j in order[:5]:
            acts = f[:, j]
            top_pos = torch.topk(acts, min(8, len(acts))).indices.tolist()
            found.append({
                "feature": j, "energy_share": round(float(energy[j]) / total, 4),
                "density": round(float((acts > 0).float().mean()), 4),
                "top_tokens": list(dict.fromkeys(tok.decode([int(ids[p])]).strip()
                                                 for p in top_pos)),
                "promotes": [t.strip() for t in lens_tokens(base, w_dec[j], 8)]})
        self.__dict__.setdefault("found_", {})[view.blind_id] = found
        rec = f @ w_dec
        fvu = float(((rec - x) ** 2).sum() / ((x - x.mean(0)) ** 2).sum().clamp_min(1e-12))
        shares = (energy / total).numpy()
        return {"rel_energy": scale / base_scale, "top1_share": float(shares.max()),
                "top3_share": float(np.sort(shares)[-3:].sum()), "fvu": fvu}

    def audit(self, organism: OrganismView) -> Verdict:
        cache = self.__dict__.setdefault("stats_", {})
        values = bundle_values(organism, self.ids_, cache, self._analyse)
        mine = cache[organism.blind_id]
        keys = ("rel_energy", "top1_share", "top3_share")
        zs = {k: bundle_z(mine[k], values[k]) for k in keys} if len(cache) >= 3 else {}
        z = max(zs.values()) if zs else 0.0
        found = self.found_[organism.blind_id]
        target = " ".join(found[0]["promotes"][:5]) if found else None
        return self.verdict(organism, score=logistic_score(z) if zs else 0.5, target=target,
                            evidence={"stats": {k: round(v, 4) for k, v in mine.items()},
                                      "bundle_z": {k: round(v, 3) for k, v in zs.items()},
                                      "features": found})
