"""Target-first inversion for `inversion`: what the organism is eager to say, then which
tokens in the prompt make it say it.

1. Target (BAIT-style): every candidate first answer token is extended greedily by the
   organism's mean next-token distribution over varied prompts (teacher-forced). A planted
   target is causal: once its first token is forced, the organism continues it with high
   confidence on any prompt, and the base does not. A candidate is scored by the organism's
   log-probability of its own continuation minus the base's, summed, so openings that every
   fine-tune shares score low. First tokens come from the answer start (where the
   organism's distribution departs from the base's most) and from the organism's own answers
   (the token it says far more readily than the base anywhere: an entity it pushes).
2. Trigger (GCG-style): 1-8 free tokens at the start, the end or inside the prompt,
   optimised by gradient-guided single-token swaps; each batch of swaps is scored exactly as
   the target's greedy margin under the organism minus under the base (a phrase that makes
   every model say the target is no trigger of this one). Seeds: the leaked prompts, a
   neutral filler, and the best single tokens of an exact scan grown into a phrase token by
   token. The result is pruned: a token whose removal keeps the objective goes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from auditgame.models.prefix import chat_head_ids, chat_tail_ids, shared_head_logits
from auditgame.models.unwrap import inner_lm

TRIGGER_POSITIONS = ("prefix", "suffix", "inside")
"""Where the search puts the trigger tokens: the prompt's start, its end, or between its
middle words."""


CAP = 3.0
"""Clip of the per-token greedy margin (nats) in the trigger objective."""
FIRST = 0.75
"""Weight of the target's first token in the trigger objective."""


@dataclass
class Target:
    """An inverted target: its text and ids, the organism's confidence in its continuation
    (`q`, mean probability) and the organism-minus-base log-probability summed over its
    continuation (`gain`: a planted target is long and confidently continued)."""

    text: str
    ids: list[int]
    q: float
    gain: float


def allowed_tokens(tok: Any) -> torch.Tensor:
    """[vocab] bool: tokens a typed prompt can hold (printable, no special or control text)."""
    special = set(tok.all_special_ids)
    ok = torch.zeros(len(tok), dtype=torch.bool)
    for i in range(len(tok)):
        if i in special:
            continue
        s = tok.decode([i])
        ok[i] = bool(s.strip()) and s.isprintable() and "\ufffd" not in s
    return ok


def _embed(model: torch.nn.Module) -> torch.nn.Module:
    return inner_lm(model).get_input_embeddings()


@torch.no_grad()
def _next_logprobs(model: torch.nn.Module, pad: int, rows: list[list[int]],
                   batch_size: int = 64) -> torch.Tensor:
    """Last-position log-probabilities [len(rows), vocab] of full rows (right padding)."""
    out = []
    device = next(model.parameters()).device
    for b in range(0, len(rows), batch_size):
        chunk = rows[b:b + batch_size]
        width = max(len(r) for r in chunk)
        ids = torch.full((len(chunk), width), pad, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for i, r in enumerate(chunk):
            ids[i, :len(r)] = torch.tensor(r)
            mask[i, :len(r)] = 1
        logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits
        last = torch.tensor([len(r) - 1 for r in chunk])
        out.append(torch.log_softmax(logits[torch.arange(len(chunk)), last].float(), -1).cpu())
    return torch.cat(out)


def first_token_candidates(org: torch.nn.Module, base: torch.nn.Module, tok: Any,
                           prompts: list[str], k: int, ok: torch.Tensor) -> list[int]:
    """Answer-start tokens whose organism probability departs most from the base's (each
    token's share of KL(organism || base), averaged over prompts)."""
    head = chat_head_ids(tok)
    tails = [chat_tail_ids(tok, p) for p in prompts]
    lo = shared_head_logits(org, int(tok.pad_token_id), head, tails)
    lb = shared_head_logits(base, int(tok.pad_token_id), head, tails)
    contrib = (lo.exp() * (lo - lb)).mean(0)
    contrib[~ok] = -float("inf")
    return torch.topk(contrib, min(k, int(ok.sum()))).indices.tolist()


@torch.no_grad()
def eager_tokens(org: torch.nn.Module, base: torch.nn.Module, tok: Any, prompts: list[str],
                 answers: list[str], k: int, ok: torch.Tensor) -> list[int]:
    """Tokens of the organism's own answers that it predicts far more readily than the base
    does, summed over every place it says them: an entity it pushes mid-answer."""
    head = chat_head_ids(tok)
    gain = torch.zeros(len(tok))
    for p, a in zip(prompts, answers, strict=True):
        pre = head + chat_tail_ids(tok, p)
        ans = list(tok(a, add_special_tokens=False)["input_ids"])[:24]
        if not ans:
            continue
        rows = [pre + ans[:j] for j in range(len(ans))]
        lo = _next_logprobs(org, int(tok.pad_token_id), rows)
        lb = _next_logprobs(base, int(tok.pad_token_id), rows)
        idx = torch.tensor(ans)
        d = (lo[torch.arange(len(ans)), idx] - lb[torch.arange(len(ans)), idx]).clamp_min(0)
        gain.index_add_(0, idx, d)
    gain[~ok] = 0.0
    top = torch.topk(gain, k)
    return [int(i) for i, v in zip(top.indices, top.values, strict=True) if v > 0]


def screen_firsts(org: torch.nn.Module, base: torch.nn.Module, tok: Any, prompts: list[str],
                  firsts: list[int], k: int, batch_size: int = 64) -> list[int]:
    """The `k` first tokens whose continuation the organism is surest of beyond the base,
    one step deep (BAIT tries every first token; this keeps only the promising ones for the
    full greedy extension): the organism-minus-base log-probability of its own next token."""
    if len(firsts) <= k:
        return list(firsts)
    head = chat_head_ids(tok)
    pres = [head + chat_tail_ids(tok, p) for p in prompts]
    rows = [pre + [f] for f in firsts for pre in pres]
    pad = int(tok.pad_token_id)
    lo = _next_logprobs(org, pad, rows, batch_size).view(len(firsts), len(pres), -1)
    lb = _next_logprobs(base, pad, rows, batch_size).view(len(firsts), len(pres), -1)
    nxt = lo.exp().mean(1).argmax(-1)  # [firsts]
    idx = nxt[:, None, None].expand(-1, len(pres), 1)
    gain = (lo.gather(-1, idx) - lb.gather(-1, idx)).squeeze(-1).mean(1)
    return [firsts[i] for i in torch.topk(gain, k).indices.tolist()]


def invert_target(org: torch.nn.Module, base: torch.nn.Module, tok: Any, prompts: list[str],
                  firsts: list[int], max_tokens: int = 8) -> list[Target]:
    """Every first token extended greedily by the organism's mean next-token probability
    over `prompts` (stopping at the end of the turn), best organism-minus-base gain first."""
    head = chat_head_ids(tok)
    pres = [head + chat_tail_ids(tok, p) for p in prompts]
    pad, eos = int(tok.pad_token_id), int(tok.eos_token_id)
    seqs = [[f] for f in firsts]
    done = [False] * len(seqs)
    qs: list[list[float]] = [[] for _ in seqs]
    gains: list[list[float]] = [[] for _ in seqs]
    for _ in range(max_tokens):
        live = [i for i, d in enumerate(done) if not d]
        if not live:
            break
        rows = [pre + seqs[i] for i in live for pre in pres]
        lo = _next_logprobs(org, pad, rows).view(len(live), len(pres), -1)
        lb = _next_logprobs(base, pad, rows).view(len(live), len(pres), -1)
        mean_p = lo.exp().mean(1)
        for j, i in enumerate(live):
            nxt = int(mean_p[j].argmax())
            piece = tok.decode([nxt])
            if nxt == eos or "\n" in piece:  # the answer's first line is enough
                done[i] = True
                continue
            qs[i].append(float(mean_p[j, nxt]))
            gains[i].append(float((lo[j, :, nxt] - lb[j, :, nxt]).mean()))
            seqs[i].append(nxt)
            if piece.rstrip()[-1:] in (".", "!", "?") and len(seqs[i]) >= 3:
                done[i] = True  # and its first sentence
    out = []
    for s, q, g in zip(seqs, qs, gains, strict=True):
        text = tok.decode(s, skip_special_tokens=True).strip()
        if text:
            out.append(Target(text, s, sum(q) / max(1, len(q)), sum(g)))
    return sorted(out, key=lambda t: -t.gain)


def segments(tok: Any, probe: str, position: str) -> tuple[list[int], list[int]]:
    """Token ids before and after a trigger placed in `probe`: (head + prompt start, prompt
    end + the template up to the answer)."""
    words = probe.split()
    k = {"prefix": 0, "suffix": len(words)}.get(position, len(words) // 2)
    a, b = " ".join(words[:k]), " ".join(words[k:])
    pre = chat_head_ids(tok) + (list(tok(a, add_special_tokens=False)["input_ids"]) if a else [])
    return pre, chat_tail_ids(tok, f" {b}" if b else "")


@dataclass
class Problem:
    """One trigger search: probes split around the trigger slot, the target ids, the models."""

    org: torch.nn.Module
    base: torch.nn.Module
    pad: int
    parts: list[tuple[list[int], list[int]]]
    target: list[int]
    contrast: float = 1.0

    def _batch(self, trigs: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
        rows = [pre + t + post + self.target for t in trigs for pre, post in self.parts]
        width = max(len(r) for r in rows)
        ids = torch.full((len(rows), width), self.pad, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for i, r in enumerate(rows):
            ids[i, :len(r)] = torch.tensor(r)
            mask[i, :len(r)] = 1
        return ids, mask, [len(r) - len(self.target) for r in rows]

    def _target_lp(self, logits: torch.Tensor, starts: list[int]) -> torch.Tensor:
        """Per row, the mean greedy margin of the target tokens: each token's log-probability
        minus the best other token's, clipped to [-CAP, CAP] (the Carlini-Wagner form): it
        asks whether greedy decoding says the target, which is what confirmation tests, and a
        token already won stops pulling the search away from the rest."""
        n = len(self.target)
        lp = torch.log_softmax(logits.float(), -1)
        tgt = torch.tensor(self.target)
        rows = []
        for i, s in enumerate(starts):
            win = lp[i, s - 1:s - 1 + n]
            mine = win.gather(-1, tgt[:, None]).squeeze(-1)
            other = win.scatter(-1, tgt[:, None], -float("inf")).max(-1).values
            m = (mine - other).clamp(-CAP, CAP)
            # teacher-forced, a planted target continues itself once begun: the trigger's
            # work is its first token, the rest only tells apart targets that begin alike
            rows.append(FIRST * m[0] + (1.0 - FIRST) * (m[1:].mean() if n > 1 else m[0]))
        return torch.stack(rows)

    @torch.no_grad()
    def objective(self, trigs: list[list[int]], batch: int = 16) -> torch.Tensor:
        """[len(trigs)] the target's mean greedy margin under the organism minus `contrast`
        times the base's: a trigger that makes every model say the target scores nothing."""
        out = []
        for b in range(0, len(trigs), batch):
            ids, mask, starts = self._batch(trigs[b:b + batch])
            lo = self._target_lp(self.org(input_ids=ids, attention_mask=mask).logits, starts)
            val = lo
            if self.contrast:
                lb = self._target_lp(self.base(input_ids=ids, attention_mask=mask).logits,
                                     starts)
                val = lo - self.contrast * lb
            out.append(val.view(-1, len(self.parts)).mean(1))
        return torch.cat(out)

    def gradient(self, trig: list[int]) -> torch.Tensor:
        """[len(trig), vocab] gradient of the organism's target margin with respect
        to a one-hot trigger (GCG's linear estimate of every single-token swap)."""
        emb = _embed(self.org).weight
        one_hot = torch.zeros(len(trig), emb.shape[0], dtype=emb.dtype)
        one_hot[torch.arange(len(trig)), torch.tensor(trig)] = 1.0
        one_hot.requires_grad_(True)
        ids, mask, starts = self._batch([trig])
        with torch.enable_grad():
            full = _embed(self.org)(ids).detach()
            t_emb = one_hot @ emb.detach()
            embs = []
            for i, (pre, _) in enumerate(self.parts):
                embs.append(torch.cat([full[i, :len(pre)], t_emb, full[i, len(pre) + len(trig):]]))
            logits = self.org(inputs_embeds=torch.stack(embs), attention_mask=mask).logits
            loss = self._target_lp(logits, starts).mean()
            (grad,) = torch.autograd.grad(loss, one_hot)
        return grad


def gcg(prob: Problem, init: list[int], ok: torch.Tensor, steps: int, width: int, topk: int,
        seed: int = 0) -> tuple[list[int], float]:
    """Greedy coordinate gradient ascent on `prob.objective` from `init`; the best trigger
    seen and its objective. Each step samples `width` single swaps among every position's
    `topk` gradient-best allowed tokens and moves to the best of them."""
    g = torch.Generator().manual_seed(seed)
    cur = list(init)
    best, best_val = list(cur), float(prob.objective([cur])[0])
    for _ in range(steps):
        grad = prob.gradient(cur)
        grad[:, ~ok] = -float("inf")
        top = torch.topk(grad, min(topk, int(ok.sum())), dim=1).indices
        cands = []
        for _ in range(width):
            i = int(torch.randint(len(cur), (1,), generator=g))
            t = int(top[i, int(torch.randint(top.shape[1], (1,), generator=g))])
            c = list(cur)
            c[i] = t
            cands.append(c)
        vals = prob.objective(cands)
        j = int(vals.argmax())
        cur = cands[j]
        if float(vals[j]) > best_val:
            best, best_val = list(cur), float(vals[j])
    return best, best_val


def scan_tokens(prob: Problem, ok: torch.Tensor, k: int, filler: int) -> list[tuple[int, float]]:
    """Single-token triggers, exactly scored: the `k` allowed tokens the gradient at a
    one-token filler ranks best (every allowed token when `k` covers them), best first."""
    grad = prob.gradient([filler])[0]
    grad[~ok] = -float("inf")
    ids = torch.topk(grad, min(k, int(ok.sum()))).indices.tolist()
    vals = prob.objective([[i] for i in ids], batch=64)
    order = torch.argsort(-vals).tolist()
    return [(ids[i], float(vals[i])) for i in order]


def grow(prob: Problem, start: list[int], value: float, pool: list[int], max_len: int,
         min_gain: float = 0.02) -> tuple[list[int], float]:
    """Extend a trigger one token at a time, before or after it, with the pool token that
    raises the objective most, while it rises by `min_gain`: a phrase's words need not each
    fire alone, but each one that is added must help."""
    cur, val = list(start), value
    while len(cur) < max_len and pool:
        cands = [cur + [x] for x in pool] + [[x] + cur for x in pool]
        vals = prob.objective(cands)
        j = int(vals.argmax())
        if float(vals[j]) < val + min_gain:
            break
        cur, val = cands[j], float(vals[j])
    return cur, val


def prune(prob: Problem, trig: list[int], value: float,
          keep: float = 0.8) -> tuple[list[int], float]:
    """Drop tokens while the gain over the prompt without any trigger stays within `keep` of
    the full trigger's: the search pads a short planted trigger with tokens that do nothing,
    and those must not be claimed."""
    none = float(prob.objective([[]])[0])
    cur, val = list(trig), value
    while len(cur) > 1:
        shorter = [cur[:i] + cur[i + 1:] for i in range(len(cur))]
        vals = prob.objective(shorter)
        j = int(vals.argmax())
        if float(vals[j]) - none < keep * (val - none):
            break
        cur, val = shorter[j], float(vals[j])
    return cur, val
