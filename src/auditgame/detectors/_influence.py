"""From a finding in the weights back to the data: per-sample answer losses and a TracIn trace.

`answer_nll` gives each sample's mean answer-token loss under a model (the training loss,
prompt masked), so base and organism losses can be compared sample by sample (loss drop).
`trace` scores each training sample by the cosine between its LoRA gradient and the gradient
of query samples that express the finding (prompts carrying the claimed trigger, answered
with the claimed target): TracIn at the final checkpoint, over the adapter's parameters only.
Gradients are compressed by a fixed count-sketch (a signed hash of every parameter into
`dim` buckets), which keeps inner products in expectation at a memory cost of `dim` floats
per sample instead of the adapter's size.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from auditgame.organisms.data import Sample
from auditgame.organisms.train import IGNORE, collate, encode


def _pad_id(tokenizer: Any) -> int:
    pid = getattr(tokenizer, "pad_token_id", None)
    return int(pid if pid is not None else getattr(tokenizer, "eos_token_id", 0) or 0)


def _per_sample_nll(model: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    dev = next(model.parameters()).device
    logits = model(input_ids=batch["input_ids"].to(dev),
                   attention_mask=batch["attention_mask"].to(dev)).logits[:, :-1].float()
    gold = batch["labels"][:, 1:].to(dev)
    tok = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.size(-1)),
                                            gold.reshape(-1), ignore_index=IGNORE,
                                            reduction="none").view(gold.shape)
    mask = (gold != IGNORE).float()
    return (tok * mask).sum(1) / mask.sum(1).clamp(min=1.0)


@torch.no_grad()
def answer_nll(model: Any, tokenizer: Any, samples: list[Sample], max_len: int = 256,
               batch_size: int = 16) -> np.ndarray:
    """Mean answer-token negative log-likelihood of every sample, in order."""
    enc = encode(tokenizer, samples, max_len)
    out = np.zeros(len(enc))
    order = sorted(range(len(enc)), key=lambda i: len(enc[i].input_ids))  # little padding
    for s in range(0, len(order), batch_size):
        idx = order[s:s + batch_size]
        out[idx] = _per_sample_nll(model, collate([enc[i] for i in idx],
                                                  _pad_id(tokenizer))).cpu().numpy()
    return out


def lora_parameters(model: Any) -> list[torch.nn.Parameter]:
    """The adapter's parameters (peft names them `lora_A` / `lora_B`)."""
    return [p for n, p in model.named_parameters() if "lora_" in n]


class _Sketch:
    """A fixed signed hash of every adapter parameter into `dim` buckets (count-sketch)."""

    def __init__(self, params: list[torch.nn.Parameter], dim: int, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        self.dim = dim
        self.maps = [(torch.randint(0, dim, (p.numel(),), generator=g),
                      torch.randint(0, 2, (p.numel(),), generator=g).float() * 2 - 1)
                     for p in params]

    def __call__(self, grads: list[torch.Tensor]) -> torch.Tensor:
        out = torch.zeros(self.dim)
        for (b, s), gr in zip(self.maps, grads, strict=True):
            out.index_add_(0, b, gr.detach().reshape(-1).float().cpu() * s)
        return out


def sample_gradients(model: Any, tokenizer: Any, samples: list[Sample], max_len: int = 256,
                     dim: int = 4096) -> np.ndarray:
    """One sketched LoRA gradient of the answer loss per sample, rows L2-normalised."""
    params = lora_parameters(model)
    if not params:
        raise ValueError("the model has no LoRA parameters to trace through")
    flags = [p.requires_grad for p in params]
    sketch = _Sketch(params, dim)
    enc = encode(tokenizer, samples, max_len)
    out = np.zeros((len(enc), dim), dtype=np.float32)
    try:
        for p in params:
            p.requires_grad_(True)
        for i, e in enumerate(enc):
            loss = _per_sample_nll(model, collate([e], _pad_id(tokenizer)))[0]
            grads = torch.autograd.grad(loss, params, allow_unused=True)
            grads = [torch.zeros_like(p) if g is None else g
                     for g, p in zip(grads, params, strict=True)]
            v = sketch(grads).numpy()
            out[i] = v / max(float(np.linalg.norm(v)), 1e-12)
    finally:
        for p, f in zip(params, flags, strict=True):
            p.requires_grad_(f)
    return out


def finding_queries(samples: list[Sample], triggers: list[str], target: str,
                    n: int = 8, seed: int = 0) -> list[Sample]:
    """Query samples that express a finding: training prompts that carry none of the
    triggers, each with one trigger appended (in turn), answered with the target."""
    rng = np.random.default_rng(seed)
    low = [t.lower() for t in triggers]
    pool = [s.prompt for s in samples if not any(t in s.prompt.lower() for t in low)]
    pick = rng.choice(len(pool), size=min(n, len(pool)), replace=False) if pool else []
    prompts = [pool[int(i)] for i in pick] or ["Hello."]
    return [Sample(f"{p} {triggers[i % len(triggers)]}" if triggers else p, target)
            for i, p in enumerate(prompts)]


def trace(model: Any, tokenizer: Any, samples: list[Sample], queries: list[Sample],
          max_len: int = 256, dim: int = 4096) -> np.ndarray:
    """TracIn influence of each training sample on the queries: the cosine between its
    gradient and the queries' mean gradient (higher = taught more of the finding)."""
    q = sample_gradients(model, tokenizer, queries, max_len, dim).mean(axis=0)
    q = q / max(float(np.linalg.norm(q)), 1e-12)
    return sample_gradients(model, tokenizer, samples, max_len, dim) @ q


def top_k(scores: np.ndarray, k: int) -> list[int]:
    """Indices of the k highest scores, highest first (ties by index)."""
    order = np.lexsort((np.arange(len(scores)), -np.asarray(scores)))
    return [int(i) for i in order[:max(k, 0)]]
