"""Writing and reading records: atomically, in one byte form, with one-line errors."""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel, ValidationError

from auditgame._util.io import atomic_write_json
from auditgame.errors import AuditgameError

M = TypeVar("M", bound=BaseModel)


def write_record(path: Path | str, record: BaseModel) -> None:
    """Indented JSON with sorted keys, written to a temporary name and renamed."""
    atomic_write_json(path, record.model_dump(mode="json"))


def read_record(path: Path | str, cls: type[M], what: str | None = None) -> M:
    """Parse `path` as `cls`; a missing, unreadable or invalid file is one AuditgameError
    naming the file and the field."""
    path = Path(path)
    if not path.exists():
        raise AuditgameError(f"no {what or cls.__name__} file", path=path)
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise AuditgameError(f"unreadable ({e.__class__.__name__})", path=path) from None
    try:
        return cls.model_validate_json(raw)
    except ValidationError as e:
        err = e.errors()[0]
        loc = ".".join(str(p) for p in err.get("loc", ())) or None
        raise AuditgameError(err["msg"], path=path, field=loc) from None


def validation_error(e: ValidationError, path: Path | str) -> AuditgameError:
    """The first error of a pydantic ValidationError as one line naming file and field."""
    err = e.errors()[0]
    loc = ".".join(str(p) for p in err.get("loc", ())) or None
    return AuditgameError(err["msg"], path=path, field=loc)


MAX_TEXT_CHARS = 100_000
"""Longest prompt or answer a dataset may hold: far beyond any SFT sample, short enough that
a file of one giant string is refused before n-gram tests or tokenizers chew on it."""


def check_sample_row(row: object, path: Path | str, where: str) -> None:
    """One dataset row in the Sample shape (`prompt`, `response`, optional `meta`), checked
    before anything converts it: a number or list where text belongs is bad input, not text."""
    if not isinstance(row, dict):
        raise AuditgameError("each record must be a JSON object", path=path, field=where)
    for k in ("prompt", "response"):
        check_text(row.get(k), path, f"{where}.{k}", allow_empty=k == "response")
    meta = row.get("meta")
    if meta is not None and not (isinstance(meta, dict) and all(
            isinstance(v, str | int | float | bool) for v in meta.values())):
        raise AuditgameError("meta must be an object of plain values", path=path,
                             field=f"{where}.meta")


def check_text(value: object, path: Path | str, where: str, allow_empty: bool = False) -> str:
    """A text field: a string, not blank (unless allowed), at most MAX_TEXT_CHARS long."""
    if not isinstance(value, str):
        what = "missing" if value is None else f"a {type(value).__name__}"
        raise AuditgameError(f"must be a string, not {what}", path=path, field=where)
    if not allow_empty and not value.strip():
        raise AuditgameError(f"empty {where.rsplit('.', 1)[-1]}", path=path, field=where)
    if len(value) > MAX_TEXT_CHARS:
        raise AuditgameError(f"is {len(value)} characters long (at most {MAX_TEXT_CHARS})",
                             path=path, field=where)
    return value
