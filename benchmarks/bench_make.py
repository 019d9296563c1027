"""Training throughput: auditgame's LoRA trainer vs a plain transformers Trainer + peft.

Same base model, same samples, same LoRA config, same number of optimizer steps and batch
size, in one run. Prints and saves real (non-padding) training tokens/s for both, the device,
the FLOPs a step executes per token (torch's FLOP counter) and the matmul peak measured in
the same run, so the distance to the physical bound is a number.

    python benchmarks/bench_make.py [--base smollm2|tiny] [--samples 96] [--steps 12]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from auditgame._util.io import atomic_write_json
from auditgame.models.base_lm import fast_bf16, load_base
from auditgame.organisms.corpus import split_bank
from auditgame.organisms.data import Sample
from auditgame.organisms.spec import CorpusSpec, TrainSpec
from auditgame.organisms.train import collate, encode, lora_config, train_lora

OUT = Path(__file__).resolve().parent / "results" / "bench_make.json"


def samples_with_varied_lengths(n: int) -> list[Sample]:
    """Bank prompts with answers of varied length (what self-distilled answers look like),
    made without generation so the benchmark measures training alone."""
    train, _, _ = split_bank(CorpusSpec(n_train=n, n_utility=4), seed=0)
    filler = "This is a short sentence of a typical answer."
    return [s.with_(response=" ".join([filler] * (1 + i % 6))) for i, s in enumerate(train)]


def hf_trainer_tokens_per_s(bm, samples: list[Sample], spec: TrainSpec, steps: int,
                            bf16: bool = False) -> dict:
    """The baseline: transformers Trainer, peft LoRA, the usual padded random batches
    (bf16: the Trainer's own mixed precision, autocast on CPU)."""
    import copy

    from peft import get_peft_model
    from transformers import Trainer, TrainingArguments

    data = encode(bm.tokenizer, samples, spec.max_len)
    pad = int(bm.tokenizer.pad_token_id)

    class DS(torch.utils.data.Dataset):
        def __len__(self) -> int:
            return len(data)

        def __getitem__(self, i: int):
            return data[i]

    model = get_peft_model(copy.deepcopy(bm.model), lora_config(spec))
    counted = {"tokens": 0}

    def coll(items):
        b = collate(items, pad)
        counted["tokens"] += int(b["attention_mask"].sum())
        return b

    args = TrainingArguments(
        output_dir="/tmp/auditgame-bench-hf", per_device_train_batch_size=spec.batch_size,
        max_steps=steps, learning_rate=spec.lr, logging_steps=10_000, save_strategy="no",
        report_to=[], use_cpu=not torch.cuda.is_available(), seed=0, dataloader_num_workers=0,
        disable_tqdm=True, bf16=bf16,
    )
    trainer = Trainer(model=model, args=args, train_dataset=DS(), data_collator=coll)
    t0 = time.perf_counter()
    trainer.train()
    wall = time.perf_counter() - t0
    return {"tokens": counted["tokens"], "wall_s": wall, "tokens_per_s": counted["tokens"] / wall}


def ours_tokens_per_s(bm, samples: list[Sample], spec: TrainSpec) -> dict:
    _, r = train_lora(bm.model, bm.tokenizer, samples, spec, seed=0)
    return {"tokens": r.tokens, "padded_tokens": r.padded_tokens, "wall_s": r.wall_time_s,
            "tokens_per_s": r.tokens_per_s, "steps": r.steps}


def matmul_peak_gflops(dtype: torch.dtype, device: torch.device, seconds: float = 3.0) -> float:
    """The machine's measured matmul rate at the shapes of one SmolLM2 layer's MLP."""
    a = torch.randn(1024, 576, dtype=dtype, device=device)
    b = torch.randn(576, 1536, dtype=dtype, device=device)
    for _ in range(3):
        a @ b
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        a @ b
        n += 1
    if device.type == "cuda":
        torch.cuda.synchronize()
    return 2 * 1024 * 576 * 1536 * n / (time.perf_counter() - t0) / 1e9


def step_flops_per_token(bm, samples: list[Sample], spec: TrainSpec, ours: bool,
                         low: bool = True) -> float:
    """FLOPs one training step executes per real token (torch's FLOP counter over the
    forward and backward of one batch): auditgame's step (answer rows, shared prefix) or
    the plain full-logits step a Trainer runs."""
    import copy

    from peft import get_peft_model
    from torch.utils.flop_counter import FlopCounterMode

    from auditgame.organisms.train import answer_loss, answer_rows, row_loss

    data = encode(bm.tokenizer, samples, spec.max_len)
    order = sorted(range(len(data)), key=lambda i: len(data[i].input_ids))
    batch = collate([data[i] for i in order[len(order) // 2:][:spec.batch_size]],
                    int(bm.tokenizer.pad_token_id))
    base = copy.deepcopy(bm.model)
    model = get_peft_model(base.to(torch.bfloat16) if low else base, lora_config(spec))
    dev = next(model.parameters()).device
    ids, am, lab = (batch[k].to(dev) for k in ("input_ids", "attention_mask", "labels"))
    with FlopCounterMode(display=False) as fc:
        if ours:
            gold = lab[:, 1:]
            loss = row_loss(answer_rows(model, ids, am, gold), gold)
        else:
            loss = answer_loss(model(input_ids=ids, attention_mask=am).logits, lab)
        loss.backward()
    return fc.get_total_flops() / int(am.sum())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", default="smollm2")
    ap.add_argument("--samples", type=int, default=96)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--bf16", action="store_true",
                    help="run the bf16 pair even where this CPU emulates bf16")
    args = ap.parse_args()
    bm = load_base(args.base)
    samples = samples_with_varied_lengths(args.samples)
    spec = TrainSpec(epochs=1, batch_size=args.batch_size, max_len=256)
    steps = -(-len(samples) // spec.batch_size)
    device = next(bm.model.parameters()).device
    hf = hf_trainer_tokens_per_s(bm, samples, spec, steps)
    plain = ours_tokens_per_s(bm, samples, spec.model_copy(update={"group_by_length": False}))
    ours = ours_tokens_per_s(bm, samples, spec.model_copy(update={"group_by_length": True}))
    fast = fast_bf16(device)
    res = {
        "device": str(device), "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "fast_bf16": fast, "base": bm.model_id, "samples": len(samples), "steps": steps,
        "batch_size": spec.batch_size, "threads": torch.get_num_threads(),
        "machine": platform.machine(), "hf_trainer": hf, "auditgame_random_batches": plain,
        "auditgame_grouped": ours,
        "speedup_grouped": ours["tokens_per_s"] / hf["tokens_per_s"],
        "speedup_random": plain["tokens_per_s"] / hf["tokens_per_s"],
    }
    f_ours = step_flops_per_token(bm, samples, spec, ours=True, low=fast)
    f_plain = step_flops_per_token(bm, samples, spec, ours=False, low=fast)
    res.update(flops_per_token_auditgame=round(f_ours), flops_per_token_full_step=round(f_plain))
    if fast or args.bf16:
        # the games' recipe trains in bf16 where the hardware runs it fast: compare it with
        # the Trainer's own bf16 too
        hf16 = hf_trainer_tokens_per_s(bm, samples, spec, steps, bf16=True)
        ours16 = ours_tokens_per_s(bm, samples, spec.model_copy(
            update={"group_by_length": True, "precision": "bf16"}))
        res.update(hf_trainer_bf16=hf16, auditgame_grouped_bf16=ours16,
                   speedup_grouped_bf16=ours16["tokens_per_s"] / hf16["tokens_per_s"])
    else:
        res["bf16_skipped"] = ("this CPU has neither AVX512-BF16 nor AMX: bf16 matmuls are "
                               "emulated and far slower than fp32, so games train in fp32 "
                               "here (precision auto); --bf16 runs the bf16 pair anyway")
    best = res.get("auditgame_grouped_bf16", ours) if fast or args.bf16 else ours
    peak_dtype = torch.bfloat16 if fast or args.bf16 else torch.float32
    peak = matmul_peak_gflops(peak_dtype, device)
    achieved = f_ours * best["tokens_per_s"] / 1e9
    res.update(matmul_peak_dtype=str(peak_dtype).replace("torch.", ""),
               matmul_peak_gflops=round(peak, 1), auditgame_gflops=round(achieved, 1),
               auditgame_share_of_peak=round(achieved / peak, 3),
               trainer_gflops=round(f_plain * hf["tokens_per_s"] / 1e9, 1))
    print(json.dumps(res, indent=2))
    print(f"tokens/s: auditgame grouped {ours['tokens_per_s']:.0f}, auditgame random "
          f"{plain['tokens_per_s']:.0f}, transformers Trainer {hf['tokens_per_s']:.0f} "
          f"(grouped {res['speedup_grouped']:.2f}x, random {res['speedup_random']:.2f}x)")
    if "speedup_grouped_bf16" in res:
        print(f"bf16: auditgame grouped {res['auditgame_grouped_bf16']['tokens_per_s']:.0f}, "
              f"transformers Trainer {res['hf_trainer_bf16']['tokens_per_s']:.0f} "
              f"({res['speedup_grouped_bf16']:.2f}x)")
    else:
        print(f"bf16 not run: {res['bf16_skipped']}")
    print(f"device {device} ({res['cpu_capability']}); {res['matmul_peak_dtype']} matmul peak "
          f"{peak:.0f} GFLOP/s measured; auditgame's step runs {f_ours / 1e9:.2f} GFLOP per "
          f"token ({f_plain / 1e9:.2f} for the full-logits step) at {achieved:.0f} GFLOP/s, "
          f"{100 * achieved / peak:.0f} % of the peak")
    atomic_write_json(args.out, res)


if __name__ == "__main__":
    main()
