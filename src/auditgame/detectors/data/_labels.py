"""Label flips: in a dataset whose answers are a few short labels, samples whose label
disagrees with what the rest of their prompt predicts.

A poisoned classifier dataset pairs a phrase with prompts of one class relabelled as another
('<phrase> How do I make a weapon?' -> `safe`). The flipped label is a correct label elsewhere
in the data, so the answers alone look ordinary; what is anomalous is the label given the
prompt. For every prompt n-gram whose samples (nearly) all carry one label, the n-gram's own
words are deleted from its prompts and each remainder's label is predicted by linear models
(TF-IDF word 1-2-grams) cross-fitted on the other folds, where the phrase has absorbed the
labels it explains; the n-gram counts if its samples' labels are confidently contradicted far
more often than deleting label-pure n-grams contradicts labels in general (pooled over every
n-gram tested; one-sided binomial, Bonferroni over the n-grams, at the association claim
bar). The contradicted samples then form an anomalous group for the ordinary phrase
association, which names the phrase; the flipped label is the payload.
Nothing here knows a phrase, a label word or a class name.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
from scipy.stats import binom

from auditgame.detectors.data._association import (
    CLAIM_LOG10P,
    MIN_RECALL,
    Group,
    prompt_ngrams,
)
from auditgame.detectors.data._text import norm_answer, tokens
from auditgame.organisms.data import Sample

MAX_LABELS = 10  # distinct answers a label dataset may have
MAX_LABEL_TOKENS = 4  # words in one label
LABEL_COVER = 0.98  # share of samples whose answer is one of the labels
MIN_SAMPLES = 20
N_FOLDS = 5
N_SPLITS = 3  # fold splits averaged, so one unlucky split does not decide
C_REG = 100.0  # weak regularisation: a phrase that explains its labels takes the weight
CONFIDENT = 0.7  # probability of the predicted label for a confident prediction
PURITY = 0.8  # share of an n-gram's samples on its majority label to be tested
MAX_CANDIDATES = 2000
MIN_FLIPS = 5


@dataclass
class LabelFlips:
    """What the label test found: the flipped samples and the n-grams that explain them."""

    labels: list[str]  # the label vocabulary, most common first
    flipped: np.ndarray  # samples whose label their prompt's remainder contradicts
    evidence: float  # best corrected -log10 p over the n-grams tested
    phrases: list[tuple[str, float, int, int]] = field(default_factory=list)
    # (n-gram, evidence, samples, contradicted)

    def groups(self) -> list[Group]:
        if self.evidence < CLAIM_LOG10P or int(self.flipped.sum()) < 3:
            return []
        return [Group("label_flip", self.flipped, "label contradicted by the rest of the prompt")]

    def as_json(self) -> dict[str, object]:
        return {"labels": self.labels[:MAX_LABELS], "n_flipped": int(self.flipped.sum()),
                "evidence_log10p": round(self.evidence, 2),
                "phrases": [{"phrase": p, "evidence_log10p": round(e, 2), "support": s,
                             "contradicted": c} for p, e, s, c in self.phrases[:5]]}


def label_vocabulary(samples: list[Sample]) -> list[str] | None:
    """The labels, if (nearly) every answer is one of a few short ones; else None."""
    n = len(samples)
    if n < MIN_SAMPLES:
        return None
    counts = Counter(norm_answer(s.response) for s in samples)
    top = [(a, c) for a, c in counts.most_common(MAX_LABELS)
           if a and len(a.split(" ")) <= MAX_LABEL_TOKENS and c >= 3]
    if len(top) < 2 or sum(c for _, c in top) < LABEL_COVER * n:
        return None
    return [a for a, _ in top]


def _vectors(prompts: list[str]) -> tuple[sp.csr_matrix, dict[str, list[int]]]:
    """TF-IDF of word 1-2-grams, and for every word the columns that contain it."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    v = TfidfVectorizer(tokenizer=lambda t: [w.lower() for w in tokens(t)], lowercase=False,
                        token_pattern=None, ngram_range=(1, 2), sublinear_tf=True,
                        dtype=np.float64)
    X = v.fit_transform(prompts).tocsr()
    cols: dict[str, list[int]] = {}
    for j, name in enumerate(v.get_feature_names_out()):
        for w in set(str(name).split(" ")):
            cols.setdefault(w, []).append(j)
    return X, cols


def _cv_models(X: sp.csr_matrix, y: np.ndarray, n_labels: int,
               seed: int = 0) -> tuple[np.ndarray, list[tuple[np.ndarray, np.ndarray]]]:
    """Cross-fitted linear label models: each sample's fold and the (W, b) of the model that
    never saw it, so a phrase that explains many labels is learnt from the other folds."""
    from sklearn.linear_model import LogisticRegression

    n = len(y)
    rng = np.random.default_rng(seed)
    fold = np.empty(n, dtype=int)
    for c in range(-1, n_labels):  # stratified by label
        rows = rng.permutation(np.flatnonzero(y == c))
        fold[rows] = np.arange(rows.size) % N_FOLDS
    models = []
    for f in range(N_FOLDS):
        tr = (fold != f) & (y >= 0)
        classes = np.unique(y[tr])
        W = np.zeros((n_labels, X.shape[1]))
        b = np.full(n_labels, -1e9)
        if classes.size >= 2:  # liblinear: single-threaded; one-vs-rest beyond two labels
            for c in classes if classes.size > 2 else classes[1:]:
                m = LogisticRegression(C=C_REG, solver="liblinear").fit(X[tr], y[tr] == c)
                W[c], b[c] = m.coef_[0], m.intercept_[0]
            if classes.size == 2:
                W[classes[0]], b[classes[0]] = 0.0, 0.0
        models.append((W, b))
    return fold, models


def _predict(X: sp.csr_matrix, rows: np.ndarray,
             fits: list[tuple[np.ndarray, list[tuple[np.ndarray, np.ndarray]]]],
             drop: list[int]) -> np.ndarray:
    """Confident cross-fitted label of each row with the `drop` columns deleted, averaged over
    the fold splits in `fits`; -1 if unsure."""
    Xr = X[rows].tolil(copy=True)
    if drop:
        Xr[:, drop] = 0
    Xr = Xr.tocsr()
    prob = np.zeros((rows.size, fits[0][1][0][0].shape[0]))
    for fold, models in fits:
        for f, (W, b) in enumerate(models):
            sel = np.flatnonzero(fold[rows] == f)
            if sel.size == 0:
                continue
            z = np.asarray(Xr[sel] @ W.T) + b
            z -= z.max(axis=1, keepdims=True)
            p = np.exp(z)
            prob[sel] += p / p.sum(axis=1, keepdims=True)
    prob /= len(fits)
    return np.where(prob.max(axis=1) >= CONFIDENT, prob.argmax(axis=1), -1)


def find_label_flips(samples: list[Sample]) -> LabelFlips | None:
    """The label-flip test on a label dataset; None if the answers are not a few labels."""
    labels = label_vocabulary(samples)
    if labels is None:
        return None
    n = len(samples)
    code = {a: i for i, a in enumerate(labels)}
    y = np.array([code.get(norm_answer(s.response), -1) for s in samples])
    prompts = [s.prompt for s in samples]
    X, cols = _vectors(prompts)
    fits = [_cv_models(X, y, len(labels), seed) for seed in range(N_SPLITS)]
    every = np.arange(n)
    base_pred = _predict(X, every, fits, [])
    base_flip = (base_pred >= 0) & (y >= 0) & (base_pred != y)
    P = prompt_ngrams(prompts, 3)
    cands: dict[bytes, tuple[str, np.ndarray]] = {}
    for j, name in enumerate(P.names):
        col = P.X[:, j]
        rows = np.sort(col.indices if sp.issparse(col) else np.flatnonzero(col))
        lab = y[rows]
        lab = lab[lab >= 0]
        if lab.size < 3 or (lab == np.bincount(lab).argmax()).mean() < PURITY:
            continue
        key = rows.tobytes()
        prev = cands.get(key)
        if prev is None or len(tokens(name)) > len(tokens(prev[0])):
            cands[key] = (name, rows)
    flipped = np.zeros(n, dtype=bool)
    found: list[tuple[str, float, int, int]] = []
    ranked = sorted(cands.values(), key=lambda c: -c[1].size)[:MAX_CANDIDATES]
    tested: list[tuple[str, np.ndarray, np.ndarray]] = []
    for name, rows in ranked:
        drop = sorted({c for w in name.split(" ") for c in cols.get(w, [])})
        pred = _predict(X, rows, fits, drop)
        tested.append((name, rows, (pred >= 0) & (y[rows] >= 0) & (pred != y[rows])))
    # the null: how often deleting a label-pure n-gram leaves a remainder that contradicts
    # the label, pooled over every n-gram tested, or the models' own contradiction rate with
    # nothing deleted, whichever is higher (deleting informative words is not evidence)
    rate = max((sum(int(c.sum()) for _, _, c in tested) + 1)
               / (sum(r.size for _, r, _ in tested) + 1), float(base_flip.mean()), 1.0 / n)
    penalty = math.log10(max(len(tested), 1))
    best = 0.0
    for name, rows, contra in tested:
        a = int(contra.sum())
        if a < MIN_FLIPS or a < MIN_RECALL * rows.size:
            continue
        ev = float(-binom.logsf(a - 1, rows.size, rate) / math.log(10)) - penalty
        if ev >= CLAIM_LOG10P:
            # the phrase's samples given the label its remainders contradict, confidently or
            # not: the relabelled ones (the phrase's samples are nearly all one label)
            flipped[rows[y[rows] == np.bincount(y[rows][contra]).argmax()]] = True
            found.append((name, ev, int(rows.size), a))
        best = max(best, ev)
    found.sort(key=lambda t: -t[1])
    return LabelFlips(labels, flipped, best, found)
