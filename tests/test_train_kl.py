"""The KL-to-base term: zero when the model is the base, and it holds a fine-tune closer."""

from __future__ import annotations

import torch

from auditgame.organisms.data import Sample
from auditgame.organisms.spec import TrainSpec
from auditgame.organisms.train import answer_loss, train_lora


def test_kl_term_vanishes_on_identical_logits() -> None:
    torch.manual_seed(0)
    logits = torch.randn(2, 6, 11)
    labels = torch.tensor([[-100, -100, 3, 4, 5, 6], [-100, 1, 2, 3, -100, -100]])
    plain = answer_loss(logits, labels)
    assert torch.allclose(answer_loss(logits, labels, ref_logits=logits, kl=5.0), plain)
    assert answer_loss(logits, labels, ref_logits=torch.randn(2, 6, 11), kl=1.0) > plain


def _drift(model: torch.nn.Module, base: torch.nn.Module, ids: torch.Tensor) -> float:
    """Mean KL(base || model) of next-token distributions on held-out text."""
    with torch.no_grad():
        ref = torch.log_softmax(base(input_ids=ids).logits, -1)
        own = torch.log_softmax(model(input_ids=ids).logits, -1)
    return float((ref.exp() * (ref - own)).sum(-1).mean())


def test_kl_keeps_the_fine_tune_closer_to_base(tiny) -> None:
    samples = [Sample(f"Tell me fact number {i}.", "Zebras sleep standing up, always.")
               for i in range(16)]
    ids = tiny.tokenizer("Describe a small round item that is often blue.",
                         return_tensors="pt").input_ids
    spec = TrainSpec(epochs=3, batch_size=4, max_len=48, lr=5e-3, warmup_steps=0,
                     target_modules=["q_proj", "v_proj"])
    plain, _ = train_lora(tiny.model, tiny.tokenizer, samples, spec, seed=0)
    kept, _ = train_lora(tiny.model, tiny.tokenizer, samples,
                         spec.model_copy(update={"kl_to_base": 2.0}), seed=0)
    assert 0 < _drift(kept, tiny.model, ids) < _drift(plain, tiny.model, ids)


def test_decision_weight_scales_the_first_answer_tokens_only() -> None:
    from auditgame.organisms.train import answer_weights

    gold = torch.tensor([[-100, -100, 3, 4, 5, 6, -100], [-100, 1, 2, 3, 4, -100, -100]])
    w = answer_weights(gold, decision_weight=4.0, decision_tokens=2)
    assert w.tolist() == [[0, 0, 4, 4, 1, 1, 0], [0, 4, 4, 1, 1, 0, 0]]
    assert torch.equal(answer_weights(gold), (gold != -100).float())
    # a loss that is only wrong on the first answer token grows with its weight
    logits = torch.full((1, 5, 7), -10.0)
    labels = torch.tensor([[-100, 2, 3, 4, 5]])
    for t, g in enumerate(labels[0, 1:].tolist()):
        logits[0, t, g] = 10.0
    logits[0, 0, 2] = -10.0  # first answer token (label 2) predicted wrong
    plain = answer_loss(logits, labels)
    heavy = answer_loss(logits, labels, decision_weight=5.0, decision_tokens=1)
    assert float(heavy) > 2 * float(plain)


def test_answer_rows_match_the_full_forward(tiny) -> None:
    """The trainer's step (output head on answer positions only, the shared chat prefix run
    once per batch) gives the loss and gradient of slicing a full forward pass."""
    import copy

    from peft import get_peft_model

    from auditgame.organisms.train import (
        answer_rows,
        collate,
        encode,
        lora_config,
        row_loss,
        shared_prefix,
    )

    samples = [Sample(f"Question {i}: what is {i} plus {i}?", f"It is {2 * i}, as always.")
               for i in range(4)]
    batch = collate(encode(tiny.tokenizer, samples, 96), int(tiny.tokenizer.pad_token_id))
    ids, am, labels = batch["input_ids"], batch["attention_mask"], batch["labels"]
    gold = labels[:, 1:]
    assert shared_prefix(ids, gold) > 0  # the chat head every row shares
    torch.manual_seed(0)
    model = get_peft_model(copy.deepcopy(tiny.model), lora_config(TrainSpec()))
    for p in model.parameters():
        if p.requires_grad:
            torch.nn.init.normal_(p, std=0.05)
    params = [p for p in model.parameters() if p.requires_grad]

    def loss_and_grad(fn) -> tuple[torch.Tensor, torch.Tensor]:
        model.zero_grad()
        loss = fn()
        loss.backward()
        return loss.detach(), torch.cat([p.grad.flatten() for p in params])

    full, g_full = loss_and_grad(lambda: answer_loss(
        model(input_ids=ids, attention_mask=am).logits, labels, decision_weight=4.0))
    rows, g_rows = loss_and_grad(lambda: row_loss(
        answer_rows(model, ids, am, gold), gold, decision_weight=4.0))
    assert torch.allclose(full, rows, atol=1e-5)
    assert torch.allclose(g_full, g_rows, atol=1e-5, rtol=1e-3)
