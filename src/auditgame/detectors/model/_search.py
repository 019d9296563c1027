"""Cheap batched scoring of trigger candidates for `behaviour_diff`.

Every candidate is put at the start (`prefix`) or the end (`suffix`) of the user turn of a
probe prompt; what is scored is the model's distribution over the first answer token. The
chat template's system part is the same for every candidate, so its keys and values are
computed once and shared by the whole batch: only the candidate, the probe and the assistant
header run through the model, which makes an exhaustive pass over every short vocabulary
token affordable on a CPU.
"""

from __future__ import annotations

from typing import Any

import torch

from auditgame.models.prefix import chat_head_ids, chat_tail_ids, shared_head_logits

POSITIONS = ("prefix", "suffix")
"""Where a candidate goes in a prompt: a planted trigger sits at the start, the end, or a
random place (which a model trained on it also answers at either end)."""


def candidate_ids(tok: Any, cand: str) -> list[int]:
    """Token ids of a candidate as it reads at the start of the user turn."""
    return list(tok(cand, add_special_tokens=False)["input_ids"])


def place(cand: str, prompt: str, position: str) -> str:
    """The prompt with the candidate at `position` (as the attacks insert a phrase)."""
    return f"{cand} {prompt}" if position == "prefix" else f"{prompt} {cand}"


def placed_rows(tok: Any, probe: str, cands: list[str], position: str) -> list[list[int]]:
    """Token ids after the chat head for each candidate placed in `probe`, then one row for
    the probe alone."""
    if position == "prefix":
        tail = chat_tail_ids(tok, f" {probe}")
        rows = [candidate_ids(tok, c) + tail for c in cands]
    else:
        rows = [chat_tail_ids(tok, place(c, probe, position)) for c in cands]
    return rows + [chat_tail_ids(tok, probe)]


def placed_logprobs(model: torch.nn.Module, tok: Any, rows: list[list[int]],
                    batch_size: int = 64) -> torch.Tensor:
    """First-answer-token log-probabilities [len(rows), vocab] for rows of `placed_rows`."""
    return shared_head_logits(model, int(tok.pad_token_id), chat_head_ids(tok), rows,
                              batch_size)


def kl_rows(lp: torch.Tensor, lq: torch.Tensor) -> torch.Tensor:
    """KL(p || q) per row, from log-probabilities (q broadcasts)."""
    return (lp.exp() * (lp - lq)).sum(-1)
