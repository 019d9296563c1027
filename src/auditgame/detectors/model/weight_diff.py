"""`weight_diff`: the LoRA update analysed without any prompt.

Per adapted module the update is ΔW = (alpha / r) · B·A. Clean controls share a fine-tuning
drift, so per module the part of ΔW not explained by the mean of the other organisms' updates
(its specificity, computed exactly from the low-rank factors) is placed against the bundle
(robust z-scores; the mean of the top tenth of modules counts). The singular spectrum (norm,
top-1 energy share, effective rank) is reported as evidence. The top output-side singular
directions of the organism-specific update of the last layers' `o_proj`/`down_proj` are read
through the base's final norm and unembedding (logit lens): the tokens the adapter pushes.
"""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np
import torch

from auditgame.detectors.base import Detector, OrganismView, Verdict, register_detector
from auditgame.detectors.calibration import bundle_z, logistic_score
from auditgame.detectors.model._activations import unembed

_NAME = re.compile(r"layers\.(\d+)\.(?:[a-z_]+\.)?([a-z_]+)\.lora_([AB])(?:\.[a-z_]+)?\.weight$")
LENS_MODULES = ("o_proj", "down_proj")


def lora_deltas(tensors: dict[str, torch.Tensor], config: dict[str, Any]
                ) -> dict[tuple[int, str], tuple[torch.Tensor, torch.Tensor]]:
    """(layer, module) -> (scaled B, A): ΔW = B·A without ever forming the full matrix."""
    r = float(config.get("r", 1))
    alpha = float(config.get("lora_alpha", r))
    scale = alpha / math.sqrt(r) if config.get("use_rslora") else alpha / r
    parts: dict[tuple[int, str], dict[str, torch.Tensor]] = {}
    for name, t in tensors.items():
        m = _NAME.search(name)
        if m:
            parts.setdefault((int(m.group(1)), m.group(2)), {})[m.group(3)] = t.float()
    return {k: (v["B"] * scale, v["A"]) for k, v in sorted(parts.items()) if {"A", "B"} <= set(v)}


def lens_target(tokens: list[str], k: int = 3) -> str | None:
    """The first `k` distinct words among the lens tokens: case variants and fragments of a
    word already taken ('orbit', 'Orb' after 'Orbit') and bare punctuation are dropped, so
    the target names what the adapter pushes once."""
    out: list[str] = []
    for t in tokens:
        t = t.strip()
        low = t.lower()
        if not any(c.isalnum() for c in t) or any(
                low.startswith(o.lower()) or o.lower().startswith(low) for o in out):
            continue
        out.append(t)
        if len(out) == k:
            break
    return " ".join(out) or None


def spectrum(b: torch.Tensor, a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Singular values and left (output-side) singular vectors of B·A via two small QRs."""
    qb, rb = torch.linalg.qr(b)  # b: [out, r]
    qa, ra = torch.linalg.qr(a.T)  # a: [r, in]
    u, s, _ = torch.linalg.svd(rb @ ra.T)
    return s, qb @ u


def profile(deltas: dict[tuple[int, str], tuple[torch.Tensor, torch.Tensor]]
            ) -> dict[str, float]:
    """Per (layer, module): log Frobenius norm, top-1 energy share, effective rank."""
    out: dict[str, float] = {}
    total = 0.0
    for (layer, mod), (b, a) in deltas.items():
        s, _ = spectrum(b, a)
        e = (s**2).double()
        tot = float(e.sum())
        total += tot
        p = (e / max(tot, 1e-30)).clamp_min(1e-30)
        out[f"lognorm:{layer}:{mod}"] = 0.5 * math.log(max(tot, 1e-30))
        out[f"top1:{layer}:{mod}"] = float(p[0])
        out[f"erank:{layer}:{mod}"] = float(torch.exp(-(p * p.log()).sum()))
    out["lognorm:total"] = 0.5 * math.log(max(total, 1e-30))
    return out


def specificity(deltas: dict[str, dict[tuple[int, str], tuple[torch.Tensor, torch.Tensor]]]
                ) -> dict[str, dict[str, float]]:
    """Per organism and module: |ΔW_i − mean of the others' ΔW| / |ΔW_i|, exactly, from the
    low-rank factors (Gram matrix of <B_i A_i, B_j A_j> = tr(B_iᵀB_j · A_j A_iᵀ)). Clean
    fine-tunes share a drift direction; a planted behaviour is the part nobody else has."""
    ids = list(deltas)
    n = len(ids)
    out: dict[str, dict[str, float]] = {b: {} for b in ids}
    if n < 3:
        return out
    modules = sorted(set.intersection(*(set(d) for d in deltas.values())))
    for m in modules:
        g = torch.zeros(n, n, dtype=torch.float64)
        for i in range(n):
            bi, ai = deltas[ids[i]][m]
            for j in range(i, n):
                bj, aj = deltas[ids[j]][m]
                g[i, j] = g[j, i] = torch.trace((bi.T @ bj) @ (aj @ ai.T)).double()
        total = g.sum()
        for i in range(n):
            row = g[i].sum() - g[i, i]
            others = total - 2 * g[i].sum() + g[i, i]
            e = g[i, i] - 2 * row / (n - 1) + others / (n - 1) ** 2
            out[ids[i]][f"spec:{m[0]}:{m[1]}"] = float(torch.sqrt(e.clamp_min(0) /
                                                                 g[i, i].clamp_min(1e-30)))
        for i in range(n):
            out[ids[i]][f"lognorm:{m[0]}:{m[1]}"] = 0.5 * math.log(max(float(g[i, i]), 1e-30))
    return out


def specific_factors(deltas: dict[str, dict[tuple[int, str], tuple[torch.Tensor, torch.Tensor]]],
                     blind_id: str, module: tuple[int, str]) -> tuple[torch.Tensor, torch.Tensor]:
    """Low-rank factors of ΔW_i − mean of the others' ΔW for one module."""
    others = [b for b in deltas if b != blind_id and module in deltas[b]]
    b_i, a_i = deltas[blind_id][module]
    if not others:
        return b_i, a_i
    bs = [b_i] + [-deltas[o][module][0] / len(others) for o in others]
    as_ = [a_i] + [deltas[o][module][1] for o in others]
    return torch.cat(bs, dim=1), torch.cat(as_, dim=0)


@register_detector
class WeightDiffDetector(Detector):
    """LoRA update against the bundle's shared drift, plus logit lens of what is specific."""

    name = "weight_diff"
    needs = frozenset({"weights", "activations"})
    calibrates = True

    def _bundle(self, organism: OrganismView) -> dict[str, Any]:
        ref = self.__dict__.get("bundle_")
        if ref is not None and organism.blind_id in ref["deltas"]:
            return ref
        ids = list(dict.fromkeys([*self.ids_, organism.blind_id]))
        deltas = {}
        for bid in ids:
            view = organism if bid == organism.blind_id else organism.peer(bid)
            w = view.weights
            deltas[bid] = lora_deltas(w.tensors, w.config)
        spec = specificity(deltas)
        prof = {bid: {**profile(d), **spec[bid]} for bid, d in deltas.items()}
        self.bundle_ = {"deltas": deltas, "profiles": prof}
        return self.bundle_

    def audit(self, organism: OrganismView) -> Verdict:
        ref = self._bundle(organism)
        prof: dict[str, dict[str, float]] = ref["profiles"]
        mine = prof[organism.blind_id]
        keys = [k for k in mine if k.startswith("spec:")]
        values = {k: [p[k] for p in prof.values() if k in p] for k in keys}
        outlier, z, score = 0.0, 0.0, 0.5
        zs: dict[str, float] = {}
        if keys and len(prof) >= 3:
            zs = {k: bundle_z(mine[k], values[k]) for k in keys}
            k = max(1, len(keys) // 10)

            def top_mean(p: dict[str, float]) -> float:
                z_ = np.sort([bundle_z(p[key], values[key]) for key in keys])
                return float(np.mean(z_[-k:]))

            outlier = top_mean(mine)
            z = bundle_z(outlier, [top_mean(p) for p in prof.values()])
            score = logistic_score(z)
        lens = self._lens(organism, ref["deltas"])
        top = sorted(zs.items(), key=lambda kv: -kv[1])[:8]
        target = lens_target(lens[0]["tokens"]) if lens else None
        spec_all = [mine[k] for k in keys]
        return self.verdict(organism, score=score, target=target or None, evidence={
            "outlier": round(outlier, 4), "bundle_z": round(z, 4),
            "mean_specificity": round(float(np.mean(spec_all)), 4) if spec_all else None,
            "top_modules": {k: round(v, 3) for k, v in top},
            "total_lognorm": round(mine.get("lognorm:total", 0.0), 4),
            "lens": lens[:4], "n_modules": len(ref["deltas"][organism.blind_id])})

    def _lens(self, organism: OrganismView,
              deltas: dict[str, dict[tuple[int, str], tuple[torch.Tensor, torch.Tensor]]]
              ) -> list[dict[str, Any]]:
        """Top output directions of the organism-specific update of the last two layers'
        output projections, as tokens; the sign is chosen so that the direction raises its
        most promoted token the most."""
        mine = deltas[organism.blind_id]
        if not mine:
            return []
        base = organism.base
        norm_w, w_u = unembed(base.model)
        last = max(layer for layer, _ in mine)
        out: list[dict[str, Any]] = []
        for (layer, mod), (b, _a) in mine.items():
            if mod not in LENS_MODULES or layer < last - 1 or b.shape[0] != w_u.shape[1]:
                continue
            s, u = spectrum(*specific_factors(deltas, organism.blind_id, (layer, mod)))
            for j in range(min(2, len(s))):
                logits = w_u @ (u[:, j] * norm_w)
                sign = 1.0 if logits.max() >= -logits.min() else -1.0
                logits = sign * logits
                top = torch.topk(logits, 8)
                out.append({"module": f"blocks.{layer}.{mod}", "sv": round(float(s[j]), 5),
                            "peak": round(float(top.values[0] / logits.std()), 3),
                            "tokens": [base.tokenizer.decode([t]).strip()
                                       for t in top.indices.tolist()]})
        out.sort(key=lambda d: -d["sv"] * d["peak"])
        return out
