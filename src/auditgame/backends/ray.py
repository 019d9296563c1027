"""The Ray backend: fans jobs out over a Ray cluster (or a local Ray instance).

Every task sets its own torch thread count (the driver's, so float results match the local
backend bit for bit) and seeds; tasks write only through the same atomic paths as the local
backend, so a crashed or repeated task never leaves a half-written artifact.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from auditgame.errors import AuditgameError

T = TypeVar("T")
R = TypeVar("R")


def _call(fn: Callable[[Any], Any], item: Any, threads: int, env: dict[str, str]) -> Any:
    """Runs inside a Ray worker: same threads and environment as the driver, then the job."""
    import os

    import torch

    os.environ.update(env)
    torch.set_num_threads(threads)
    return fn(item)


class RayBackend:
    """`map` submits one Ray task per item and returns results in item order."""

    name = "ray"
    in_process = False

    def __init__(self, address: str | None = None, num_cpus_per_task: float = 1.0,
                 threads: int | None = None):
        try:
            import ray
        except ImportError:
            raise AuditgameError("the Ray backend needs ray: pip install 'auditgame[ray]'",
                                 field="--backend") from None
        self.address = address
        self.num_cpus_per_task = num_cpus_per_task
        self.threads = threads
        self._ray = ray

    def _ensure(self) -> None:
        ray = self._ray
        if not ray.is_initialized():
            try:
                ray.init(address=self.address, include_dashboard=False, log_to_driver=False)
            except (ConnectionError, ValueError, RuntimeError) as e:
                raise AuditgameError(f"cannot reach the Ray cluster at {self.address!r}: {e}",
                                     field="--address") from None

    def map(self, fn: Callable[[T], R], items: Iterable[T],
            on_result: Callable[[int, R], None] | None = None) -> list[R]:
        import os

        import torch

        self._ensure()
        ray = self._ray
        threads = self.threads or torch.get_num_threads()
        env = {k: v for k, v in os.environ.items()
               if k.startswith("AUDITGAME_") or k.startswith("HF_")}
        task = ray.remote(num_cpus=self.num_cpus_per_task, max_retries=1)(_call)
        refs = [task.remote(fn, x, threads, env) for x in items]
        index = {r: i for i, r in enumerate(refs)}
        out: list[Any] = [None] * len(refs)
        pending = list(refs)
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            for r in done:
                i = index[r]
                out[i] = ray.get(r)
                if on_result is not None:
                    on_result(i, out[i])
        return out
