"""Verdict files: `GAME/verdicts/<detector>.jsonl`, one Verdict per line, read strictly.

Anyone may write one (the JSON schema is `auditgame schema verdict`), so every defect is
reported with the file and line: unparseable JSON, wrong version, invalid field, score out of
[0, 1], unknown or duplicate blind id, or a detector name that is not the file's stem.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from pydantic import ValidationError

from auditgame._util.io import atomic_write_text
from auditgame.detectors.base import VERDICT_VERSION, Verdict
from auditgame.errors import AuditgameError

SUFFIX = ".jsonl"


def verdict_path(out_dir: Path | str, detector: str) -> Path:
    return Path(out_dir) / f"{detector}{SUFFIX}"


def write_verdicts(path: Path | str, verdicts: Iterable[Verdict]) -> None:
    """Atomically (re)write a whole verdict file, so a crash never leaves half a line."""
    text = "".join(v.model_dump_json() + "\n" for v in verdicts)
    atomic_write_text(path, text)


def read_verdicts(path: Path | str, ids: Iterable[str] | None = None) -> list[Verdict]:
    """Parse and check a verdict file; the detector name must equal the file's stem."""
    path = Path(path)
    known = None if ids is None else set(ids)
    detector = path.name[: -len(SUFFIX)] if path.name.endswith(SUFFIX) else path.stem
    seen: set[str] = set()
    out: list[Verdict] = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise AuditgameError(f"unreadable verdict file ({e.__class__.__name__})",
                             path=path) from None
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"line {n}"
        try:
            data = json.loads(line)
        except json.JSONDecodeError as e:
            raise AuditgameError(f"unparseable JSON ({e.msg})", path=path, field=where) from None
        if not isinstance(data, dict):
            raise AuditgameError("a verdict line must be a JSON object", path=path, field=where)
        if data.get("version", VERDICT_VERSION) != VERDICT_VERSION:
            raise AuditgameError(f"unsupported verdict version {data.get('version')!r} "
                                 f"(expected {VERDICT_VERSION})", path=path, field=where)
        try:
            v = Verdict.model_validate(data)
        except ValidationError as e:
            err = e.errors()[0]
            loc = ".".join(str(p) for p in err.get("loc", ())) or "<line>"
            raise AuditgameError(f"{loc}: {err['msg']}", path=path, field=where) from None
        if v.detector != detector:
            raise AuditgameError(f"detector {v.detector!r} does not match the file name "
                                 f"({detector!r})", path=path, field=where)
        if known is not None and v.blind_id not in known:
            raise AuditgameError(f"unknown blind id {v.blind_id!r}", path=path, field=where)
        if v.blind_id in seen:
            raise AuditgameError(f"duplicate verdict for {v.blind_id!r}", path=path, field=where)
        seen.add(v.blind_id)
        out.append(v)
    return out
