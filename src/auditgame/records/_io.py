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
