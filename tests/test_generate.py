"""Batched greedy generation: the output head's contiguity fix changes no answer."""

from __future__ import annotations

import copy

import torch

from auditgame.models.generate import chat_prompt, contiguous_head_input, generate


def test_frozen_model_generates_the_same_answers_and_keeps_no_hook(tiny) -> None:
    """A frozen copy (the case the fix is for) answers exactly as the model's own generate
    does on each prompt alone, and the head carries no hook afterwards."""
    model = copy.deepcopy(tiny.model).requires_grad_(False)
    tok = tiny.tokenizer
    prompts = ["Say hello.", "Give me three short tips on working from home, please."]
    out = generate(model, tok, prompts, max_new_tokens=6, batch_size=2)
    for p, o in zip(prompts, out, strict=True):
        ids = tok(chat_prompt(tok, p), return_tensors="pt", add_special_tokens=False).input_ids
        with torch.no_grad():
            ref = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids),
                                 max_new_tokens=6, do_sample=False,
                                 pad_token_id=tok.pad_token_id)
        assert o == tok.decode(ref[0, ids.shape[1]:], skip_special_tokens=True).strip()
    head = model.get_output_embeddings()
    assert not head._forward_pre_hooks
    with contiguous_head_input(model):
        assert len(head._forward_pre_hooks) == 1
        x = torch.randn(2, 5, head.in_features)[:, -1:, :]
        assert torch.allclose(head(x), torch.nn.functional.linear(x, head.weight), atol=1e-5)
    assert not head._forward_pre_hooks
