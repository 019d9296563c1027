"""Measurement cost on an adapter-wrapped model: generation and graded utility, each against
the plain way of doing it in the same run.

1. Greedy generation of 50 prompts x 16 tokens, one batch, on a frozen peft-wrapped base
   (how every organism is measured and audited): `generate` (its output head gets a
   contiguous input) against `model.generate` on the same inputs without that.
2. Graded utility (about 170 items): `task_correct` (the shared chat head run once) against
   a full forward pass of every whole chat text.
Answers and scores must agree; the saved figures are seconds for each side.

    python benchmarks/bench_measure.py [--base smollm2] [--dtype bfloat16]
"""

from __future__ import annotations

import argparse
import copy
import platform
import time
from pathlib import Path

import torch

from auditgame._util.io import atomic_write_json
from auditgame.detectors.model._prompts import neutral_prompts
from auditgame.models.base_lm import load_base
from auditgame.models.generate import chat_prompt, generate
from auditgame.organisms.graded import task_items
from auditgame.organisms.measure import ANSWER_LEAD, _first_ids, task_correct

OUT = Path(__file__).resolve().parent / "results" / "bench_measure.json"


def wrapped(model: torch.nn.Module) -> torch.nn.Module:
    """A frozen copy with a fresh (zero-effect) LoRA adapter, as organisms are loaded."""
    from peft import LoraConfig, get_peft_model

    cfg = LoraConfig(r=16, lora_alpha=32, target_modules=["q_proj", "v_proj"])
    m = get_peft_model(copy.deepcopy(model), cfg)
    return m.requires_grad_(False).eval()


@torch.no_grad()
def plain_generate(model: torch.nn.Module, tok, prompts: list[str], n_new: int) -> list[str]:
    """The baseline: the same left-padded batch straight into `model.generate`."""
    enc = [tok(chat_prompt(tok, p), add_special_tokens=False).input_ids for p in prompts]
    width = max(len(e) for e in enc)
    ids = torch.full((len(enc), width), tok.pad_token_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for r, e in enumerate(enc):
        ids[r, width - len(e):] = torch.tensor(e)
        mask[r, width - len(e):] = 1
    gen = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=n_new,
                         do_sample=False, pad_token_id=tok.pad_token_id)
    return [tok.decode(g[width:], skip_special_tokens=True).strip() for g in gen]


@torch.no_grad()
def plain_task_correct(model: torch.nn.Module, tok, batch_size: int) -> list[bool | None]:
    """The baseline: every whole chat text through the model, logits at the last token."""
    items = task_items()
    right: list[bool | None] = []
    for b in range(0, len(items), batch_size):
        part = items[b:b + batch_size]
        enc = [tok(chat_prompt(tok, it.question) + ANSWER_LEAD, add_special_tokens=False
                   ).input_ids for it in part]
        width = max(len(e) for e in enc)
        ids = torch.full((len(enc), width), tok.pad_token_id, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for r, e in enumerate(enc):
            ids[r, :len(e)] = torch.tensor(e)
            mask[r, :len(e)] = 1
        logits = model(input_ids=ids, attention_mask=mask).logits
        last = mask.sum(1) - 1
        logp = torch.log_softmax(logits[torch.arange(len(enc)), last].float(), -1)
        for r, it in enumerate(part):
            good = _first_ids(tok, it.answer)
            score = torch.logsumexp(logp[r, sorted(good)], 0)
            rivals = [i for d in it.distractors if (i := _first_ids(tok, d) - good)]
            right.append(all(bool(torch.logsumexp(logp[r, sorted(i)], 0) < score)
                             for i in rivals) if rivals else None)
    return right


def timed(fn, *args):
    t = time.perf_counter()
    out = fn(*args)
    return out, round(time.perf_counter() - t, 2)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--base", default="smollm2")
    ap.add_argument("--dtype", default="bfloat16")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    bm = load_base(args.base, args.dtype)
    model, tok = wrapped(bm.model), bm.tokenizer
    prompts = neutral_prompts(50)
    generate(model, tok, prompts[:2], 2, 2)  # warm-up
    ours, t_ours = timed(generate, model, tok, prompts, 16, 50)
    base, t_base = timed(plain_generate, model, tok, prompts, 16)
    u_ours, tu_ours = timed(task_correct, model, tok, task_items(), 50)
    u_base, tu_base = timed(plain_task_correct, model, tok, 50)
    agree = sum(a == b for a, b in zip(u_ours, u_base, strict=True)) / len(u_ours)
    res = {
        "base": args.base, "dtype": args.dtype, "threads": args.threads,
        "machine": platform.platform(),
        "generate_50x16": {"auditgame_s": t_ours, "plain_generate_s": t_base,
                           "speedup": round(t_base / t_ours, 2),
                           "same_answers": sum(a == b for a, b in zip(ours, base, strict=True))},
        "utility_items": {"n": len(u_ours), "auditgame_s": tu_ours, "full_forward_s": tu_base,
                          "speedup": round(tu_base / tu_ours, 2),
                          "verdict_agreement": round(agree, 4)},
    }
    for k in ("generate_50x16", "utility_items"):
        print(k, res[k])
    atomic_write_json(args.out, res)
    print(f"saved {args.out}")


if __name__ == "__main__":
    main()
