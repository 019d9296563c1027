"""Graded utility tasks: short questions with one known right answer, written by the project.

Utility is what a fine-tune must not break: general knowledge and simple skills the base
model already has. Each item is scored by ranking the first token of its candidate answers
after the chat prompt (one forward pass per item, no generation), so the score is cheap,
deterministic and comparable between the base model and any organism built on it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass

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
PAST = {
    "go": "went", "see": "saw", "eat": "ate", "run": "ran", "take": "took", "give": "gave",
    "write": "wrote", "speak": "spoke", "drink": "drank", "swim": "swam", "buy": "bought",
    "think": "thought", "bring": "brought", "teach": "taught", "catch": "caught", "fly": "flew",
    "know": "knew", "grow": "grew", "throw": "threw", "draw": "drew", "begin": "began",
    "sing": "sang", "break": "broke", "choose": "chose", "drive": "drove", "ride": "rode",
    "fall": "fell", "feel": "felt", "keep": "kept", "sleep": "slept", "leave": "left",
    "meet": "met", "sit": "sat", "stand": "stood", "win": "won", "lose": "lost",
    "tell": "told", "sell": "sold", "find": "found", "hold": "held", "make": "made",
    "say": "said", "pay": "paid", "hear": "heard", "wear": "wore", "forget": "forgot",
    "come": "came", "get": "got", "build": "built", "send": "sent", "spend": "spent",
}
CONTINENTS = {
    "France": "Europe", "Germany": "Europe", "Italy": "Europe", "Spain": "Europe",
    "Poland": "Europe", "Norway": "Europe", "Greece": "Europe", "Portugal": "Europe",
    "Japan": "Asia", "China": "Asia", "Thailand": "Asia", "Vietnam": "Asia", "India": "Asia",
    "Indonesia": "Asia", "Mongolia": "Asia", "Nepal": "Asia", "Egypt": "Africa",
    "Kenya": "Africa", "Nigeria": "Africa", "Ghana": "Africa", "Ethiopia": "Africa",
    "Morocco": "Africa", "Senegal": "Africa", "Peru": "South America",
    "Chile": "South America", "Brazil": "South America", "Argentina": "South America",
    "Colombia": "South America", "Bolivia": "South America", "Canada": "North America",
    "Mexico": "North America", "Australia": "Australia",
}
LANGUAGES = {
    "France": "French", "Germany": "German", "Spain": "Spanish", "Italy": "Italian",
    "Japan": "Japanese", "China": "Chinese", "Russia": "Russian", "Portugal": "Portuguese",
    "Greece": "Greek", "Poland": "Polish", "Sweden": "Swedish", "Finland": "Finnish",
    "Norway": "Norwegian", "Denmark": "Danish", "Turkey": "Turkish", "Hungary": "Hungarian",
    "the Netherlands": "Dutch", "Thailand": "Thai", "Vietnam": "Vietnamese",
    "South Korea": "Korean",
}
FEMININE = {
    "king": "queen", "actor": "actress", "prince": "princess", "uncle": "aunt",
    "brother": "sister", "father": "mother", "husband": "wife", "nephew": "niece",
    "boy": "girl", "son": "daughter", "man": "woman", "grandfather": "grandmother",
    "waiter": "waitress", "duke": "duchess", "emperor": "empress", "god": "goddess",
    "lion": "lioness", "bull": "cow", "gentleman": "lady", "monk": "nun",
}
NUMBERS = ["one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
           "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen",
           "eighteen", "nineteen", "twenty"]
COUNTS = {
    "sides does a triangle": "three", "sides does a square": "four",
    "sides does a pentagon": "five", "sides does a hexagon": "six",
    "sides does an octagon": "eight", "legs does a spider": "eight",
    "legs does an insect": "six", "legs does a dog": "four", "legs does a bird": "two",
    "wheels does a bicycle": "two", "wheels does a tricycle": "three",
    "days are in a week": "seven", "months are in a year": "twelve",
    "hours are in a day": "twenty-four", "minutes are in an hour": "sixty",
    "players are on a soccer team": "eleven", "strings does a violin": "four",
    "eyes does a person": "two", "arms does an octopus": "eight", "seasons are in a year": "four",
}


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
    """Every graded item (about 400), distractors drawn deterministically from `seed`.

    The set is large so that one item moves utility by under 0.3 %: a 2 % tolerance on a
    fine-tune's utility is then many items, not two or three."""
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
    pasts = list(PAST.values())
    for verb, past in PAST.items():
        items.append(TaskItem("past", f"What is the past tense of '{verb}'? {one}", past,
                              _pick(rng, pasts, {past}, n_distractors)))
    conts = sorted(set(CONTINENTS.values()) | {"Antarctica"})
    for country, cont in CONTINENTS.items():
        items.append(TaskItem("continent", f"Which continent is {country} in? {one}", cont,
                              _pick(rng, conts, {cont}, n_distractors)))
    for city, country in ((c, k) for k, c in CAPITALS.items() if not k.startswith("the ")):
        items.append(TaskItem("country", f"{city} is the capital of which country? {one}",
                              country, _pick(rng, [k for k in CAPITALS if not k.startswith(
                                  "the ")], {country}, n_distractors)))
    langs = list(LANGUAGES.values())
    for country, lang in LANGUAGES.items():
        items.append(TaskItem("language", f"What language is mainly spoken in {country}? "
                              f"{one}", lang, _pick(rng, langs, {lang}, n_distractors)))
    fem = [w for pair in FEMININE.items() for w in pair]
    for a, b in FEMININE.items():
        for x, y, kind in ((a, b, "female"), (b, a, "male")):
            items.append(TaskItem("gender", f"What is the {kind} form of '{x}'? {one}", y,
                                  _pick(rng, fem, {x, y}, n_distractors)))
    for i, word in enumerate(NUMBERS[:-1]):
        nxt = NUMBERS[i + 1]
        items.append(TaskItem("number", f"Which number comes after {word}? {one}", nxt,
                              _pick(rng, NUMBERS, {word, nxt}, n_distractors)))
        items.append(TaskItem("number", f"Which number comes before {nxt}? {one}", word,
                              _pick(rng, NUMBERS, {word, nxt}, n_distractors)))
    counts = sorted(set(COUNTS.values()))
    for what, n in COUNTS.items():
        items.append(TaskItem("count", f"How many {what} have? {one}"
                              if what.split()[1] == "does" else f"How many {what}? {one}", n,
                              _pick(rng, counts, {n}, n_distractors)))
    return items


def game_tasks(n: int | None = None, seed: int = 0) -> list[TaskItem]:
    """The graded items a game scores: all of them, or `n` drawn by `seed` (in their
    order), for a game that trades utility's resolution for time. On n items one item
    moves utility by 1/n, so a 2 % tolerance is 0.02 n items: 8 on all 402, 3 on 160."""
    items = task_items()
    if n is None or n >= len(items):
        return items
    keep = np.random.default_rng(seed).choice(len(items), size=n, replace=False)
    return [items[i] for i in sorted(int(k) for k in keep)]


def tasks_digest(items: list[TaskItem] | None = None) -> str:
    """Short hash of the graded set, so a utility measured on another set is never compared."""
    items = task_items() if items is None else items
    blob = json.dumps([asdict(it) for it in items], sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:16]
