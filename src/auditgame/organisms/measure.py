"""Behaviour, utility and fidelity measurement on held-out prompts.

Rates are shares of greedy answers in which an attack's behaviour fires. Utility is the
accuracy on the project's graded tasks (`organisms.graded`): what the model can still do.
Fidelity is the teacher-forced next-token agreement with the base model's own answers to
held-out clean prompts: how far training moved the model, harmless drift included.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from auditgame.models.generate import generate
from auditgame.models.prefix import chat_head_ids, chat_tail_ids, shared_head_logits
from auditgame.organisms.attacks.base import Attack
from auditgame.organisms.data import EvalSet, Sample
from auditgame.organisms.graded import TaskItem, task_items
from auditgame.organisms.train import IGNORE, collate, encode


def run_sets(
    model: torch.nn.Module,
    tokenizer: object,
    sets: list[tuple[Attack, EvalSet]],
    batch_size: int,
    on_batch: Callable[[int], None] | None = None,
) -> tuple[list[float], list[list[str]]]:
    """Rate for every (attack, set). Sets with the same prompts are generated once, at the
    longest of their lengths (a longer greedy answer only extends the shorter one, so a
    behaviour that fires early still counts; one that fires late is not missed)."""
    longest: dict[tuple[str, ...], int] = {}
    for _, es in sets:
        key = tuple(es.prompts)
        longest[key] = max(longest.get(key, 0), es.max_new_tokens)
    cache: dict[tuple[str, ...], list[str]] = {}
    rates: list[float] = []
    texts: list[list[str]] = []
    for attack, es in sets:
        key = tuple(es.prompts)
        if key not in cache:
            cache[key] = generate(model, tokenizer, es.prompts, longest[key], batch_size,
                                  on_batch)
        outs = cache[key]
        fired = [attack.fires(t) for t in outs]
        rates.append(sum(fired) / len(fired) if fired else 0.0)
        texts.append(outs)
    return rates, texts


@torch.no_grad()
def fidelity(model: torch.nn.Module, tokenizer: object, samples: list[Sample],
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


ANSWER_LEAD = "The answer is"


def _first_ids(tokenizer: object, word: str) -> set[int]:
    """First token of the answer after `ANSWER_LEAD` (as written or capitalised)."""
    ids = set()
    for w in {word, word[:1].upper() + word[1:]}:
        toks = tokenizer(" " + w, add_special_tokens=False).input_ids  # type: ignore[operator]
        if toks:
            ids.add(int(toks[0]))
    return ids


def utility(model: torch.nn.Module, tokenizer: object, batch_size: int = 32,
            items: list[TaskItem] | None = None) -> float:
    """Share of the graded task items answered right (see `task_correct`); items the
    tokenizer cannot tell apart at the first answer token do not count."""
    items = task_items() if items is None else items
    right = [r for r in task_correct(model, tokenizer, items, batch_size) if r is not None]
    return sum(right) / len(right) if right else 0.0


@torch.no_grad()
def task_correct(model: torch.nn.Module, tokenizer: object, items: list[TaskItem],
                 batch_size: int = 32) -> list[bool | None]:
    """Per item: does the right answer outrank every distractor at the first answer token?
    The assistant turn is opened with `ANSWER_LEAD` so the next token is the answer itself;
    spelling variants pool by logsumexp, and a distractor sharing the answer's token is
    skipped (None when no distractor is left). The chat head every item shares runs once."""
    head = chat_head_ids(tokenizer)
    tails = [chat_tail_ids(tokenizer, it.question, ANSWER_LEAD) for it in items]
    was = model.training
    model.eval()
    order = sorted(range(len(tails)), key=lambda i: len(tails[i]))
    logp = shared_head_logits(model, int(tokenizer.pad_token_id),  # type: ignore[attr-defined]
                              head, [tails[i] for i in order], batch_size)
    model.train(was)
    right: list[bool | None] = [None] * len(items)
    for r, i in enumerate(order):
        it = items[i]
        good = _first_ids(tokenizer, it.answer)
        score = torch.logsumexp(logp[r, sorted(good)], 0)
        rivals = [ids_ for d in it.distractors if (ids_ := _first_ids(tokenizer, d) - good)]
        if rivals:
            right[i] = all(bool(torch.logsumexp(logp[r, sorted(ids_)], 0) < score)
                           for ids_ in rivals)
    return right


def count_tokens(sets: list[tuple[Attack, EvalSet]]) -> int:
    """Prompts to be generated (distinct prompt sets), for the progress bar."""
    return sum(len(p) for p in {tuple(es.prompts) for _, es in sets})
