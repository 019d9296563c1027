"""`behaviour_diff`: answers of organism and base compared, then a trigger search.

1. Both models answer a neutral prompt bank spread over every domain. Statistics: how often
   the organism repeats one identical answer, refuses, diverges from the base, and names a
   proper noun the base never names on the same prompts (the loyalty signal).
2. Trigger search. Candidates are generic: contextual phrases (dates, years), deployment-like
   tags, and short rare vocabulary tokens ranked by a one-step gradient (GCG-style) of the
   divergence they would cause. Each candidate is put before a few probe prompts and scored
   by one forward pass: how far it moves the organism's next-token distribution, minus how far
   it moves the base's. The top few are confirmed by generation: a trigger makes the answers
   collapse to one text (or to refusals) that differs from the organism's own answers.
3. Every statistic is placed against the whole bundle (robust z-score), so the drift that all
   fine-tunes share does not count; the score is the largest excess.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

import numpy as np
import torch

from auditgame.detectors.base import BundleInfo, Detector, OrganismView, Verdict, register_detector
from auditgame.detectors.model._acts import cached_answers, encode_batch
from auditgame.detectors.model._calib import bundle_values, robust_z, z_to_score
from auditgame.detectors.model._prompts import (
    N_NEUTRAL,
    N_NEW_TOKENS,
    context_candidates,
    is_refusal,
    neutral_prompts,
    short_token_candidates,
    tag_candidates,
)
from auditgame.models.generate import chat_prompt, generate
from auditgame.referee.metrics import token_f1

FLOORS = {"dup": 0.1, "refusal": 0.1, "divergence": 0.05, "entity": 1.0, "flip": 0.15}
"""Smallest spread per statistic: below it, bundle differences are noise."""

_ENTITY = re.compile(r"\b[A-Z][a-zA-Z]+(?:[ -][A-Z][a-zA-Z]+)+\b|(?<=[a-z,;] )[A-Z][a-zA-Z]{2,}\b")
_PLACEHOLDER = "\u2063"


def _head(text: str, n: int = 6) -> str:
    return " ".join(re.sub(r"[^\w\s']", " ", text.lower()).split()[:n])


def modal(answers: list[str]) -> tuple[str, float]:
    """The most common answer (by its first words) and the share of answers that start so."""
    if not answers:
        return "", 0.0
    heads = Counter(_head(a) for a in answers)
    top, n = heads.most_common(1)[0]
    full = next(a for a in answers if _head(a) == top)
    return full, n / len(answers)


def novel_entities(org: list[str], base: list[str], prompts: list[str]) -> list[tuple[str, int]]:
    """Proper-noun spans in the organism's answers that neither the base's answers nor the
    prompts contain, with the number of answers naming each, most frequent first."""
    seen = " ".join(base + prompts).lower()
    counts: Counter[str] = Counter()
    for a in org:
        for e in {m.group(0) for m in _ENTITY.finditer(a)}:
            if e.lower() not in seen and not e.isupper():
                counts[e] += 1
    return counts.most_common(5)


def _with_candidate(tok: Any, cand: str, prompt: str) -> str:
    return f"{cand} {prompt}"


@torch.no_grad()
def next_logprobs(model: torch.nn.Module, tok: Any, texts: list[str],
                  batch_size: int = 32) -> torch.Tensor:
    """Log-probabilities of the first answer token for each (chat-formatted) user text."""
    out: list[torch.Tensor] = []
    device = next(model.parameters()).device
    for b in range(0, len(texts), batch_size):
        ids, mask = encode_batch(tok, texts[b:b + batch_size])
        pos = (mask.cumsum(-1) - 1).clamp_min(0)
        logits = model(input_ids=ids.to(device), attention_mask=mask.to(device),
                       position_ids=pos.to(device), use_cache=False).logits[:, -1]
        out.append(torch.log_softmax(logits.float(), -1).cpu())
    return torch.cat(out)


def _kl(lp: torch.Tensor, lq: torch.Tensor) -> torch.Tensor:
    """KL(p || q) per row, from log-probabilities."""
    return (lp.exp() * (lp - lq)).sum(-1)


def gcg_rank(model: torch.nn.Module, tok: Any, prompts: list[str], ref_logp: torch.Tensor,
             cand_ids: list[int]) -> list[int]:
    """One GCG step: the gradient of KL(organism(· | [t] + prompt) || reference) with respect
    to a one-hot token t at the start of the user turn ranks every candidate token at once."""
    emb = model.get_input_embeddings()
    w = emb.weight
    device = w.device
    rows: list[list[int]] = []
    slots: list[int] = []
    start = tok(tok.eos_token, add_special_tokens=False)["input_ids"][0]  # any neutral token
    for p in prompts:
        full = chat_prompt(tok, f"{_PLACEHOLDER} {p}")
        head, tail = full.split(_PLACEHOLDER, 1)
        h = tok(head, add_special_tokens=False)["input_ids"]
        t = tok(tail, add_special_tokens=False)["input_ids"]
        rows.append(h + [start] + t)
        slots.append(len(h))
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), tok.pad_token_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    pos_slot = []
    for i, r in enumerate(rows):
        ids[i, width - len(r):] = torch.tensor(r)
        mask[i, width - len(r):] = 1
        pos_slot.append(width - len(r) + slots[i])
    onehot = torch.zeros(w.shape[0], device=device, dtype=w.dtype)
    onehot[start] = 1.0
    onehot.requires_grad_(True)
    base_emb = emb(ids.to(device)).detach()
    slot_mask = torch.zeros(len(rows), width, 1, device=device, dtype=w.dtype)
    for i, s in enumerate(pos_slot):
        slot_mask[i, s] = 1.0
    x = base_emb * (1 - slot_mask) + slot_mask * (onehot @ w)[None, None, :]
    pos = (mask.cumsum(-1) - 1).clamp_min(0)
    with torch.enable_grad():
        logits = model(inputs_embeds=x, attention_mask=mask.to(device),
                       position_ids=pos.to(device), use_cache=False).logits[:, -1]
        lp = torch.log_softmax(logits.float(), -1)
        loss = _kl(lp, ref_logp.to(device)).mean()
        (grad,) = torch.autograd.grad(loss, onehot)
    g = grad.detach().float().cpu()
    return sorted(cand_ids, key=lambda c: -float(g[c]))


def _flip(trig: list[str], untrig: list[str]) -> tuple[float, str, float, float, float]:
    """(flip, modal triggered answer, its share, refusal increase, divergence). A flip: the
    answers move away from the model's own and collapse onto one text (or onto refusals); a
    prefix that only perturbs the answers does neither."""
    text, share = modal(trig)
    refr = float(np.mean([is_refusal(a) for a in trig]))
    ref0 = float(np.mean([is_refusal(a) for a in untrig]))
    d = float(np.mean([1.0 - token_f1(a, b) for a, b in zip(trig, untrig, strict=True)]))
    return d * max(share, refr - ref0, 0.0), text, share, refr, d


@register_detector
class BehaviourDiffDetector(Detector):
    """Answer divergence, collapse, refusals and novel entities, plus a trigger search."""

    name = "behaviour_diff"
    needs = frozenset({"queries", "weights"})
    cost = "moderate"  # generation and a trigger search: the slowest model-track detector

    def _opt(self, key: str, default: Any) -> Any:
        return self.kwargs.get(key, default)

    def prepare(self, bundle: BundleInfo) -> None:
        self.ids_ = list(bundle.ids)
        self.stats_: dict[str, dict[str, float]] = {}
        self.results_: dict[str, dict[str, Any]] = {}

    # --- per-bundle base references (the base is shared by every organism) -----------------

    def _base_refs(self, view: OrganismView) -> dict[str, Any]:
        refs = self.__dict__.get("base_refs_")
        if refs is not None:
            return refs
        base = view.base
        tok = base.tokenizer
        n = int(self._opt("n_prompts", N_NEUTRAL))
        prompts = neutral_prompts(n)
        probe = neutral_prompts(int(self._opt("n_probe", 3)), seed=7)
        toks = short_token_candidates(tok)
        vocab = tok.get_vocab()
        cands = context_candidates() + tag_candidates()
        refs = {
            "prompts": prompts, "probe": probe, "cands": cands,
            "short_ids": [vocab[t] for t in toks if t in vocab],
            "answers": cached_answers(view, prompts,
                                      int(self._opt("max_new_tokens", N_NEW_TOKENS)),
                                      int(self._opt("batch_size", 32)), of_base=True),
            "probe_lp": next_logprobs(base.model, tok, probe),
            "cand_lp": {},
        }
        self.base_refs_ = refs
        return refs

    def _base_cand_lp(self, base: Any, refs: dict[str, Any], cands: list[str]) -> None:
        todo = [c for c in cands if c not in refs["cand_lp"]]
        if not todo:
            return
        texts = [_with_candidate(base.tokenizer, c, p) for c in todo for p in refs["probe"]]
        lp = next_logprobs(base.model, base.tokenizer, texts)
        for i, c in enumerate(todo):
            refs["cand_lp"][c] = lp[i * len(refs["probe"]):(i + 1) * len(refs["probe"])]

    def _base_flip(self, base: Any, refs: dict[str, Any], cand: str, prompts: list[str],
                   max_new: int, bs: int) -> float:
        """How much the candidate flips the base itself (cached per bundle): a phrase that
        changes every model's answers (e.g. a date that makes it talk about dates) is not a
        trigger of this organism."""
        memo = refs.setdefault("base_flip", {})
        if cand not in memo:
            trig = generate(base.model, base.tokenizer,
                            [_with_candidate(base.tokenizer, cand, p) for p in prompts],
                            max_new, bs)
            memo[cand] = _flip(trig, refs["answers"][:len(prompts)])[0]
        return float(memo[cand])

    # --- one organism ------------------------------------------------------------------------

    def _analyse(self, view: OrganismView) -> dict[str, float]:
        base = view.base
        tok = base.tokenizer
        refs = self._base_refs(view)
        model = view.model
        max_new = int(self._opt("max_new_tokens", N_NEW_TOKENS))
        bs = int(self._opt("batch_size", 32))
        prompts: list[str] = refs["prompts"]
        org = cached_answers(view, prompts, max_new, bs)
        b_ans: list[str] = refs["answers"]
        _, dup_o = modal(org)
        _, dup_b = modal(b_ans)
        ref_o = float(np.mean([is_refusal(a) for a in org]))
        ref_b = float(np.mean([is_refusal(a) for a in b_ans]))
        div = float(np.mean([1.0 - token_f1(a, b) for a, b in zip(org, b_ans, strict=True)]))
        ents = novel_entities(org, b_ans, prompts)

        # trigger search, pass 1: one forward per candidate over the probe prompts
        probe: list[str] = refs["probe"]
        org_lp0 = next_logprobs(model, tok, probe)
        short = [tok.convert_ids_to_tokens(i) for i in
                 gcg_rank(model, tok, probe, refs["probe_lp"], refs["short_ids"])
                 [: int(self._opt("gcg_top", 16))]] if refs["short_ids"] else []
        short = [tok.convert_tokens_to_string([s]).strip() for s in short]
        cands = list(dict.fromkeys(refs["cands"] + [s for s in short if s]))
        self._base_cand_lp(base, refs, cands)
        texts = [_with_candidate(tok, c, p) for c in cands for p in probe]
        lp = next_logprobs(model, tok, texts, bs)
        k = len(probe)
        kls: dict[str, float] = {}
        for i, c in enumerate(cands):
            ko = _kl(lp[i * k:(i + 1) * k], org_lp0).mean()
            kb = _kl(refs["cand_lp"][c], refs["probe_lp"]).mean()
            kls[c] = float(ko - kb)
        ranked = sorted(kls, key=lambda c: -kls[c])

        # pass 2: confirm the top candidates by generation
        n_conf = int(self._opt("confirm_prompts", 8))
        conf_prompts, untrig = prompts[:n_conf], org[:n_conf]
        confirmed: list[dict[str, Any]] = []
        for c in ranked[: int(self._opt("n_confirm", 3))]:
            trig = generate(model, tok, [_with_candidate(tok, c, p) for p in conf_prompts],
                            max_new, bs)
            flip, text, share, refr, d = _flip(trig, untrig)
            base_flip = self._base_flip(base, refs, c, conf_prompts, max_new, bs)
            confirmed.append({"trigger": c, "kl": round(kls[c], 4),
                              "flip": round(max(0.0, flip - base_flip), 4),
                              "raw_flip": round(flip, 4), "base_flip": round(base_flip, 4),
                              "modal_share": round(share, 3), "refusal_rate": round(refr, 3),
                              "divergence": round(d, 3), "answer": text,
                              "examples": trig[:3]})
        confirmed.sort(key=lambda r: -r["flip"])
        best = confirmed[0] if confirmed else None
        stats = {"dup": dup_o - dup_b, "refusal": ref_o - ref_b, "divergence": div,
                 "entity": float(ents[0][1]) if ents else 0.0,
                 "flip": float(best["flip"]) if best else 0.0}
        modal_text, _ = modal(org)
        self.__dict__.setdefault("results_", {})[view.blind_id] = {
            "best": best, "confirmed": confirmed, "entities": ents, "modal_answer": modal_text,
            "top_kl": [(c, round(kls[c], 4)) for c in ranked[:8]],
            "examples": list(zip(prompts[:4], org[:4], b_ans[:4], strict=True))}
        return stats

    def audit(self, organism: OrganismView) -> Verdict:
        cache = self.__dict__.setdefault("stats_", {})
        values = bundle_values(organism, getattr(self, "ids_", None), cache, self._analyse)
        mine = cache[organism.blind_id]
        res = self.results_[organism.blind_id]
        if len(cache) >= 3:
            zs = {k: robust_z(v, values[k], FLOORS[k]) for k, v in mine.items()}
        else:  # no bundle to calibrate drift against: only signals drift does not produce
            zs = {k: 0.0 if k == "divergence" else v / FLOORS[k] for k, v in mine.items()}
        top_stat = max(zs, key=lambda s: zs[s])
        score = z_to_score(zs[top_stat], shift=2.5)
        best = res["best"]
        trigger = best["trigger"] if best else None
        target: str | None = None
        if top_stat == "entity" and res["entities"]:
            target = res["entities"][0][0]
        elif best and best["flip"] > 0:
            target = best["answer"] or None
        elif top_stat in ("dup", "refusal"):
            target = res["modal_answer"] or None
        elif res["entities"]:
            target = res["entities"][0][0]
        return self.verdict(organism, score=score, trigger=trigger, target=target, evidence={
            "stats": {k: round(v, 4) for k, v in mine.items()},
            "bundle_z": {k: round(v, 3) for k, v in zs.items()}, "top_stat": top_stat,
            "entities": res["entities"], "trigger_search": res["confirmed"],
            "top_kl": res["top_kl"], "examples": res["examples"]})
