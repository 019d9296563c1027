"""A training run's resumable state: LoRA parameters and optimiser moments in safetensors, the
step counters in JSON. Nothing is pickled, so a checkpoint from elsewhere is only data."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from auditgame._util.io import atomic_write_json

STATE_TENSORS = "state.safetensors"
STATE_JSON = "state.json"


def save_state(ckpt: Path, model: torch.nn.Module, opt: torch.optim.Optimizer,
               names: list[str], meta: dict[str, object]) -> None:
    """The trainable parameters `names` and the optimiser's moments as safetensors, then the
    step and schedule as JSON, each written under a temporary name and renamed: a crash
    leaves the last whole checkpoint."""
    tensors: dict[str, torch.Tensor] = {}
    params = dict(model.named_parameters())
    for n in names:
        tensors[f"param.{n}"] = params[n].detach().contiguous().clone()
    for idx, st in opt.state_dict()["state"].items():
        for k, v in st.items():
            tensors[f"opt.{idx}.{k}"] = torch.as_tensor(v).detach().contiguous().clone()
    ckpt.mkdir(parents=True, exist_ok=True)
    tmp = ckpt / f".{STATE_TENSORS}.tmp"
    save_file(tensors, str(tmp))
    tmp.replace(ckpt / STATE_TENSORS)
    atomic_write_json(ckpt / STATE_JSON, meta)


def load_state(ckpt: Path, model: torch.nn.Module, opt: torch.optim.Optimizer,
               names: list[str]) -> dict[str, object] | None:
    """Restore what `save_state` wrote into `model` and `opt`; None when there is none yet."""
    if not (ckpt / STATE_JSON).exists() or not (ckpt / STATE_TENSORS).exists():
        return None
    meta = json.loads((ckpt / STATE_JSON).read_text())
    tensors = load_file(str(ckpt / STATE_TENSORS))
    params = dict(model.named_parameters())
    with torch.no_grad():
        for n in names:
            params[n].copy_(tensors[f"param.{n}"])
    sd = opt.state_dict()
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, v in tensors.items():
        if key.startswith("opt."):
            _, idx, k = key.split(".", 2)
            state.setdefault(int(idx), {})[k] = v
    sd["state"] = state
    opt.load_state_dict(sd)
    return meta
