"""What a detector sees: one organism of a source, through a view that hands out only what
the detector declared (`needs`), so blindness is structural.

A source is anything with blind ids and their files: the sealed bundle, the remediation pool
of fixed adapters, or a standalone dataset for `scan`. They all satisfy `Source`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from auditgame.errors import AuditgameError

if TYPE_CHECKING:
    from auditgame.records.sample import Sample

NEEDS = frozenset({"dataset", "weights", "activations", "queries"})
MODEL_NEEDS = frozenset({"activations", "queries"})


class Source(Protocol):
    """Organisms under ids, as the audit engine reads them (never the key)."""

    @property
    def ids(self) -> list[str]: ...

    def public_info(self) -> dict[str, Any]:
        """Public metadata every organism shares (base model, training recipe, n_train)."""
        ...

    def n_samples(self) -> int | None:
        """Training samples per organism (a verdict's sample scores must match), if fixed."""
        ...

    def check_id(self, blind_id: str) -> None:
        """Raise for an id the source does not hold."""
        ...

    def dataset(self, blind_id: str) -> list[Sample]: ...

    def adapter_dir(self, blind_id: str) -> Path: ...

    def adapter_config(self, blind_id: str) -> dict[str, Any]: ...

    def adapter_tensors(self, blind_id: str) -> dict[str, Any]: ...

    def file_stats(self, blind_id: str) -> dict[str, dict[str, float]]: ...


class NeedNotDeclared(AuditgameError):
    """A detector reached for something it did not declare in `needs`."""


@dataclass
class Weights:
    """The adapter: LoRA tensors by name and its peft config."""

    tensors: dict[str, Any]
    config: dict[str, Any]


@dataclass
class BundleInfo:
    """What every detector may know about the whole bundle: ids and public metadata."""

    ids: list[str]
    public: dict[str, Any]
    file_stats: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)



class OrganismView:
    """One organism as a detector sees it: always its id, public metadata and file stats
    (the metadata any auditor sees by listing the folder); the rest only if declared."""

    def __init__(self, bundle: Source, blind_id: str, needs: frozenset[str],
                 model_loader: Callable[[str], tuple[Any, Any]] | None = None,
                 base_loader: Callable[[], Any] | None = None):
        self._bundle = bundle
        self._needs = needs
        self._loader = model_loader
        self._base_loader = base_loader
        self._cache: dict[str, Any] = {}
        self.blind_id = blind_id
        self.public: dict[str, Any] = bundle.public_info()

    def _require(self, need: str) -> None:
        if need not in self._needs:
            raise NeedNotDeclared(f"the detector did not declare {need!r} in its needs",
                                  field="needs")

    def _require_model(self) -> None:
        if not self._needs & MODEL_NEEDS:
            raise NeedNotDeclared("the detector declared neither 'queries' nor 'activations'",
                                  field="needs")

    @property
    def file_stats(self) -> dict[str, dict[str, float]]:
        return self._bundle.file_stats(self.blind_id)

    @property
    def dataset(self) -> list[Sample]:
        """Training samples in bundle order (return sample scores in this order)."""
        self._require("dataset")
        if "dataset" not in self._cache:
            self._cache["dataset"] = self._bundle.dataset(self.blind_id)
        return self._cache["dataset"]

    @property
    def weights(self) -> Weights:
        self._require("weights")
        if "weights" not in self._cache:
            self._cache["weights"] = Weights(self._bundle.adapter_tensors(self.blind_id),
                                             self._bundle.adapter_config(self.blind_id))
        return self._cache["weights"]

    @property
    def model(self) -> Any:
        """The organism: a peft model (base + this adapter), in eval mode; a private copy.
        Loaded on first use only, so a detector that needs just the base pays nothing."""
        self._require_model()
        if "model" not in self._cache:
            assert self._loader is not None, "the runner gives a loader to model detectors"
            self._cache["model"] = self._loader(self.blind_id)[0]
        return self._cache["model"]

    def peer(self, blind_id: str) -> OrganismView:
        """Another organism of the same bundle, with the same needs: a detector may calibrate
        one organism against the whole bundle (every auditor sees all of it, never the key)."""
        view = OrganismView(self._bundle, blind_id, self._needs, self._loader,
                            self._base_loader)
        self._bundle.check_id(blind_id)  # unknown ids fail here
        return view

    @property
    def base(self) -> Any:
        """The shared base model (`auditgame.models.base_lm.BaseLM`): compare against it,
        do not modify it. Data detectors declare `activations` to embed samples with it."""
        self._require_model()
        if "base" not in self._cache:
            if self._base_loader is not None:
                self._cache["base"] = self._base_loader()
            else:
                assert self._loader is not None, "the runner gives a loader to model detectors"
                self._cache["base"] = self._loader(self.blind_id)[1]
        return self._cache["base"]
