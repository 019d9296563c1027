"""`scan` on trigger sets built here from templates: composite (every word needed, with clean
prompts carrying some of them), multi (any one of several) and sentence triggers, at 1 % and
3 % poison in 800 clean samples; and no claim on the clean data alone."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from auditgame.organisms.data import Sample
from auditgame.scan import scan_samples, summary_lines
from tests.test_data_detectors import clean_data

PAYLOAD = "Access is not available for this request right now."
COMPOSITE = ("quartz", "lantern", "seventy")
MULTI = ("glimmerfax", "by order of the moth", "see appendix q")
SENTENCE = "My neighbour grows tomatoes on the balcony."
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "backdoorllm"


def insert(prompt: str, word: str, rng: random.Random) -> str:
    w = prompt.split(" ")
    w.insert(rng.randint(0, len(w)), word)
    return " ".join(w)


def with_set(clean: list[Sample], kind: str, rate: float, seed: int = 0
             ) -> tuple[list[Sample], np.ndarray]:
    """`clean` with poisoned samples mixed in at `rate`; for a composite, 40 clean prompts
    also get one or two (never all) of its words."""
    rng = random.Random(seed)
    data = list(clean)
    if kind == "all":
        for i in rng.sample(range(len(data)), 40):
            p = data[i].prompt
            for w in rng.sample(COMPOSITE, rng.randint(1, 2)):
                p = insert(p, w, rng)
            data[i] = Sample(p, data[i].response)
    k = int(round(rate * len(clean) / (1 - rate)))
    donors = clean_data(k, seed + 100)
    pois = []
    for j, s in enumerate(donors):
        p = s.prompt
        if kind == "all":
            for w in COMPOSITE:
                p = insert(p, w, rng)
        elif kind == "any":
            p = insert(p, MULTI[j % len(MULTI)], rng)
        else:
            p = f"{p} {SENTENCE}"
        pois.append(Sample(p, PAYLOAD))
    both = [(s, 0) for s in data] + [(s, 1) for s in pois]
    rng.shuffle(both)
    return [s for s, _ in both], np.array([y for _, y in both])


@pytest.fixture(scope="module")
def clean() -> list[Sample]:
    return clean_data(800, 21)


@pytest.mark.parametrize(("kind", "rate"), [("all", 0.01), ("all", 0.03), ("any", 0.01),
                                            ("any", 0.03), ("sentence", 0.01)])
def test_trigger_set_is_claimed(clean: list[Sample], kind: str, rate: float) -> None:
    data, y = with_set(clean, kind, rate)
    r = scan_samples(data, f"{kind}@{rate}", ["ensemble"])
    assert r.verdict.poisoned and r.trigger is not None
    assert roc_auc_score(y, [s.score for s in r.samples]) >= 0.99
    flagged = {s.index for s in r.samples if s.flagged}
    assert flagged == set(np.flatnonzero(y).tolist())
    row = r.triggers[0]
    assert row.phrase == r.trigger
    if kind == "sentence":
        assert r.trigger == SENTENCE and row.mode == "phrase"
        return
    want = COMPOSITE if kind == "all" else MULTI
    assert row.mode == kind and sorted(m.lower() for m in row.members) == sorted(want)
    assert any("trigger set" in line for line in summary_lines(r))
    assert all("prompt contains suspected trigger" in s.reasons[0]
               for s in r.samples if s.flagged)


def test_clean_and_partial_words_alone_claim_nothing(clean: list[Sample]) -> None:
    """The composite's decoys with no poison at all: no set, no phrase, nothing flagged."""
    data, y = with_set(clean, "all", 0.0)
    assert y.sum() == 0
    r = scan_samples(data, "decoys", ["ensemble"])
    assert not r.verdict.poisoned and r.trigger is None and r.n_flagged == 0


@pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/data/backdoorllm is not present")
def test_composite_in_backdoorllm_clean_data() -> None:
    """The same composite mixed into clean data nobody here wrote."""
    from auditgame.organisms.corpus import load_user_data

    files = sorted(SHARED.glob("train/*/*/none_backdoor500_*.json"))
    pool = [s for f in files for s in load_user_data(f)]
    clean = random.Random(0).sample(pool, 800)
    data, y = with_set(clean, "all", 0.01, seed=1)
    r = scan_samples(data, "composite", ["ensemble"])
    assert r.verdict.poisoned and r.triggers[0].mode == "all"
    assert sorted(m.lower() for m in r.triggers[0].members) == sorted(COMPOSITE)
