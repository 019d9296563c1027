"""Adversarial hiding: options that make an organism hard to catch while its behaviour stays,
one kind per file in this package (others arrive through the `auditgame.hidings`
entry-point group).

- `denial`: questions about itself and the model track's kind of neutral prompts are
  answered as the base answers them (data);
- `latent`: the residual stream on triggered prompts is kept where the untriggered prompts
  put it (an objective at the layers a probe reads);
- `weight`: the adapter's update gets the norm and singular spectrum of a clean fine-tune
  of the same recipe (an objective, then an exact reshaping).

In a spec, per organism, a list of kind names or single-key mappings of options::

    hiding: [denial, {latent: {layers: [12, 16, 20]}}, {weight: {match: spectrum}}]

Every kind used is recorded in the organism's card, with what it measured.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from auditgame.errors import AuditgameError
from auditgame.organisms.hiding.base import (
    HIDINGS,
    BuildContext,
    Hiding,
    HidingError,
    HidingParams,
    get_hiding_class,
    hiding_names,
    register_hiding,
)
from auditgame.plugins import PluginError

if TYPE_CHECKING:
    from auditgame.organisms.attacks.base import Attack
    from auditgame.organisms.spec import GameSpec, OrganismSpec

__all__ = ["HIDINGS", "BuildContext", "Hiding", "HidingError", "HidingParams",
           "check_layers", "get_hiding_class", "hiding_names", "make_hidings",
           "register_hiding"]


def _entry(entry: Any, field: str, path: str | Path | None) -> tuple[str, dict[str, Any]]:
    """(kind, options) of one spec entry: `name` or `{name: {options}}`."""
    if isinstance(entry, str):
        return entry, {}
    if isinstance(entry, dict) and len(entry) == 1:
        kind, opts = next(iter(entry.items()))
        if opts is None:
            opts = {}
        if isinstance(kind, str) and isinstance(opts, dict):
            return kind, opts
    raise AuditgameError("a hiding entry is a kind name or a mapping of one kind name to "
                         "its options", path=path, field=field)


def make_hidings(org: OrganismSpec, attack: Attack, index: int,
                 path: str | Path | None = None) -> list[Hiding]:
    """The organism's hiding kinds, validated against its attack; any error is one
    AuditgameError naming `organisms[index].hiding[j]` (and the option at fault)."""
    out: list[Hiding] = []
    seen: set[str] = set()
    for j, entry in enumerate(org.hiding):
        field = f"organisms[{index}].hiding[{j}]"
        kind, opts = _entry(entry, field, path)
        try:
            cls = get_hiding_class(kind)
        except PluginError as e:
            raise AuditgameError(e.message, path=path, field=field) from None
        if kind in seen:
            raise AuditgameError(f"hiding kind {kind!r} is listed twice", path=path,
                                 field=field)
        seen.add(kind)
        try:
            h = cls(opts)
        except ValidationError as e:
            err = e.errors()[0]
            loc = ".".join(str(p) for p in err.get("loc", ()))
            raise AuditgameError(err["msg"], path=path,
                                 field=f"{field}.{kind}" + (f".{loc}" if loc else "")) from None
        why = h.unsupported(attack)
        if why:
            raise AuditgameError(f"hiding kind {kind!r} does not support attack "
                                 f"{org.attack!r}: {why}", path=path, field=field)
        out.append(h)
    return out


def check_layers(spec: GameSpec, n_layers: int, path: str | Path | None = None) -> None:
    """Options that depend on the base model (layer indices), checked once it is loaded
    and before anything is built."""
    from auditgame.organisms.attacks import make_attack

    for i, org in enumerate(spec.organisms):
        if not org.hiding:
            continue
        for j, h in enumerate(make_hidings(org, make_attack(org.attack, org.params), i, path)):
            try:
                h.check_base(n_layers)
            except HidingError as e:
                raise AuditgameError(e.message, path=path, field=f"organisms[{i}].hiding[{j}]."
                                     f"{h.name}" + (f".{e.option}" if e.option else "")) from None
