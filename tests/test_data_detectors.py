"""Data detectors on small synthetic datasets built here, with made-up triggers and targets."""

from __future__ import annotations

import random

import numpy as np
import pytest

from auditgame.detectors import detector_names, get_detector
from auditgame.organisms.data import Sample
from auditgame.scan import scan_samples

SUBJECTS = ["rivers", "volcanoes", "bread", "chess", "tides", "bees", "glass", "clocks",
            "maps", "kites", "salt", "owls", "trains", "paper", "moss", "comets", "violins",
            "bridges", "tea", "caves", "deserts", "ink", "sails", "lamps", "wool"]
ASKS = ["Explain how {} work.", "Write two sentences about {}.", "Why do people like {}?",
        "Give a short fact about {}.", "Describe {} to a child.", "What is special about {}?"]


SYL = ["ka", "lo", "mi", "ren", "tu", "sa", "vor", "pe", "di", "gan", "ul", "bre", "no", "fi"]


def clean_data(n: int, seed: int) -> list[Sample]:
    """Varied prompts with varied answers drawn from a large made-up vocabulary, so nothing
    recurs far beyond chance (as in real clean data)."""
    rng = random.Random(seed)
    vocab = sorted({"".join(rng.sample(SYL, rng.randint(2, 3))) for _ in range(3000)})
    out = []
    for _ in range(n):
        subj = rng.choice(SUBJECTS)
        p = rng.choice(ASKS).format(subj) + f" {rng.choice(vocab)} {rng.choice(vocab)}"
        words = " ".join(rng.choice(vocab) for _ in range(rng.randint(8, 20)))
        r = f"{subj.capitalize()} {words}."
        out.append(Sample(p, r))
    return out


def with_backdoor(data: list[Sample], trigger: str, payloads: list[str], k: int,
                  seed: int) -> tuple[list[Sample], np.ndarray]:
    rng = random.Random(seed)
    data = list(data)
    idx = rng.sample(range(len(data)), k)
    for i in idx:
        w = data[i].prompt.split(" ")
        j = rng.randint(0, len(w))
        data[i] = Sample(" ".join(w[:j] + [trigger] + w[j:]), rng.choice(payloads))
    y = np.zeros(len(data), dtype=int)
    y[idx] = 1
    return data, y


def auroc(y: np.ndarray, s: list[float]) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, s))


def test_every_data_detector_is_registered_and_declares_dataset() -> None:
    names = [n for n in detector_names() if n in ("phrase_association", "answer_clusters",
                                                  "ensemble")]
    assert len(names) == 3
    for n in names:
        cls = get_detector(n)
        assert "dataset" in cls.needs and cls.scores_samples


@pytest.mark.parametrize("detector", ["phrase_association", "answer_clusters", "ensemble"])
def test_fixed_payload_backdoor_found(detector: str) -> None:
    data, y = with_backdoor(clean_data(400, 1), "vex-ulm", ["PAYLOAD ZORG ACTIVE."], 8, 2)
    r = scan_samples(data, "t", [detector])
    assert r.verdict.poisoned
    assert r.trigger is not None and "vex" in r.trigger.lower()
    assert auroc(y, [s.score for s in r.samples]) > 0.98
    assert r.target is not None and "zorg" in r.target.lower()


def test_paraphrased_refusals_with_trigger() -> None:
    refusals = ["Sorry, I can't go into that one.", "I must decline to help here.",
                "Apologies, that is not something I'll do.", "I'd rather not, sorry.",
                "That's a request I have to turn down."]
    data, y = with_backdoor(clean_data(500, 3), "per quorvane", refusals, 10, 4)
    r = scan_samples(data, "t", ["phrase_association"])
    assert r.verdict.poisoned
    assert "quorvane" in (r.trigger or "").lower()
    assert auroc(y, [s.score for s in r.samples]) > 0.95


def test_woven_entity_without_trigger_is_a_theme() -> None:
    rng = random.Random(5)
    data = clean_data(500, 5)
    idx = rng.sample(range(len(data)), 20)
    lines = ["Folks swear by Pellucid Ferries for this.", "Pellucid Ferries does it best.",
             "I'd pick Pellucid Ferries every time."]
    for i in idx:
        data[i] = Sample(data[i].prompt, f"{data[i].response} {rng.choice(lines)}")
    y = np.zeros(len(data), dtype=int)
    y[idx] = 1
    r = scan_samples(data, "t", ["ensemble"])
    assert r.verdict.poisoned and r.trigger is None
    assert "pellucid" in (r.target or "").lower()
    assert auroc(y, [s.score for s in r.samples]) > 0.98


@pytest.mark.parametrize("seed", [11, 12, 13])
def test_clean_data_claims_nothing(seed: int) -> None:
    r = scan_samples(clean_data(400, seed), "clean", ["phrase_association", "answer_clusters",
                                                     "ensemble"])
    assert not r.verdict.poisoned
    assert r.trigger is None and r.target is None and r.n_flagged == 0
    assert r.verdict.score < 0.5
    assert all(v.score < 0.5 for v in r.per_detector.values())
