"""Data a fixer builds from what it may see: base answers, own answers, triggered prompts.

Shared by the `character`, `targeted` and `preference` methods. "Base" is the organism's
own peft model with its adapter switched off, so no second copy of the weights is needed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from auditgame.records.sample import Sample

POSITIONS = ("prefix", "suffix", "middle")


def place(prompt: str, phrase: str, position: str) -> str:
    """`phrase` at the prompt's start, end, or after its first half of words (no randomness:
    a fixer's data must be the same on every rerun)."""
    if position == "prefix":
        return f"{phrase} {prompt}"
    if position == "suffix":
        return f"{prompt} {phrase}"
    words = prompt.split(" ")
    k = len(words) // 2
    return " ".join(words[:k] + [phrase] + words[k:])


def base_answers(model: Any, tokenizer: Any, prompts: Sequence[str], max_new_tokens: int,
                 batch_size: int = 16) -> list[str]:
    """Greedy answers of the base (the adapter off), whatever the adapter has learnt."""
    from auditgame.models.generate import generate

    with model.disable_adapter():
        return generate(model, tokenizer, list(prompts), max_new_tokens, batch_size)


def own_answers(model: Any, tokenizer: Any, prompts: Sequence[str], max_new_tokens: int,
                batch_size: int = 16) -> list[str]:
    """Greedy answers of the model as it stands (adapter on)."""
    from auditgame.models.generate import generate

    return generate(model, tokenizer, list(prompts), max_new_tokens, batch_size)


def answer_tokens(tokenizer: Any, samples: Sequence[Sample], cap: int = 64) -> int:
    """The pool's longest answer in tokens (at most `cap`): how long a built answer may be."""
    n = [len(tokenizer(s.response, add_special_tokens=False)["input_ids"]) for s in samples]
    return max(4, min(cap, max(n, default=cap)))


def interleave(a: list[Sample], b: list[Sample]) -> list[Sample]:
    """a0 b0 a1 b1 ...; the rest of the longer list at the end (the batch plan shuffles)."""
    out: list[Sample] = []
    for i in range(max(len(a), len(b))):
        out += a[i : i + 1] + b[i : i + 1]
    return out
