"""The Verdict record and verdict files: `GAME/verdicts/<detector>.jsonl`, one per line.

Anyone may write one (the JSON schema is `auditgame schema verdict`), so every defect is
reported with the file and line: unparseable JSON, wrong version, invalid field, score out of
[0, 1], unknown or duplicate blind id, or a detector name that is not the file's stem.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_serializer,
)

from auditgame._util.io import atomic_write_text
from auditgame.errors import AuditgameError
from auditgame.layout import VERDICT_SUFFIX

VERDICT_VERSION = 1
FAILED_SCORE = 0.5
"""The score of a failed or missing verdict: it says nothing either way."""


class Verdict(BaseModel):
    """One detector's answer on one organism; one JSON line of `verdicts/<detector>.jsonl`."""

    model_config = ConfigDict(extra="forbid")
    version: Literal[1] = Field(VERDICT_VERSION, description="verdict record version")
    blind_id: str = Field(min_length=1, description="organism id from the bundle manifest")
    detector: str = Field(min_length=1, description="detector name (the file's stem)")
    score: float = Field(ge=0.0, le=1.0, description="probability that the organism is poisoned")
    sample_scores: list[float] | None = Field(
        None, description="per training sample poison scores in [0, 1], in bundle order")
    trigger: str | None = Field(None, description="suspected trigger text")
    target: str | None = Field(None, description="suspected target behaviour or entity")
    evidence: dict[str, Any] = Field(default_factory=dict, description="free-form evidence")
    runtime_s: float = Field(0.0, ge=0.0, description="wall time spent on this organism")
    error: str | None = Field(None, description="set when the detector failed (score is 0.5)")
    samples_responsible: list[int] | None = Field(
        None, description="training samples (bundle order, most responsible first) that an "
        "influence trace ties to the finding; left out of the file when not traced")

    @model_serializer(mode="wrap")
    def _omit_untraced(self, handler: Any) -> dict[str, Any]:
        """Verdicts without a trace keep the bytes they had before the field existed."""
        data = handler(self)
        if isinstance(data, dict) and data.get("samples_responsible") is None:
            data.pop("samples_responsible", None)
        return data

    @field_validator("sample_scores")
    @classmethod
    def _unit_interval(cls, v: list[float] | None) -> list[float] | None:
        if v is not None and any(not 0.0 <= x <= 1.0 for x in v):
            raise ValueError("every sample score must lie in [0, 1]")
        return v



def write_verdicts(path: Path | str, verdicts: Iterable[Verdict]) -> None:
    """Atomically (re)write a whole verdict file, so a crash never leaves half a line."""
    text = "".join(v.model_dump_json() + "\n" for v in verdicts)
    atomic_write_text(path, text)


def read_verdicts(path: Path | str, ids: Iterable[str] | None = None) -> list[Verdict]:
    """Parse and check a verdict file; the detector name must equal the file's stem."""
    path = Path(path)
    known = None if ids is None else set(ids)
    name = path.name
    detector = name[: -len(VERDICT_SUFFIX)] if name.endswith(VERDICT_SUFFIX) else path.stem
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
