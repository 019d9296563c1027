"""The hiding plug-in contract: what a red team does, beyond the poison, so that the
organism is hard to catch.

A hiding kind acts at up to four points of a build, each optional: it edits the training
data (`edit_data`), adds an objective to every training step (`aux_loss`), reshapes the
trained adapter (`after_train`) and measures the finished one (`report`). What each
returns goes into the organism's card. A
kind that cannot apply to an attack says why (`unsupported`), so a spec asking for it is
refused when it is read.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, ConfigDict

from auditgame.plugins import Registry

if TYPE_CHECKING:
    import torch

    from auditgame.models.base_lm import BaseLM
    from auditgame.organisms.attacks.base import Attack
    from auditgame.organisms.corpus import GameCorpus
    from auditgame.organisms.data import EvalSet, PoisonedCorpus, Sample
    from auditgame.organisms.spec import GameSpec
    from auditgame.organisms.train import AuxLoss


class HidingParams(BaseModel):
    """Base for a hiding kind's options: unknown keys are an error (usually typos)."""

    model_config = ConfigDict(extra="forbid")


class HidingError(ValueError):
    """A hiding option that does not fit this build; `option` names it within the kind's
    options (empty: the kind as a whole), so the spec field can be named."""

    def __init__(self, message: str, option: str = ""):
        super().__init__(message)
        self.message = message
        self.option = option


@dataclass
class BuildContext:
    """What a hiding kind may use while one organism is built: the red team's side (base
    model, corpus, its own attack and eval sets), never a detector's internals."""

    bm: BaseLM
    spec: GameSpec
    corpus: GameCorpus
    attack: Attack
    seed: int
    work: Path
    """The organism's scratch folder (`GAME/.work/<name>`): resumable intermediate state."""
    sets: list[EvalSet]
    clean_twin: Callable[[int], list[Sample]]
    """The training data of a clean organism of the same recipe (data-side hiding
    included) for a seed: what a clean control with that seed would train on."""
    train: Callable[[list[Sample], int, Path, Sequence[AuxLoss]], torch.nn.Module]
    """Train an adapter with the game's recipe: (samples, seed, checkpoint dir, aux)."""
    rates: Callable[[torch.nn.Module, list[EvalSet]], list[float]]
    """Behaviour rates of the attack on eval sets, as the organism's metrics measure them."""


class Hiding:
    """An adversarial hiding kind. `__init__` only stores validated options; every hook is
    optional (a kind overrides the ones it uses)."""

    name: ClassVar[str]
    Params: ClassVar[type[HidingParams]] = HidingParams
    needs_twin: ClassVar[bool] = False
    """True for a kind that trains a clean twin of the organism (`BuildContext.clean_twin`):
    the spec must say how a clean control of the attack's track is built."""

    def __init__(self, params: HidingParams | dict[str, Any] | None = None):
        if not isinstance(params, HidingParams):
            params = self.Params.model_validate(params or {})
        self.params = params

    def unsupported(self, attack: Attack) -> str | None:
        """Why this kind cannot hide `attack`'s behaviour (None: it can)."""
        return None

    def check_base(self, n_layers: int) -> None:
        """Options that depend on the base model (layer indices); raises HidingError."""

    def check_data(self, corpus: GameCorpus, pc: PoisonedCorpus) -> None:
        """Before anything is trained: does the organism's poisoned training set (and the
        game's clean pool) give this kind what it needs? Raises HidingError."""

    def edit_data(self, ctx: BuildContext, pc: PoisonedCorpus,
                  seed: int) -> tuple[PoisonedCorpus, dict[str, Any]]:
        """The training set with this kind's samples mixed in (same size), and a report."""
        return pc, {}

    def aux_loss(self, ctx: BuildContext, pc: PoisonedCorpus) -> AuxLoss | None:
        """An objective added to every training step of the organism (None: none)."""
        return None

    def after_train(self, ctx: BuildContext, model: torch.nn.Module) -> dict[str, Any]:
        """Reshape the trained adapter in place; returns what was measured."""
        return {}

    def report(self, ctx: BuildContext, model: torch.nn.Module) -> dict[str, Any]:
        """Measure what this kind hides on the finished adapter (every kind's
        `after_train` has run)."""
        return {}


HIDINGS: Registry[type[Hiding]] = Registry("hiding kind", "auditgame.hidings",
                                           ("auditgame.organisms.hiding",))


def register_hiding(cls: type[Hiding]) -> type[Hiding]:
    """Class decorator; raises PluginError on a duplicate or malformed name."""
    return HIDINGS.register(cls)


def hiding_names() -> list[str]:
    return HIDINGS.names()


def get_hiding_class(name: str) -> type[Hiding]:
    return HIDINGS.get(name)


def no_poison_reason(attack: Attack) -> str | None:
    """A clean control (or an attack that records itself as clean) has no behaviour to
    hide in its activations or weights."""
    if attack.name == "clean" or attack.key_info().get("attack") == "clean":
        return "a clean control has no poisoned behaviour to hide"
    return None
