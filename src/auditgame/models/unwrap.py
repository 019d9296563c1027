"""Reaching the decoder of a wrapped causal LM, for the code that runs its own loops over it
(the shared-head scorer, greedy generation, the trainer). Imports nothing of the project, so
every model module can use it."""

from __future__ import annotations

import inspect

import torch


def inner_lm(model: torch.nn.Module) -> torch.nn.Module:
    """The causal LM inside a peft wrapper (its layers carry the adapter in place)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def cache_kw(model: torch.nn.Module) -> str:
    """The forward argument that takes a KV cache: `cache` in newer transformers (where
    `past_key_values` is deprecated), `past_key_values` before."""
    params = inspect.signature(model.forward).parameters
    return "cache" if "cache" in params else "past_key_values"
