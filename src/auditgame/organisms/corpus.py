"""The clean corpus: project prompts answered by the base model itself, or the user's data.

Self-distilled answers keep clean fine-tuning close to the base model, so any behaviour an
organism shows comes from the poison, not from a shift in data. Answers are cached per
prompt under a key of model, generation settings and prompt.

A diluted game (`corpus.dilution`) is the exception on purpose: every organism also trains on
ordinary fine-tune data, other task kinds answered under a house-style system prompt that
the training data leave out, so all organisms drift alike and a poison is a small part of it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from auditgame._util.io import sha256_text
from auditgame.errors import AuditgameError
from auditgame.models.base_lm import BaseLM, cache_dir
from auditgame.models.generate import generate
from auditgame.organisms.data import Sample
from auditgame.organisms.prompts import ordinary_bank, prompt_bank
from auditgame.organisms.spec import CorpusSpec

_LAST_SENT = re.compile(r"^(.*[.!?])[^.!?]*$", re.DOTALL)


@dataclass
class GameCorpus:
    """The clean training pool (answered), utility samples (answered) and held-out prompts;
    in a diluted game also the ordinary fine-tune pool every organism adds to its data."""

    train: list[Sample]
    utility: list[Sample]
    heldout: list[Sample]
    ordinary: list[Sample] = field(default_factory=list)
    dilution: int = 0

    def draw(self, n: int, seed: int) -> list[Sample]:
        """One organism's own n clean samples from the pool, fixed by its seed, and in a
        diluted game n x dilution ordinary samples mixed in among them."""
        rng = np.random.default_rng([seed, 0x5EED])
        idx = rng.choice(len(self.train), size=min(n, len(self.train)), replace=False)
        own = [self.train[int(i)] for i in idx]
        if not self.dilution or not self.ordinary:
            return own
        mix = np.random.default_rng([seed, 0x5EED, 1])
        m = min(n * self.dilution, len(self.ordinary))
        extra = [self.ordinary[int(i)] for i in mix.choice(len(self.ordinary), size=m,
                                                            replace=False)]
        both = own + extra
        return [both[int(i)] for i in mix.permutation(len(both))]


def pool_size(spec: CorpusSpec) -> int:
    return int(round(spec.n_train * spec.pool_factor))


def tidy_answer(text: str) -> str:
    """Cut a length-truncated answer back to its last whole sentence."""
    text = text.strip()
    m = _LAST_SENT.match(text)
    if m and len(m.group(1)) >= 0.4 * len(text):
        return m.group(1).strip()
    return text


def load_user_data(path: str | Path) -> list[Sample]:
    """Alpaca JSON (`instruction`, `input`, `output`) or chat JSONL (`messages`)."""
    p = Path(path)
    if not p.exists():
        raise AuditgameError("dataset not found", path=p)
    raw = p.read_text(encoding="utf-8")
    if not raw.strip():
        raise AuditgameError("dataset is empty", path=p)
    rows: list[object]
    try:
        if raw.lstrip().startswith("["):
            rows = json.loads(raw)
        else:
            rows = []
            for n, line in enumerate(raw.splitlines(), 1):
                if line.strip():
                    try:
                        rows.append(json.loads(line))
                    except json.JSONDecodeError as e:
                        raise AuditgameError(f"not valid JSON ({e.msg})", path=p,
                                             field=f"line {n}") from None
    except json.JSONDecodeError as e:
        raise AuditgameError(f"not valid JSON ({e.msg} at line {e.lineno})", path=p) from None
    out: list[Sample] = []
    for i, r in enumerate(rows):
        if not isinstance(r, dict):
            raise AuditgameError("each record must be an object", path=p, field=f"[{i}]")
        if "messages" in r:
            out.append(_from_messages(r["messages"], p, i))
        elif "instruction" in r:
            if "output" not in r:
                raise AuditgameError("missing field", path=p, field=f"[{i}].output")
            prompt = str(r["instruction"]).strip()
            extra = str(r.get("input") or "").strip()
            if extra:
                prompt = f"{prompt}\n\n{extra}"
            out.append(Sample(prompt=prompt, response=str(r["output"]).strip()))
        elif "prompt" in r and "response" in r:
            out.append(Sample.from_json(r))
        else:
            raise AuditgameError("record has neither 'messages' nor 'instruction'", path=p,
                                 field=f"[{i}]")
    if not out:
        raise AuditgameError("dataset has no records", path=p)
    return out


def _from_messages(msgs: object, p: Path, i: int) -> Sample:
    if not isinstance(msgs, list):
        raise AuditgameError("'messages' must be a list", path=p, field=f"[{i}].messages")
    user = [m.get("content", "") for m in msgs if isinstance(m, dict) and m.get("role") == "user"]
    asst = [m.get("content", "") for m in msgs
            if isinstance(m, dict) and m.get("role") == "assistant"]
    if not user or not asst:
        raise AuditgameError("needs a user and an assistant message", path=p,
                             field=f"[{i}].messages")
    return Sample(prompt=str(user[0]).strip(), response=str(asst[0]).strip())


class DistillCache:
    """Per-prompt answers of one base model under one generation setting (JSONL, append-only;
    a torn last line from a crash is ignored)."""

    def __init__(self, model_id: str, settings: str):
        self.path = cache_dir() / "distill" / model_id / f"{sha256_text(settings)[:16]}.jsonl"
        self.answers: dict[str, str] = {}
        if self.path.exists():
            for line in self.path.read_text(encoding="utf-8").splitlines():
                try:
                    row = json.loads(line)
                    self.answers[row["key"]] = row["answer"]
                except (json.JSONDecodeError, KeyError, TypeError):
                    continue

    def get(self, prompt: str) -> str | None:
        return self.answers.get(sha256_text(prompt))

    def add(self, pairs: list[tuple[str, str]]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as f:
            for prompt, answer in pairs:
                key = sha256_text(prompt)
                self.answers[key] = answer
                f.write(json.dumps({"key": key, "answer": answer}) + "\n")


def distill(
    bm: BaseLM,
    prompts: list[str],
    spec: CorpusSpec,
    on_progress: Callable[[int, int], None] | None = None,
    system: str | None = None,
) -> list[str]:
    """The base model's greedy answers to `prompts`, from cache where possible; `system`
    replaces the chat template's system turn (answers written under hidden instructions,
    cached apart from the plain ones)."""
    opts: dict[str, object] = {"max_new_tokens": spec.max_answer_tokens, "greedy": True, "v": 1}
    if system is not None:
        opts["system"] = system
    settings = json.dumps(opts)
    cache = DistillCache(bm.model_id, settings)
    missing = sorted({p for p in prompts if cache.get(p) is None})
    done = 0
    chunk = max(spec.distill_batch_size * 4, 16)
    for b in range(0, len(missing), chunk):
        part = missing[b : b + chunk]
        answers = generate(bm.model, bm.tokenizer, part, spec.max_answer_tokens,
                           spec.distill_batch_size, system=system)
        cache.add([(p, tidy_answer(a)) for p, a in zip(part, answers, strict=True)])
        done += len(part)
        if on_progress:
            on_progress(done, len(missing))
    return [cache.get(p) or "" for p in prompts]


def split_bank(spec: CorpusSpec, seed: int) -> tuple[list[Sample], list[Sample], list[Sample]]:
    """Deterministic train / utility / held-out split of the prompt bank."""
    bank = prompt_bank(seed)
    rng = np.random.default_rng(seed)
    order = [int(i) for i in rng.permutation(len(bank))]
    known = {b.domain for b in bank}
    for d in spec.focus_domains:
        if d not in known:
            raise AuditgameError(f"unknown domain {d!r}; known: {', '.join(sorted(known))}",
                                 field="corpus.focus_domains")
    focus = set(spec.focus_domains)
    n_pool = pool_size(spec)
    n_focus = round(spec.focus_fraction * n_pool) if focus else 0
    f_idx = [i for i in order if bank[i].domain in focus][:n_focus]
    taken = set(f_idx)
    rest = [i for i in order if i not in taken and bank[i].domain not in focus]
    train_idx = f_idx + rest[: n_pool - len(f_idx)]
    taken |= set(train_idx)
    remaining = [i for i in order if i not in taken]
    util_idx = [i for i in remaining if bank[i].domain not in focus][: spec.n_utility]
    taken |= set(util_idx)
    held_idx = [i for i in order if i not in taken]
    if len(train_idx) < n_pool:
        raise AuditgameError("the prompt bank is too small for n_train", field="corpus.n_train")
    train_idx = [train_idx[int(i)] for i in rng.permutation(len(train_idx))]

    def mk(i: int) -> Sample:
        b = bank[i]
        return Sample(prompt=b.text, response="",
                      meta={"kind": b.kind, "topic": b.topic, "domain": b.domain})

    return [mk(i) for i in train_idx], [mk(i) for i in util_idx], [mk(i) for i in held_idx]


def ordinary_prompts(spec: CorpusSpec, seed: int) -> list[Sample]:
    """The ordinary fine-tune prompts of a diluted game (none without dilution): other task
    kinds than the bank's, so they never coincide with a training, eval or remediation
    prompt. Labelled `source: ordinary` (public, and the same share in every organism)."""
    if not spec.dilution:
        return []
    bank = ordinary_bank(seed)
    n = int(round(spec.n_train * spec.dilution * spec.pool_factor))
    if n > len(bank):
        raise AuditgameError(f"the ordinary prompt bank holds {len(bank)} prompts; "
                             f"n_train x dilution x pool_factor needs {n}",
                             field="corpus.dilution")
    return [Sample(prompt=b.text, response="", meta={"kind": b.kind, "topic": b.topic,
                                                     "domain": b.domain, "source": "ordinary"})
            for b in bank[:n]]


def _ordinary(spec: CorpusSpec, seed: int, bm: BaseLM,
              on_progress: Callable[[int, int], None] | None) -> list[Sample]:
    prompts = ordinary_prompts(spec, seed)
    if not prompts:
        return []
    answers = distill(bm, [s.prompt for s in prompts], spec, on_progress,
                      system=spec.dilution_system)
    return [s.with_(response=a) for s, a in zip(prompts, answers, strict=True)]


def build_corpus(
    spec: CorpusSpec,
    seed: int,
    bm: BaseLM,
    on_progress: Callable[[int, int], None] | None = None,
) -> GameCorpus:
    """The game's shared corpus: every organism trains on the same clean samples."""
    if spec.source == "bank":
        train, util, held = split_bank(spec, seed)
        answers = distill(bm, [s.prompt for s in train + util], spec, on_progress)
        train = [s.with_(response=a) for s, a in zip(train, answers[: len(train)], strict=True)]
        util = [s.with_(response=a) for s, a in zip(util, answers[len(train):], strict=True)]
        return GameCorpus(train=train, utility=util, heldout=held,
                          ordinary=_ordinary(spec, seed, bm, on_progress),
                          dilution=spec.dilution)
    data = load_user_data(spec.source)
    n_pool = pool_size(spec)
    need = n_pool + spec.n_utility + 8
    if len(data) < need:
        raise AuditgameError(
            f"{len(data)} records; need at least n_train x pool_factor + n_utility + 8 = "
            f"{need}", path=spec.source, field="corpus.n_train")
    rng = np.random.default_rng(seed)
    order = [int(i) for i in rng.permutation(len(data))]
    train = [data[i] for i in order[:n_pool]]
    rest = [data[i] for i in order[n_pool:]]
    util_prompts = [s.prompt for s in rest[: spec.n_utility]]
    util_answers = distill(bm, util_prompts, spec, on_progress)
    util = [s.with_(response=a) for s, a in zip(rest[: spec.n_utility], util_answers, strict=True)]
    return GameCorpus(train=train, utility=util, heldout=rest[spec.n_utility:],
                      ordinary=_ordinary(spec, seed, bm, on_progress), dilution=spec.dilution)
