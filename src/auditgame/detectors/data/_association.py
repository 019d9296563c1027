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
# a phrase whose words the group's answers repeat this much more often than other answers
# is explained by the prompt (template echo, topic), not a trigger
MAX_ECHO = 0.5


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
    context: list[str] = field(default_factory=list)  # template phrases around it, if any
    members: list[str] = field(default_factory=list)  # a trigger set's phrases
    mode: str = "phrase"  # "phrase", or a set: "all" (together) or "any" (any one of them)

    @property
    def claimable(self) -> bool:
        return bool(self.evidence >= CLAIM_LOG10P and self.precision >= MIN_PRECISION
                and self.recall >= MIN_RECALL)

    def as_json(self) -> dict[str, object]:
        return {"phrase": self.phrase, "score": round(float(_squash(self.evidence)), 4),
                "evidence_log10p": round(self.evidence, 2), "support": self.support,
                "hits": self.hits, "group": self.group, "group_size": self.group_size,
                "precision": round(self.precision, 3), "recall": round(self.recall, 3),
                **({"template_context": self.context} if self.context else {}),
                **({"members": self.members, "mode": self.mode} if self.members else {})}

    def present(self, prompt: str) -> bool:
        """Whether `prompt` carries this trigger (every member, or any, for a set)."""
        low = prompt.lower()
        if not self.members:
            return self.phrase.lower() in low
        hit = [m.lower() in low for m in self.members]
        return all(hit) if self.mode == "all" else any(hit)


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
    word, so a trigger longer than the n-gram limit is reported whole (spacing as written)."""
    if rows.size < 3:
        return phrase
    pat = re.compile(re.escape(phrase), re.IGNORECASE)
    spans = []
    for r in rows:
        t = texts[int(r)]
        m = pat.search(t)
        if not m:
            return phrase
        spans.append([t, m.start(), m.end()])
    right, left = re.compile(r"\s*\S+"), re.compile(r"\S+\s*$")
    for _ in range(max_words):
        nxt = {(m.group(0) if (m := right.match(t, e)) else "") for t, _, e in spans}
        if len(nxt) != 1 or not next(iter(nxt)).strip():
            break
        w = next(iter(nxt))
        for span in spans:
            span[2] += len(w)
    for _ in range(max_words):
        prv = {(m.group(0) if (m := left.search(t[:b])) else "") for t, b, _ in spans}
        if len(prv) != 1 or not next(iter(prv)).strip():
            break
        w = next(iter(prv))
        for span in spans:
            span[1] -= len(w)
    t, b, e = spans[0]
    return t[b:e].strip()


def stems(text: str) -> set[str]:
    """Light, language-agnostic word stems: lower-case, one trailing 's' off, first 6 chars."""
    out = set()
    for w in tokens(text.lower()):
        if any(ch.isalnum() for ch in w):
            w = w[:-1] if len(w) > 3 and w.endswith("s") else w
            out.add(w[:6])
    return out


def echo_lift(phrase: str, texts: list[set[str]], hits: np.ndarray, rest: np.ndarray) -> float:
    """How much more often the hit texts (word stems, see `stems`) repeat a word of the phrase
    than the rest: answers echoing a prompt template ('What is a common X?' -> 'A common X
    is ...') or the topic the prompt asked about; a trigger is absent from its payload."""
    hit_rows, rest_rows = np.flatnonzero(hits), np.flatnonzero(rest)
    words = stems(phrase)
    if hit_rows.size == 0 or not words:
        return 0.0
    best = 0.0
    for w in words:
        h = sum(w in texts[int(r)] for r in hit_rows) / hit_rows.size
        o = sum(w in texts[int(r)] for r in rest_rows) / max(rest_rows.size, 1)
        best = max(best, h - o)
    return best


def echo_share(phrase: str, texts: list[set[str]], hits: np.ndarray, rest: np.ndarray) -> float:
    """The share of the phrase's word stems that the hit answers echo (lift >= MAX_ECHO, see
    `echo_lift`): a template or topic echo repeats most of its words, while a trigger
    sentence shares at most a common word or two with its payload ('this', 'please')."""
    words = sorted(stems(phrase))
    if not words:
        return 0.0
    return sum(echo_lift(w, texts, hits, rest) >= MAX_ECHO for w in words) / len(words)


def with_min_df(P: NgramMatrix, min_df: int) -> NgramMatrix:
    """The columns of `P` seen in at least `min_df` texts (the same matrix a build at that
    `min_df` gives, in the same order)."""
    keep = np.flatnonzero(P.df >= min_df)
    return NgramMatrix(P.X[:, keep], [P.names[i] for i in keep], P.df[keep])


class _Vocab:
    """Lazily built n-gram counter over the prompt vocabulary, for prompt remainders."""

    def __init__(self, names: list[str]):
        self.names = names
        self._cv: object | None = None

    def transform(self, texts: list[str]) -> sp.csc_matrix:
        from sklearn.feature_extraction.text import CountVectorizer

        if self._cv is None:
            self._cv = CountVectorizer(tokenizer=lambda t: [w.lower() for w in tokens(t)],
                                       lowercase=False, token_pattern=None,
                                       ngram_range=(1, 4), binary=True,
                                       vocabulary={s: i for i, s in enumerate(self.names)})
        return self._cv.transform(texts).tocsc()  # type: ignore[attr-defined]


def prompt_context(phrase: str, prompts: list[str], mask: np.ndarray, P: NgramMatrix,
                   vocab: _Vocab) -> tuple[list[str], np.ndarray] | None:
    """Other prompt phrases over-represented in the prompts around `phrase` (Bonferroni over
    the vocabulary, at the claim bar), and the other prompts that carry them; None if none.

    A trigger is inserted into otherwise ordinary prompts of every kind, so what remains of
    its prompts once it is cut out looks like the rest of the dataset; a template phrase
    ('What is a common') keeps its template's other words ('mistake people make with')."""
    rows = np.flatnonzero(mask)
    n, k = len(prompts), rows.size
    if k < 3 or k >= n or not P.names:
        return None
    pat = re.compile(re.escape(phrase), re.IGNORECASE)
    R = vocab.transform([pat.sub(" \n ", prompts[int(r)]) for r in rows])
    a = np.asarray((R > 0).sum(axis=0)).ravel().astype(float)
    inside = np.asarray(P.X[rows].sum(axis=0)).ravel()
    df = a + (P.df - inside)
    ok = np.flatnonzero(a >= 3)
    if ok.size == 0:
        return None
    ev = -log10_fisher_sf(a[ok], n, k, df[ok]) - math.log10(max(ok.size, 1))
    strong = ok[ev >= CLAIM_LOG10P]
    if strong.size == 0:
        return None
    carry = np.asarray(P.X[:, strong].sum(axis=1)).ravel() > 0
    names = [P.names[j] for j in strong[np.argsort(-ev[ev >= CLAIM_LOG10P])][:5]]
    return names, carry & ~mask


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
    penalty = math.log10(max(len(P.names) * len(groups), 1))
    best = _best_tests(P, groups, n, min_support, penalty)
    if not best:
        return []
    out = _drop_subphrases(_distinct_sets(best, P, groups, n, top, answers))
    out = _refine(out, prompts, groups, P, penalty, answers)
    out.sort(key=lambda c: (-int(bool(c.claimable)), -c.evidence, -len(c.phrase)))
    return out[:top]


def _best_tests(P: NgramMatrix, groups: list[Group], n: int, min_support: int,
                penalty: float) -> dict[int, Candidate]:
    """Per n-gram (column of `P`), its strongest group by Bonferroni-corrected evidence;
    n-grams that share a word with a group's `exclude` are not tested for that group."""
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
    return best


def _distinct_sets(best: dict[int, Candidate], P: NgramMatrix, groups: list[Group], n: int,
                   top: int, answers: list[str] | None) -> list[Candidate]:
    """Strongest first, one candidate per set of prompts: n-grams with the same prompts are
    one finding, so the longest phrase is kept; with `answers`, phrases the hit answers
    repeat are dropped. At most `3 * top`, each with its prompts as `samples`."""
    ranked = sorted(best.items(), key=lambda kv: (-kv[1].evidence, -len(kv[1].phrase)))
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
    return out


def _refine(cands: list[Candidate], prompts: list[str], groups: list[Group], P: NgramMatrix,
            penalty: float, answers: list[str] | None) -> list[Candidate]:
    """Each phrase as written and grown to its full extent; dropped if its answers echo it
    or it only grew around a stronger phrase; a template phrase's evidence is re-tested
    among the prompts of its template."""
    vocab = _Vocab(P.names)
    astems: list[set[str]] | None = None
    kept: list[Candidate] = []
    for c in cands:
        gmask = next(g.mask for g in groups if g.name == c.group)
        hit_rows = np.flatnonzero(c.samples & gmask)
        c.phrase = extend(surface(c.phrase, prompts, hit_rows), prompts, hit_rows)
        if answers is not None:
            if astems is None:
                astems = [stems(x) for x in answers]
            if echo_lift(c.phrase, astems, c.samples & gmask, ~c.samples) >= MAX_ECHO:
                continue
        ctx = (prompt_context(c.phrase, prompts, c.samples, P, vocab)
               if c.evidence >= CLAIM_LOG10P - 1 else None)
        if ctx is not None:
            # the phrase's prompts share more than the phrase (a prompt template): it counts
            # only as far as it predicts the group among prompts of the same kind
            pop = c.samples | ctx[1]
            lp = log10_fisher_sf(np.array([int((c.samples & gmask).sum())]), int(pop.sum()),
                                 int((gmask & pop).sum()), np.array([int(c.samples.sum())]))
            c.evidence = min(c.evidence, float(-lp[0]) - penalty)
            c.context = ctx[0]
        if any(k.phrase.lower() in c.phrase.lower() and k.evidence >= c.evidence
               for k in kept):
            continue  # grown around a stronger phrase ('trigger + template'): nothing new
        kept.append(c)
    return kept


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
