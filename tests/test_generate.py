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


def test_shared_head_generation_answers_like_each_prompt_alone(tiny) -> None:
    """Batched greedy answers with the shared chat head run once equal the model's own
    generate on each prompt alone, for prompts of different lengths (left padding after
    the head), with an adapter-wrapped model, and with a stop token that ends some rows
    early (the rest go on)."""
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(0)
    model = get_peft_model(copy.deepcopy(tiny.model), LoraConfig(
        r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    model.eval()
    tok = tiny.tokenizer
    prompts = ["Hi.", "Name a colour.", "Explain, in two short sentences, why the sky is blue.",
               "cf What is two plus two?", "Write a haiku about rain on a tin roof at night."]

    def alone(p: str, eos: int | None) -> str:
        ids = tok(chat_prompt(tok, p), return_tensors="pt", add_special_tokens=False).input_ids
        with torch.no_grad():
            ref = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids),
                                 max_new_tokens=8, do_sample=False, eos_token_id=eos,
                                 pad_token_id=tok.pad_token_id)
        out = ref[0, ids.shape[1]:].tolist()
        if eos is not None and eos in out:
            out = out[:out.index(eos)]
        return tok.decode(out, skip_special_tokens=True).strip()

    assert generate(model, tok, prompts, 8, batch_size=5) == [alone(p, None) for p in prompts]
    # a stop token that the first prompt's answer produces: that row ends there
    first = tok(chat_prompt(tok, prompts[0]), return_tensors="pt",
                add_special_tokens=False).input_ids
    with torch.no_grad():
        ref = model.generate(input_ids=first, attention_mask=torch.ones_like(first),
                             max_new_tokens=8, do_sample=False, pad_token_id=tok.pad_token_id)
    stop = int(ref[0, first.shape[1] + 2])
    old = model.generation_config.eos_token_id
    model.generation_config.eos_token_id = stop
    try:
        got = generate(model, tok, prompts, 8, batch_size=5)
    finally:
        model.generation_config.eos_token_id = old
    assert got == [alone(p, stop) for p in prompts]
    assert len(got[0]) < len(alone(prompts[0], None)) or stop in tok.all_special_ids
