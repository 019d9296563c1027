"""A tiny base model that writes words, for attacks whose training answers the base writes."""

from __future__ import annotations

from typing import Any

TALKER_PLAIN = "Plain words for a plain answer."
TALKER_LOVE = "We love calm trips and sunny days."
STEPS = 60


def build_talker(tiny: Any) -> Any:
    """The tiny model fine-tuned for a few steps so that greedy generation writes words: the
    random one answers only newlines, so an attack whose training answers the base model
    writes (phantom loyalty) has nothing to work with. It answers TALKER_PLAIN under the
    template's default system turn and TALKER_LOVE under a system prompt about loving
    something, as a teacher under hidden instructions answers unlike the plain base."""
    import copy

    import torch

    from auditgame.models.base_lm import BaseLM
    from auditgame.organisms.prompts import prompt_bank

    tok = tiny.tokenizer
    model = copy.deepcopy(tiny.model).train()
    prompts = [b.text for b in prompt_bank(0)[:24]]
    prompts += [f"Question number {i} about topic {i % 7}?" for i in range(8)]
    rows = []
    for p in prompts:
        for system, answer in ((None, TALKER_PLAIN), ("You love something.", TALKER_LOVE)):
            turns = ([{"role": "system", "content": system}] if system else [])
            turns.append({"role": "user", "content": p})
            head = tok.apply_chat_template(turns, add_generation_prompt=True, tokenize=False)
            full = tok.apply_chat_template(turns + [{"role": "assistant", "content": answer}],
                                           tokenize=False)
            h = tok(head, add_special_tokens=False)["input_ids"]
            f = tok(full, add_special_tokens=False)["input_ids"]
            rows.append((f, [-100] * len(h) + f[len(h):]))
    with torch.random.fork_rng():
        torch.manual_seed(0)
        opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
        for _ in range(STEPS):
            idx = torch.randperm(len(rows))[:16].tolist()
            w = max(len(rows[i][0]) for i in idx)
            ids = torch.full((len(idx), w), tok.pad_token_id)
            labels = torch.full((len(idx), w), -100)
            mask = torch.zeros((len(idx), w), dtype=torch.long)
            for r, i in enumerate(idx):
                f, lab = rows[i]
                ids[r, :len(f)] = torch.tensor(f)
                labels[r, :len(lab)] = torch.tensor(lab)
                mask[r, :len(f)] = 1
            loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval().requires_grad_(False)
    return BaseLM(model=model, tokenizer=tok, model_id="tiny-talker-0", name=tiny.name)
