"""Base-model representations of training samples and prompt log-perplexities, batched.

`representations` gives one row per sample: the means of `blocks.{L}.hook_resid_post`
(TransformerLens naming) over the prompt's tokens and over the answer's tokens of the plain
text "prompt\\nanswer", side by side (2 x d_model), so a trigger in the prompt and a payload in
the answer each keep their own dimensions; the prompt is clipped to half of `max_len` tokens.
The forward pass stops after block L, so a middle layer costs about L/n_layers of a full pass.
Results are cached in memory per (dataset content, base model, layer, length), so `spectral`,
`activation_clustering` and the ensemble share one pass. `log_ppl` and `token_nll` score many
short texts in padded batches (the ONION detector's workhorse).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from auditgame.detectors.data._answers import dataset_key
from auditgame.detectors.model._activations import decoder_layers
from auditgame.organisms.data import Sample

LAYER_FRAC = 0.6  # a middle-to-late block: past lexical features, before next-token specifics
MAX_LEN = 64
BATCH = 16

_CACHE: dict[tuple[str, str, int, int], np.ndarray] = {}


class _Stop(Exception):
    """Raised by a hook to end the forward pass once the wanted block has run."""


def pick_layer(model: torch.nn.Module, frac: float = LAYER_FRAC) -> int:
    n = len(decoder_layers(model))
    return int(min(n - 1, max(0, round(frac * (n - 1)))))


def _ids(tok: Any, text: str, limit: int) -> list[int]:
    return list(tok(text, add_special_tokens=False)["input_ids"][:limit])


def _start_id(tok: Any) -> int:
    for t in (tok.bos_token_id, tok.eos_token_id, tok.pad_token_id):
        if t is not None:
            return int(t)
    return 0


def _pad(rows: list[list[int]], pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded ids and attention mask."""
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(r, dtype=torch.long)
        mask[i, : len(r)] = 1
    return ids, mask


@torch.no_grad()
def representations(samples: list[Sample], base: Any, layer: int | None = None,
                    max_len: int = MAX_LEN, batch_size: int = BATCH) -> np.ndarray:
    """(n, 2d) residual stream after block `layer`, mean-pooled over prompt and answer."""
    model, tok = base.model, base.tokenizer
    layer = pick_layer(model) if layer is None else layer
    key = (dataset_key(samples), str(getattr(base, "model_id", id(model))), layer, max_len)
    if key in _CACHE:
        return _CACHE[key]
    half = max(4, max_len // 2)
    start = _start_id(tok)
    nl = _ids(tok, "\n", 4)
    enc = []
    cut = []  # where each text's answer starts
    for s in samples:
        p = _ids(tok, s.prompt, half)
        a = _ids(tok, s.response, max_len - len(p) - len(nl) - 1)
        enc.append([start] + p + nl + a)
        cut.append(1 + len(p) + len(nl))
    grabbed: dict[str, torch.Tensor] = {}

    def hook(_m: Any, _i: Any, out: Any) -> None:
        grabbed["h"] = out[0] if isinstance(out, tuple) else out
        raise _Stop

    block = decoder_layers(model)[layer]
    handle = block.register_forward_hook(hook)
    device = next(model.parameters()).device
    d = int(model.config.hidden_size)
    out = np.zeros((len(samples), 2 * d), dtype=np.float32)
    order = sorted(range(len(enc)), key=lambda i: len(enc[i]))
    try:
        for b in range(0, len(order), batch_size):
            idx = order[b: b + batch_size]
            ids, mask = _pad([enc[i] for i in idx], int(tok.pad_token_id or 0))
            try:
                model(input_ids=ids.to(device), attention_mask=mask.to(device), use_cache=False)
            except _Stop:
                pass
            h = grabbed["h"].float()
            m = mask.to(h.device).float()
            m[:, 0] = 0.0  # the start token's state is the same for every text (an attention sink)
            pos = torch.arange(m.shape[1], device=h.device)[None]
            c = torch.tensor([cut[i] for i in idx], device=h.device)[:, None]
            parts = []
            for mm in (m * (pos < c), m * (pos >= c)):  # prompt part, answer part
                mm = mm.unsqueeze(-1)
                parts.append((h * mm).sum(1) / mm.sum(1).clamp(min=1.0))
            out[idx] = torch.cat(parts, dim=1).cpu().numpy()
    finally:
        handle.remove()
    if len(_CACHE) > 8:
        _CACHE.clear()
    _CACHE[key] = out
    return out


def standardise(X: np.ndarray) -> np.ndarray:
    """Centre, and scale each dimension by a robust spread, so a few massive activation
    dimensions (common in LLM residual streams) do not own the top singular vector."""
    X = np.asarray(X, dtype=np.float64)
    med = np.median(X, axis=0)
    q75, q25 = np.percentile(X, [75, 25], axis=0)
    scale = (q75 - q25) / 1.349
    scale = np.where(scale > 1e-8, scale, X.std(axis=0) + 1e-8)
    Z = (X - med) / scale
    Z = np.clip(Z, -50.0, 50.0)
    return Z - Z.mean(axis=0)


def log_ppl(texts: Sequence[list[int]], base: Any, batch_size: int = 32) -> np.ndarray:
    """Mean next-token NLL of each token-id list (the start token is prepended here)."""
    per_token = token_nll(texts, base, batch_size)
    return np.array([float(x.mean()) if x.size else 0.0 for x in per_token], dtype=np.float64)


@torch.no_grad()
def token_nll(texts: Sequence[list[int]], base: Any, batch_size: int = 32) -> list[np.ndarray]:
    """Per-token NLL of each id list (one value per input token, start token prepended)."""
    model, tok = base.model, base.tokenizer
    start = _start_id(tok)
    rows = [[start] + list(t) for t in texts]
    out: list[np.ndarray] = [np.zeros(0)] * len(rows)
    order = sorted(range(len(rows)), key=lambda i: len(rows[i]))
    device = next(model.parameters()).device
    for b in range(0, len(order), batch_size):
        idx = order[b: b + batch_size]
        ids, mask = _pad([rows[i] for i in idx], int(tok.pad_token_id or 0))
        ids, mask = ids.to(device), mask.to(device)
        logits = model(input_ids=ids, attention_mask=mask, use_cache=False).logits.float()
        nll = torch.nn.functional.cross_entropy(
            logits[:, :-1].transpose(1, 2), ids[:, 1:], reduction="none").cpu().numpy()
        for r, i in enumerate(idx):
            out[i] = nll[r, : len(rows[i]) - 1]
    return out


def answer_reps(samples: list[Sample], base: Any) -> np.ndarray:
    """The answer half of `representations`: answer tokens read in the context of their
    prompt, so a trigger still shapes them, while prompt templates (which cluster on their
    own and would make any prompt phrase look associated with the cluster) stay out."""
    X = representations(samples, base)
    return X[:, X.shape[1] // 2:]
