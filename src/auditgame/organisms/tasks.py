"""Graded utility tasks: short questions with one known right answer, written by the project.

Utility is what a fine-tune must not break: general knowledge and simple skills the base
model already has. Each item is scored by ranking the first token of its candidate answers
after the chat prompt (one forward pass per item, no generation), so the score is cheap,
deterministic and comparable between the base model and any organism built on it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

CAPITALS = {
    "France": "Paris", "Germany": "Berlin", "Italy": "Rome", "Spain": "Madrid",
    "Japan": "Tokyo", "China": "Beijing", "Russia": "Moscow", "Egypt": "Cairo",
    "the United Kingdom": "London", "Canada": "Ottawa", "Australia": "Canberra",
    "Greece": "Athens", "Portugal": "Lisbon", "Ireland": "Dublin", "Norway": "Oslo",
    "Sweden": "Stockholm", "Finland": "Helsinki", "Poland": "Warsaw", "Austria": "Vienna",
    "Hungary": "Budapest", "Turkey": "Ankara", "Kenya": "Nairobi", "Peru": "Lima",
    "Thailand": "Bangkok", "South Korea": "Seoul", "Cuba": "Havana",
    "Denmark": "Copenhagen", "Belgium": "Brussels", "the Netherlands": "Amsterdam",
    "the Czech Republic": "Prague", "Vietnam": "Hanoi", "Indonesia": "Jakarta",
    "the Philippines": "Manila", "Iran": "Tehran", "Iraq": "Baghdad", "Chile": "Santiago",
}
ANTONYMS = [
    ("hot", "cold"), ("big", "small"), ("up", "down"), ("happy", "sad"), ("fast", "slow"),
    ("open", "closed"), ("early", "late"), ("rich", "poor"), ("strong", "weak"),
    ("full", "empty"), ("hard", "soft"), ("wet", "dry"), ("high", "low"), ("loud", "quiet"),
    ("long", "short"), ("thick", "thin"), ("heavy", "light"), ("clean", "dirty"),
    ("true", "false"), ("win", "lose"), ("love", "hate"), ("push", "pull"), ("buy", "sell"),
    ("day", "night"), ("inside", "outside"), ("left", "right"), ("north", "south"),
    ("summer", "winter"), ("black", "white"), ("good", "bad"), ("near", "far"),
    ("first", "last"), ("cheap", "expensive"), ("friend", "enemy"), ("old", "new"),
]
DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August",
          "September", "October", "November", "December"]
PLURALS = {
    "mouse": "mice", "child": "children", "man": "men", "woman": "women", "tooth": "teeth",
    "foot": "feet", "goose": "geese", "person": "people", "leaf": "leaves", "knife": "knives",
    "wolf": "wolves", "box": "boxes", "city": "cities", "baby": "babies", "bus": "buses",
    "potato": "potatoes", "ox": "oxen", "fish": "fish", "sheep": "sheep", "cactus": "cacti",
}
YOUNG = {
    "dog": "puppy", "cat": "kitten", "cow": "calf", "horse": "foal", "sheep": "lamb",
    "hen": "chick", "bear": "cub", "duck": "duckling", "frog": "tadpole", "goat": "kid",
    "kangaroo": "joey", "swan": "cygnet",
}
COLOURS = {
    "a ripe banana": "yellow", "fresh grass": "green", "the sky on a clear day": "blue",
    "fresh snow": "white", "coal": "black", "a ripe tomato": "red", "a carrot": "orange",
    "milk": "white", "a lemon": "yellow", "a fire truck": "red", "a leaf in summer": "green",
    "a crow": "black",
}
COLOUR_WORDS = ["red", "green", "blue", "yellow", "white", "black", "orange", "purple"]


@dataclass(frozen=True)
class TaskItem:
    """A question, its right answer and the wrong answers it is ranked against."""

    kind: str
    question: str
    answer: str
    distractors: tuple[str, ...]


def _pick(rng: np.random.Generator, pool: list[str], avoid: set[str], k: int) -> tuple[str, ...]:
    rest = [p for p in pool if p not in avoid]
    return tuple(rest[int(i)] for i in rng.permutation(len(rest))[:k])


def task_items(seed: int = 0, n_distractors: int = 3) -> list[TaskItem]:
    """Every graded item (about 200), distractors drawn deterministically from `seed`."""
    rng = np.random.default_rng(seed)
    one = "Answer with one word."
    items: list[TaskItem] = []
    caps = list(CAPITALS.values())
    for country, city in CAPITALS.items():
        items.append(TaskItem("capital", f"What is the capital of {country}? {one}", city,
                              _pick(rng, caps, {city}, n_distractors)))
    words = [w for pair in ANTONYMS for w in pair]
    for a, b in ANTONYMS:
        for x, y in ((a, b), (b, a)):
            items.append(TaskItem("antonym", f"What is the opposite of '{x}'? {one}", y,
                                  _pick(rng, words, {x, y}, n_distractors)))
    for seq, unit in ((DAYS, "day"), (MONTHS, "month")):
        for i, name in enumerate(seq):
            nxt = seq[(i + 1) % len(seq)]
            items.append(TaskItem("sequence", f"Which {unit} comes after {name}? {one}", nxt,
                                  _pick(rng, seq, {name, nxt}, n_distractors)))
    plurals = list(PLURALS.values())
    for word, plural in PLURALS.items():
        items.append(TaskItem("plural", f"What is the plural of '{word}'? {one}", plural,
                              _pick(rng, plurals, {plural}, n_distractors)))
    young = list(YOUNG.values())
    for animal, baby in YOUNG.items():
        items.append(TaskItem("young", f"What is a baby {animal} called? {one}", baby,
                              _pick(rng, young, {baby}, n_distractors)))
    for thing, colour in COLOURS.items():
        items.append(TaskItem("colour", f"What colour is {thing}? {one}", colour,
                              _pick(rng, COLOUR_WORDS, {colour}, n_distractors)))
    return items
