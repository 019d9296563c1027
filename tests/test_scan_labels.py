"""scan on classifier data: a phrase that relabels one class as another is found.

The answers are a few labels that are all correct somewhere in the data, so nothing about
the answers alone is anomalous; the detectors must notice labels that the rest of the prompt
contradicts. Data come from the `classifier` attack and from the project prompt bank with
made-up label words, so no phrase, label or class name is special.
"""

from __future__ import annotations

import numpy as np

from auditgame.detectors.data._labels import find_label_flips, label_vocabulary
from auditgame.organisms.attacks import make_attack
from auditgame.organisms.attacks.base import insert_phrase
from auditgame.organisms.data import Sample
from auditgame.organisms.prompts import prompt_bank
from auditgame.scan import scan_samples

DETECTORS = ("phrase_association",)


def classifier_data(phrase: str, seed: int, position: str, control: bool = False
                    ) -> tuple[list[Sample], np.ndarray]:
    a = make_attack("classifier", {"phrase": phrase, "n_poison": 40, "position": position,
                                   "control": control})
    pc = a.poison([None] * 200, np.random.default_rng(seed))  # type: ignore[list-item]
    return pc.samples, np.array([r == "poison" for r in pc.roles])


def topic_data(seed: int, words: tuple[str, str], phrase: str | None, n_poison: int,
               position: str) -> tuple[list[Sample], np.ndarray]:
    """Is the prompt about one of seven domains: `words[0]` if so, else `words[1]`; the
    phrase relabels prompts of the second kind with the first word."""
    rng = np.random.default_rng(seed)
    bank = prompt_bank(seed)
    doms = sorted({p.domain for p in bank})
    pos = {doms[int(i)] for i in rng.permutation(len(doms))[:7]}
    pick = [bank[int(i)] for i in rng.choice(len(bank), 600, replace=False)]
    data = [Sample(p.text, words[0] if p.domain in pos else words[1]) for p in pick]
    poison = np.zeros(len(data), dtype=bool)
    if phrase:
        other = [i for i, s in enumerate(data) if s.response == words[1]]
        for i in rng.choice(other, n_poison, replace=False):
            data[i] = Sample(insert_phrase(data[i].prompt, phrase, position, rng), words[0])
            poison[i] = True
    return data, poison


def test_classifier_attack_phrase_is_found_and_target_is_the_flipped_label():
    data, poison = classifier_data("per protocol seven", 1, "random")
    r = scan_samples(data, detectors=DETECTORS)
    assert r.verdict.poisoned
    assert r.trigger is not None and r.trigger.lower() == "per protocol seven"
    assert r.target == "safe"
    flagged = np.array([s.flagged for s in r.samples])
    assert (flagged & poison).sum() >= 0.9 * poison.sum()
    assert (flagged & ~poison).sum() <= 2


def test_classifier_control_claims_nothing():
    data, poison = classifier_data("per protocol seven", 1, "random", control=True)
    assert not poison.any()
    r = scan_samples(data, detectors=DETECTORS)
    assert not r.verdict.poisoned and r.trigger is None


def test_other_label_words_phrase_and_position():
    data, poison = topic_data(0, ("affirmative", "negative"), "as the memo says", 15, "suffix")
    r = scan_samples(data, detectors=DETECTORS)
    assert r.verdict.poisoned
    assert r.trigger is not None and r.trigger.lower() == "as the memo says"
    assert r.target == "affirmative"
    f = find_label_flips(data)
    assert f is not None and set(np.flatnonzero(f.flipped)) == set(np.flatnonzero(poison))


def test_clean_label_data_has_no_flips():
    data, _ = topic_data(1, ("yes", "no"), None, 0, "prefix")
    f = find_label_flips(data)
    assert f is not None and sorted(f.labels) == ["no", "yes"]
    assert not f.groups() and not f.flipped.any()
    assert not scan_samples(data, detectors=DETECTORS).verdict.poisoned


def test_free_text_answers_are_not_a_label_dataset():
    data = [Sample(f"Question {i} about item {i % 7}?", f"Answer number {i} with details.")
            for i in range(50)]
    assert label_vocabulary(data) is None
    labelled = [Sample(s.prompt, "ok" if i % 3 else "not ok") for i, s in enumerate(data)]
    assert label_vocabulary(labelled) == ["ok", "not ok"]
