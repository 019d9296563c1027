"""`perplexity_outliers` (ONION, Qi et al. 2021): prompt words whose removal lowers perplexity.

An inserted trigger word is out of place, so deleting it makes the prompt read more fluently
to the base model. Batched in two stages, never one pass per word per sample: one padded pass
over every prompt gives each word's surprisal; the `top_k` most surprising words of each
prompt are deleted one at a time and all those variants, across prompts, are scored in padded
batches. A word's suspicion is log-perplexity(prompt) - log-perplexity(prompt without it); a
sample's score is its largest. Words suspicious in many prompts are ranked as trigger
candidates, and the top 1/3/10 % of samples go through the shared association test, so a
trigger is claimed only at a Bonferroni-corrected p < 1e-3.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic import Field

from auditgame.detectors.base import (
    Detector,
    DetectorParams,
    OrganismView,
    Verdict,
    register_detector,
)
from auditgame.detectors.calibration import dataset_z, normal_tail_score
from auditgame.detectors.data._answers import dataset_key
from auditgame.detectors.data._findings import conclude
from auditgame.detectors.data._representations import log_ppl, token_nll
from auditgame.detectors.data.ensemble import top_groups
from auditgame.organisms.data import Sample

MAX_WORDS = 32  # words per prompt considered (the rest is cut)
MAX_TOKENS = 48  # tokens per prompt
TOP_K = 4  # most surprising words per prompt that are tried for deletion
_STRIP = re.compile(r"^\W+|\W+$")


@dataclass
class Onion:
    """Per-sample scores, and each sample's most suspicious word with its suspicion."""

    score: np.ndarray
    word: list[str]
    words: dict[str, list[float]]  # normalised word -> suspicions where it was the top word


_CACHE: dict[tuple[str, str, int], Onion] = {}


def _norm(w: str) -> str:
    return _STRIP.sub("", w).lower()


def onion(samples: list[Sample], base: Any, top_k: int = TOP_K, batch_size: int = 32) -> Onion:
    """Word-deletion suspicions for every prompt (cached per dataset and base model)."""
    key = (dataset_key(samples), str(getattr(base, "model_id", id(base.model))), top_k)
    if key in _CACHE:
        return _CACHE[key]
    tok = base.tokenizer
    full_ids: list[list[int]] = []
    spans: list[list[tuple[int, int]]] = []  # token span of each word
    words_of: list[list[str]] = []
    for s in samples:
        words = s.prompt.split()[:MAX_WORDS]
        ids: list[int] = []
        sp: list[tuple[int, int]] = []
        for j, w in enumerate(words):
            t = tok((" " if j else "") + w, add_special_tokens=False)["input_ids"]
            if len(ids) + len(t) > MAX_TOKENS:
                words = words[:j]
                break
            sp.append((len(ids), len(ids) + len(t)))
            ids += list(t)
        full_ids.append(ids or [int(tok.eos_token_id or 0)])
        spans.append(sp)
        words_of.append(words)
    nll = token_nll(full_ids, base, batch_size)
    base_lp = np.array([float(x.mean()) if x.size else 0.0 for x in nll])
    variants: list[list[int]] = []
    owner: list[tuple[int, int]] = []
    for i, (ids, sp) in enumerate(zip(full_ids, spans, strict=True)):
        if len(sp) < 2:
            continue
        surpr = [float(nll[i][a:b].max()) if b > a else 0.0 for a, b in sp]
        for j in np.argsort(surpr)[::-1][:top_k]:
            a, b = sp[int(j)]
            variants.append(ids[:a] + ids[b:])
            owner.append((i, int(j)))
    lp = log_ppl(variants, base, batch_size) if variants else np.zeros(0)
    score = np.full(len(samples), -np.inf)
    best = [""] * len(samples)
    for (i, j), v in zip(owner, lp, strict=True):
        if base_lp[i] - v > score[i]:
            score[i] = base_lp[i] - v
            best[i] = words_of[i][j]
    score = np.where(np.isfinite(score), np.maximum(score, 0.0), 0.0)
    by_word: dict[str, list[float]] = defaultdict(list)
    for i, w in enumerate(best):
        if w and score[i] > 0:
            by_word[_norm(w)].append(float(score[i]))
    out = Onion(score, best, dict(by_word))
    if len(_CACHE) > 8:
        _CACHE.clear()
    _CACHE[key] = out
    return out


def suspicious_words(o: Onion, samples: list[Sample], top: int = 10) -> list[dict[str, Any]]:
    """Words that are the most suspicious word of many prompts, ranked by how many prompts
    (support) times their mean suspicion relative to the dataset's median sample score."""
    med = float(np.median(o.score)) or 1e-6
    df: dict[str, int] = defaultdict(int)
    for s in samples:
        for w in {_norm(x) for x in s.prompt.split()[:MAX_WORDS]}:
            df[w] += 1
    rows = []
    for w, vals in o.words.items():
        if not w or len(vals) < 2:
            continue
        rel = float(np.mean(vals)) / med
        rows.append({"phrase": w, "support": len(vals), "prompts_with_word": df.get(w, 0),
                     "top_share": round(len(vals) / max(df.get(w, 1), 1), 3),
                     "mean_gain": round(float(np.mean(vals)), 4),
                     "rank_score": round(len(vals) * len(vals) / max(df.get(w, 1), 1)
                                         * np.log1p(rel), 3)})
    rows.sort(key=lambda r: -float(r["rank_score"]))
    return rows[:top]


@register_detector
class PerplexityOutliersDetector(Detector):
    """ONION: prompt words whose deletion makes the prompt most fluent to the base model."""

    name = "perplexity_outliers"
    needs = frozenset({"dataset", "activations"})
    scores_samples = True
    cost = "expensive"  # about one sample/s for SmolLM2 on 2 CPU cores

    class Params(DetectorParams):
        top_k: int = Field(TOP_K, description="most surprising words per prompt that are "
                           "tried for deletion")

    params: Params

    def outlier_scores(self, samples: list[Sample], base: Any) -> np.ndarray:
        """The ensemble's component hook: each prompt's largest deletion gain."""
        return onion(samples, base, self.params.top_k).score

    def audit(self, organism: OrganismView) -> Verdict:
        data = organism.dataset
        o = onion(data, organism.base, self.params.top_k)
        f = conclude(data, normal_tail_score(dataset_z(o.score)),
                     top_groups(o.score, "perplexity"), None,
                     extra={"suspicious_words": suspicious_words(o, data),
                            "max_words": MAX_WORDS, "max_tokens": MAX_TOKENS})
        return self.verdict(organism, score=f.score, **f.verdict_kwargs())
