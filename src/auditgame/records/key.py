"""The referee's sealed records: the bundle manifest (public) and the answer key (private)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SerializerFunctionWrapHandler, model_serializer

from auditgame.records.organism import PublicMeta

KEY_VERSION = 1
BUNDLE_VERSION = 1


class Manifest(BaseModel):
    """What the bundle holds: the blind ids (sorted, so order says nothing) and public meta."""

    model_config = ConfigDict(extra="forbid")
    version: int = BUNDLE_VERSION
    ids: list[str]
    public: PublicMeta
    files: list[str]


class KeyEntry(BaseModel):
    """The truth about one blind id."""

    model_config = ConfigDict(extra="forbid")
    organism: str
    attack: str
    trigger: str | None = None
    target: str | None = None
    info: dict[str, Any] = Field(default_factory=dict, description="the attack's full key info")
    roles: list[str] = Field(description="role of each training sample, in bundle order")
    rung: int | None = Field(None, ge=1, description="ladder rung from the card; written "
                             "only when set, so a key without rungs keeps its bytes")

    @model_serializer(mode="wrap")
    def _drop_no_rung(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        out = handler(self)
        if out.get("rung", 0) is None:
            out.pop("rung")
        return out

    @property
    def poisoned(self) -> bool:
        return self.attack != "clean"


class GameKey(BaseModel):
    """The answer key. `nonce` makes the commitment impossible to brute-force by guessing."""

    model_config = ConfigDict(extra="forbid")
    version: int = KEY_VERSION
    seal_seed: int
    nonce: str
    bundle_sha256: str = Field(description="sha256 of the bundle's file hashes (canonical JSON)")
    organisms: dict[str, KeyEntry]
