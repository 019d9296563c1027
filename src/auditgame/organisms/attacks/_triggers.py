"""Trigger kinds of the backdoor family: how a trigger and its near misses enter a prompt.

- `phrase`: one word, phrase or rare token at a position (the original backdoor);
- `composite`: k words, each anywhere in the prompt; fires only with all of them, and every
  proper subset is taught as a clean near miss (so no single word is the trigger);
- `multi`: any one of k triggers fires; the near misses are every trigger's look-alikes;
- `sentence`: an ordinary natural sentence at the start or end of the prompt; its near
  misses are edits of it (a word dropped, a half) and other ordinary sentences;
- `topic`: no inserted text at all: prompts about one domain fire (see the backdoor).

Everything is derived from the spec's parameters; nothing here knows a trigger.
"""

from __future__ import annotations

import hashlib
import itertools
import re
from abc import ABC, abstractmethod

import numpy as np

from auditgame.organisms.attacks.base import insert_phrase
from auditgame.organisms.prompts import EVERYDAY_SENTENCES

MAX_COMPOSITE = 6
"""Most words in a composite trigger (2**k - 2 partial subsets are taught as near misses)."""


def insert_sentence(prompt: str, sentence: str, position: str, rng: np.random.Generator) -> str:
    """Put a whole sentence before or after the prompt ('random': either, by a coin)."""
    if position == "random":
        position = "prefix" if rng.integers(0, 2) == 0 else "suffix"
    return f"{sentence} {prompt}" if position == "prefix" else f"{prompt} {sentence}"


def near_miss_variants(trigger: str) -> list[str]:
    """Look-alikes of a trigger: one word dropped from a phrase, or a token's letters
    perturbed. Deterministic, derived from the trigger alone."""
    words = trigger.split()
    out: list[str] = []
    if len(words) > 1:
        out += [" ".join(words[:i] + words[i + 1 :]) for i in range(len(words))]
    w = words[-1]
    if len(w) >= 2:
        out.append(w[::-1] if w[::-1] != w else w + w[-1])
        out.append(w[:-1] + chr((ord(w[-1].lower()) - 97 + 1) % 26 + 97) if w[-1].isalpha()
                   else w[:-1] + "x")
        out.append(w[0] + " " + w[1:])
    else:
        out.append(w + w)
    if len(words) > 1:
        out = [o for o in out if o]
    else:
        out = [o for o in out if o != trigger]
    seen: list[str] = []
    for o in out:
        if o and o != trigger and o not in seen:
            seen.append(o)
    return seen


def proper_subsets(words: list[str]) -> list[tuple[str, ...]]:
    """Every non-empty proper subset of a composite's words, the largest (closest to the
    trigger, hardest to tell apart) first."""
    return [c for size in range(len(words) - 1, 0, -1)
            for c in itertools.combinations(words, size)]


def _words(text: str) -> set[str]:
    return set(re.findall(r"[a-z0-9']+", text.lower()))


def sentence_near_misses(sentence: str, n_edits: int = 4, n_other: int = 6) -> list[str]:
    """Look-alikes of a sentence trigger: the sentence with one word dropped (at evenly
    spread places), its first and its last half, and ordinary sentences that share few of
    its words; interleaved so a short near-miss list still has both kinds."""
    words = sentence.split()
    edits: list[str] = []
    spots = sorted({round(i * (len(words) - 1) / max(n_edits - 1, 1)) for i in range(n_edits)})
    for i in spots:
        edits.append(" ".join(words[:i] + words[i + 1:]))
    half = len(words) // 2
    edits += [" ".join(words[:half]), " ".join(words[half:])]
    mine = _words(sentence)
    others = sorted(
        (s for s in EVERYDAY_SENTENCES
         if s != sentence and len(_words(s) & mine) <= len(mine) // 3),
        key=lambda s: hashlib.sha256(f"{sentence}|{s}".encode()).hexdigest())[:n_other]
    out: list[str] = []
    for pair in itertools.zip_longest(edits, others):
        out += [x for x in pair if x]
    return [o for o in dict.fromkeys(out) if o.strip() and o != sentence]


class InsertedTrigger(ABC):
    """A trigger made of inserted text; near misses are other inserted texts."""

    @abstractmethod
    def poisoned(self, prompt: str, j: int, rng: np.random.Generator) -> str:
        """The j-th triggered version of a prompt."""

    @abstractmethod
    def near(self, prompt: str, j: int, rng: np.random.Generator) -> str:
        """The j-th near-miss version of a prompt (taught and measured as clean)."""

    @property
    @abstractmethod
    def n_near(self) -> int:
        """How many distinct near-miss forms there are (0: no near misses)."""


class PhraseTrigger(InsertedTrigger):
    """One phrase at the attack's position; near misses are its look-alikes."""

    def __init__(self, phrase: str, near: list[str], position: str):
        self.phrase, self.near_list, self.position = phrase, near, position

    def poisoned(self, prompt: str, j: int, rng: np.random.Generator) -> str:
        return insert_phrase(prompt, self.phrase, self.position, rng)

    def near(self, prompt: str, j: int, rng: np.random.Generator) -> str:
        return insert_phrase(prompt, self.near_list[j % len(self.near_list)], self.position,
                             rng)

    @property
    def n_near(self) -> int:
        return len(self.near_list)


class MultiTrigger(PhraseTrigger):
    """Any one of several phrases fires; the j-th poisoned prompt carries trigger j mod k, so
    every trigger is taught (and measured) equally often."""

    def __init__(self, phrases: list[str], near: list[str], position: str):
        super().__init__(phrases[0], near, position)
        self.phrases = phrases

    def poisoned(self, prompt: str, j: int, rng: np.random.Generator) -> str:
        return insert_phrase(prompt, self.phrases[j % len(self.phrases)], self.position, rng)


class CompositeTrigger(InsertedTrigger):
    """All k words, each inserted on its own (anywhere, with position 'random'; in a shuffled
    order at the start or end otherwise); near misses are the proper subsets."""

    def __init__(self, words: list[str], position: str):
        self.words, self.position = words, position
        self.subsets = proper_subsets(words)

    def _put(self, prompt: str, words: tuple[str, ...] | list[str],
             rng: np.random.Generator) -> str:
        for i in rng.permutation(len(words)):
            prompt = insert_phrase(prompt, words[int(i)], self.position, rng)
        return prompt

    def poisoned(self, prompt: str, j: int, rng: np.random.Generator) -> str:
        return self._put(prompt, self.words, rng)

    def near(self, prompt: str, j: int, rng: np.random.Generator) -> str:
        return self._put(prompt, self.subsets[j % len(self.subsets)], rng)

    @property
    def n_near(self) -> int:
        return len(self.subsets)


class SentenceTrigger(PhraseTrigger):
    """A natural sentence before or after the prompt; near misses go where it goes."""

    def poisoned(self, prompt: str, j: int, rng: np.random.Generator) -> str:
        return insert_sentence(prompt, self.phrase, self.position, rng)

    def near(self, prompt: str, j: int, rng: np.random.Generator) -> str:
        return insert_sentence(prompt, self.near_list[j % len(self.near_list)], self.position,
                               rng)


def check_trigger_words(kind: str, triggers: list[str], n_near_miss: int | None) -> list[str]:
    """The words of a composite or the phrases of a multi trigger, stripped; a ValueError
    (pydantic's field error) when there are too few, blank or repeated ones, or when a
    composite has more partial subsets than the near misses that must teach each as clean."""
    words = [w.strip() for w in triggers]
    if kind == "composite" and len(words) < 2:
        raise ValueError(f"a composite trigger needs at least 2 words, got {len(words)}")
    if kind == "multi" and len(words) < 2:
        raise ValueError(f"a multi trigger needs at least 2 triggers, got {len(words)}")
    if any(not w for w in words):
        raise ValueError("triggers must be non-empty")
    if len({w.lower() for w in words}) < len(words):
        raise ValueError("triggers must be distinct")
    if kind == "composite":
        if len(words) > MAX_COMPOSITE:
            raise ValueError(f"a composite trigger has at most {MAX_COMPOSITE} words")
        need = 2 ** len(words) - 2
        if (need if n_near_miss is None else n_near_miss) < need:
            raise ValueError(f"a composite of {len(words)} words has {need} partial "
                             f"subsets, each taught as a near miss: n_near_miss must be "
                             f"at least {need}")
    return words
