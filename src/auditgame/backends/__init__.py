"""Execution backends: where organism builds and (detector, organism) audits run.

`local` runs everything in this process (the default; it needs no Ray). `ray` fans jobs out
over a Ray cluster and gives the same results, because every job is seeded and deterministic
on CPU and writes through the same atomic paths.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Protocol

from auditgame.backends.local import LocalBackend
from auditgame.errors import AuditgameError

BACKENDS = ("local", "ray")


class Backend(Protocol):
    """What the factory and the audit runner need from a backend."""

    name: str
    in_process: bool

    def map(self, fn: Callable[[Any], Any], items: Iterable[Any],
            on_result: Callable[[int, Any], None] | None = None) -> list[Any]:
        """`[fn(x) for x in items]`, maybe in parallel; results in item order."""
        ...


def get_backend(name: str = "local", address: str | None = None) -> Backend:
    """The backend called `name` ('local' or 'ray'); `address` is the Ray cluster's."""
    if name == "local":
        if address is not None:
            raise AuditgameError("--address is only for the ray backend", field="--address")
        return LocalBackend()
    if name == "ray":
        from auditgame.backends.ray import RayBackend

        return RayBackend(address)
    raise AuditgameError(f"unknown backend {name!r}; known: {', '.join(BACKENDS)}",
                         field="--backend")


__all__ = ["BACKENDS", "Backend", "LocalBackend", "get_backend"]
