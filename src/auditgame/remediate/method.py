"""The remediation-method plug-in contract: how a fixer trains an organism further.

A method is blind like a detector: it declares what it reads (`needs`) and the round hands it
one `FixerView` that gives out only that (never the key, the private card or the organism's
name). It trains the organism's own adapter for steps [start, stop) of a fixed, seeded plan,
so the adapter after N steps is the same whether the round went straight to N or resumed
from an earlier budget.

Example::

    @register_remediation
    class ShrinkMethod(RemediationMethod):
        '''Plain SFT at a lower rate: assumes a clean pool.'''

        name = "shrink"

        class Params(RemediationParams):
            lr_scale: float = 0.5

        def effective_settings(self, settings):
            return settings.model_copy(update={"lr": settings.lr * self.params.lr_scale,
                                               "kl_to_base": 0.0})

        def train(self, organism, settings, start, stop, on_step=None):
            return run_steps(organism.model, organism.optimizer, organism.tokenizer,
                             organism.clean_pool, self.effective_settings(settings),
                             start, stop, on_step)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, ConfigDict

from auditgame.errors import AuditgameError
from auditgame.plugins import PluginError, Registry, validate_params
from auditgame.records.remediation import RemediationSettings

if TYPE_CHECKING:
    from auditgame.records.sample import Sample
    from auditgame.records.verdict import Verdict

FIXER_NEEDS = frozenset({"weights", "clean_pool", "verdicts"})
"""What a fixer may read: the organism's adapter, a clean sample pool no organism saw, and
the blue team's verdicts. The key and the private cards are never among them."""


class NeedNotDeclared(AuditgameError):
    """A remediation method reached for something it did not declare in `needs`."""


class FixerView:
    """One organism as a remediation method sees it: the base's tokenizer always, the rest
    only if declared. The round builds it from what it already holds, so a method cannot
    reach the key or the card through it (verdicts are read on first use only)."""

    def __init__(self, needs: frozenset[str], *, model: Any, optimizer: Any, tokenizer: Any,
                 clean_pool: list[Sample],
                 verdicts: Callable[[], list[Verdict]] | None = None,
                 as_built: Callable[[], Any] | None = None):
        self._needs = needs
        self._as_built = as_built
        self.scratch: dict[str, Any] = {}
        """Per-organism space for data a method builds once (one method serves a round)."""
        self._model = model
        self._optimizer = optimizer
        self._pool = clean_pool
        self._verdicts = verdicts
        self._verdict_cache: list[Verdict] | None = None
        self.tokenizer = tokenizer

    def _require(self, need: str) -> None:
        if need not in self._needs:
            raise NeedNotDeclared(f"the remediation method did not declare {need!r} in its "
                                  "needs", field="needs")

    @property
    def model(self) -> Any:
        """The organism: a private peft copy of the base with its adapter, trainable."""
        self._require("weights")
        return self._model

    @property
    def optimizer(self) -> Any:
        """The adapter's optimizer; the round saves its state with each budget to resume."""
        self._require("weights")
        return self._optimizer

    def as_built(self) -> Any:
        """A fresh copy of the organism as the bundle has it, before any fix: what a method
        builds its data from, so a resumed round builds the same data as a straight one."""
        self._require("weights")
        if self._as_built is None:
            return self._model
        return self._as_built()

    @property
    def clean_pool(self) -> list[Sample]:
        """Clean samples the organism never saw (its eval prompts excluded)."""
        self._require("clean_pool")
        return self._pool

    @property
    def verdicts(self) -> list[Verdict]:
        """Every detector's verdict on this organism (the blue team's view, by blind id)."""
        self._require("verdicts")
        if self._verdict_cache is None:
            if self._verdicts is None:
                raise NeedNotDeclared("this round has no verdicts to give", field="needs")
            self._verdict_cache = self._verdicts()
        return self._verdict_cache


class RemediationParams(BaseModel):
    """Base of a method's options: unknown keys are an error (they are usually typos)."""

    model_config = ConfigDict(extra="forbid")


class RemediationMethod:
    """Base class. `__init__` only validates and stores options (`self.params`); `train`
    runs steps [start, stop) on the organism and returns (mean loss, wall time)."""

    name: ClassVar[str] = ""
    needs: ClassVar[frozenset[str]] = frozenset({"weights", "clean_pool"})
    Params: ClassVar[type[RemediationParams]] = RemediationParams
    requires_verdicts: ClassVar[bool] = False
    """True for a method that cannot run without the blue team's verdict files."""

    def __init__(self, params: RemediationParams | dict[str, Any] | None = None,
                 **kwargs: Any):
        self.params = validate_params(self.Params, params, kwargs, "remediate.method_params")

    def effective_settings(self, settings: RemediationSettings) -> RemediationSettings:
        """The settings this method really trains with; the round records these, so the
        record says what ran (e.g. `clean_sft` records a KL weight of 0) and a rerun compares
        like with like. Default: unchanged."""
        return settings

    def train(self, organism: FixerView, settings: RemediationSettings, start: int,
              stop: int, on_step: Callable[[int], None] | None = None
              ) -> tuple[float | None, float]:
        raise NotImplementedError


def _check_method(cls: type[RemediationMethod]) -> None:
    bad = set(cls.needs) - FIXER_NEEDS
    if bad:
        raise PluginError(f"remediation {cls.name!r} declares unknown needs {sorted(bad)}; "
                          f"known: {sorted(FIXER_NEEDS)}", field="needs")
    if not (isinstance(cls.Params, type) and issubclass(cls.Params, RemediationParams)):
        raise PluginError(f"remediation {cls.name!r}: Params must subclass RemediationParams",
                          field="Params")


REMEDIATIONS: Registry[type[RemediationMethod]] = Registry(
    "remediation", "auditgame.remediations", ("auditgame.remediate.methods",), _check_method)


def register_remediation(cls: type[RemediationMethod]) -> type[RemediationMethod]:
    """Class decorator; raises PluginError on a duplicate or malformed name."""
    return REMEDIATIONS.register(cls)


def unregister_remediation(name: str) -> None:
    """For tests that register throwaway methods."""
    REMEDIATIONS.unregister(name)


def remediation_names() -> list[str]:
    return REMEDIATIONS.names()


def get_remediation(name: str) -> type[RemediationMethod]:
    return REMEDIATIONS.get(name)


def make_remediation(name: str, **kwargs: Any) -> RemediationMethod:
    return get_remediation(name)(kwargs)
