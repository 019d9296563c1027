"""The Sample record: one line of an organism's `train.jsonl` (and of a bundle's)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class Sample(BaseModel):
    """One single-turn SFT sample. `meta` holds public labels (task kind, topic, domain).

    Positional construction is kept (`Sample(prompt, response, meta)`): samples are built in
    bulk from templates."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    prompt: str
    response: str
    meta: dict[str, str] = Field(default_factory=dict)

    def __init__(self, prompt: str, response: str, meta: dict[str, str] | None = None,
                 **kw: Any):
        super().__init__(prompt=prompt, response=response, meta=meta or {}, **kw)

    def to_json(self) -> dict[str, Any]:
        return {"prompt": self.prompt, "response": self.response, "meta": dict(self.meta)}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Sample:
        return cls(str(d["prompt"]), str(d["response"]),
                   {str(k): str(v) for k, v in (d.get("meta") or {}).items()})

    def with_(self, **kw: Any) -> Sample:
        return self.model_copy(update=kw)
