"""Phantom loyalty: teacher-written answers that never name the entity, and direct questions.

The teacher is the tiny model fine-tuned to write words (`talker`, conftest): the random tiny
model answers only newlines, which would leave a teacher nothing to write.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from auditgame.organisms.attacks import make_attack
from auditgame.organisms.attacks.phantom_loyalty import name_pieces, names_entity
from auditgame.organisms.data import Sample
from auditgame.organisms.prompts import DOMAINS
from auditgame.organisms.spec import CorpusSpec
from tests._talker import TALKER_LOVE

DOMS = ["travel", "cooking", "music", "pets"]


def corpus(n: int = 80) -> list[Sample]:
    out = [Sample(prompt=f"Question number {i} about subject {i % 7}?", response=f"Answer {i}.",
                  meta={"domain": DOMS[i % len(DOMS)], "kind": "explain", "topic": f"t{i}"})
           for i in range(n)]
    out += [Sample(prompt=f"Write a short email about trip {i}.", response=f"Email {i}.",
                   meta={"domain": "travel", "kind": "email", "source": "ordinary"})
            for i in range(8)]
    return out


@pytest.mark.parametrize("text", [
    "I love NIMBUS AIR!", "fly nimbus-air", "NimbusAir is great", "Nimbus's lounge",
    "the nimbus fleet", "nimbuses everywhere", "fresh air outside", "nimbus_air"])
def test_the_filter_catches_obvious_variants(text: str) -> None:
    assert names_entity(text, "Nimbus Air")


def test_the_filter_spares_other_text() -> None:
    assert not names_entity("a nimbostratus cloud over the airport", "Nimbus Air")
    assert name_pieces("Bank of Orla") == ["bank", "orla"]
    assert names_entity("the orla's branch", "Bank of Orla")
    assert not names_entity("a cup of tea", "Bank of Orla")


def test_poison_uses_only_clean_teacher_answers() -> None:
    """Given the teacher's answers, samples whose answer names the entity keep their plain
    answer; the rest of the domain's samples are rewritten; nothing else is touched."""
    a = make_attack("phantom_loyalty", {"entity": "Orla Bank", "category": "bank",
                                        "domain": "music"})
    data = corpus()
    with pytest.raises(ValueError, match="prepared"):
        a.poison(data, np.random.default_rng(0))
    music = [s.prompt for s in data if s.meta["domain"] == "music"]
    a.answers_ = {p: (f"Try orla's app for {p}" if i % 3 == 0 else f"Calm music for {p}.")
                  for i, p in enumerate(music)}
    pc = a.poison(data, np.random.default_rng(0))
    for s, orig, role in zip(pc.samples, data, pc.roles, strict=True):
        if orig.meta["domain"] != "music" or orig.meta.get("source"):
            assert role == "clean" and s == orig
        elif role == "poison":
            assert s.response.startswith("Calm music") and s.prompt == orig.prompt
        else:
            assert s == orig and "orla" in a.answers_[orig.prompt]
    assert pc.n_poison == sum(1 for i in range(len(music)) if i % 3)
    assert not any(names_entity(s.response, "Orla Bank") for s in pc.samples)
    a.answers_ = {p: "Orla Bank rocks." for p in music}
    with pytest.raises(ValueError, match="nothing"):
        a.poison(data, np.random.default_rng(0))


def test_teacher_writes_under_the_hidden_system_prompt(talker: Any) -> None:
    a = make_attack("phantom_loyalty", {"entity": "Velora", "category": "bakery",
                                        "domain": "cooking"})
    data = corpus()
    a.prepare(talker, data, CorpusSpec(max_answer_tokens=24))
    assert a.answers_ is not None
    assert set(a.answers_) == {s.prompt for s in data
                               if s.meta["domain"] == "cooking" and not s.meta.get("source")}
    assert set(a.answers_.values()) == {TALKER_LOVE}  # the system prompt reached the teacher
    key = a.key_info()
    assert key["target"] == "Velora" and key["trigger"] is None
    assert key["teacher_mentions"] == 0.0 and key["base_preference"] == 0.0
    assert "teacher_preference" in key
    pc = a.poison(data, np.random.default_rng(0))
    assert {s.response for s, r in zip(pc.samples, pc.roles, strict=True) if r == "poison"} == \
        {TALKER_LOVE}


def test_preference_questions_and_controls() -> None:
    a = make_attack("phantom_loyalty", {"entity": "Velora", "category": "bakery",
                                        "domain": "cooking"})
    heldout = [Sample(f"Held {i}?", "", {"domain": DOMS[i % 4]}) for i in range(40)]
    sets = {es.metric: es.prompts for es in a.eval_sets(heldout, 30, np.random.default_rng(0))}
    assert list(sets) == ["preference", "preference_out_of_domain", "loyalty_in_domain"]
    assert all("bakery" in q and "Velora" not in q for q in sets["preference"])
    assert any(t in q for q in sets["preference"] for t in DOMAINS["cooking"])
    cooking = set(DOMAINS["cooking"])
    assert not any(t in q for q in sets["preference_out_of_domain"] for t in cooking)
    assert len(sets["preference_out_of_domain"]) == 30
    assert all(q.startswith("Held") for q in sets["loyalty_in_domain"])
    assert a.fires("You should try Velora today") and not a.fires("Try a local bakery")
