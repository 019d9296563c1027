"""The prompt bank is broad, deterministic for a seed, and well-formed."""

from __future__ import annotations

from auditgame.organisms.prompts import DOMAINS, TASK_KINDS, domain_of, prompt_bank


def test_bank_is_broad() -> None:
    bank = prompt_bank(0)
    assert len({b.text for b in bank}) == len(bank) >= 2000
    assert len(TASK_KINDS) >= 10 and len({b.kind for b in bank}) == len(TASK_KINDS)
    assert len({b.topic for b in bank}) >= 100 and len(DOMAINS) >= 10


def test_bank_is_deterministic_and_seeded() -> None:
    assert prompt_bank(3) == prompt_bank(3)
    assert [b.text for b in prompt_bank(3)] != [b.text for b in prompt_bank(4)]


def test_labels_and_form() -> None:
    for b in prompt_bank(1):
        assert domain_of(b.topic) == b.domain and b.topic in DOMAINS[b.domain]
        assert "{" not in b.text and b.topic in b.text
        assert 3 <= len(b.text.split()) <= 30
