"""One registry for the three kinds of plug-in: attacks, detectors and remediation methods.

One discovery rule for all three: every module of the kind's built-in packages whose name
does not start with `_` is imported (each registers its class with the kind's decorator),
then every entry point of the kind's group is loaded, so another package adds a plug-in
without a change here::

    # pyproject.toml of a third-party package
    [project.entry-points."auditgame.detectors"]
    long_answer = "my_package.long_answer:LongAnswerDetector"

An entry point may name the class (registered if it is not already) or a module that
registers on import. One error for an unknown or duplicate name: `PluginError`.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ValidationError

from auditgame.errors import AuditgameError

T = TypeVar("T", bound=type)


class PluginError(AuditgameError, ValueError):
    """An unknown, duplicate or malformed plug-in name (or a plug-in that breaks its kind's
    contract when it registers)."""


def validate_params(cls: type[BaseModel], params: BaseModel | dict[str, Any] | None,
                    kwargs: dict[str, Any], field: str) -> BaseModel:
    """A plug-in's options as its typed Params model; the first validation error becomes one
    AuditgameError whose field is `field` plus the option's location."""
    if isinstance(params, cls):
        return params
    try:
        return cls.model_validate({**(params or {}), **kwargs})  # type: ignore[dict-item]
    except ValidationError as e:
        err = e.errors()[0]
        loc = ".".join(str(p) for p in err.get("loc", ()))
        raise AuditgameError(err["msg"], field=f"{field}.{loc}") from None


def check_name(kind: str, name: str) -> None:
    if not name or not all(c.isalnum() or c == "_" for c in name) or name != name.lower():
        raise PluginError(f"{kind} name {name!r} must be snake_case", field="name")


class Registry(Generic[T]):
    """Named plug-in classes of one kind, discovered once on first use."""

    def __init__(self, kind: str, group: str, packages: tuple[str, ...],
                 check: Callable[[T], None] | None = None):
        self.kind = kind
        self.group = group
        self.packages = packages
        self._check = check
        self._classes: dict[str, T] = {}
        self._discovered = False
        self._discovering = False

    def register(self, cls: T) -> T:
        """Class decorator; raises PluginError on a duplicate or malformed name."""
        name = getattr(cls, "name", "")
        check_name(self.kind, name)
        if name in self._classes:
            raise PluginError(f"{self.kind} {name!r} is already registered", field="name")
        if self._check is not None:
            self._check(cls)
        self._classes[name] = cls
        return cls

    def unregister(self, name: str) -> None:
        """For tests that register throwaway plug-ins."""
        self._classes.pop(name, None)

    def discover(self) -> None:
        """Import the built-in plug-in modules, then load the entry-point group (once)."""
        if self._discovered or self._discovering:
            return
        self._discovering = True
        try:
            for pkg_name in self.packages:
                pkg = importlib.import_module(pkg_name)
                for m in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda m: m.name):
                    if not m.name.startswith("_"):
                        importlib.import_module(f"{pkg_name}.{m.name}")
            for ep in sorted(entry_points(group=self.group), key=lambda e: e.name):
                self._load_entry_point(ep)
            self._discovered = True
        finally:
            self._discovering = False

    def _load_entry_point(self, ep: object) -> None:
        try:
            obj = ep.load()  # type: ignore[attr-defined]
        except Exception as e:  # noqa: BLE001 - a broken third-party package is named
            raise PluginError(f"entry point {ep.name!r} of {self.group!r} does not load "  # type: ignore[attr-defined]
                              f"({e.__class__.__name__}: {e})", field=self.group) from None
        if isinstance(obj, type):
            if getattr(obj, "name", None) != ep.name:  # type: ignore[attr-defined]
                raise PluginError(f"entry point {ep.name!r} names a class called "  # type: ignore[attr-defined]
                                  f"{getattr(obj, 'name', None)!r}", field=self.group)
            if self._classes.get(ep.name) is not obj:  # type: ignore[attr-defined]
                self.register(obj)  # type: ignore[arg-type]

    def names(self) -> list[str]:
        """Registered names, sorted (the CLI's choices come from here)."""
        self.discover()
        return sorted(self._classes)

    def get(self, name: str) -> T:
        self.discover()
        if name not in self._classes:
            raise PluginError(f"unknown {self.kind} {name!r}; known: "
                              f"{', '.join(sorted(self._classes))}", field=f"{self.kind}s")
        return self._classes[name]

    def classes(self) -> list[T]:
        return [self._classes[n] for n in self.names()]
