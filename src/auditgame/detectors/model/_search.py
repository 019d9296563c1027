"""Cheap batched scoring of trigger candidates for `behaviour_diff`.

Every candidate is put at the start of the user turn of a probe prompt; what is scored is the
model's distribution over the first answer token. The chat template's system part is the same
for every candidate, so its keys and values are computed once and shared by the whole batch:
only the candidate, the probe and the assistant header run through the model, which makes an
exhaustive pass over every short vocabulary token affordable on a CPU.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch

from auditgame.models.generate import chat_prompt

_PLACEHOLDER = "\u2063"


def _inner(model: torch.nn.Module) -> torch.nn.Module:
    """The causal LM inside a peft wrapper (its layers carry the adapter in place)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def _cache_kw(model: torch.nn.Module) -> str:
    """The forward argument that takes a KV cache: `cache` in newer transformers (where
    `past_key_values` is deprecated), `past_key_values` before."""
    params = inspect.signature(model.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


def split_template(tok: Any, probe: str) -> tuple[list[int], list[int]]:
    """(ids before the user's text, ids of ' probe' and the assistant header after it)."""
    full = chat_prompt(tok, f"{_PLACEHOLDER} {probe}")
    head, tail = full.split(_PLACEHOLDER, 1)
    return (tok(head, add_special_tokens=False)["input_ids"],
            tok(tail, add_special_tokens=False)["input_ids"])


def candidate_ids(tok: Any, cand: str) -> list[int]:
    """Token ids of a candidate as it reads at the start of the user turn."""
    return list(tok(cand, add_special_tokens=False)["input_ids"])


@torch.no_grad()
def first_token_logprobs(model: torch.nn.Module, tok: Any, probe: str,
                         cands: list[list[int]], batch_size: int = 64) -> torch.Tensor:
    """Log-probabilities [len(cands), vocab] of the first answer token after
    `cand + ' ' + probe` in the chat template; the shared head is cached once."""
    from transformers import DynamicCache

    inner = _inner(model)
    device = next(model.parameters()).device
    head, tail = split_template(tok, probe)
    h = torch.tensor([head], device=device)
    kw = _cache_kw(inner.model)
    out = inner.model(input_ids=h, use_cache=True)
    past = getattr(out, "cache", None)
    if past is None:
        past = out.past_key_values
    layers = [(lay.keys, lay.values) for lay in past.layers]
    res: list[torch.Tensor] = []
    for b in range(0, len(cands), batch_size):
        chunk = [c + tail for c in cands[b:b + batch_size]]
        n, width = len(chunk), max(len(c) for c in chunk)
        ids = torch.full((n, width), tok.pad_token_id, dtype=torch.long)
        for i, c in enumerate(chunk):
            ids[i, :len(c)] = torch.tensor(c)
        last = torch.tensor([len(c) - 1 for c in chunk])
        mask = torch.zeros((n, len(head) + width), dtype=torch.long)
        for i, c in enumerate(chunk):
            mask[i, :len(head) + len(c)] = 1
        pos = torch.arange(len(head), len(head) + width)[None].expand(n, -1)
        cache = DynamicCache([(k.expand(n, -1, -1, -1).contiguous(),
                               v.expand(n, -1, -1, -1).contiguous()) for k, v in layers])
        hid = inner.model(input_ids=ids.to(device), attention_mask=mask.to(device),
                          position_ids=pos.to(device), use_cache=True,
                          **{kw: cache}).last_hidden_state
        logits = inner.lm_head(hid[torch.arange(n), last.to(device)])
        res.append(torch.log_softmax(logits.float(), -1).cpu())
    return torch.cat(res) if res else torch.zeros((0, 0))


def kl_rows(lp: torch.Tensor, lq: torch.Tensor) -> torch.Tensor:
    """KL(p || q) per row, from log-probabilities (q broadcasts)."""
    return (lp.exp() * (lp - lq)).sum(-1)
