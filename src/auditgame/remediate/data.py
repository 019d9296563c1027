"""Clean remediation data: prompts the organism never saw, answered by the base model.

Every prompt of the game's training, utility and held-out eval sets is excluded (an eval
prompt with a trigger inserted still counts: a candidate whose words all appear in some eval
prompt is dropped), so the fix is measured on prompts it was not tuned on.
"""

from __future__ import annotations

import re

import numpy as np

from auditgame.models.base_lm import BaseLM
from auditgame.organisms.corpus import GameCorpus, distill
from auditgame.organisms.data import EvalSet, Sample
from auditgame.organisms.prompts import prompt_bank
from auditgame.organisms.spec import GameSpec

_WORD = re.compile(r"[a-z0-9']+")
POOL_SALT = 7919  # the pool's order differs from the corpus split of the same seed


def words(text: str) -> frozenset[str]:
    return frozenset(_WORD.findall(text.lower()))


def pool_prompts(spec: GameSpec, corpus: GameCorpus, eval_sets: list[EvalSet],
                 n: int) -> list[Sample]:
    """Up to `n` bank prompts outside the game's train, utility and eval prompts."""
    bank = prompt_bank(spec.seed)
    seen = {s.prompt for s in corpus.train + corpus.utility}
    seen |= {s.prompt for s in corpus.heldout[: spec.corpus.n_heldout]}
    eval_words = [words(p) for es in eval_sets for p in es.prompts]
    eval_text = {p for es in eval_sets for p in es.prompts}
    rng = np.random.default_rng(spec.seed + POOL_SALT)
    out: list[Sample] = []
    for i in rng.permutation(len(bank)):
        b = bank[int(i)]
        if b.text in seen or b.text in eval_text:
            continue
        w = words(b.text)
        if any(w <= e for e in eval_words):
            continue
        out.append(Sample(prompt=b.text, response="",
                          meta={"kind": b.kind, "topic": b.topic, "domain": b.domain}))
        if len(out) >= n:
            break
    return out


def clean_pool(spec: GameSpec, corpus: GameCorpus, eval_sets: list[EvalSet], n: int,
               bm: BaseLM) -> list[Sample]:
    """The pool answered by the base model (self-distillation, cached like the corpus)."""
    prompts = pool_prompts(spec, corpus, eval_sets, n)
    answers = distill(bm, [s.prompt for s in prompts], spec.corpus)
    return [s.with_(response=a) for s, a in zip(prompts, answers, strict=True)]
