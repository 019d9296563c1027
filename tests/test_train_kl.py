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
