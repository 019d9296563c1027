"""Behaviour and utility measurement on held-out prompts.

Rates are shares of greedy answers in which an attack's behaviour fires; utility is the
teacher-forced next-token agreement with the base model's own answers to held-out clean
prompts (1.0 for the base model by construction), so a drop is damage done by training.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from auditgame.models.generate import generate
from auditgame.organisms.attacks.base import Attack
from auditgame.organisms.data import EvalSet, Sample
from auditgame.organisms.train import IGNORE, collate, encode


def run_sets(
    model: torch.nn.Module,
    tokenizer: object,
    sets: list[tuple[Attack, EvalSet]],
    batch_size: int,
    on_batch: Callable[[int], None] | None = None,
) -> tuple[list[float], list[list[str]]]:
    """Rate for every (attack, set); identical prompt sets are generated only once."""
    cache: dict[tuple[tuple[str, ...], int], list[str]] = {}
    rates: list[float] = []
    texts: list[list[str]] = []
    for attack, es in sets:
        key = (tuple(es.prompts), es.max_new_tokens)
        if key not in cache:
            cache[key] = generate(model, tokenizer, es.prompts, es.max_new_tokens, batch_size,
                                  on_batch)
        outs = cache[key]
        fired = [attack.fires(t) for t in outs]
        rates.append(sum(fired) / len(fired) if fired else 0.0)
        texts.append(outs)
    return rates, texts


@torch.no_grad()
def utility(model: torch.nn.Module, tokenizer: object, samples: list[Sample],
            batch_size: int = 16, max_len: int = 256) -> float:
    """Share of answer tokens where the model's argmax equals the reference next token."""
    data = encode(tokenizer, samples, max_len)
    pad = int(tokenizer.pad_token_id)  # type: ignore[attr-defined]
    order = sorted(range(len(data)), key=lambda i: len(data[i].input_ids))
    device = next(model.parameters()).device
    hit = total = 0
    was = model.training
    model.eval()
    for b in range(0, len(order), batch_size):
        batch = collate([data[i] for i in order[b : b + batch_size]], pad)
        logits = model(input_ids=batch["input_ids"].to(device),
                       attention_mask=batch["attention_mask"].to(device)).logits
        pred = logits[:, :-1].argmax(-1).cpu()
        gold = batch["labels"][:, 1:]
        m = gold != IGNORE
        hit += int((pred[m] == gold[m]).sum())
        total += int(m.sum())
    model.train(was)
    return hit / total if total else 0.0


def count_tokens(sets: list[tuple[Attack, EvalSet]]) -> int:
    """Upper bound of generated tokens, for the progress bar."""
    seen: set[tuple[tuple[str, ...], int]] = set()
    n = 0
    for _, es in sets:
        key = (tuple(es.prompts), es.max_new_tokens)
        if key not in seen:
            seen.add(key)
            n += len(es.prompts)
    return n
