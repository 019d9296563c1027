"""Graded utility tasks: well-formed items and a deterministic score on a real (tiny) model."""

from __future__ import annotations

import torch

from auditgame.organisms.graded import TaskItem, task_items, tasks_digest
from auditgame.organisms.measure import task_correct, utility


def test_items_are_deterministic_and_well_formed() -> None:
    a, b = task_items(0), task_items(0)
    assert a == b and len(a) >= 400  # one item is under 0.5 % of the score
    assert len({it.question for it in a}) == len(a)
    for it in a:
        assert it.answer not in it.distractors and len(set(it.distractors)) == 3
    assert task_items(1) != a  # distractors follow the seed
    assert len({it.kind for it in a}) >= 10
    assert tasks_digest(a) == tasks_digest() != tasks_digest(task_items(1))


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


def test_cached_head_scoring_matches_the_whole_chat_text(tiny) -> None:
    """The shared chat head run once gives the same next-token distribution as each item's
    whole chat text run alone, for items of different lengths in one ragged batch."""
    from auditgame.models.generate import chat_prompt
    from auditgame.models.prefix import chat_head_ids, chat_tail_ids, shared_head_logits
    from auditgame.organisms.measure import ANSWER_LEAD

    tok = tiny.tokenizer
    qs = ["Question 1?", "What is the capital of a very small and quiet country?", "Why?"]
    tails = [chat_tail_ids(tok, q, ANSWER_LEAD) for q in qs]
    assert len({len(t) for t in tails}) == 3
    fast = shared_head_logits(tiny.model, int(tok.pad_token_id), chat_head_ids(tok), tails,
                              batch_size=2)
    for q, row in zip(qs, fast, strict=True):
        ids = tok(chat_prompt(tok, q) + ANSWER_LEAD, return_tensors="pt",
                  add_special_tokens=False).input_ids
        with torch.no_grad():
            ref = torch.log_softmax(tiny.model(input_ids=ids).logits[0, -1].float(), -1)
        assert torch.allclose(row, ref, atol=1e-4)
