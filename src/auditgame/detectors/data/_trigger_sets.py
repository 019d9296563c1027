"""Trigger sets: prompt phrases that predict an anomalous group only together, or only as a set.

Two shapes the single n-gram test misses (BackdoorLLM's CTBA and MTBA):

- *all of* ("A + B + C"): words scattered through the prompt that fire only together, while
  clean prompts carry some of them; each word alone is too impure to claim.
- *any of* ("A | B | C"): several triggers with one payload; each alone explains too few of
  the group to claim.

A set is judged by the same one-sided Fisher test as a phrase, on the samples it picks out
(every member present, or any member present), with the single-phrase Bonferroni penalty
plus log10 of the number of sets of that size that could be formed from the eligible
members, so the false-alarm bound of the claim bar still holds for sets.
"""

from __future__ import annotations

import math
from itertools import combinations

import numpy as np
import scipy.sparse as sp

from auditgame.detectors.data._association import (
    MIN_PRECISION,
    MIN_RECALL,
    Candidate,
    Group,
    echo_share,
    extend,
    log10_fisher_sf,
    stems,
    surface,
)
from auditgame.detectors.data._text import NgramMatrix

MAX_ALL = 3  # members of an all-of set
MAX_ANY = 6  # members of an any-of set
TOP_ALL = 12  # strongest eligible members whose pairs and triples are tried
SHARED_ANSWER = "dup:"  # groups of one (near-)duplicate answer: where any-of sets are sought;
# elsewhere (dense or outlier tails) pure phrases of clean near-duplicate prompts add up


def _log10_comb(n: int, k: int) -> float:
    if not 0 <= k <= n:
        return 0.0
    return (math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)) / math.log(10)


def _distinct_columns(P: NgramMatrix, cols: np.ndarray) -> list[tuple[int, np.ndarray]]:
    """One column per distinct set of prompts (the longest n-gram kept), with its rows."""
    seen: dict[bytes, int] = {}
    out: list[tuple[int, np.ndarray]] = []
    for j in cols:
        col = P.X[:, int(j)]
        rows = np.sort(col.indices if sp.issparse(col) else np.flatnonzero(col))
        key = rows.tobytes()
        if key in seen:
            i = seen[key]
            if len(P.names[int(j)]) > len(P.names[out[i][0]]):
                out[i] = (int(j), rows)
            continue
        seen[key] = len(out)
        out.append((int(j), rows))
    return out


def _mask(n: int, rows: np.ndarray) -> np.ndarray:
    m = np.zeros(n, dtype=bool)
    m[rows] = True
    return m


def _evidence(mask: np.ndarray, g: np.ndarray, penalty: float) -> tuple[float, int, int]:
    hits, support = int((mask & g).sum()), int(mask.sum())
    if hits == 0:
        return -math.inf, hits, support
    lp = log10_fisher_sf(np.array([hits]), len(g), int(g.sum()), np.array([support]))
    return float(-lp[0]) - penalty, hits, support


def _candidate(mode: str, names: list[str], mask: np.ndarray, g: Group, ev: float,
               hits: int, support: int) -> Candidate:
    k = int(g.mask.sum())
    sep = " + " if mode == "all" else " | "
    return Candidate(phrase=sep.join(names), evidence=ev, support=support, hits=hits,
                     group=g.name, group_size=k, precision=hits / max(support, 1),
                     recall=hits / max(k, 1), samples=mask, members=list(names), mode=mode)


def all_of(P: NgramMatrix, g: Group, penalty: float, min_support: int) -> Candidate | None:
    """The best pair or triple of phrases whose co-occurrence picks out the group, if it beats
    each of its members and every smaller subset."""
    n, k = P.X.shape[0], int(g.mask.sum())
    y = g.mask.astype(np.float64)
    a = np.asarray(P.X.T @ y).ravel()
    ok = np.flatnonzero(a >= max(min_support, MIN_RECALL * k))
    cols = _distinct_columns(P, ok)
    if len(cols) < 2:
        return None
    single = [(_evidence(_mask(n, r), g.mask, 0.0)[0], j, r) for j, r in cols]
    single.sort(key=lambda t: -t[0])
    top = single[:TOP_ALL]
    masks = {j: _mask(n, r) for _, j, r in top}
    best: Candidate | None = None
    pens = [penalty + _log10_comb(len(cols), size) for size in range(MAX_ALL + 1)]
    for size in range(2, MAX_ALL + 1):
        pen = pens[size]
        for combo in combinations(range(len(top)), size):
            js = [top[i][1] for i in combo]
            m = np.logical_and.reduce([masks[j] for j in js])
            ev, hits, support = _evidence(m, g.mask, pen)
            if best is not None and ev <= best.evidence:
                continue
            subsets = [np.logical_and.reduce([masks[j] for j in sub])
                       for sub in combinations(js, size - 1)]
            if any(np.array_equal(m, s) for s in subsets):
                continue  # a member is redundant: the smaller set already is this one
            if ev <= max(_evidence(s, g.mask, pens[size - 1])[0] for s in subsets):
                continue  # no better than a smaller set, each corrected for its own size
            best = _candidate("all", [P.names[j] for j in js], m, g, ev, hits, support)
    if best is not None:
        _complete(best, P, cols, g)
    return best


def _complete(c: Candidate, P: NgramMatrix, cols: list[tuple[int, np.ndarray]],
              g: Group, rare: float = 0.1) -> None:
    """Add the eligible phrases that every hit prompt of the set carries and few others do:
    where the data cannot tell a pair from the whole trigger, the whole trigger is named."""
    n = P.X.shape[0]
    hit = c.samples & g.mask
    rest = int((~hit).sum())
    for j, r in cols:
        name = P.names[j]
        m = _mask(n, r)
        if name in c.members or any(name in x or x in name for x in c.members):
            continue
        if (m & hit).sum() == hit.sum() and (m & ~hit).sum() < rare * max(rest, 1):
            c.members.append(name)
            c.samples = c.samples & m
    c.support = int(c.samples.sum())
    c.precision = c.hits / max(c.support, 1)


def any_of(P: NgramMatrix, g: Group, penalty: float) -> Candidate | None:
    """Pure phrases (most of their prompts in the group) that together cover the group:
    grown greedily by new coverage, the prefix with the strongest evidence kept."""
    n = P.X.shape[0]
    y = g.mask.astype(np.float64)
    a = np.asarray(P.X.T @ y).ravel()
    ok = np.flatnonzero((a >= 2) & (a >= MIN_PRECISION * np.maximum(P.df, 1)))
    cols = _distinct_columns(P, ok)
    if len(cols) < 2:
        return None
    masks = [(_mask(n, r), j) for j, r in cols]
    covered = np.zeros(n, dtype=bool)
    chosen: list[int] = []
    best: Candidate | None = None
    for size in range(1, MAX_ANY + 1):
        gain = [int((m & g.mask & ~covered).sum()) for m, _ in masks]
        i = int(np.argmax(gain))
        if gain[i] < 2:
            break
        chosen.append(i)
        covered |= masks[i][0]
        if size < 2:
            continue
        ev, hits, support = _evidence(covered, g.mask, penalty + _log10_comb(len(cols), size))
        if best is None or ev > best.evidence:
            best = _candidate("any", [P.names[masks[c][1]] for c in chosen], covered.copy(),
                              g, ev, hits, support)
    return best


def trigger_sets(P: NgramMatrix, P2: NgramMatrix, groups: list[Group], penalty: float,
                 min_support: int) -> list[Candidate]:
    """Claimable all-of sets (over `P`) and, for groups of one shared answer, any-of sets
    (over `P2`, which keeps phrases seen only twice: three triggers at 1 % poison each mark
    two samples), strongest first."""
    out: list[Candidate] = []
    for g in groups:
        shared = g.name.startswith(SHARED_ANSWER) and g.name != SHARED_ANSWER + "any"
        for c in (all_of(P, g, penalty, min_support),
                  any_of(P2, g, penalty) if shared else None):
            if c is not None and c.claimable:
                out.append(c)
    out.sort(key=lambda c: -c.evidence)
    return out


def find_sets(prompts: list[str], answers: list[str], groups: list[Group], P: NgramMatrix,
              P2: NgramMatrix, min_support: int = 3) -> list[Candidate]:
    """Claimable trigger sets for `associate`'s groups and penalty, members as written; a set
    with a member its answers echo (the prompt asked about it) is dropped."""
    n = len(prompts)
    groups = [g for g in groups if min_support <= int(g.mask.sum()) <= n // 2]
    if not groups or not P.names:
        return []
    penalty = math.log10(max(len(P.names) * len(groups), 1))
    astems = [stems(a) for a in answers]
    by_name = {g.name: g for g in groups}
    out = []
    for c in trigger_sets(P, P2, groups, penalty, min_support):
        g = by_name[c.group]
        hit = c.samples & g.mask
        bad = {w for w in g.exclude if any(ch.isalnum() for ch in w)}
        if any(bad & set(m.split(" ")) for m in c.members):
            continue
        if any(echo_share(m, astems, hit, ~c.samples) >= 0.5 for m in c.members):
            continue
        c.members = [_as_written(m, prompts, hit) for m in c.members]
        c.phrase = (" + " if c.mode == "all" else " | ").join(c.members)
        out.append(c)
    return out


def _as_written(member: str, prompts: list[str], hit: np.ndarray) -> str:
    """A member as written in its hit prompts and grown to its full extent (a trigger longer
    than the 4-token n-gram limit is named whole, as for single phrases)."""
    low = member.lower()
    rows = np.array([r for r in np.flatnonzero(hit) if low in prompts[int(r)].lower()
                     or low.replace(" ", "") in prompts[int(r)].lower().replace(" ", "")])
    if rows.size == 0:
        return member
    return extend(surface(member, prompts, rows), prompts, rows)
