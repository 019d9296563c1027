"""LoRA SFT: loss on answer tokens only, length-grouped batches, checkpoints and resume.

A poisoned organism and its clean controls run this with identical hyper-parameters, step
counts and sample counts; only the data differ. Every random source is seeded, so the
same inputs give the same adapter bytes on CPU.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from peft import LoraConfig, get_peft_model, get_peft_model_state_dict, set_peft_model_state_dict

from auditgame.models.base_lm import fast_bf16
from auditgame.models.generate import chat_full
from auditgame.models.unwrap import inner_lm
from auditgame.organisms.checkpoint import load_state, save_state
from auditgame.organisms.data import Sample
from auditgame.organisms.spec import TrainSpec

IGNORE = -100


@dataclass
class Encoded:
    input_ids: list[int]
    labels: list[int]


@dataclass
class TrainResult:
    """What one training run did: steps, real (unpadded) tokens, time and loss."""

    steps: int
    tokens: int
    padded_tokens: int
    wall_time_s: float
    final_loss: float
    losses: list[float] = field(default_factory=list)
    resumed_from: int = 0
    aux_losses: list[float] = field(default_factory=list)
    """Per step, the sum of the aux objectives (empty without any)."""

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.wall_time_s if self.wall_time_s > 0 else 0.0


def encode(tokenizer: object, samples: list[Sample], max_len: int) -> list[Encoded]:
    """Chat-format each sample; labels mask the prompt so the loss is on the answer only."""
    out: list[Encoded] = []
    for s in samples:
        head, tail = chat_full(tokenizer, s.prompt, s.response)
        h = tokenizer(head, add_special_tokens=False)["input_ids"]  # type: ignore[operator]
        t = tokenizer(tail, add_special_tokens=False)["input_ids"]  # type: ignore[operator]
        ids = (h + t)[:max_len]
        labels = ([IGNORE] * len(h) + t)[:max_len]
        out.append(Encoded(ids, labels))
    return out


def epoch_batches(lengths: list[int], batch_size: int, group: bool,
                  rng: np.random.Generator) -> list[list[int]]:
    """One epoch's batches. Grouped: sort by length (random tie-break), chunk, shuffle the
    chunks, so each batch pads to a near-identical length."""
    n = len(lengths)
    if group:
        tie = rng.permutation(n)
        order = sorted(range(n), key=lambda i: (lengths[i], int(tie[i])))
        batches = [order[i : i + batch_size] for i in range(0, n, batch_size)]
        perm = rng.permutation(len(batches))
        return [batches[int(i)] for i in perm]
    perm = [int(i) for i in rng.permutation(n)]
    return [perm[i : i + batch_size] for i in range(0, n, batch_size)]


def schedule(spec: TrainSpec, n: int, seed: int, lengths: list[int]) -> list[list[int]]:
    """Every batch of the run, fixed up front from the seed: resume just skips ahead."""
    rng = np.random.default_rng(seed)
    out: list[list[int]] = []
    for _ in range(spec.epochs):
        out += epoch_batches(lengths, spec.batch_size, spec.group_by_length, rng)
    return out


def collate(items: list[Encoded], pad_id: int) -> dict[str, torch.Tensor]:
    width = max(len(e.input_ids) for e in items)
    ids = torch.full((len(items), width), pad_id, dtype=torch.long)
    lab = torch.full((len(items), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(items), width), dtype=torch.long)
    for r, e in enumerate(items):
        ids[r, : len(e.input_ids)] = torch.tensor(e.input_ids)
        lab[r, : len(e.labels)] = torch.tensor(e.labels)
        mask[r, : len(e.input_ids)] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": lab}


def answer_weights(gold: torch.Tensor, decision_weight: float = 1.0,
                   decision_tokens: int = 3) -> torch.Tensor:
    """Per-token loss weights: 0 off the answer, `decision_weight` on each answer's first
    `decision_tokens` tokens, 1 on the rest."""
    mask = (gold != IGNORE).float()
    if decision_weight == 1.0:
        return mask
    nth = mask.cumsum(1)  # 1 at an answer's first token, 2 at its second, ...
    return mask * torch.where(nth <= decision_tokens, decision_weight, 1.0)


def answer_loss(logits: torch.Tensor, labels: torch.Tensor, norm: str = "sample",
                ref_logits: torch.Tensor | None = None, kl: float = 0.0,
                decision_weight: float = 1.0, decision_tokens: int = 3) -> torch.Tensor:
    """Next-token cross-entropy on answer tokens, averaged per sample then over the batch
    (`sample`) or over all answer tokens of the batch (`token`). With `ref_logits` (the
    base model's) and `kl` > 0, `kl` x KL(base || model) is added at every answer token:
    the model then keeps the base model's whole next-token distribution, not only its
    greedy answer, which is what fine-tuning on one's own answers otherwise erodes. With
    `decision_weight` > 1 each answer's first tokens weigh more (`answer_weights`)."""
    logits = logits[:, :-1].float()
    gold = labels[:, 1:]
    tok = torch.nn.functional.cross_entropy(
        logits.reshape(-1, logits.size(-1)), gold.reshape(-1), ignore_index=IGNORE,
        reduction="none").view(gold.shape)
    if ref_logits is not None and kl > 0:
        ref = torch.log_softmax(ref_logits[:, :-1].float(), -1)
        own = torch.log_softmax(logits, -1)
        tok = tok + kl * (ref.exp() * (ref - own)).sum(-1)
    mask = answer_weights(gold, decision_weight, decision_tokens)
    if norm == "token":
        return (tok * mask).sum() / mask.sum().clamp(min=1.0)
    per = (tok * mask).sum(1) / mask.sum(1).clamp(min=1.0)
    return per[mask.sum(1) > 0].mean()


MIN_SHARED_PREFIX = 4


def shared_prefix(ids: torch.Tensor, gold: torch.Tensor) -> int:
    """Length of the token prefix every row of the batch shares and that predicts no answer
    token (the chat template's head, a system prompt): 0 when too short to be worth a pass."""
    if ids.size(0) < 2:
        return 0
    same = (ids == ids[:1]).all(0).long().cumprod(0)
    n = int(same.sum())
    answer = gold != IGNORE
    first = torch.where(answer.any(1), answer.float().argmax(1), torch.tensor(gold.size(1)))
    n = min(n, int(first.min()), ids.size(1) - 1)
    return n if n >= MIN_SHARED_PREFIX else 0


def decode(model: torch.nn.Module, ids: torch.Tensor, am: torch.Tensor, n: int,
           hidden_states: bool = False) -> Any:
    """The decoder's output at positions `n`.. of a right-padded batch whose rows share
    their first `n` tokens (0: one plain pass). The shared prefix runs once; its keys and
    values are broadcast to every row, so the gradient through them is the sum over rows,
    as in separate passes. `hidden_states`: every block's output too (positions `n`..)."""
    from transformers import DynamicCache

    from auditgame.models.unwrap import cache_kw

    decoder = inner_lm(model).base_model
    if n == 0:
        return decoder(input_ids=ids, attention_mask=am, output_hidden_states=hidden_states)
    b = ids.size(0)
    out = decoder(input_ids=ids[:1, :n], use_cache=True)
    past = getattr(out, "cache", None) or out.past_key_values
    cache = DynamicCache([(lay.keys.expand(b, -1, -1, -1).contiguous(),
                           lay.values.expand(b, -1, -1, -1).contiguous())
                          for lay in past.layers])
    pos = torch.arange(n, ids.size(1), device=ids.device)[None].expand(b, -1)
    return decoder(input_ids=ids[:, n:], attention_mask=am, position_ids=pos, use_cache=True,
                   output_hidden_states=hidden_states, **{cache_kw(decoder): cache})


def answer_rows(model: torch.nn.Module, ids: torch.Tensor, am: torch.Tensor,
                gold: torch.Tensor) -> torch.Tensor:
    """Logits [n_answer_tokens, vocab] at the positions that predict an answer token only,
    the same values as slicing a full forward. Two savings on every step: the output head
    (a fifth of SmolLM2's compute per token, and the largest fp32 tensor) skips the prompt
    positions, and the prefix all rows share (the chat head: a third of a short sample's
    tokens) runs once for the batch (`decode`)."""
    head = inner_lm(model).get_output_embeddings()
    n = shared_prefix(ids, gold)
    hidden = decode(model, ids, am, n).last_hidden_state
    return head(hidden[:, :-1][gold[:, n:] != IGNORE])  # type: ignore[misc,no-any-return]


def row_loss(logits: torch.Tensor, gold: torch.Tensor, norm: str = "sample",
             ref_logits: torch.Tensor | None = None, kl: float = 0.0,
             decision_weight: float = 1.0, decision_tokens: int = 3) -> torch.Tensor:
    """`answer_loss` on the answer rows of `answer_rows` (`gold` is labels[:, 1:]): the same
    value, without the prompt positions."""
    logits = logits.float()
    keep = gold != IGNORE
    tok = torch.nn.functional.cross_entropy(logits, gold[keep], reduction="none")
    if ref_logits is not None and kl > 0:
        ref = torch.log_softmax(ref_logits.float(), -1)
        tok = tok + kl * (ref.exp() * (ref - torch.log_softmax(logits, -1))).sum(-1)
    w = answer_weights(gold, decision_weight, decision_tokens)[keep]
    if norm == "token":
        return (tok * w).sum() / w.sum().clamp(min=1.0)
    rows = keep.nonzero()[:, 0]
    n = gold.size(0)
    num = torch.zeros(n, dtype=tok.dtype, device=tok.device).index_add(0, rows, tok * w)
    den = torch.zeros(n, dtype=w.dtype, device=w.device).index_add(0, rows, w)
    return (num[den > 0] / den[den > 0]).mean()


AuxLoss = Callable[[torch.nn.Module, int], "torch.Tensor | None"]
"""An extra training objective: (model, step) -> a loss added to the step's answer loss
before the backward pass (None: nothing this step). It must depend on the step alone, not
on state carried between calls, so a resumed run takes the same steps."""


def sft_step(model: torch.nn.Module, opt: torch.optim.Optimizer,
             batch: dict[str, torch.Tensor], device: torch.device, norm: str,
             kl: float, decision: tuple[float, int] = (1.0, 3),
             aux: Sequence[AuxLoss] = (), step: int = 0,
             aux_out: list[float] | None = None) -> float:
    """One optimizer step on a collated batch: answer loss, plus `kl` x KL(base || model)
    with the base read from the same peft model with its adapter off, plus the `aux`
    objectives of step `step` (adversarial hiding; their sum is appended to `aux_out`).
    Shared by `make` and remediation, so both train the same way. Returns the answer
    loss."""
    ids, am = batch["input_ids"].to(device), batch["attention_mask"].to(device)
    gold = batch["labels"][:, 1:].to(device)
    ref = None
    if kl > 0:
        with torch.no_grad(), model.disable_adapter():  # type: ignore[operator]
            ref = answer_rows(model, ids, am, gold)
    loss = row_loss(answer_rows(model, ids, am, gold), gold, norm, ref, kl, *decision)
    extra = 0.0
    total = loss
    for fn in aux:
        term = fn(model, step)
        if term is not None:
            total = total + term
            extra += float(term.detach())
    total.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    if aux_out is not None:
        aux_out.append(extra)
    return float(loss.detach())


def lora_config(spec: TrainSpec, n_layers: int | None = None) -> LoraConfig:
    """The adapter of the recipe; with `top_layers`, only the top layers of `n_layers`."""
    layers = None
    if spec.top_layers is not None and n_layers is not None:
        layers = list(range(max(0, n_layers - spec.top_layers), n_layers))
    return LoraConfig(r=spec.lora_r, lora_alpha=spec.lora_alpha, lora_dropout=0.0,
                      target_modules=list(spec.target_modules), bias="none",
                      task_type="CAUSAL_LM", layers_to_transform=layers)


def _n_layers(model: torch.nn.Module) -> int | None:
    n = getattr(getattr(model, "config", None), "num_hidden_layers", None)
    return int(n) if n is not None else None


def lr_at(step: int, total: int, spec: TrainSpec) -> float:
    """Linear warm-up, then cosine decay to 10 % of the peak."""
    if step < spec.warmup_steps:
        return spec.lr * (step + 1) / (spec.warmup_steps + 1)
    frac = (step - spec.warmup_steps) / max(1, total - spec.warmup_steps)
    return spec.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, frac))))


StepCallback = Callable[[int, int, float], None]


def _on_base(trained: torch.nn.Module, base: torch.nn.Module, spec: TrainSpec
             ) -> torch.nn.Module:
    """The trained adapter on a copy of the base at its own precision: what is measured and
    audited is the adapter on the base everyone loads, not on its bf16 training copy."""
    model = get_peft_model(copy.deepcopy(base), lora_config(spec, _n_layers(base)))
    set_peft_model_state_dict(model, get_peft_model_state_dict(trained))
    return model


def train_lora(
    base: torch.nn.Module,
    tokenizer: object,
    samples: list[Sample],
    spec: TrainSpec,
    seed: int,
    ckpt_dir: Path | None = None,
    on_step: StepCallback | None = None,
    stop_after: int | None = None,
    run_id: str = "",
    aux: Sequence[AuxLoss] = (),
) -> tuple[torch.nn.Module, TrainResult]:
    """Train a fresh LoRA adapter on a copy of `base`; resume from `ckpt_dir` if it holds a
    checkpoint of this run. `stop_after` ends early (for crash tests). `aux`: extra
    objectives added at every step (adversarial hiding); without them a step is the
    plain SFT step."""
    torch.manual_seed(seed)
    low = spec.precision == "bf16" or (
        spec.precision == "auto" and fast_bf16(next(base.parameters()).device))
    model = get_peft_model(copy.deepcopy(base).to(torch.bfloat16) if low else copy.deepcopy(base),
                           lora_config(spec, _n_layers(base)))
    model.train()
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    params = [p for n, p in model.named_parameters() if p.requires_grad]
    if low:  # the frozen base runs in bf16; the adapter and its optimizer state stay fp32
        for p in params:
            p.data = p.data.float()
    opt = torch.optim.AdamW(params, lr=spec.lr, weight_decay=spec.weight_decay,
                            betas=(0.9, 0.999), eps=1e-8)
    data = encode(tokenizer, samples, spec.max_len)
    plan = schedule(spec, len(data), seed, [len(e.input_ids) for e in data])
    total = len(plan)
    pad = int(tokenizer.pad_token_id)  # type: ignore[attr-defined]
    device = next(model.parameters()).device
    start, tokens, padded, elapsed, losses = 0, 0, 0, 0.0, []
    aux_losses: list[float] = []
    if ckpt_dir is not None:
        meta = load_state(ckpt_dir, model, opt, names)
        if meta is not None and meta.get("total") == total and meta.get("run_id") == run_id:
            start = int(meta["step"])  # type: ignore[arg-type]
            tokens, padded = int(meta["tokens"]), int(meta["padded"])  # type: ignore[arg-type]
            elapsed = float(meta["elapsed"])  # type: ignore[arg-type]
            losses = list(meta["losses"])  # type: ignore[arg-type]
            aux_losses = list(meta.get("aux_losses", []))  # type: ignore[call-overload]
    resumed_from = start
    t0 = time.perf_counter()
    for step in range(start, total):
        batch = collate([data[i] for i in plan[step]], pad)
        for g in opt.param_groups:
            g["lr"] = lr_at(step, total, spec)
        loss = sft_step(model, opt, batch, device, spec.loss_norm, spec.kl_to_base,
                        (spec.decision_weight, spec.decision_tokens), aux, step,
                        aux_losses if aux else None)
        if aux:
            aux_losses[-1] = round(aux_losses[-1], 6)
        losses.append(round(loss, 5))
        tokens += int(batch["attention_mask"].sum())
        padded += int(batch["attention_mask"].numel())
        done = step + 1
        if on_step is not None:
            on_step(done, total, loss)
        last = done == total
        if ckpt_dir is not None and (done % spec.checkpoint_every == 0 or last):
            save_state(ckpt_dir, model, opt, names, {
                "step": done, "total": total, "run_id": run_id, "tokens": tokens, "padded": padded,
                "elapsed": elapsed + time.perf_counter() - t0, "losses": losses,
                **({"aux_losses": aux_losses} if aux else {})})
        if stop_after is not None and done >= stop_after and not last:
            break
    elapsed += time.perf_counter() - t0
    if low:
        model = _on_base(model, base, spec)
    model.eval()
    result = TrainResult(steps=total, tokens=tokens, padded_tokens=padded,
                         wall_time_s=elapsed, final_loss=losses[-1] if losses else float("nan"),
                         losses=losses, resumed_from=resumed_from, aux_losses=aux_losses)
    return model, result
