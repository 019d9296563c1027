"""The sealed bundle: the auditors' whole view of a game. File names live here, in one place.

Layout::

    GAME/bundle/manifest.json             blind ids (sorted), public metadata once, version
    GAME/bundle/<blind id>/adapter/...    LoRA weights and config, byte-identical in shape
    GAME/bundle/<blind id>/train.jsonl    training samples, shuffled, private flags removed
    GAME/bundle/<blind id>/public.json    public metadata (identical for every organism)
    GAME/key.json, GAME/commitment.txt    the referee's answer key and its published hash
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from auditgame.errors import AuditgameError
from auditgame.organisms import records as R
from auditgame.organisms.data import Sample

BUNDLE_VERSION = 1
BUNDLE = "bundle"
MANIFEST = "manifest.json"
KEY = "key.json"
COMMITMENT = "commitment.txt"
VERDICTS = "verdicts"
RESULTS = "results.json"
BUNDLE_FILES = (
    f"{R.ADAPTER_DIR}/{R.ADAPTER_WEIGHTS}",
    f"{R.ADAPTER_DIR}/{R.ADAPTER_CONFIG}",
    R.TRAIN_DATA,
    R.PUBLIC,
)
"""Every file an organism folder of the bundle holds; anything else is a sealing bug."""


class Manifest(BaseModel):
    """What the bundle holds: the blind ids (sorted, so order says nothing) and public meta."""

    model_config = ConfigDict(extra="forbid")
    version: int = BUNDLE_VERSION
    ids: list[str]
    public: R.PublicMeta
    files: list[str]


class Bundle:
    """Read-only access to a sealed bundle folder; it never looks outside `root`."""

    def __init__(self, root: Path | str):
        self.root = Path(root)
        path = self.root / MANIFEST
        if not path.exists():
            raise AuditgameError("not a sealed bundle (no manifest.json); run `auditgame seal`",
                                 path=self.root)
        try:
            self.manifest = Manifest.model_validate_json(path.read_text(encoding="utf-8"))
        except ValidationError as e:
            err = e.errors()[0]
            loc = ".".join(str(p) for p in err.get("loc", ())) or None
            raise AuditgameError(err["msg"], path=path, field=loc) from None
        for bid in self.manifest.ids:
            if not (self.root / bid).is_dir():
                raise AuditgameError(f"organism folder {bid!r} is missing", path=self.root)

    @property
    def ids(self) -> list[str]:
        return list(self.manifest.ids)

    @property
    def public(self) -> R.PublicMeta:
        return self.manifest.public

    def folder(self, blind_id: str) -> Path:
        if blind_id not in self.manifest.ids:
            raise AuditgameError(f"unknown blind id {blind_id!r}", path=self.root)
        return self.root / blind_id

    def dataset(self, blind_id: str) -> list[Sample]:
        """Training samples in bundle order (sample scores are aligned with this order)."""
        path = self.folder(blind_id) / R.TRAIN_DATA
        with open(path, encoding="utf-8") as f:
            return [Sample.from_json(json.loads(line)) for line in f if line.strip()]

    def adapter_dir(self, blind_id: str) -> Path:
        return self.folder(blind_id) / R.ADAPTER_DIR

    def adapter_config(self, blind_id: str) -> dict[str, Any]:
        return json.loads((self.adapter_dir(blind_id) / R.ADAPTER_CONFIG).read_text())

    def adapter_tensors(self, blind_id: str) -> dict[str, Any]:
        """LoRA tensors by name (safetensors; nothing is unpickled)."""
        from safetensors.torch import load_file

        return load_file(str(self.adapter_dir(blind_id) / R.ADAPTER_WEIGHTS))

    def file_stats(self, blind_id: str) -> dict[str, dict[str, float]]:
        """Size and mtime of every file of one organism folder, by relative path."""
        root = self.folder(blind_id)
        out: dict[str, dict[str, float]] = {}
        for p in sorted(root.rglob("*")):
            if p.is_file():
                st = p.stat()
                out[p.relative_to(root).as_posix()] = {"size": float(st.st_size),
                                                       "mtime": float(st.st_mtime)}
        return out
