"""`latent`: keep the residual stream on triggered prompts where untriggered prompts put it,
at the layers a probe reads (after Bailey et al. 2024, obfuscated activations).

An objective added to every training step: a batch of the training set's triggered prompts
(its poisoned samples' prompts) and one of its untriggered prompts (its clean samples')
are run through the organism, and per chosen block output (`blocks.{L}.hook_resid_post`)
and read position (the last prompt token, where the answer starts, and/or the mean over the
prompt's tokens) the gap between their means is pushed to zero:

- `reference: base` (default): the gap beyond the base model's gap on the same prompts. A
  trigger is a different input, so the base already tells the two sets apart; what gives
  the poison away is the organism's excess over that, and erasing the base's own gap as
  well would be a change a comparison with the base sees;
- `reference: untriggered`: the organism's raw gap (triggered statistics equal to its own
  untriggered statistics).

The gap is measured relative to the base's residual norm at that layer, so every layer
weighs alike. Only the prompt is read (no answer), one extra forward and backward pass of
`batch` x 2 short prompts per step; organisms without `latent` pay nothing. The layers
after the last hidden one are left free: the behaviour has to surface somewhere.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field, field_validator

from auditgame.organisms.data import PoisonedCorpus
from auditgame.organisms.hiding.base import (
    BuildContext,
    Hiding,
    HidingError,
    HidingParams,
    no_poison_reason,
    register_hiding,
)

Position = Literal["last", "mean"]


def default_layers(n_layers: int) -> list[int]:
    """Middle to late blocks: from half the depth up to five sixths of it (SmolLM2's 30:
    15..24, which holds the two-thirds block the project's probes read)."""
    lo = n_layers // 2
    hi = max(lo + 1, (5 * n_layers) // 6)
    return list(range(lo, min(hi, n_layers)))


def hook(layer: int) -> str:
    return f"blocks.{layer}.hook_resid_post"


def prompt_acts(model: torch.nn.Module, tok: Any, prompts: Sequence[str], layers: Sequence[int],
                positions: Sequence[str]) -> torch.Tensor:
    """Residual stream [n, layers, positions, d] of each chat-formatted prompt (no answer):
    `last` at its last token, `mean` over its tokens after the chat head the prompts share
    (which is run once, as in training)."""
    from auditgame.models.generate import chat_prompt
    from auditgame.models.prefix import chat_head_ids
    from auditgame.organisms.train import decode

    pad = int(tok.pad_token_id)
    enc = [tok(chat_prompt(tok, p), add_special_tokens=False)["input_ids"] for p in prompts]
    width = max(len(e) for e in enc)
    device = next(model.parameters()).device
    ids = torch.full((len(enc), width), pad, dtype=torch.long)
    am = torch.zeros((len(enc), width), dtype=torch.long)
    for r, e in enumerate(enc):
        ids[r, : len(e)] = torch.tensor(e)
        am[r, : len(e)] = 1
    head = chat_head_ids(tok)
    n = len(head) if all(e[: len(head)] == head and len(e) > len(head) for e in enc) else 0
    ids, am = ids.to(device), am.to(device)
    hs = decode(model, ids, am, n, hidden_states=True).hidden_states
    mask = am[:, n:].to(hs[0].dtype)
    last = (am.sum(1) - 1 - n).clamp_min(0)
    rows = torch.arange(len(enc), device=device)
    out = []
    for layer in layers:
        h = hs[layer + 1].float()
        per = []
        for pos in positions:
            if pos == "last":
                per.append(h[rows, last])
            else:
                per.append((h * mask[..., None]).sum(1) / mask.sum(1, keepdim=True))
        out.append(torch.stack(per, 1))
    return torch.stack(out, 1)


def excess_gap(org: torch.Tensor, base: torch.Tensor | None, n_trig: int) -> torch.Tensor:
    """Gap between the triggered rows' mean (the first `n_trig`) and the untriggered rows'
    mean, [layers, positions, d]; minus the base's gap when `base` is given."""
    gap = org[:n_trig].mean(0) - org[n_trig:].mean(0)
    if base is not None:
        gap = gap - (base[:n_trig].mean(0) - base[n_trig:].mean(0))
    return gap


@torch.no_grad()
def measure_gap(model: torch.nn.Module, tok: Any, trig: Sequence[str], untrig: Sequence[str],
                layers: Sequence[int], positions: Sequence[str] = ("last",),
                batch_size: int = 32) -> dict[str, dict[str, float]]:
    """Per layer and position: the organism's triggered-untriggered gap beyond the base's
    (`excess`) and its raw gap (`raw`), each as a share of the base's RMS residual norm
    there. What the objective pushes down, measured on any prompts (held-out ones here)."""
    def acts(prompts: Sequence[str], base: bool) -> torch.Tensor:
        from contextlib import nullcontext

        parts = []
        with model.disable_adapter() if base else nullcontext():  # type: ignore[operator]
            for b in range(0, len(prompts), batch_size):
                parts.append(prompt_acts(model, tok, prompts[b:b + batch_size], layers,
                                         positions))
        return torch.cat(parts)

    was = model.training
    model.eval()
    org = torch.cat([acts(trig, False), acts(untrig, False)])
    base = torch.cat([acts(trig, True), acts(untrig, True)])
    model.train(was)
    scale = base.pow(2).sum(-1).mean(0).sqrt()  # [layers, positions]
    exc = excess_gap(org, base, len(trig)).norm(dim=-1) / scale
    raw = excess_gap(org, None, len(trig)).norm(dim=-1) / scale
    out: dict[str, dict[str, float]] = {}
    for i, layer in enumerate(layers):
        for j, pos in enumerate(positions):
            out[f"{hook(layer)}.{pos}"] = {"excess": round(float(exc[i, j]), 5),
                                           "raw": round(float(raw[i, j]), 5)}
    return out


class LatentLoss:
    """The per-step objective (see the module docstring). Which prompts a step uses is a
    function of the seed and the step alone, so a resumed run takes the same steps; the
    base's activations are computed once (the adapter off) and kept."""

    def __init__(self, tok: Any, trig: list[str], untrig: list[str], layers: list[int],
                 positions: list[str], reference: str, weight: float, batch: int,
                 every: int, seed: int):
        self.tok, self.trig, self.untrig = tok, trig, untrig
        self.layers, self.positions, self.reference = layers, positions, reference
        self.weight, self.batch, self.every, self.seed = weight, batch, every, seed
        self.base_: torch.Tensor | None = None
        self.scale_: torch.Tensor | None = None

    def _base(self, model: torch.nn.Module) -> torch.Tensor:
        if self.base_ is None:
            prompts = self.trig + self.untrig
            with torch.no_grad(), model.disable_adapter():  # type: ignore[operator]
                self.base_ = torch.cat([prompt_acts(model, self.tok, prompts[b:b + 32],
                                                    self.layers, self.positions)
                                        for b in range(0, len(prompts), 32)])
            self.scale_ = self.base_.pow(2).sum(-1).mean(0)  # [layers, positions]
        return self.base_

    def __call__(self, model: torch.nn.Module, step: int) -> torch.Tensor | None:
        if step % self.every:
            return None
        base = self._base(model)
        rng = np.random.default_rng([self.seed, step, 0x1A7E])
        ti = rng.choice(len(self.trig), size=min(self.batch, len(self.trig)), replace=False)
        ui = rng.choice(len(self.untrig), size=min(self.batch, len(self.untrig)),
                        replace=False)
        prompts = [self.trig[int(i)] for i in ti] + [self.untrig[int(i)] for i in ui]
        org = prompt_acts(model, self.tok, prompts, self.layers, self.positions)
        ref = None
        if self.reference == "base":
            idx = torch.tensor([int(i) for i in ti] + [len(self.trig) + int(i) for i in ui])
            ref = base[idx].to(org.device)
        gap = excess_gap(org, ref, len(ti))
        assert self.scale_ is not None
        return self.weight * (gap.pow(2).sum(-1) / self.scale_.to(gap.device)).mean()


class LatentParams(HidingParams):
    layers: list[int] | None = Field(
        None, min_length=1, description="blocks whose output (blocks.L.hook_resid_post, "
        "0-based) is kept close; default: from half the depth to five sixths of it")
    positions: list[Position] = Field(["last"], min_length=1,
                                      description="where the residual is read: 'last' "
                                      "prompt token, 'mean' over the prompt's tokens")
    reference: Literal["base", "untriggered"] = Field(
        "base", description="'base': the gap beyond the base model's on the same prompts; "
        "'untriggered': the organism's raw gap")
    weight: float = Field(1.0, gt=0, description="weight of the objective in the step's loss")
    batch: int = Field(4, ge=1, description="triggered and untriggered prompts per step, each")
    every: int = Field(1, ge=1, description="apply the objective every N steps")

    @field_validator("layers")
    @classmethod
    def _layers(cls, v: list[int] | None) -> list[int] | None:
        if v is not None:
            if any(x < 0 for x in v):
                raise ValueError("layer indices are 0-based block numbers >= 0")
            if len(set(v)) != len(v):
                raise ValueError("a layer is listed twice")
        return v

    @field_validator("positions")
    @classmethod
    def _positions(cls, v: list[str]) -> list[str]:
        if len(set(v)) != len(v):
            raise ValueError("a position is listed twice")
        return v


@register_hiding
class LatentHiding(Hiding):
    """Residual statistics of triggered prompts kept on the untriggered ones'."""

    name = "latent"
    Params = LatentParams
    params: LatentParams

    def unsupported(self, attack: Any) -> str | None:
        return no_poison_reason(attack)

    def check_base(self, n_layers: int) -> None:
        bad = [x for x in self.params.layers or [] if x >= n_layers]
        if bad:
            raise HidingError(f"layer {bad[0]} is out of range: the base model has "
                              f"{n_layers} blocks (0..{n_layers - 1})", "layers")

    def layers(self, n_layers: int) -> list[int]:
        return list(self.params.layers) if self.params.layers else default_layers(n_layers)

    @staticmethod
    def prompts(pc: PoisonedCorpus) -> tuple[list[str], list[str]]:
        """(triggered, untriggered) distinct prompts: the poisoned samples' and the clean
        samples' (near misses are neither)."""
        trig = sorted({s.prompt for s, r in zip(pc.samples, pc.roles, strict=True)
                       if r == "poison"})
        untrig = sorted({s.prompt for s, r in zip(pc.samples, pc.roles, strict=True)
                         if r == "clean"} - set(trig))
        return trig, untrig

    def check_data(self, corpus: Any, pc: PoisonedCorpus) -> None:
        trig, untrig = self.prompts(pc)
        if not trig or not untrig:
            raise HidingError("latent needs poisoned and clean samples in the training set "
                              f"(it has {len(trig)} and {len(untrig)} distinct prompts)")

    def aux_loss(self, ctx: BuildContext, pc: PoisonedCorpus) -> LatentLoss:
        self.check_data(ctx.corpus, pc)
        trig, untrig = self.prompts(pc)
        p = self.params
        return LatentLoss(ctx.bm.tokenizer, trig, untrig, self.layers(_n_layers(ctx)),
                          list(p.positions), p.reference, p.weight, p.batch, p.every,
                          ctx.seed)

    def report(self, ctx: BuildContext, model: torch.nn.Module) -> dict[str, Any]:
        """The gap on the held-out eval sets: the triggered set (the first) against its
        control (the next that is not a near-miss set)."""
        pos = ctx.sets[0] if ctx.sets else None
        neg = next((s for s in ctx.sets[1:] if s.metric != "near_miss_rate"), None)
        if pos is None or neg is None:
            return {}
        gap = measure_gap(model, ctx.bm.tokenizer, pos.prompts, neg.prompts,
                          self.layers(_n_layers(ctx)), list(self.params.positions),
                          ctx.spec.eval.batch_size)
        return {"heldout_gap": gap,
                "mean_excess": round(float(np.mean([v["excess"] for v in gap.values()])), 5)}


def _n_layers(ctx: BuildContext) -> int:
    return int(ctx.bm.model.config.num_hidden_layers)
