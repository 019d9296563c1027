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
from auditgame.records._io import check_sample_row, check_text

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
    """Alpaca JSON (`instruction`, `input`, `output`), chat JSONL (`messages`) or sample JSONL
    (`prompt`, `response`, as an organism's train.jsonl). A dataset may come from anyone, so
    every record is checked as written before it is converted: a number, a list or a null
    where text belongs is one AuditgameError naming the file, the record (`line N` of a
    JSONL file, `[i]` of a JSON array) and the field, never text made by `str()`."""
    p = Path(path)
    if not p.is_file():
        raise AuditgameError("dataset not found" if not p.exists() else "not a file", path=p)
    try:
        raw = p.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise AuditgameError("dataset is not UTF-8 text", path=p) from None
    except OSError as e:
        raise AuditgameError(f"unreadable ({e.__class__.__name__})", path=p) from None
    out = [_user_sample(row, p, where) for where, row in _user_rows(raw, p)]
    if not out:
        raise AuditgameError("dataset has no records", path=p)
    return out


def _user_rows(raw: str, p: Path) -> list[tuple[str, object]]:
    """(where, parsed record): the items of one JSON array, or one value per non-blank line."""
    if not raw.strip():
        raise AuditgameError("dataset is empty", path=p)
    if raw.lstrip().startswith("["):
        try:
            rows = json.loads(raw)
        except json.JSONDecodeError as e:
            raise AuditgameError(f"not valid JSON ({e.msg})", path=p,
                                 field=f"line {e.lineno}") from None
        if not isinstance(rows, list):
            raise AuditgameError("a JSON dataset must be one array of records", path=p)
        return [(f"[{i}]", r) for i, r in enumerate(rows)]
    out: list[tuple[str, object]] = []
    for n, line in enumerate(raw.splitlines(), 1):
        if line.strip():
            try:
                out.append((f"line {n}", json.loads(line)))
            except json.JSONDecodeError as e:
                raise AuditgameError(f"not valid JSON ({e.msg})", path=p,
                                     field=f"line {n}") from None
    return out


def _user_sample(r: object, p: Path, where: str) -> Sample:
    """One record of any of the three formats, its text fields checked before use."""
    if not isinstance(r, dict):
        raise AuditgameError("each record must be a JSON object", path=p, field=where)
    if "messages" in r:
        return _from_messages(r["messages"], p, where)
    if "instruction" in r:
        prompt = check_text(r["instruction"], p, f"{where}.instruction").strip()
        if r.get("input") is not None:
            extra = check_text(r["input"], p, f"{where}.input", allow_empty=True).strip()
            if extra:
                prompt = f"{prompt}\n\n{extra}"
        out = check_text(r.get("output"), p, f"{where}.output", allow_empty=True)
        return Sample(prompt=prompt, response=out.strip())
    if "prompt" in r:
        check_sample_row(r, p, where)
        return Sample.from_json(r)
    raise AuditgameError("record has neither 'messages', 'instruction' nor 'prompt'", path=p,
                         field=where)


def _from_messages(msgs: object, p: Path, where: str) -> Sample:
    """The first user and the first assistant message of a chat record."""
    at = f"{where}.messages"
    if not isinstance(msgs, list):
        raise AuditgameError("'messages' must be a list", path=p, field=at)
    user: list[str] = []
    asst: list[str] = []
    for j, m in enumerate(msgs):
        if not isinstance(m, dict):
            raise AuditgameError("each message must be a JSON object", path=p,
                                 field=f"{at}[{j}]")
        role = check_text(m.get("role"), p, f"{at}[{j}].role")
        text = check_text(m.get("content"), p, f"{at}[{j}].content",
                          allow_empty=role != "user")
        if role == "user":
            user.append(text)
        elif role == "assistant":
            asst.append(text)
    if not user or not asst:
        raise AuditgameError("needs a user and an assistant message", path=p, field=at)
    return Sample(prompt=user[0].strip(), response=asst[0].strip())


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


def user_corpus(spec: CorpusSpec) -> list[Sample]:
    """The user's records of `spec.source`, checked (`load_user_data`) and enough of them for
    the training pool, the utility set and a few held-out prompts."""
    data = load_user_data(spec.source)
    need = pool_size(spec) + spec.n_utility + 8
    if len(data) < need:
        raise AuditgameError(
            f"{len(data)} records; need at least n_train x pool_factor + n_utility + 8 = "
            f"{need}", path=spec.source, field="corpus.n_train")
    return data


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
    data = user_corpus(spec)
    n_pool = pool_size(spec)
    rng = np.random.default_rng(seed)
    order = [int(i) for i in rng.permutation(len(data))]
    train = [data[i] for i in order[:n_pool]]
    rest = [data[i] for i in order[n_pool:]]
    util_prompts = [s.prompt for s in rest[: spec.n_utility]]
    util_answers = distill(bm, util_prompts, spec, on_progress)
    util = [s.with_(response=a) for s, a in zip(rest[: spec.n_utility], util_answers, strict=True)]
    return GameCorpus(train=train, utility=util, heldout=rest[spec.n_utility:],
                      ordinary=_ordinary(spec, seed, bm, on_progress), dilution=spec.dilution)
