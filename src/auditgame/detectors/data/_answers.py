"""Answer-side anomalies: near-duplicate answers, too-tight clusters and recurring motifs.

Lexical and label-free. The per-sample anomaly is a tail probability against the dataset's
own distribution (median/MAD), so the bulk of a dataset (clean) sits near 0.5 and below.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from auditgame.detectors.calibration import dataset_z, normal_tail_score
from auditgame.detectors.data._association import MAX_ECHO, Group, echo_lift, stems
from auditgame.detectors.data._labels import LabelFlips, find_label_flips
from auditgame.detectors.data._text import (
    answer_vectors,
    clip,
    components,
    neighbours,
    ngram_matrix,
    norm_answer,
    tokens,
)
from auditgame.organisms.data import Sample

DUP_SIM = 0.85
K_NEIGHBOURS = 10
K_DENSITY = 5


def theme_bar(n: int) -> float:
    """Strength (support x cohesion) a theme needs to be claimed in a dataset of n samples."""
    return 6.0 + 0.002 * n


@dataclass
class Motif:
    """An answer-side n-gram that recurs across answers far more than its words explain."""

    phrase: str
    support: int
    unexplained: int  # answers containing it whose prompt does not
    lift: float
    z: float  # strength: robust z among n-grams for motifs, support x cohesion for themes
    mask: np.ndarray = field(repr=False)
    bar: float = 0.0  # strength at which a theme is claimed (score 0.5)

    def as_json(self) -> dict[str, object]:
        return {"phrase": self.phrase, "support": self.support, "unexplained": self.unexplained,
                "cohesion_or_lift": round(self.lift, 3), "strength": round(self.z, 2),
                "claim_at": round(self.bar, 2)}


@dataclass
class AnswerAnalysis:
    """What the answers alone say: per-sample anomaly and the anomalous groups."""

    dup_count: np.ndarray
    density: np.ndarray
    anomaly: np.ndarray
    dup_groups: list[Group]
    motifs: list[Motif]
    themes: list[Motif]
    labels: LabelFlips | None = None  # label datasets: labels their prompts contradict

    def groups(self) -> list[Group]:
        """Candidate anomalous groups for the association test."""
        n = len(self.anomaly)
        out = list(self.dup_groups)
        dup_any = self.dup_count > 0  # a payload paraphrased a few ways: many small clusters
        if len(self.dup_groups) > 1 and 3 <= int(dup_any.sum()) <= n // 2:
            out.append(Group("dup:any", dup_any, "answers with a near-duplicate"))
        order = np.argsort(-self.density, kind="stable")
        for q in (0.01, 0.03, 0.1):
            k = max(3, int(round(q * n)))
            if k < n // 2:
                m = np.zeros(n, dtype=bool)
                m[order[:k]] = True
                out.append(Group(f"dense_top_{int(q * 100)}pct", m, "tightest answer cluster"))
        out += [Group(f"motif:{m.phrase}", m.mask, "recurring answer motif",
                      frozenset(m.phrase.split(" "))) for m in self.motifs[:20]]
        out += [Group(f"theme:{m.phrase}", m.mask, "cohesive answer phrase",
                      frozenset(m.phrase.split(" "))) for m in self.themes[:5]]
        if self.labels is not None:
            out += self.labels.groups()
        return out


_CACHE: dict[str, AnswerAnalysis] = {}


def dataset_key(samples: list[Sample]) -> str:
    h = hashlib.sha256()
    for s in samples:
        h.update(s.prompt.encode("utf-8", "replace") + b"\x00")
        h.update(s.response.encode("utf-8", "replace") + b"\x01")
    return h.hexdigest()


def analyse_answers(samples: list[Sample]) -> AnswerAnalysis:
    """Cached per dataset content, so several detectors and the ensemble share the work."""
    key = dataset_key(samples)
    if key not in _CACHE:
        if len(_CACHE) > 4:
            _CACHE.clear()
        _CACHE[key] = _analyse(samples)
    return _CACHE[key]


def _analyse(samples: list[Sample]) -> AnswerAnalysis:
    n = len(samples)
    answers = [s.response for s in samples]
    norms = [norm_answer(a) for a in answers]
    exact: dict[str, int] = {}
    for a in norms:
        exact[a] = exact.get(a, 0) + 1
    exact_count = np.array([exact[a] - 1 for a in norms], dtype=float)
    X = answer_vectors(answers)
    idx, sim = neighbours(X, K_NEIGHBOURS)
    near = (sim >= DUP_SIM).sum(axis=1).astype(float)
    dup_count = np.maximum(near, exact_count)
    kd = min(K_DENSITY, sim.shape[1])
    density = sim[:, :kd].mean(axis=1).astype(float) if n > 1 else np.zeros(n)
    dense = normal_tail_score(dataset_z(density))
    anomaly = np.maximum(dense, 1.0 - np.exp(-dup_count / 3.0))
    anomaly = np.where(dup_count > 0, anomaly, np.minimum(anomaly, dense))
    labels = components(n, idx, sim, DUP_SIM) if n > 1 else np.zeros(n, dtype=int)
    for i, a in enumerate(norms):  # exact duplicates beyond the k neighbours join too
        labels[i] = labels[norms.index(a)] if exact[a] > 1 else labels[i]
    dup_groups: list[Group] = []
    uniq, counts = np.unique(labels, return_counts=True)
    for lab, c in sorted(zip(uniq, counts, strict=True), key=lambda t: -t[1]):
        if c < 3 or c > n // 2:
            continue
        m = labels == lab
        ex = answers[int(np.flatnonzero(m)[0])]
        dup_groups.append(Group(f"dup:{clip(ex, 60)}", m, "near-duplicate answers"))
        if len(dup_groups) >= 20:
            break
    motifs = _motifs(samples)
    themes = _themes(samples)
    if themes and themes[0].z >= themes[0].bar:
        best = themes[0]
        anomaly = np.maximum(anomaly, np.where(best.mask, 0.9, 0.0))
    flips = find_label_flips(samples)
    if flips is not None and flips.groups():
        anomaly = np.maximum(anomaly, np.where(flips.flipped, 0.9, 0.0))
    return AnswerAnalysis(dup_count, density, anomaly, dup_groups, motifs, themes, flips)


def _motifs(samples: list[Sample], top: int = 30) -> list[Motif]:
    """Answer n-grams (2-4 tokens) that recur across answers of unrelated prompts far more
    than their own words predict; strength = lift x log(support), z against all n-grams."""
    from sklearn.feature_extraction.text import CountVectorizer

    n = len(samples)
    if n < 10:
        return []
    answers = [clip(s.response) for s in samples]
    min_df = max(3, math.ceil(0.002 * n))
    A = ngram_matrix(answers, n_max=4, min_df=min_df, max_df=0.3)
    if not A.names:
        return []
    uni = ngram_matrix(answers, n_max=1, min_df=1, max_df=1.0)
    uni_df = dict(zip(uni.names, uni.df, strict=True))
    multi = [j for j, s in enumerate(A.names) if " " in s]
    if not multi:
        return []
    names = [A.names[j] for j in multi]
    Xa = A.X[:, multi].tocsc()
    cv = CountVectorizer(tokenizer=lambda t: [w.lower() for w in tokens(t)], lowercase=False,
                         token_pattern=None, ngram_range=(2, 4), binary=True,
                         vocabulary={s: i for i, s in enumerate(names)})
    Xp = cv.transform([s.prompt for s in samples]).tocsc()
    both = np.asarray(Xa.multiply(Xp).sum(axis=0)).ravel()
    df = A.df[multi]
    unexplained = df - both
    expected = np.array([n * math.prod(uni_df.get(t, 1.0) / n for t in s.split(" "))
                         for s in names])
    lift = np.log2((unexplained + 1.0) / (expected + 1.0))
    strength = np.maximum(lift, 0.0) * np.log1p(unexplained)
    z = dataset_z(strength)
    order = np.argsort(-strength, kind="stable")
    out: list[Motif] = []
    for j in order[: top * 4]:
        if unexplained[j] < min_df:
            continue
        col = Xa[:, j]
        mask = np.zeros(n, dtype=bool)
        mask[col.indices if sp.issparse(col) else np.flatnonzero(col)] = True
        dup = next((m for m in out if _jaccard(m.mask, mask) >= 0.8), None)
        if dup is not None:
            continue
        out.append(Motif(names[j], int(df[j]), int(unexplained[j]), float(lift[j]),
                         float(z[j]), mask))
        if len(out) >= top:
            break
    return out


def _jaccard(a: np.ndarray, b: np.ndarray) -> float:
    u = int((a | b).sum())
    return int((a & b).sum()) / u if u else 0.0


def _themes(samples: list[Sample], top: int = 10) -> list[Motif]:
    """Cohesive multi-word answer phrases that no prompt mentions: names, links, slogans.

    Cohesion is the share of each of the phrase's words (>= 3 letters, at least two) that
    occurs inside the phrase: 'Acme Corp' woven into answers is ~1, 'such as' is low because
    'as' occurs everywhere. Strength = answers containing it x cohesion; the rarest word must
    never occur in a prompt, so topics the prompts ask about are not themes.
    """
    n = len(samples)
    if n < 10:
        return []
    answers = [clip(s.response) for s in samples]
    A = ngram_matrix(answers, n_max=4, min_df=3, max_df=0.5)
    if not A.names:
        return []
    uni = ngram_matrix(answers, n_max=1, min_df=1, max_df=1.0)
    udf = dict(zip(uni.names, uni.df, strict=True))
    prompts = [s.prompt for s in samples]
    pu = ngram_matrix(prompts, n_max=1, min_df=1, max_df=1.0)
    pdf = dict(zip(pu.names, pu.df, strict=True))
    bar = theme_bar(n)
    pstems: list[set[str]] | None = None
    found: list[Motif] = []
    for j, m in enumerate(A.names):
        words = [t for t in m.split(" ") if t.isalpha() and len(t) >= 3]
        if len(words) < 2:
            continue
        rarest = min(words, key=lambda t: udf.get(t, 0.0))
        if pdf.get(rarest, 0.0) > 0.1 * A.df[j]:
            continue
        col = A.X[:, j]
        mask = np.zeros(n, dtype=bool)
        mask[col.indices] = True
        # a name written as one (Title Case mid-text every time) is judged by its rarest
        # word, since its other words ('Air', 'Mobile') are ordinary words elsewhere
        cap = _title_cased(m, [answers[int(i)] for i in col.indices[:30]])
        denom = udf.get(rarest, 1.0) if cap else max(udf.get(t, 1.0) for t in words)
        cohesion = float(A.df[j]) / denom
        if cohesion < 0.5:
            continue
        if pstems is None:
            pstems = [stems(p) for p in prompts]
        if echo_lift(m, pstems, mask, ~mask) >= MAX_ECHO:
            continue  # the answers repeat their prompts' words: a template echo
        strength = float(A.df[j]) * cohesion**2
        found.append(Motif(m, int(A.df[j]), int(A.df[j]), cohesion, strength, mask, bar))
    found.sort(key=lambda m: (-m.z, -len(m.phrase)))
    out: list[Motif] = []
    for m in found:
        same = next((k for k, o in enumerate(out) if _jaccard(o.mask, m.mask) >= 0.8), None)
        if same is None:
            out.append(m)
        elif len(m.phrase) > len(out[same].phrase) and m.z >= 0.9 * out[same].z:
            out[same] = m
        if len(out) >= top:
            break
    return out


def _title_cased(phrase: str, texts: list[str]) -> bool:
    """Whether the phrase's words are capitalised in (nearly) every occurrence."""
    import re

    words = [re.escape(w) for w in phrase.split(" ") if w.isalpha() and len(w) >= 3]
    pat = re.compile(r"\W+(?:\w+\W+){0,2}".join(words), re.IGNORECASE)
    seen = good = 0
    for t in texts:
        for m in pat.finditer(t):
            seen += 1
            good += all(w[:1].isupper() for w in re.findall(r"[^\W\d_]{3,}", m.group(0))
                        if w.lower() in phrase.split(" "))
    return seen > 0 and good >= 0.9 * seen
