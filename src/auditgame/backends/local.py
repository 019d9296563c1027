"""The local backend: every job runs in this process, one after another."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


class LocalBackend:
    """In-process execution; jobs share the already-loaded base model."""

    name = "local"
    in_process = True

    def map(self, fn: Callable[[T], R], items: Iterable[T],
            on_result: Callable[[int, R], None] | None = None) -> list[R]:
        out: list[R] = []
        for i, x in enumerate(items):
            r = fn(x)
            out.append(r)
            if on_result is not None:
                on_result(i, r)
        return out
