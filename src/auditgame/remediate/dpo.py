"""The DPO loss on the project's own trainer (fixed, seeded batch plan; exact resume).

TRL's DPOTrainer fits the pins (trl 1.16 needs transformers>=4.56 and takes a peft model)
but brings datasets/pandas/pyarrow and its own step loop; the loss is a few lines, and on
this trainer the adapter after N steps is the same whether a round resumed or not. The
reference policy is the base (the organism's adapter off), as TRL does with PEFT.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch

from auditgame.organisms.data import Sample
from auditgame.organisms.train import IGNORE, answer_loss, collate, encode
from auditgame.records.remediation import RemediationSettings
from auditgame.remediate.train import batch_plan, lr_at


def seq_logp(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Sum of the answer tokens' log-probabilities, per row."""
    logp = torch.log_softmax(logits[:, :-1].float(), -1)
    gold = labels[:, 1:]
    mask = gold != IGNORE
    tok = logp.gather(-1, gold.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return (tok * mask).sum(1)


def dpo_loss(pol_c: torch.Tensor, pol_r: torch.Tensor, ref_c: torch.Tensor,
             ref_r: torch.Tensor, beta: float) -> torch.Tensor:
    """-log sigmoid(beta x ((pi_c - ref_c) - (pi_r - ref_r))), averaged over pairs."""
    margin = (pol_c - ref_c) - (pol_r - ref_r)
    return -torch.nn.functional.logsigmoid(beta * margin).mean()


def _pair_logps(model: torch.nn.Module, batch: dict[str, torch.Tensor],
                device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    ids, am, lab = (batch[k].to(device) for k in ("input_ids", "attention_mask", "labels"))
    with torch.no_grad(), model.disable_adapter():  # type: ignore[operator]
        ref = seq_logp(model(input_ids=ids, attention_mask=am).logits, lab)
    return seq_logp(model(input_ids=ids, attention_mask=am).logits, lab), ref


def run_dpo_steps(model: torch.nn.Module, opt: torch.optim.Optimizer, tokenizer: object,
                  pairs: list[tuple[Sample, Sample]], anchor: list[Sample],
                  settings: RemediationSettings, beta: float, sft_weight: float,
                  start: int, stop: int, on_step: Callable[[int], None] | None = None
                  ) -> tuple[float | None, float]:
    """Steps [start, stop): DPO on a batch of (chosen, rejected) pairs plus `sft_weight` x
    cross-entropy on a batch of the clean pool (the anchor that keeps utility)."""
    if stop <= start:
        return None, 0.0
    torch.manual_seed(settings.seed + start)
    pad = int(tokenizer.pad_token_id)  # type: ignore[attr-defined]
    device = next(model.parameters()).device
    chosen = encode(tokenizer, [c for c, _ in pairs], settings.max_len)
    rejected = encode(tokenizer, [r for _, r in pairs], settings.max_len)
    pool = encode(tokenizer, anchor, settings.max_len)
    pair_plan = batch_plan(len(pairs), settings.batch_size, stop, settings.seed) if pairs else []
    anchored = sft_weight > 0 and bool(pool)
    pool_plan = batch_plan(len(pool), settings.batch_size, stop, settings.seed + 1) \
        if anchored else []
    model.train()
    losses: list[float] = []
    t0 = time.perf_counter()
    for step in range(start, stop):
        for g in opt.param_groups:
            g["lr"] = lr_at(step, settings)
        loss = torch.zeros((), device=device)
        if pairs:
            idx = pair_plan[step]
            both = collate([chosen[i] for i in idx] + [rejected[i] for i in idx], pad)
            pol, ref = _pair_logps(model, both, device)
            k = len(idx)
            loss = loss + dpo_loss(pol[:k], pol[k:], ref[:k], ref[k:], beta)
        if anchored:
            b = collate([pool[i] for i in pool_plan[step]], pad)
            out = model(input_ids=b["input_ids"].to(device),
                        attention_mask=b["attention_mask"].to(device))
            loss = loss + sft_weight * answer_loss(out.logits, b["labels"].to(device), "token")
        if loss.requires_grad:  # no pair and no anchor: nothing to learn this step
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
        losses.append(float(loss.detach()))
        if on_step is not None:
            on_step(step + 1)
    model.eval()
    return round(sum(losses) / len(losses), 5), time.perf_counter() - t0
