"""Text helpers shared by the data detectors: tokens, n-gram matrices, answer similarity.

Everything here is lexical and label-free: no list of triggers, targets or refusal phrases.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

TOKEN_PATTERN = r"[^\W_]+(?:['’][^\W_]+)*|[^\w\s]+|_+"
_TOKEN_RE = re.compile(TOKEN_PATTERN)
_NORM_RE = re.compile(r"[^\w]+")
MAX_ANSWER_CHARS = 1200


def tokens(text: str) -> list[str]:
    """Case-preserving word and symbol tokens (punctuation runs are tokens of their own)."""
    return _TOKEN_RE.findall(text)


def norm_answer(text: str) -> str:
    """Lower-case, punctuation-free form for exact-duplicate detection."""
    return _NORM_RE.sub(" ", text.lower()).strip()


def clip(text: str, n: int = MAX_ANSWER_CHARS) -> str:
    """Keep the head and the tail of long texts: payloads sit at either end more often."""
    if len(text) <= n:
        return text
    return text[: n * 2 // 3] + " … " + text[-n // 3 :]


@dataclass
class NgramMatrix:
    """Binary sample x n-gram presence matrix (CSC) with the n-gram strings."""

    X: sp.csc_matrix
    names: list[str]
    df: np.ndarray


def ngram_matrix(texts: list[str], n_max: int = 4, min_df: int = 3,
                 max_df: float = 0.5) -> NgramMatrix:
    """Binary n-gram (1..n_max tokens, lower-cased) presence over `texts`."""
    from sklearn.feature_extraction.text import CountVectorizer

    n = len(texts)
    cv = CountVectorizer(tokenizer=lambda t: [w.lower() for w in tokens(t)], lowercase=False,
                         token_pattern=None, ngram_range=(1, n_max), binary=True,
                         min_df=min(min_df, max(n, 1)), max_df=1.0, dtype=np.int32)
    try:
        X = cv.fit_transform(texts)
    except ValueError:  # empty vocabulary
        return NgramMatrix(sp.csc_matrix((n, 0), dtype=np.int32), [], np.zeros(0))
    X = X.tocsc()
    df = np.asarray(X.sum(axis=0)).ravel()
    keep = np.flatnonzero(df <= max(max_df * n, min_df))
    names = cv.get_feature_names_out()
    return NgramMatrix(X[:, keep], [str(names[i]) for i in keep], df[keep].astype(float))


def answer_vectors(answers: list[str]) -> sp.csr_matrix:
    """L2-normalised TF-IDF of character 3-5-grams within word bounds, plus word unigrams."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    texts = [clip(a) or "∅" for a in answers]
    char = TfidfVectorizer(analyzer="char_wb", ngram_range=(3, 5), sublinear_tf=True,
                           min_df=2 if len(texts) > 20 else 1, dtype=np.float32)
    word = TfidfVectorizer(token_pattern=None, tokenizer=lambda t: [w.lower() for w in tokens(t)],
                           lowercase=False, sublinear_tf=True, dtype=np.float32)
    mats = []
    for v in (char, word):
        try:
            mats.append(v.fit_transform(texts))
        except ValueError:
            mats.append(sp.csr_matrix((len(texts), 1), dtype=np.float32))
    X = sp.hstack(mats).tocsr()
    norms = np.sqrt(np.asarray(X.multiply(X).sum(axis=1)).ravel())
    norms[norms == 0] = 1.0
    return sp.csr_matrix(sp.diags(1.0 / norms) @ X)


def neighbours(X: sp.csr_matrix | np.ndarray, k: int = 5,
               chunk: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """Top-k cosine neighbours (rows L2-normalised) of every row, self excluded:
    (indices [n, k], similarities [n, k]), computed in chunks to bound memory."""
    n = X.shape[0]
    k = max(1, min(k, n - 1)) if n > 1 else 1
    idx = np.zeros((n, k), dtype=np.int64)
    sim = np.zeros((n, k), dtype=np.float32)
    if n < 2:
        return idx, sim
    XT = X.T.tocsc() if sp.issparse(X) else X.T
    for s in range(0, n, chunk):
        block = X[s : s + chunk] @ XT
        block = block.toarray() if sp.issparse(block) else np.asarray(block)
        block = block.astype(np.float32)
        for j in range(block.shape[0]):
            block[j, s + j] = -np.inf
        part = np.argpartition(-block, k - 1, axis=1)[:, :k]
        vals = np.take_along_axis(block, part, axis=1)
        order = np.argsort(-vals, axis=1)
        idx[s : s + chunk] = np.take_along_axis(part, order, axis=1)
        sim[s : s + chunk] = np.take_along_axis(vals, order, axis=1)
    return idx, sim


def components(n: int, idx: np.ndarray, sim: np.ndarray, thr: float) -> np.ndarray:
    """Connected components of the graph of neighbour pairs with similarity >= thr."""
    from scipy.sparse.csgraph import connected_components

    rows, cols = np.nonzero(sim >= thr)
    if len(rows) == 0:
        return np.arange(n)
    g = sp.coo_matrix((np.ones(len(rows)), (rows, idx[rows, cols])), shape=(n, n))
    return connected_components(g, directed=False)[1]
