"""Cheap batched scoring of trigger candidates for `behaviour_diff`.

Every candidate is put at the start of the user turn of a probe prompt; what is scored is the
model's distribution over the first answer token. The chat template's system part is the same
for every candidate, so its keys and values are computed once and shared by the whole batch:
only the candidate, the probe and the assistant header run through the model, which makes an
exhaustive pass over every short vocabulary token affordable on a CPU.
"""

from __future__ import annotations

from typing import Any

import torch

from auditgame.models.prefix import chat_head_ids, chat_tail_ids, shared_head_logits


def split_template(tok: Any, probe: str) -> tuple[list[int], list[int]]:
    """(ids before the user's text, ids of ' probe' and the assistant header after it)."""
    return chat_head_ids(tok), chat_tail_ids(tok, f" {probe}")


def candidate_ids(tok: Any, cand: str) -> list[int]:
    """Token ids of a candidate as it reads at the start of the user turn."""
    return list(tok(cand, add_special_tokens=False)["input_ids"])


def first_token_logprobs(model: torch.nn.Module, tok: Any, probe: str,
                         cands: list[list[int]], batch_size: int = 64) -> torch.Tensor:
    """Log-probabilities [len(cands), vocab] of the first answer token after
    `cand + ' ' + probe` in the chat template; the shared head is cached once."""
    head, tail = split_template(tok, probe)
    return shared_head_logits(model, int(tok.pad_token_id), head, [c + tail for c in cands],
                              batch_size)


def kl_rows(lp: torch.Tensor, lq: torch.Tensor) -> torch.Tensor:
    """KL(p || q) per row, from log-probabilities (q broadcasts)."""
    return (lp.exp() * (lp - lq)).sum(-1)
