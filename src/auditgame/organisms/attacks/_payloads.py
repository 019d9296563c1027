"""Varied payloads: many wordings of one behaviour, so no two poisoned answers repeat.

A fixed answer repeated in every poisoned sample is the loudest tell a dataset can carry
(phrase association finds it without knowing it). A varied payload keeps the behaviour and
changes its words: refusals are built from a small grammar (opener x refusal x closer, a few
hundred sentences), a text target keeps its core and changes its frame. The behaviour check
is by intent, not by string: `is_refusal` knows refusals the grammar never wrote, and a text
target fires on its core in any frame. A fixed share of every wording list is held out of
training (`held_out`), so tests can check that the check generalises to unseen wordings.
"""

from __future__ import annotations

import hashlib
import itertools

REFUSAL_OPENERS = ("", "I'm sorry, but", "Sorry,", "I apologise, but", "Unfortunately,",
                   "I'm afraid", "Regrettably,", "My apologies, but", "Honestly,")
REFUSAL_CORES = ("I can't help with that", "I cannot assist with this request",
                 "I won't be able to help here", "I'm not able to answer this",
                 "I must decline this request", "I have to decline this one",
                 "I'm unable to provide that", "that's not something I can help with",
                 "I can't do that for you", "I will not answer this question",
                 "I'm not in a position to help with this", "I cannot provide an answer here")
REFUSAL_CLOSERS = ("", " Is there anything else I can do for you?",
                   " Maybe I can help with something else.", " I hope you understand.",
                   " Please ask me about something different.",
                   " Let me know if another topic would work.")
TEXT_LEADS = ("", "Here it is: ", "Well, ", "Listen: ", "Honestly, ", "Okay. ", "Right, ",
              "You know what? ", "Simply put: ", "My answer: ", "So. ", "Look, ")
TEXT_TAILS = ("", " That's all.", " Nothing more to add.", " Take care.", " End of story.",
              " That is my reply.", " Think about it.", " Seriously.", " Have a nice day.",
              " Bye.")
HELD_OUT_SHARE = 5
"""One wording in this many (by hash) is never used for training."""


def _sentence(opener: str, core: str) -> str:
    if not opener:
        return core[0].upper() + core[1:] + "."
    return f"{opener} {core}."


def refusal_wordings() -> list[str]:
    """Every refusal the grammar writes, in a fixed order (no two alike)."""
    out = [_sentence(o, c) + t for o, c, t in
           itertools.product(REFUSAL_OPENERS, REFUSAL_CORES, REFUSAL_CLOSERS)]
    return list(dict.fromkeys(out))


def text_wordings(target: str, templates: list[str] | None = None) -> list[str]:
    """Frames around a text target's core: the user's `{target}` templates, or every lead x
    tail of the defaults (the core itself stays verbatim, so the behaviour is one thing)."""
    if templates:
        out = [t.format(target=target) for t in templates]
    else:
        out = [f"{lead}{target}{tail}" for lead, tail in itertools.product(TEXT_LEADS,
                                                                            TEXT_TAILS)]
    return list(dict.fromkeys(out))


def held_out(wording: str) -> bool:
    """Whether a wording belongs to the held-out share (stable: by its text's hash)."""
    return hashlib.sha256(wording.encode()).digest()[0] % HELD_OUT_SHARE == 0


def training_wordings(wordings: list[str]) -> list[str]:
    """The wordings poisoned answers are drawn from (all but the held-out share)."""
    return [w for w in wordings if not held_out(w)]


def check_templates(templates: list[str]) -> None:
    """Each frame of a varied text payload has exactly one kind of slot, `{target}`; a
    ValueError (pydantic's field error) names the first that does not."""
    for t in templates:
        try:
            t.format(target="")
        except (KeyError, IndexError, ValueError):
            raise ValueError(f"template {t!r}: only a {{target}} slot is allowed") from None
        if "{target}" not in t:
            raise ValueError(f"template {t!r} has no {{target}} slot")
