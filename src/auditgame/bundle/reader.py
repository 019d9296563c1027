"""The sealed bundle: the auditors' whole view of a game, read-only.

Layout (names in `auditgame.layout`)::

    GAME/bundle/manifest.json             blind ids (sorted), public metadata once, version
    GAME/bundle/<blind id>/adapter/...    LoRA weights and config, byte-identical in shape
    GAME/bundle/<blind id>/train.jsonl    training samples, shuffled, private flags removed
    GAME/bundle/<blind id>/public.json    public metadata (identical for every organism)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from auditgame.errors import AuditgameError
from auditgame.layout import ADAPTER_CONFIG, ADAPTER_DIR, ADAPTER_WEIGHTS, MANIFEST, TRAIN_DATA
from auditgame.records._io import validation_error
from auditgame.records.key import Manifest
from auditgame.records.organism import PublicMeta
from auditgame.records.sample import Sample


class Bundle:
    """Read-only access to a sealed bundle folder; it never looks outside `root`."""

    def __init__(self, root: Path | str):
        self.root = Path(root)
        path = self.root / MANIFEST
        if not path.exists():
            raise AuditgameError("not a sealed bundle (no manifest.json); run `auditgame seal`",
                                 path=self.root)
        try:
            self.manifest = Manifest.model_validate_json(path.read_bytes())
        except ValidationError as e:
            raise validation_error(e, path) from None
        for bid in self.manifest.ids:
            if not (self.root / bid).is_dir():
                raise AuditgameError(f"organism folder {bid!r} is missing", path=self.root)

    @property
    def ids(self) -> list[str]:
        return list(self.manifest.ids)

    @property
    def public(self) -> PublicMeta:
        return self.manifest.public

    def public_info(self) -> dict[str, Any]:
        return self.manifest.public.model_dump(mode="json")

    def n_samples(self) -> int | None:
        return self.manifest.public.n_train

    def check_id(self, blind_id: str) -> None:
        self.folder(blind_id)

    def folder(self, blind_id: str) -> Path:
        if blind_id not in self.manifest.ids:
            raise AuditgameError(f"unknown blind id {blind_id!r}", path=self.root)
        return self.root / blind_id

    def dataset(self, blind_id: str) -> list[Sample]:
        """Training samples in bundle order (sample scores are aligned with this order)."""
        path = self.folder(blind_id) / TRAIN_DATA
        with open(path, encoding="utf-8") as f:
            return [Sample.from_json(json.loads(line)) for line in f if line.strip()]

    def adapter_dir(self, blind_id: str) -> Path:
        return self.folder(blind_id) / ADAPTER_DIR

    def adapter_config(self, blind_id: str) -> dict[str, Any]:
        return json.loads((self.adapter_dir(blind_id) / ADAPTER_CONFIG).read_text())

    def adapter_tensors(self, blind_id: str) -> dict[str, Any]:
        """LoRA tensors by name (safetensors; nothing is unpickled)."""
        from safetensors.torch import load_file

        return load_file(str(self.adapter_dir(blind_id) / ADAPTER_WEIGHTS))

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
