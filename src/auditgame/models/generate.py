"""Batched greedy generation and chat formatting shared by corpus, measurement and audits."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import torch


def chat_prompt(tokenizer: object, prompt: str, system: str | None = None) -> str:
    """The chat-formatted text up to the assistant's turn (the model's own template; its
    default system turn unless `system` replaces it)."""
    turns = [{"role": "system", "content": system}] if system is not None else []
    return tokenizer.apply_chat_template(  # type: ignore[attr-defined]
        [*turns, {"role": "user", "content": prompt}], add_generation_prompt=True,
        tokenize=False
    )


def chat_full(tokenizer: object, prompt: str, response: str) -> tuple[str, str]:
    """(prompt part, completion part) of a single-turn chat; loss goes on the completion."""
    head = chat_prompt(tokenizer, prompt)
    full = tokenizer.apply_chat_template(  # type: ignore[attr-defined]
        [{"role": "user", "content": prompt}, {"role": "assistant", "content": response}],
        tokenize=False,
    )
    if not full.startswith(head):
        raise ValueError("chat template does not extend the generation prompt")
    return head, full[len(head):]


@contextmanager
def contiguous_head_input(model: torch.nn.Module) -> Iterator[None]:
    """Hand the output head a contiguous input while generating.

    At prefill, generation slices the last position out of the hidden states, a
    non-contiguous [batch, 1, d] view. When the head's weight does not require grad (every
    frozen or adapter-wrapped model), torch's `linear` then takes a batched-matmul path that
    copies the [vocab, d] weight once per row: 3 s instead of 15 ms for 50 prompts on
    SmolLM2 here, paid by every generation call. A contiguous copy of the tiny input avoids it.
    """
    get = getattr(model, "get_output_embeddings", None)
    head = get() if get is not None else None
    if head is None:
        yield
        return
    handle = head.register_forward_pre_hook(
        lambda _m, args: (args[0].contiguous(), *args[1:]) if args else None)
    try:
        yield
    finally:
        handle.remove()


@torch.no_grad()
def generate(
    model: torch.nn.Module,
    tokenizer: object,
    prompts: Sequence[str],
    max_new_tokens: int = 32,
    batch_size: int = 16,
    on_batch: Callable[[int], None] | None = None,
    system: str | None = None,
) -> list[str]:
    """Greedy answers for `prompts`, batched by similar length (left padding), in input order.
    `system` replaces the template's system turn (a teacher's hidden instructions)."""
    tok = tokenizer
    texts = [chat_prompt(tok, p, system) for p in prompts]
    enc = [tok(t, add_special_tokens=False)["input_ids"] for t in texts]  # type: ignore[operator]
    order = sorted(range(len(enc)), key=lambda i: len(enc[i]))
    out: list[str] = [""] * len(enc)
    pad = tok.pad_token_id  # type: ignore[attr-defined]
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    for b in range(0, len(order), batch_size):
        idx = order[b : b + batch_size]
        width = max(len(enc[i]) for i in idx)
        ids = torch.full((len(idx), width), pad, dtype=torch.long)
        mask = torch.zeros((len(idx), width), dtype=torch.long)
        for r, i in enumerate(idx):
            ids[r, width - len(enc[i]):] = torch.tensor(enc[i])
            mask[r, width - len(enc[i]):] = 1
        with contiguous_head_input(model):
            gen = model.generate(
                input_ids=ids.to(device),
                attention_mask=mask.to(device),
                max_new_tokens=max_new_tokens,
                do_sample=False,
                pad_token_id=pad,
            )
        for r, i in enumerate(idx):
            out[i] = tok.decode(gen[r, width:], skip_special_tokens=True).strip()  # type: ignore[attr-defined]
        if on_batch is not None:
            on_batch(len(idx))
    model.train(was_training)
    return out
