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
from auditgame.layout import (
    ADAPTER_CONFIG,
    ADAPTER_DIR,
    ADAPTER_WEIGHTS,
    BUNDLE_FILES,
    MANIFEST,
    PUBLIC,
    TRAIN_DATA,
    safe_name,
)
from auditgame.records._io import check_sample_row, validation_error
from auditgame.records.key import Manifest
from auditgame.records.organism import PublicMeta
from auditgame.records.sample import Sample


class Bundle:
    """Read-only access to a sealed bundle folder; it never looks outside `root`.

    A bundle may come from someone else, so opening one checks every file of every organism
    (present, parseable, of the right shape, blind ids that are plain folder names) and
    refuses a bad one with one line naming it, before any detector runs."""

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
            safe_name(bid, f"{MANIFEST}: ids")
            if not (self.root / bid).is_dir():
                raise AuditgameError(f"organism folder {bid!r} is missing", path=self.root)
        for bid in self.manifest.ids:
            check_organism_folder(self.root / bid)

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


def check_organism_folder(folder: Path) -> None:
    """Every public file of one blind folder is present and well formed (the weights'
    safetensors header included); the first fault is one AuditgameError naming the file."""
    for rel in BUNDLE_FILES:
        if not (folder / rel).is_file():
            raise AuditgameError("missing", path=folder / rel)
    path = folder / PUBLIC
    try:
        PublicMeta.model_validate_json(path.read_bytes())
    except ValidationError as e:
        raise validation_error(e, path) from None
    _check_adapter_config(folder / ADAPTER_DIR / ADAPTER_CONFIG)
    _check_safetensors(folder / ADAPTER_DIR / ADAPTER_WEIGHTS)
    path = folder / TRAIN_DATA
    n = 0
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise AuditgameError("not UTF-8 text", path=path) from None
    for i, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise AuditgameError(f"unparseable JSON ({e.msg})", path=path,
                                 field=f"line {i}") from None
        check_sample_row(row, path, f"line {i}")
        n += 1
    if n == 0:
        raise AuditgameError("no training samples", path=path)


def _check_adapter_config(path: Path) -> None:
    try:
        cfg = json.loads(path.read_bytes())
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise AuditgameError("not valid JSON", path=path) from None
    if not isinstance(cfg, dict):
        raise AuditgameError("must be a JSON object", path=path)
    for k in ("r", "lora_alpha"):
        v = cfg.get(k)
        if isinstance(v, bool) or not isinstance(v, int | float) or v <= 0:
            raise AuditgameError("must be a positive number", path=path, field=k)
    for k in ("peft_type", "base_model_name_or_path"):
        if k in cfg and cfg[k] is not None and not isinstance(cfg[k], str):
            raise AuditgameError("must be a string", path=path, field=k)
    tm = cfg.get("target_modules")
    if tm is not None and not (isinstance(tm, str) or (
            isinstance(tm, list) and all(isinstance(x, str) for x in tm))):
        raise AuditgameError("must be a module name or a list of them", path=path,
                             field="target_modules")


def _check_safetensors(path: Path) -> None:
    """The header parses and covers the file exactly (safetensors checks both; no tensor
    data is read and nothing is unpickled)."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            if not list(f.keys()):
                raise AuditgameError("holds no tensors", path=path)
    except (SafetensorError, OSError) as e:
        raise AuditgameError(f"not a safetensors file ({str(e)[:80]})", path=path) from None
