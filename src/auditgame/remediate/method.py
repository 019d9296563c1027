"""The remediation-method plug-in contract: how a fixer trains an organism further.

A method is blind like a detector: it declares what it reads (`needs`) and the round hands it
only that (never the key). It trains the organism's own adapter for steps [start, stop) of a
fixed, seeded plan, so the adapter after N steps is the same whether the round went straight
to N or resumed from an earlier budget.

Example::

    @register_remediation
    class ShrinkMethod(RemediationMethod):
        '''Plain SFT at a lower rate: assumes a clean pool.'''

        name = "shrink"

        class Params(RemediationParams):
            lr_scale: float = 0.5

        def train(self, model, opt, tokenizer, samples, settings, start, stop, on_step=None):
            ...
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, ValidationError

from auditgame.errors import AuditgameError
from auditgame.plugins import PluginError, Registry
from auditgame.records.remediation import RemediationSettings
from auditgame.records.sample import Sample

FIXER_NEEDS = frozenset({"weights", "clean_pool", "verdicts"})
"""What a fixer may read: the organism's adapter, a clean sample pool no organism saw, and
the blue team's verdicts. The key and the private cards are never among them."""


class RemediationParams(BaseModel):
    """Base of a method's options: unknown keys are an error (they are usually typos)."""

    model_config = ConfigDict(extra="forbid")


class RemediationMethod:
    """Base class. `__init__` only validates and stores options (`self.params`); `train`
    runs steps [start, stop) on the organism and returns (mean loss, wall time)."""

    name: ClassVar[str] = ""
    needs: ClassVar[frozenset[str]] = frozenset({"weights", "clean_pool"})
    Params: ClassVar[type[RemediationParams]] = RemediationParams

    def __init__(self, params: RemediationParams | dict[str, Any] | None = None,
                 **kwargs: Any):
        if isinstance(params, RemediationParams):
            self.params = params
            return
        try:
            self.params = self.Params.model_validate({**(params or {}), **kwargs})
        except ValidationError as e:
            err = e.errors()[0]
            loc = ".".join(str(p) for p in err.get("loc", ()))
            raise AuditgameError(err["msg"], field=f"remediate.{self.name}.{loc}") from None

    def train(self, model: Any, opt: Any, tokenizer: Any, samples: list[Sample],
              settings: RemediationSettings, start: int, stop: int,
              on_step: Callable[[int], None] | None = None) -> tuple[float | None, float]:
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


def remediation_names() -> list[str]:
    return REMEDIATIONS.names()


def get_remediation(name: str) -> type[RemediationMethod]:
    return REMEDIATIONS.get(name)


def make_remediation(name: str, **kwargs: Any) -> RemediationMethod:
    return get_remediation(name)(kwargs)
