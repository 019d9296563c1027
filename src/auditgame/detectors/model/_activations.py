"""Residual-stream activations of base and organism, cached in safetensors, plus logit lens.

Names follow TransformerLens: `blocks.{L}.hook_resid_post` holds the residual stream after
block L at the last prompt token (one row per prompt); `blocks.{L}.hook_resid_post.tokens`
holds every non-pad token at one chosen layer, with `token_ids` and `token_rpos` (position
from the prompt's end) alongside; `blocks.{L}.hook_resid_post.mean` the mean over a text's
tokens at that layer. The cache lives
under `$AUDITGAME_CACHE/acts/` (never inside a bundle), keyed by the base model id, the
adapter's content hash and the prompt list, so the three activation detectors share one
forward pass per organism.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from auditgame.detectors.base import OrganismView
from auditgame.detectors.model._prompts import digest
from auditgame.models.base_lm import cache_dir
from auditgame.models.generate import chat_prompt
from auditgame.models.unwrap import inner_lm

ACTS_DIR = "acts"
ACTS_ENV = "AUDITGAME_ACTS_CACHE"


def acts_root(model_id: str) -> Path:
    """`$AUDITGAME_ACTS_CACHE` or `$AUDITGAME_CACHE/acts`, one folder per base model."""
    import os

    root = os.environ.get(ACTS_ENV)
    return (Path(root) if root else cache_dir() / ACTS_DIR) / model_id


def hook_name(layer: int) -> str:
    return f"blocks.{layer}.hook_resid_post"


def decoder_layers(model: torch.nn.Module) -> torch.nn.ModuleList:
    """The transformer blocks of a plain or peft-wrapped causal LM."""
    return inner_lm(model).model.layers  # type: ignore[no-any-return]


def n_layers(model: torch.nn.Module) -> int:
    return len(decoder_layers(model))


def encode_batch(tok: Any, texts: Sequence[str], chat: bool = True) -> tuple[torch.Tensor,
                                                                               torch.Tensor]:
    """Left-padded ids and mask (the last column is every row's last real token)."""
    strs = [chat_prompt(tok, t) if chat else t for t in texts]
    enc = [tok(s, add_special_tokens=False)["input_ids"] for s in strs]
    width = max(len(e) for e in enc)
    ids = torch.full((len(enc), width), tok.pad_token_id, dtype=torch.long)
    mask = torch.zeros((len(enc), width), dtype=torch.long)
    for r, e in enumerate(enc):
        ids[r, width - len(e):] = torch.tensor(e)
        mask[r, width - len(e):] = 1
    return ids, mask


@torch.no_grad()
def resid_post(model: torch.nn.Module, tok: Any, texts: Sequence[str], token_layer: int,
               chat: bool = True, batch_size: int = 16) -> dict[str, torch.Tensor]:
    """Residual stream after every block at the last token, and at every token of one layer."""
    layers = decoder_layers(model)
    captured: dict[int, torch.Tensor] = {}

    def hook(i: int) -> Callable[..., None]:
        def fn(_m: torch.nn.Module, _inp: Any, out: Any) -> None:
            captured[i] = (out[0] if isinstance(out, tuple) else out).detach()
        return fn

    handles = [layer.register_forward_hook(hook(i)) for i, layer in enumerate(layers)]
    last: list[torch.Tensor] = []
    toks: list[torch.Tensor] = []
    tids: list[torch.Tensor] = []
    rpos: list[torch.Tensor] = []
    means: list[torch.Tensor] = []
    device = next(model.parameters()).device
    try:
        for b in range(0, len(texts), batch_size):
            ids, mask = encode_batch(tok, texts[b:b + batch_size], chat)
            pos = (mask.cumsum(-1) - 1).clamp_min(0)
            model(input_ids=ids.to(device), attention_mask=mask.to(device),
                  position_ids=pos.to(device), use_cache=False)
            last.append(torch.stack([captured[i][:, -1].float().cpu()
                                     for i in range(len(layers))], dim=1))
            m = mask.bool()
            h = captured[token_layer].float().cpu()
            means.append((h * mask[..., None]).sum(1) / mask.sum(1, keepdim=True))
            toks.append(h[m])
            tids.append(ids[m])
            rpos.append((mask.sum(-1, keepdim=True) - mask.cumsum(-1))[m])
    finally:
        for h in handles:
            h.remove()
    stacked = torch.cat(last)  # [N, L, d]
    out = {hook_name(i): stacked[:, i].contiguous() for i in range(stacked.shape[1])}
    out[hook_name(token_layer) + ".tokens"] = torch.cat(toks).contiguous()
    out[hook_name(token_layer) + ".mean"] = torch.cat(means).contiguous()
    out["token_ids"] = torch.cat(tids).contiguous()
    out["token_rpos"] = torch.cat(rpos).contiguous()  # 0 = a prompt's last token
    return out


def weights_digest(organism: OrganismView) -> str:
    """Content hash of the adapter tensors: the organism's cache key across games."""
    h = hashlib.sha256()
    tensors = organism.weights.tensors
    for name in sorted(tensors):
        h.update(name.encode())
        h.update(tensors[name].detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def _cached(path: Path, compute: Callable[[], dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file, save_file

    if path.exists():
        return load_file(str(path))
    acts = compute()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{id(acts)}")
    save_file(acts, str(tmp))
    tmp.replace(path)
    return acts


def default_token_layer(model: torch.nn.Module) -> int:
    """A middle-to-late layer (2/3 of the depth), where behaviours are usually linear."""
    return min(n_layers(model) - 1, (2 * n_layers(model)) // 3)


def pair_acts(organism: OrganismView, texts: Sequence[str], token_layer: int | None = None,
              chat: bool = True) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """(base, organism) activations on `texts`, each computed once and cached on disk."""
    base = organism.base
    layer = default_token_layer(base.model) if token_layer is None else token_layer
    key = f"{digest(list(texts))}-{layer}-{int(chat)}-v3"
    root = acts_root(base.model_id)
    b = _cached(root / f"base-{key}.safetensors",
                lambda: resid_post(base.model, base.tokenizer, texts, layer, chat))
    o = _cached(root / f"adapter-{weights_digest(organism)}-{key}.safetensors",
                lambda: resid_post(organism.model, base.tokenizer, texts, layer, chat))
    return b, o


def unembed(base_model: torch.nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """(final-norm scale, unembedding matrix) of the base: the logit lens of a direction."""
    inner = base_model.model
    norm_w = inner.norm.weight.detach().float()
    w_u = base_model.lm_head.weight.detach().float()  # [V, d]
    return norm_w, w_u


def lens_tokens(base: Any, direction: torch.Tensor, k: int = 10) -> list[str]:
    """Tokens a residual direction promotes, read through the base's final norm + unembedding."""
    norm_w, w_u = unembed(base.model)
    logits = w_u @ (direction.float() * norm_w)
    top = torch.topk(logits, k).indices.tolist()
    return [base.tokenizer.decode([t]) for t in top]


def bundle_pairs(organism: OrganismView, ids: Sequence[str] | None,
                 store: dict[str, tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]],
                 texts: Sequence[str], token_layer: int | None = None,
                 ) -> dict[str, tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]]:
    """(base, organism) activations for every organism of the bundle (disk-cached), so that a
    detector can remove the drift all fine-tunes share: the bundle's median difference."""
    for bid in [organism.blind_id, *(ids or [])]:
        if bid not in store:
            view = organism if bid == organism.blind_id else organism.peer(bid)
            store[bid] = pair_acts(view, texts, token_layer)
    return store


def specific_diff(store: dict[str, tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]],
                  blind_id: str, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(organism − base) minus its fitted share of the bundle's median difference, and the base
    activations: what this organism does that the other fine-tunes do not. The share is a
    least-squares scale, so a fine-tune that merely drifted further than the others is not
    mistaken for one that drifted elsewhere."""
    diffs = torch.stack([o[name] - b[name] for b, o in store.values()])
    b, o = store[blind_id]
    d = o[name] - b[name]
    if len(store) < 3:
        return d, b[name]
    common = diffs.median(dim=0).values
    scale = float((d * common).sum() / (common * common).sum().clamp_min(1e-12))
    return d - scale * common, b[name]


def cached_answers(view: OrganismView, prompts: Sequence[str], max_new_tokens: int,
                   batch_size: int = 32, of_base: bool = False) -> list[str]:
    """Greedy answers of the organism (or the base) on `prompts`, cached as JSON next to the
    activations, so `behaviour_diff` and `activation_probe` generate once per organism."""
    import json

    from auditgame._util.io import atomic_write_json
    from auditgame.models.generate import generate

    base = view.base
    who = "base" if of_base else f"adapter-{weights_digest(view)}"
    path = acts_root(base.model_id) / f"{who}-answers-{digest(list(prompts))}-{max_new_tokens}.json"
    if path.exists():
        return list(json.loads(path.read_text())["answers"])
    model = base.model if of_base else view.model
    answers = generate(model, base.tokenizer, list(prompts), max_new_tokens, batch_size)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, {"prompts": list(prompts), "answers": answers})
    return answers
