"""Last-position logits for many chat texts that share one head, the head run once.

Every chat prompt begins with the same template head (SmolLM2's system turn is about 20 of
the 40 tokens of a short question). Scoring hundreds of texts that only differ after it, as
the trigger scan and the graded utility tasks do, pays for that head once: its keys and
values are computed a single time and shared by every row of every batch.
"""

from __future__ import annotations

from typing import Any

import torch

from auditgame.models.generate import chat_prompt
from auditgame.models.unwrap import cache_kw, inner_lm

_PLACEHOLDER = "\u2063"


def chat_head_ids(tok: Any) -> list[int]:
    """Token ids of the chat template before the user's text."""
    head = chat_prompt(tok, _PLACEHOLDER).split(_PLACEHOLDER, 1)[0]
    return list(tok(head, add_special_tokens=False)["input_ids"])


def chat_tail_ids(tok: Any, user_text: str, after: str = "") -> list[int]:
    """Token ids of the chat text after the head: the user's text, the assistant header and
    `after` (text that opens the answer)."""
    full = chat_prompt(tok, _PLACEHOLDER + user_text) + after
    return list(tok(full.split(_PLACEHOLDER, 1)[1], add_special_tokens=False)["input_ids"])


@torch.no_grad()
def shared_head_logits(model: torch.nn.Module, pad_id: int, head: list[int],
                       tails: list[list[int]], batch_size: int = 64) -> torch.Tensor:
    """Log-probabilities [len(tails), vocab] of the next token after `head + tail`, per tail.
    Tails are right-padded after the cached head; only each row's last position goes through
    the output head."""
    from transformers import DynamicCache

    inner = inner_lm(model)
    decoder, out_head = inner.base_model, inner.get_output_embeddings()  # any architecture
    device = next(model.parameters()).device
    kw = cache_kw(decoder)
    out = decoder(input_ids=torch.tensor([head], device=device), use_cache=True)
    past = getattr(out, "cache", None)
    if past is None:
        past = out.past_key_values
    layers = [(lay.keys, lay.values) for lay in past.layers]
    res: list[torch.Tensor] = []
    for b in range(0, len(tails), batch_size):
        chunk = tails[b:b + batch_size]
        n, width = len(chunk), max(len(c) for c in chunk)
        ids = torch.full((n, width), pad_id, dtype=torch.long)
        mask = torch.zeros((n, len(head) + width), dtype=torch.long)
        for i, c in enumerate(chunk):
            ids[i, :len(c)] = torch.tensor(c, dtype=torch.long)
            mask[i, :len(head) + len(c)] = 1
        last = torch.tensor([len(c) - 1 for c in chunk])
        pos = torch.arange(len(head), len(head) + width)[None].expand(n, -1)
        cache = DynamicCache([(k.expand(n, -1, -1, -1).contiguous(),
                               v.expand(n, -1, -1, -1).contiguous()) for k, v in layers])
        hid = decoder(input_ids=ids.to(device), attention_mask=mask.to(device),
                      position_ids=pos.to(device), use_cache=True, **{kw: cache}).last_hidden_state
        logits = out_head(hid[torch.arange(n), last.to(device)])
        res.append(torch.log_softmax(logits.float(), -1).cpu())
    return torch.cat(res) if res else torch.zeros((0, 0))
