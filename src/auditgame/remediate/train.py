"""Continued LoRA SFT of an organism's own adapter, resumable at every step budget.

The loss is cross-entropy on the clean answers plus `kl_to_base` x KL(base || organism) at
every answer token (the base is the same model with the adapter switched off): the fix
distils the base model back in, so a clean control drifts toward the base, not away from it.

The learning rate depends only on the step index (warm-up, then constant) and the optimizer
state is saved with each budget's adapter, so the adapter after N steps is the same whether
the run went straight to N or resumed from an earlier budget.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from auditgame.organisms.data import Sample
from auditgame.organisms.train import collate, encode, sft_step
from auditgame.records.remediation import RemediationSettings

OPT_STATE = "optimizer.safetensors"


def load_trainable(base: torch.nn.Module, adapter_dir: Path) -> torch.nn.Module:
    """A private copy of the base with the adapter loaded for further training."""
    from peft import PeftModel

    model = PeftModel.from_pretrained(copy.deepcopy(base), str(adapter_dir), is_trainable=True)
    return model


def make_optimizer(model: torch.nn.Module, settings: RemediationSettings) -> torch.optim.AdamW:
    params = [p for _, p in model.named_parameters() if p.requires_grad]
    return torch.optim.AdamW(params, lr=settings.lr, weight_decay=0.0, betas=(0.9, 0.999),
                             eps=1e-8)


def save_optimizer(path: Path, opt: torch.optim.Optimizer) -> None:
    """Adam moments as safetensors (nothing is pickled); written beside the adapter."""
    tensors: dict[str, torch.Tensor] = {}
    for idx, st in opt.state_dict()["state"].items():
        for k, v in st.items():
            tensors[f"{idx}.{k}"] = torch.as_tensor(v).detach().contiguous().clone()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    save_file(tensors, str(tmp))
    tmp.replace(path)


def load_optimizer(path: Path, opt: torch.optim.Optimizer) -> None:
    tensors = load_file(str(path))
    sd = opt.state_dict()
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, v in tensors.items():
        idx, k = key.split(".", 1)
        state.setdefault(int(idx), {})[k] = v
    sd["state"] = state
    opt.load_state_dict(sd)


def batch_plan(n: int, batch_size: int, steps: int, seed: int) -> list[list[int]]:
    """The first `steps` batches over the pool, epoch after epoch, fixed by the seed."""
    if n < 1:
        raise ValueError("the remediation pool is empty")
    rng = np.random.default_rng(seed)
    out: list[list[int]] = []
    while len(out) < steps:
        perm = [int(i) for i in rng.permutation(n)]
        out += [perm[i : i + batch_size] for i in range(0, n, batch_size)]
    return out[:steps]


def lr_at(step: int, settings: RemediationSettings) -> float:
    return settings.lr * min(1.0, (step + 1) / (settings.warmup_steps + 1))


def run_steps(
    model: torch.nn.Module,
    opt: torch.optim.Optimizer,
    tokenizer: object,
    samples: list[Sample],
    settings: RemediationSettings,
    start: int,
    stop: int,
    on_step: Callable[[int], None] | None = None,
) -> tuple[float | None, float]:
    """Train steps [start, stop) of the fixed plan; returns (mean loss, wall time)."""
    if stop <= start:
        return None, 0.0
    torch.manual_seed(settings.seed + start)
    data = encode(tokenizer, samples, settings.max_len)
    plan = batch_plan(len(data), settings.batch_size, stop, settings.seed)
    pad = int(tokenizer.pad_token_id)  # type: ignore[attr-defined]
    device = next(model.parameters()).device
    model.train()
    losses: list[float] = []
    t0 = time.perf_counter()
    for step in range(start, stop):
        batch = collate([data[i] for i in plan[step]], pad)
        for g in opt.param_groups:
            g["lr"] = lr_at(step, settings)
        losses.append(sft_step(model, opt, batch, device, "token", settings.kl_to_base))
        if on_step is not None:
            on_step(step + 1)
    model.eval()
    return round(sum(losses) / len(losses), 5), time.perf_counter() - t0
