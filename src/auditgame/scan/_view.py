"""A standalone dataset as an audit `Source` (see `detectors.view`): one organism, id
`dataset`, with training data and no weights."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from auditgame.detectors.view import NeedNotDeclared
from auditgame.errors import AuditgameError
from auditgame.records.sample import Sample

DATASET_ID = "dataset"


class DatasetSource:
    """The dataset always; there are no weights and no organism model to give."""

    def __init__(self, samples: list[Sample], name: str = DATASET_ID):
        self._samples = samples
        self._id = name

    @property
    def ids(self) -> list[str]:
        return [self._id]

    def public_info(self) -> dict[str, Any]:
        return {"n_train": len(self._samples)}

    def n_samples(self) -> int | None:
        return len(self._samples)

    def check_id(self, blind_id: str) -> None:
        if blind_id != self._id:
            raise AuditgameError(f"unknown id {blind_id!r}", field="blind_id")

    def dataset(self, blind_id: str) -> list[Sample]:
        self.check_id(blind_id)
        return self._samples

    def _no_weights(self) -> Any:
        raise NeedNotDeclared("a standalone dataset has no weights", field="needs")

    def adapter_dir(self, blind_id: str) -> Path:
        return self._no_weights()

    def adapter_config(self, blind_id: str) -> dict[str, Any]:
        return self._no_weights()

    def adapter_tensors(self, blind_id: str) -> dict[str, Any]:
        return self._no_weights()

    def file_stats(self, blind_id: str) -> dict[str, dict[str, float]]:
        return {}
