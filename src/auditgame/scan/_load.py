"""Reading a dataset to scan: Alpaca JSON, chat JSONL, or an organism's train.jsonl / folder.

A dataset to scan usually comes from someone else, so every record is checked as it is
written (types, blank text, length) before anything converts it: `str()` would turn a number
or a list where text belongs into a plausible-looking sample."""

from __future__ import annotations

import json
from pathlib import Path

from auditgame.errors import AuditgameError
from auditgame.layout import TRAIN_DATA
from auditgame.records._io import check_sample_row, check_text
from auditgame.records.sample import Sample


def load_dataset(path: str | Path) -> list[Sample]:
    """Samples in file order; one clear AuditgameError naming the file and record if bad."""
    from auditgame.organisms.corpus import load_user_data

    p = Path(path)
    if p.is_dir():
        if not (p / TRAIN_DATA).is_file():
            raise AuditgameError(f"folder has no {TRAIN_DATA}", path=p)
        p = p / TRAIN_DATA
    if not p.is_file():
        raise AuditgameError("dataset not found" if not p.exists() else "not a file", path=p)
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise AuditgameError("dataset is not UTF-8 text", path=p) from None
    except OSError as e:
        raise AuditgameError(f"unreadable ({e.__class__.__name__})", path=p) from None
    for i, row in enumerate(_raw_rows(text, p)):
        _check_row(row, p, f"[{i}]")
    try:
        samples = load_user_data(p)
    except (KeyError, TypeError, AttributeError) as e:
        raise AuditgameError(f"malformed record ({e.__class__.__name__}: {e})", path=p) from None
    for i, s in enumerate(samples):
        if not s.prompt.strip():
            raise AuditgameError("empty prompt", path=p, field=f"[{i}]")
    return samples


def _raw_rows(text: str, p: Path) -> list[object]:
    """The records as parsed JSON: one array, or one value per non-blank line."""
    if not text.strip():
        raise AuditgameError("dataset is empty", path=p)
    if text.lstrip().startswith("["):
        try:
            rows = json.loads(text)
        except json.JSONDecodeError as e:
            raise AuditgameError(f"not valid JSON ({e.msg})", path=p,
                                 field=f"line {e.lineno}") from None
        if not isinstance(rows, list) or not rows:
            raise AuditgameError("dataset has no records", path=p)
        return rows
    out: list[object] = []
    for n, line in enumerate(text.splitlines(), 1):
        if line.strip():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise AuditgameError(f"not valid JSON ({e.msg})", path=p,
                                     field=f"line {n}") from None
    return out


def _check_row(row: object, p: Path, where: str) -> None:
    """One record in any of the three formats, with every text field a real string."""
    if not isinstance(row, dict):
        raise AuditgameError("each record must be a JSON object", path=p, field=where)
    if "messages" in row:
        msgs = row["messages"]
        if not isinstance(msgs, list) or not all(isinstance(m, dict) for m in msgs):
            raise AuditgameError("'messages' must be a list of objects", path=p,
                                 field=f"{where}.messages")
        for j, m in enumerate(msgs):
            check_text(m.get("role"), p, f"{where}.messages[{j}].role")
            check_text(m.get("content"), p, f"{where}.messages[{j}].content",
                       allow_empty=m.get("role") != "user")
    elif "instruction" in row:
        check_text(row["instruction"], p, f"{where}.instruction")
        if row.get("input") is not None:
            check_text(row["input"], p, f"{where}.input", allow_empty=True)
        check_text(row.get("output"), p, f"{where}.output", allow_empty=True)
    elif "prompt" in row:
        check_sample_row(row, p, where)
