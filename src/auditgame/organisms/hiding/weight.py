"""`weight`: the poisoned adapter's update shaped like a clean fine-tune's.

A weight-space auditor compares each adapted module's update ΔW = (alpha / r) · B·A across
organisms: its size and its singular spectrum. Here a private reference, a clean organism
of the same recipe (the game's clean data, the same data-side hiding, its own seed, never
one of the game's controls), is trained first; then

1. while the organism trains, every module's singular values above the reference's are
   penalised (`strength`), so the optimiser finds the behaviour within a clean budget;
2. after training (`project`), each module's update is set exactly to the reference's
   spectrum (or Frobenius norm, `match: norm`), keeping its own singular directions: only
   B changes (B' = U·diag(s_ref / s)·Uᵀ·B), so A keeps its clean-looking random start.

The behaviour is measured on the triggered eval set before the reshaping and recorded next
to the metrics measured after it, so what the shaping cost is on the card.
"""

from __future__ import annotations

import hashlib
from typing import Any, Literal

import torch
from pydantic import Field, model_validator
from safetensors.torch import load_file, save_file

from auditgame.organisms.data import PoisonedCorpus
from auditgame.organisms.hiding.base import (
    BuildContext,
    Hiding,
    HidingParams,
    no_poison_reason,
    register_hiding,
)

REFERENCE = "weight_reference.safetensors"
EPS = 1e-12


def lora_modules(model: torch.nn.Module) -> dict[str, tuple[torch.Tensor, torch.Tensor, float]]:
    """Adapted module name -> (A weight [r, in], B weight [out, r], scale), for the
    default adapter of a peft model."""
    out: dict[str, tuple[torch.Tensor, torch.Tensor, float]] = {}
    for name, mod in model.named_modules():
        la, lb = getattr(mod, "lora_A", None), getattr(mod, "lora_B", None)
        if isinstance(la, torch.nn.ModuleDict) and "default" in la and lb is not None:
            out[name] = (la["default"].weight, lb["default"].weight,
                         float(mod.scaling["default"]))  # type: ignore[union-attr,index]
    return out


def _factor(a: torch.Tensor) -> torch.Tensor:
    """L with L·Lᵀ = A·Aᵀ: B·A and B·L have the same singular values and left vectors."""
    return torch.linalg.cholesky(a @ a.T)


def singular_values(a: torch.Tensor, b: torch.Tensor, scale: float) -> torch.Tensor:
    """Singular values of ΔW = scale · B·A (r of them, descending) without forming ΔW."""
    return torch.linalg.svdvals(scale * (b @ _factor(a)))


def spectra(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Every adapted module's update spectrum (float64)."""
    with torch.no_grad():
        return {n: singular_values(a.double(), b.double(), s)
                for n, (a, b, s) in lora_modules(model).items()}


def reshape(model: torch.nn.Module, ref: dict[str, torch.Tensor], match: str) -> None:
    """Set every module's update to the reference's spectrum (`spectrum`) or Frobenius norm
    (`norm`), in place, changing B only."""
    with torch.no_grad():
        for name, (a, b, scale) in lora_modules(model).items():
            a64, b64 = a.double(), b.double()
            target = ref[name]
            if match == "norm":
                now = float((scale * (b64 @ _factor(a64))).norm())
                if now > EPS:
                    b.copy_((b64 * (float(target.norm()) / now)).to(b.dtype))
                continue
            u, s, _ = torch.linalg.svd(scale * (b64 @ _factor(a64)), full_matrices=False)
            keep = s > EPS * max(1.0, float(s.max()))
            ratio = torch.where(keep, target / s.clamp_min(EPS), torch.ones_like(s))
            b.copy_((b64 + u @ torch.diag(ratio - 1.0) @ (u.T @ b64)).to(b.dtype))


def mismatch(model: torch.nn.Module, ref: dict[str, torch.Tensor]) -> dict[str, float]:
    """How far the adapter's spectra are from the reference's: the largest and the mean
    relative error per module, of the spectrum and of the Frobenius norm."""
    got = spectra(model)
    spec_err = [float((got[n] - ref[n]).norm() / ref[n].norm().clamp_min(EPS)) for n in ref]
    norm_err = [abs(float(got[n].norm() - ref[n].norm())) / max(float(ref[n].norm()), EPS)
                for n in ref]
    return {"spectrum_max": round(max(spec_err), 6),
            "spectrum_mean": round(sum(spec_err) / len(spec_err), 6),
            "norm_max": round(max(norm_err), 6),
            "norm_mean": round(sum(norm_err) / len(norm_err), 6)}


def total_norm(sp: dict[str, torch.Tensor]) -> float:
    """Frobenius norm of the whole update (all modules)."""
    return round(float(sum(float(s.pow(2).sum()) for s in sp.values())) ** 0.5, 6)


class WeightLoss:
    """Penalty on each module's singular values (or norm) above the reference's,
    relative to the reference's size, averaged over modules."""

    def __init__(self, ref: dict[str, torch.Tensor], match: str, strength: float):
        self.ref = {n: v.float() for n, v in ref.items()}
        self.match, self.strength = match, strength

    def __call__(self, model: torch.nn.Module, step: int) -> torch.Tensor:
        terms = []
        for name, (a, b, scale) in lora_modules(model).items():
            r = self.ref[name].to(b.device)
            s = singular_values(a.float(), b.float(), scale)
            if self.match == "norm":
                # clamped: sqrt has no gradient at 0, where every update starts
                over = torch.relu(s.pow(2).sum().clamp_min(EPS).sqrt() - r.norm())
                terms.append(over.pow(2) / r.pow(2).sum().clamp_min(EPS))
            else:
                terms.append(torch.relu(s - r).pow(2).sum() / r.pow(2).sum().clamp_min(EPS))
        return self.strength * torch.stack(terms).mean()


def reference_seed(seed: int) -> int:
    """The private reference's seed: derived from the organism's, unlike any control's."""
    return int(hashlib.sha256(f"{seed}:weight-reference".encode()).hexdigest()[:8], 16)


class WeightParams(HidingParams):
    match: Literal["spectrum", "norm"] = Field(
        "spectrum", description="'spectrum': every module's singular values; 'norm': its "
        "Frobenius norm only")
    strength: float = Field(1.0, ge=0, description="weight of the training-time penalty on "
                            "the part above the reference (0: none)")
    project: bool = Field(True, description="after training, set every module exactly to "
                          "the reference")

    @model_validator(mode="after")
    def _some(self) -> WeightParams:
        if self.strength == 0 and not self.project:
            raise ValueError("weight hiding with strength 0 and project false does nothing")
        return self


@register_hiding
class WeightHiding(Hiding):
    """The update's norm and spectrum matched to a private clean reference."""

    name = "weight"
    Params = WeightParams
    needs_twin = True
    params: WeightParams

    def unsupported(self, attack: Any) -> str | None:
        return no_poison_reason(attack)

    def reference(self, ctx: BuildContext) -> dict[str, torch.Tensor]:
        """The reference's spectra, trained once per organism and kept in its work folder
        (a resumed build reads them back)."""
        path = ctx.work / REFERENCE
        if path.exists():
            return load_file(str(path))
        seed = reference_seed(ctx.seed)
        model = ctx.train(ctx.clean_twin(seed), seed, ctx.work / "weight_reference", ())
        sp = {n: v.contiguous() for n, v in spectra(model).items()}
        ctx.work.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{REFERENCE}.tmp")
        save_file(sp, str(tmp))
        tmp.replace(path)
        return sp

    def aux_loss(self, ctx: BuildContext, pc: PoisonedCorpus) -> WeightLoss | None:
        ref = self.reference(ctx)
        if self.params.strength == 0:
            return None
        return WeightLoss(ref, self.params.match, self.params.strength)

    def after_train(self, ctx: BuildContext, model: torch.nn.Module) -> dict[str, Any]:
        ref = self.reference(ctx)
        before = spectra(model)
        out: dict[str, Any] = {"reference_seed": reference_seed(ctx.seed),
                               "reference_norm": total_norm(ref),
                               "norm_before": total_norm(before),
                               "mismatch_before": mismatch(model, ref)}
        if ctx.sets:
            out["rate_before_shaping"] = {
                ctx.sets[0].metric: round(ctx.rates(model, ctx.sets[:1])[0], 4)}
        if self.params.project:
            reshape(model, ref, self.params.match)
        out["norm_after"] = total_norm(spectra(model))
        out["mismatch_after"] = mismatch(model, ref)
        return out
