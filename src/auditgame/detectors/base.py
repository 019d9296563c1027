"""The detector plug-in contract: a named class that declares its needs and returns Verdicts.

A detector sees one organism at a time through an `OrganismView` that hands out only what
the detector declared, so blindness is structural: no detector can reach the key, and one
that declared only `dataset` cannot load the weights by accident.

Example::

    @register_detector
    class LongAnswerDetector(Detector):
        name = "long_answer"
        needs = frozenset({"dataset"})

        def audit(self, organism: OrganismView) -> Verdict:
            n = max(len(s.response) for s in organism.dataset)
            return self.verdict(organism, score=min(1.0, n / 1000))
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from auditgame.errors import AuditgameError

if TYPE_CHECKING:
    from auditgame.game.bundle import Bundle
    from auditgame.organisms.data import Sample

VERDICT_VERSION = 1
NEEDS = frozenset({"dataset", "weights", "activations", "queries"})
MODEL_NEEDS = frozenset({"activations", "queries"})


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

    @field_validator("sample_scores")
    @classmethod
    def _unit_interval(cls, v: list[float] | None) -> list[float] | None:
        if v is not None and any(not 0.0 <= x <= 1.0 for x in v):
            raise ValueError("every sample score must lie in [0, 1]")
        return v


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

    def __init__(self, bundle: Bundle, blind_id: str, needs: frozenset[str],
                 model_loader: Callable[[str], tuple[Any, Any]] | None = None,
                 base_loader: Callable[[], Any] | None = None):
        self._bundle = bundle
        self._needs = needs
        self._loader = model_loader
        self._base_loader = base_loader
        self._cache: dict[str, Any] = {}
        self.blind_id = blind_id
        self.public: dict[str, Any] = bundle.public.model_dump(mode="json")

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
        self._bundle.folder(blind_id)  # unknown ids fail here
        return view

    @property
    def base(self) -> Any:
        """The shared base model (`auditgame.models.base.BaseModel`): compare against it,
        do not modify it. Data detectors declare `activations` to embed samples with it."""
        self._require_model()
        if "base" not in self._cache:
            if self._base_loader is not None:
                self._cache["base"] = self._base_loader()
            else:
                assert self._loader is not None, "the runner gives a loader to model detectors"
                self._cache["base"] = self._loader(self.blind_id)[1]
        return self._cache["base"]


class Detector:
    """Base class. `__init__` only stores arguments; `prepare` may look at public bundle
    facts once; `audit` judges one organism. Learned state ends in `_`."""

    name: ClassVar[str] = ""
    needs: ClassVar[frozenset[str]] = frozenset()
    scores_samples: ClassVar[bool] = False

    def __init__(self, **kwargs: Any):
        self.kwargs = dict(kwargs)

    def prepare(self, bundle: BundleInfo) -> None:
        """Called once before any `audit` with bundle-wide public facts (default: nothing)."""

    def audit(self, organism: OrganismView) -> Verdict:
        raise NotImplementedError

    def verdict(self, organism: OrganismView, score: float, **kw: Any) -> Verdict:
        """A Verdict for `organism` from this detector (runtime is filled in by the runner)."""
        return Verdict(blind_id=organism.blind_id, detector=self.name, score=score, **kw)


_REGISTRY: dict[str, type[Detector]] = {}


def register_detector(cls: type[Detector]) -> type[Detector]:
    """Class decorator; raises on a duplicate or malformed name, or an unknown need."""
    name = cls.name
    if not name or not all(c.isalnum() or c == "_" for c in name) or name != name.lower():
        raise ValueError(f"detector name {name!r} must be snake_case")
    if name in _REGISTRY:
        raise ValueError(f"detector {name!r} is already registered")
    bad = set(cls.needs) - NEEDS
    if bad:
        raise ValueError(f"detector {name!r} declares unknown needs {sorted(bad)}; "
                         f"known: {sorted(NEEDS)}")
    _REGISTRY[name] = cls
    return cls


def unregister_detector(name: str) -> None:
    """For tests that register throwaway detectors."""
    _REGISTRY.pop(name, None)


def detector_names() -> list[str]:
    """Registered names, sorted (the CLI's choices come from here)."""
    return sorted(_REGISTRY)


def get_detector(name: str) -> type[Detector]:
    if name not in _REGISTRY:
        raise AuditgameError(f"unknown detector {name!r}; known: {', '.join(detector_names())}",
                             field="detectors")
    return _REGISTRY[name]


def make_detector(name: str, **kwargs: Any) -> Detector:
    return get_detector(name)(**kwargs)
