"""Re-audit fixed organisms: does a detector still flag an organism after remediation?

Runs on the referee side (it reads `GAME/organisms/` and the remediated adapters). Each
step budget is audited as one pool of organisms under neutral ids, in the same way the
runner audits a bundle: `prepare` once with the pool's public facts, then `audit` each.
"""

from __future__ import annotations

import copy
import hashlib
import json
import random
from pathlib import Path
from typing import Any

from auditgame.detectors.base import (
    MODEL_NEEDS,
    BundleInfo,
    OrganismView,
    detector_names,
    get_detector,
    make_detector,
)
from auditgame.organisms import records as R
from auditgame.organisms.data import Sample

REAUDIT_NEEDS = frozenset({"weights", "activations"})


def cheap_detectors() -> list[str]:
    """Registered detectors that read only the weights and activations on their own prompts
    (no dataset, no open-ended queries): re-auditing every budget costs seconds each."""
    needs = {n: get_detector(n).needs for n in detector_names()}
    return [n for n, nd in needs.items() if "weights" in nd and nd <= REAUDIT_NEEDS]


class AdapterPool:
    """Duck-typed stand-in for `game.bundle.Bundle` over (adapter dir, train data) pairs."""

    def __init__(self, items: dict[str, tuple[Path, Path]], public: R.PublicMeta, seed: int):
        self.items = items
        self.public = public
        self.seed = seed

    @property
    def ids(self) -> list[str]:
        return sorted(self.items)

    def folder(self, blind_id: str) -> Path:
        if blind_id not in self.items:
            raise KeyError(f"unknown organism id {blind_id!r}")
        return self.items[blind_id][0].parent

    def adapter_dir(self, blind_id: str) -> Path:
        self.folder(blind_id)
        return self.items[blind_id][0]

    def dataset(self, blind_id: str) -> list[Sample]:
        """Shuffled like a sealed bundle, so the training order is no tell."""
        rows = self.items[blind_id][1].read_text(encoding="utf-8").splitlines()
        samples = [Sample.from_json(json.loads(r)) for r in rows if r.strip()]
        random.Random(f"{self.seed}:{blind_id}").shuffle(samples)
        return samples

    def adapter_config(self, blind_id: str) -> dict[str, Any]:
        return json.loads((self.adapter_dir(blind_id) / R.ADAPTER_CONFIG).read_text())

    def adapter_tensors(self, blind_id: str) -> dict[str, Any]:
        from safetensors.torch import load_file

        return load_file(str(self.adapter_dir(blind_id) / R.ADAPTER_WEIGHTS))

    def file_stats(self, blind_id: str) -> dict[str, dict[str, float]]:
        st = (self.adapter_dir(blind_id) / R.ADAPTER_WEIGHTS).stat()
        return {f"{R.ADAPTER_DIR}/{R.ADAPTER_WEIGHTS}": {"size": float(st.st_size),
                                                         "mtime": 0.0}}


def neutral_id(name: str, budget: int, seed: int) -> str:
    """An id that says nothing about the organism (like a blind id)."""
    return "org-" + hashlib.sha256(f"{seed}:{name}:{budget}".encode()).hexdigest()[:6]


def audit_pool(detector: str, pool: AdapterPool, base: Any | None) -> dict[str, float | None]:
    """Scores of one detector on every organism of the pool (None where it failed)."""
    det = make_detector(detector)
    det.prepare(BundleInfo(ids=pool.ids, public=pool.public.model_dump(mode="json"),
                           file_stats={b: pool.file_stats(b) for b in pool.ids}))

    def organism(bid: str) -> tuple[Any, Any]:
        from peft import PeftModel

        m = PeftModel.from_pretrained(copy.deepcopy(base.model), str(pool.adapter_dir(bid)))
        return m.eval(), base

    model_loader = organism if det.needs & MODEL_NEEDS else None
    base_loader = (lambda: base) if det.needs & MODEL_NEEDS else None
    out: dict[str, float | None] = {}
    for bid in pool.ids:
        view = OrganismView(pool, bid, frozenset(det.needs), model_loader,  # type: ignore[arg-type]
                            base_loader)
        try:
            out[bid] = float(det.audit(view).score)
        except Exception:  # noqa: BLE001 - a failed audit is recorded as missing
            out[bid] = None
    return out
