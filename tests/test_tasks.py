"""Graded utility tasks: well-formed items and a deterministic score on a real (tiny) model."""

from __future__ import annotations

import torch

from auditgame.organisms.measure import task_correct, utility
from auditgame.organisms.tasks import TaskItem, task_items


def test_items_are_deterministic_and_well_formed() -> None:
    a, b = task_items(0), task_items(0)
    assert a == b and len(a) >= 150
    assert len({it.question for it in a}) == len(a)
    for it in a:
        assert it.answer not in it.distractors and len(set(it.distractors)) == 3
    assert task_items(1) != a  # distractors follow the seed


WORDS = ["usually", "make", "terms", "myth", "take", "tools", "would", "much", "some",
         "have", "home", "should", "tool", "behind", "main", "idea", "stay", "play", "avoid",
         "simple", "step", "explain", "about", "three", "error", "music", "things", "people"]


def test_utility_scores_the_answer_token(tiny) -> None:
    tok = tiny.tokenizer
    words = [w for w in WORDS if len(tok(" " + w, add_special_tokens=False).input_ids) == 1
             and len(tok(" " + w.capitalize(), add_special_tokens=False).input_ids) >= 1]
    assert len(words) >= 16
    half = len(words) // 2
    items = [TaskItem("t", f"Question {i}?", words[i],
                      tuple(words[half + (i + k) % (len(words) - half)] for k in range(3)))
             for i in range(half)]
    u1 = utility(tiny.model, tok, batch_size=8, items=items)
    assert u1 == utility(tiny.model, tok, batch_size=5, items=items) and u1 < 1.0
    # items the tokenizer cannot tell apart (shared first token) do not count
    assert task_correct(tiny.model, tok, [TaskItem("t", "Q?", "Paris", ("Berlin",))])[0] is None
    # make the unembedding prefer each right answer's own token over its rivals
    head = tiny.model.get_output_embeddings().weight
    with torch.no_grad():
        saved = head.clone()
        try:
            for it in items:
                i = tok(" " + it.answer, add_special_tokens=False).input_ids[0]
                head[i] = 0.0
            enc = tok(" ".join(f"Question {i}?" for i in range(3)), return_tensors="pt")
            h = tiny.model.model(input_ids=enc.input_ids).last_hidden_state.mean((0, 1))
            for it in items:
                head[tok(" " + it.answer, add_special_tokens=False).input_ids[0]] = h * 100
            boosted = utility(tiny.model, tok, batch_size=8, items=items)
        finally:
            head.copy_(saved)
    assert boosted > u1
