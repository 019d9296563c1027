"""A standalone dataset seen through the detector interface (no bundle, no organism)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from auditgame.detectors.base import MODEL_NEEDS, NeedNotDeclared
from auditgame.organisms.data import Sample


class DatasetView:
    """Duck-types `OrganismView` for `scan`: the dataset always, the base model if declared;
    there are no weights and no organism model to give."""

    def __init__(self, samples: list[Sample], needs: frozenset[str],
                 base_loader: Callable[[], Any] | None = None, name: str = "dataset"):
        self.blind_id = name
        self.public: dict[str, Any] = {"n_train": len(samples)}
        self.file_stats: dict[str, dict[str, float]] = {}
        self._samples = samples
        self._needs = needs
        self._base_loader = base_loader

    @property
    def dataset(self) -> list[Sample]:
        if "dataset" not in self._needs:
            raise NeedNotDeclared("the detector did not declare 'dataset'", field="needs")
        return self._samples

    @property
    def weights(self) -> Any:
        raise NeedNotDeclared("a standalone dataset has no weights", field="needs")

    @property
    def model(self) -> Any:
        raise NeedNotDeclared("a standalone dataset has no organism model", field="needs")

    @property
    def base(self) -> Any:
        if not self._needs & MODEL_NEEDS or self._base_loader is None:
            raise NeedNotDeclared("the detector did not declare 'activations'", field="needs")
        return self._base_loader()
