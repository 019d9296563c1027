"""The detector plug-in contract: a named class that declares its needs, its cost, its typed
options and whether it calibrates against the bundle, and returns Verdicts.

A detector sees one organism at a time through an `OrganismView` (`detectors.engine`) that
hands out only what the detector declared, so blindness is structural: no detector can reach
the key, and one that declared only `dataset` cannot load the weights by accident.

Example::

    @register_detector
    class LongAnswerDetector(Detector):
        name = "long_answer"
        needs = frozenset({"dataset"})

        class Params(DetectorParams):
            scale: int = 1000

        def audit(self, organism: OrganismView) -> Verdict:
            n = max(len(s.response) for s in organism.dataset)
            return self.verdict(organism, score=min(1.0, n / self.params.scale))
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict

from auditgame.detectors.view import BundleInfo, OrganismView
from auditgame.plugins import PluginError, Registry, validate_params
from auditgame.records.verdict import Verdict

if TYPE_CHECKING:
    import numpy as np

    from auditgame.records.sample import Sample

from auditgame.detectors.view import NEEDS

COSTS = ("cheap", "moderate", "expensive")
Cost = Literal["cheap", "moderate", "expensive"]


class DetectorParams(BaseModel):
    """Base of a detector's options: unknown keys are an error (they are usually typos)."""

    model_config = ConfigDict(extra="forbid")


class Detector:
    """Base class. `__init__` only validates and stores options (`self.params`); `prepare`
    looks at public bundle facts once; `audit` judges one organism. Learned state ends in `_`.

    Declared parts of the contract (class attributes):

    - `needs`: what the view may hand out (`dataset`, `weights`, `activations`, `queries`);
    - `cost`: `cheap` | `moderate` | `expensive`, which `auditgame run --budget` selects by;
    - `Params`: a `DetectorParams` model of the options;
    - `scores_samples`: the verdict carries one score per training sample;
    - `calibrates`: the score places each organism against the whole bundle (it reads peers
      through `OrganismView.peer`), so it needs `prepare` to have seen every id;
    - `outlier_scores`: an optional hook, a per-sample outlier score from the dataset and the
      base model, which `ensemble` pools (`has_outlier_scores` says whether it is given).
    """

    name: ClassVar[str] = ""
    needs: ClassVar[frozenset[str]] = frozenset()
    cost: ClassVar[Cost] = "cheap"
    Params: ClassVar[type[DetectorParams]] = DetectorParams
    scores_samples: ClassVar[bool] = False
    calibrates: ClassVar[bool] = False

    def __init__(self, params: DetectorParams | dict[str, Any] | None = None, **kwargs: Any):
        self.params = validate_params(self.Params, params, kwargs, f"detectors.{self.name}")

    def prepare(self, bundle: BundleInfo) -> None:
        """Called once before any `audit` with bundle-wide public facts; keeps the ids."""
        self.ids_ = list(bundle.ids)

    def audit(self, organism: OrganismView) -> Verdict:
        raise NotImplementedError

    def verdict(self, organism: OrganismView, score: float, **kw: Any) -> Verdict:
        """A Verdict for `organism` from this detector (runtime is filled in by the engine)."""
        return Verdict(blind_id=organism.blind_id, detector=self.name, score=score, **kw)

    @classmethod
    def has_outlier_scores(cls) -> bool:
        return cls.outlier_scores is not Detector.outlier_scores

    def outlier_scores(self, samples: list[Sample], base: Any) -> np.ndarray:
        """Per-sample outlier scores (higher = more anomalous); see `has_outlier_scores`."""
        raise NotImplementedError(f"{self.name} gives no outlier scores")


def _check_detector(cls: type[Detector]) -> None:
    bad = set(cls.needs) - NEEDS
    if bad:
        raise PluginError(f"detector {cls.name!r} declares unknown needs {sorted(bad)}; "
                          f"known: {sorted(NEEDS)}", field="needs")
    if cls.cost not in COSTS:
        raise PluginError(f"detector {cls.name!r} declares cost {cls.cost!r}; "
                          f"known: {', '.join(COSTS)}", field="cost")
    if not (isinstance(cls.Params, type) and issubclass(cls.Params, DetectorParams)):
        raise PluginError(f"detector {cls.name!r}: Params must subclass DetectorParams",
                          field="Params")


DETECTORS: Registry[type[Detector]] = Registry(
    "detector", "auditgame.detectors",
    ("auditgame.detectors.data", "auditgame.detectors.model", "auditgame.detectors.meta"),
    _check_detector)


def register_detector(cls: type[Detector]) -> type[Detector]:
    """Class decorator; raises PluginError on a duplicate or malformed name, an unknown need
    or cost, or Params that are not a DetectorParams model."""
    return DETECTORS.register(cls)


def unregister_detector(name: str) -> None:
    """For tests that register throwaway detectors."""
    DETECTORS.unregister(name)


def detector_names() -> list[str]:
    """Registered names, sorted (the CLI's choices come from here)."""
    return DETECTORS.names()


def get_detector(name: str) -> type[Detector]:
    return DETECTORS.get(name)


def make_detector(name: str, **kwargs: Any) -> Detector:
    return get_detector(name)(kwargs)
