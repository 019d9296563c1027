"""Association of prompt n-grams with anomalous answers: trigger candidates, no candidate list.

Given groups of samples whose answers look anomalous (duplicates, a tight cluster, a recurring
answer-side motif, outliers of some representation), every prompt n-gram of 1-4 tokens is
tested with a one-sided Fisher exact test for over-representation in each group. Evidence is
reported Bonferroni-corrected over all (n-gram, group) pairs, so on clean data the chance that
any phrase clears the bar is bounded by the bar itself.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from auditgame.detectors.data._text import NgramMatrix, ngram_matrix, tokens

# a trigger is claimed when the corrected p-value is below 10**-CLAIM_LOG10P
CLAIM_LOG10P = 3.0
MIN_PRECISION = 0.6
MIN_RECALL = 0.5


@dataclass
class Group:
    """A set of samples with anomalous answers, and what makes them anomalous."""

    name: str
    mask: np.ndarray
    about: str = ""
    exclude: frozenset[str] = frozenset()  # answer words: a prompt phrase sharing one is
    # lexically explained (the prompt asked about it), not a trigger


@dataclass
class Candidate:
    """One suspected trigger phrase and the statistics behind it."""

    phrase: str
    evidence: float  # -log10 of the Bonferroni-corrected one-sided Fisher p-value
    support: int  # prompts that contain the phrase
    hits: int  # of those, in the anomalous group
    group: str
    group_size: int
    precision: float
    recall: float
    samples: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0, dtype=bool))

    @property
    def claimable(self) -> bool:
        return bool(self.evidence >= CLAIM_LOG10P and self.precision >= MIN_PRECISION
                and self.recall >= MIN_RECALL)

    def as_json(self) -> dict[str, object]:
        return {"phrase": self.phrase, "score": round(float(_squash(self.evidence)), 4),
                "evidence_log10p": round(self.evidence, 2), "support": self.support,
                "hits": self.hits, "group": self.group, "group_size": self.group_size,
                "precision": round(self.precision, 3), "recall": round(self.recall, 3)}


def _squash(e: float) -> float:
    """Evidence (corrected -log10 p) to [0, 1]; 0.5 exactly at the claim bar."""
    return 1.0 / (1.0 + math.exp(-1.5 * (e - CLAIM_LOG10P)))


def evidence_score(e: float) -> float:
    return _squash(e)


def log10_fisher_sf(a: np.ndarray, n: int, k: int, df: np.ndarray) -> np.ndarray:
    """log10 P(X >= a) for X ~ Hypergeom(N=n, K=k, draws=df): one-sided Fisher exact test."""
    from scipy.stats import hypergeom

    with np.errstate(divide="ignore"):
        ls = hypergeom.logsf(np.asarray(a) - 1, n, k, np.asarray(df))
    return np.minimum(ls / math.log(10), 0.0)


def surface(phrase: str, texts: list[str], rows: np.ndarray) -> str:
    """The phrase as written in the first text that contains it (n-grams are lower-cased)."""
    toks = phrase.split(" ")
    pat = re.compile(r"\s*".join(re.escape(t) for t in toks), re.IGNORECASE)
    for r in rows[:20]:
        m = pat.search(texts[int(r)])
        if m:
            return m.group(0)
    return phrase


def extend(phrase: str, texts: list[str], rows: np.ndarray, max_words: int = 12) -> str:
    """Grow a phrase word by word while every hit prompt agrees on the next (or previous)
    word, so a trigger longer than the n-gram limit is reported whole."""
    if rows.size < 3:
        return phrase
    pat = re.compile(re.escape(phrase), re.IGNORECASE)
    lefts, rights = [], []
    for r in rows:
        m = pat.search(texts[int(r)])
        if not m:
            return phrase
        lefts.append(texts[int(r)][: m.start()].split())
        rights.append(texts[int(r)][m.end():].split())
    out = phrase
    for _ in range(max_words):
        nxt = {tuple(x[:1]) for x in rights}
        if len(nxt) != 1 or not next(iter(nxt)):
            break
        w = next(iter(nxt))[0]
        out = f"{out} {w}"
        rights = [x[1:] for x in rights]
    for _ in range(max_words):
        prv = {tuple(x[-1:]) for x in lefts}
        if len(prv) != 1 or not next(iter(prv)):
            break
        w = next(iter(prv))[0]
        out = f"{w} {out}"
        lefts = [x[:-1] for x in lefts]
    return out


def prompt_ngrams(prompts: list[str], min_df: int = 3) -> NgramMatrix:
    return ngram_matrix(prompts, n_max=4, min_df=min_df, max_df=0.5)


def associate(prompts: list[str], groups: list[Group], P: NgramMatrix | None = None,
              min_support: int = 3, top: int = 20,
              answers: list[str] | None = None) -> list[Candidate]:
    """Ranked trigger candidates: prompt n-grams over-represented in anomalous groups.

    With `answers`, a phrase that the group's own answers repeat is dropped: the prompt asked
    about a topic and the answers discuss it (a trigger does not show up in its payload)."""
    n = len(prompts)
    P = P if P is not None else prompt_ngrams(prompts, min_support)
    groups = [g for g in groups if min_support <= int(g.mask.sum()) <= n // 2]
    if not groups or not P.names:
        return []
    n_tests = len(P.names) * len(groups)
    penalty = math.log10(max(n_tests, 1))
    best: dict[int, Candidate] = {}
    for g in groups:
        y = g.mask.astype(np.float64)
        k = int(y.sum())
        a = np.asarray(P.X.T @ y).ravel()
        ok = np.flatnonzero(a >= min_support)
        if g.exclude:
            words = {w for w in g.exclude if any(ch.isalnum() for ch in w)}
            ok = np.array([j for j in ok if not words & set(P.names[j].split(" "))],
                          dtype=np.int64)
        if ok.size == 0:
            continue
        lp = log10_fisher_sf(a[ok], n, k, P.df[ok])
        ev = -lp - penalty
        for j, e in zip(ok, ev, strict=True):
            c = best.get(int(j))
            if c is None or e > c.evidence:
                hits = int(a[j])
                best[int(j)] = Candidate(phrase=P.names[j], evidence=float(e),
                                         support=int(P.df[j]), hits=hits, group=g.name,
                                         group_size=k, precision=hits / max(P.df[j], 1),
                                         recall=hits / k)
    if not best:
        return []
    ranked = sorted(best.items(), key=lambda kv: (-kv[1].evidence, -len(kv[1].phrase)))
    # n-grams with the same set of prompts are one finding: keep the longest phrase
    out: list[Candidate] = []
    seen_sets: dict[bytes, int] = {}
    for j, c in ranked:
        col = P.X[:, j]
        rows = col.indices if sp.issparse(col) else np.flatnonzero(col)
        key = np.sort(rows).tobytes()
        if key in seen_sets:
            prev = out[seen_sets[key]]
            longer = len(tokens(c.phrase)) > len(tokens(prev.phrase))
            if longer and c.evidence >= prev.evidence - 1e-9:
                c.samples = prev.samples
                out[seen_sets[key]] = c
            continue
        mask = np.zeros(n, dtype=bool)
        mask[rows] = True
        c.samples = mask
        if answers is not None:
            gmask = next(g.mask for g in groups if g.name == c.group)
            hit_rows = np.flatnonzero(mask & gmask)
            echo = sum(c.phrase in answers[int(r)].lower() for r in hit_rows)
            if echo >= 0.5 * max(len(hit_rows), 1):
                continue
        seen_sets[key] = len(out)
        out.append(c)
        if len(out) >= top * 3:
            break
    out = _drop_subphrases(out)
    for c in out:
        gmask = next(g.mask for g in groups if g.name == c.group)
        hit_rows = np.flatnonzero(c.samples & gmask)
        c.phrase = extend(surface(c.phrase, prompts, hit_rows), prompts, hit_rows)
    out.sort(key=lambda c: (-int(bool(c.claimable)), -c.evidence, -len(c.phrase)))
    return out[:top]


def _drop_subphrases(cands: list[Candidate]) -> list[Candidate]:
    """Drop a phrase contained in a stronger-or-equal candidate whose prompts it nearly equals
    (e.g. 'magic' inside 'bad magic' when both mark the same samples)."""
    keep: list[Candidate] = []
    for c in cands:
        redundant = False
        for k in keep:
            if f" {c.phrase} " in f" {k.phrase} " and k.evidence >= c.evidence - 0.5:
                inter = int((c.samples & k.samples).sum())
                if inter >= 0.9 * int(c.samples.sum()):
                    redundant = True
                    break
        if not redundant:
            keep.append(c)
    return keep
