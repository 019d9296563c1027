"""Re-audit fixed organisms: does a detector still flag an organism after remediation?

Runs on the referee side (it reads `GAME/organisms/` and the remediated adapters). Each
step budget is audited as one pool of organisms under neutral ids, in the same way the
runner audits a bundle: `prepare` once with the pool's public facts, then `audit` each.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

from auditgame.detectors.base import detector_names, get_detector, make_detector
from auditgame.detectors.engine import ModelHolder, audit_one, bundle_info, view_of
from auditgame.errors import AuditgameError
from auditgame.layout import (
    ADAPTER_CONFIG,
    ADAPTER_DIR,
    ADAPTER_WEIGHTS,
    PUBLIC,
    TRAIN_DATA,
    GameFolder,
)
from auditgame.records.organism import PublicMeta
from auditgame.records.remediation import Remediation
from auditgame.records.sample import Sample

REAUDIT_NEEDS = frozenset({"weights", "activations"})


def cheap_detectors() -> list[str]:
    """Registered detectors that read only the weights and activations on their own prompts
    (no dataset, no open-ended queries): re-auditing every budget costs seconds each."""
    needs = {n: get_detector(n).needs for n in detector_names()}
    return [n for n, nd in needs.items() if "weights" in nd and nd <= REAUDIT_NEEDS]


class AdapterPool:
    """A `Source` (see `detectors.view`) over (adapter dir, train data) pairs under neutral
    ids: the remediated adapters, audited exactly as a bundle is."""

    def __init__(self, items: dict[str, tuple[Path, Path]], public: PublicMeta, seed: int):
        self.items = items
        self.public = public
        self.seed = seed

    @property
    def ids(self) -> list[str]:
        return sorted(self.items)

    def public_info(self) -> dict[str, Any]:
        return self.public.model_dump(mode="json")

    def n_samples(self) -> int | None:
        return self.public.n_train

    def check_id(self, blind_id: str) -> None:
        if blind_id not in self.items:
            raise AuditgameError(f"unknown organism id {blind_id!r}", field="blind_id")

    def adapter_dir(self, blind_id: str) -> Path:
        self.check_id(blind_id)
        return self.items[blind_id][0]

    def dataset(self, blind_id: str) -> list[Sample]:
        """Shuffled like a sealed bundle, so the training order is no tell."""
        self.check_id(blind_id)
        rows = self.items[blind_id][1].read_text(encoding="utf-8").splitlines()
        samples = [Sample.from_json(json.loads(r)) for r in rows if r.strip()]
        random.Random(f"{self.seed}:{blind_id}").shuffle(samples)
        return samples

    def adapter_config(self, blind_id: str) -> dict[str, Any]:
        return json.loads((self.adapter_dir(blind_id) / ADAPTER_CONFIG).read_text())

    def adapter_tensors(self, blind_id: str) -> dict[str, Any]:
        from safetensors.torch import load_file

        return load_file(str(self.adapter_dir(blind_id) / ADAPTER_WEIGHTS))

    def file_stats(self, blind_id: str) -> dict[str, dict[str, float]]:
        st = (self.adapter_dir(blind_id) / ADAPTER_WEIGHTS).stat()
        return {f"{ADAPTER_DIR}/{ADAPTER_WEIGHTS}": {"size": float(st.st_size), "mtime": 0.0}}


def neutral_id(name: str, budget: int, seed: int) -> str:
    """An id that says nothing about the organism (like a blind id)."""
    return "org-" + hashlib.sha256(f"{seed}:{name}:{budget}".encode()).hexdigest()[:6]


def audit_pool(detector: str, pool: AdapterPool, base: Any | None) -> dict[str, float | None]:
    """Scores of one detector on every organism of the pool (None where it failed); a
    failure of `prepare` is raised, so the round records it as the detector's error."""
    det = make_detector(detector)
    det.prepare(bundle_info(pool))
    holder = ModelHolder(pool, base)
    out: dict[str, float | None] = {}
    for bid in pool.ids:
        v = audit_one(det, view_of(det, pool, bid, holder), pool.n_samples())
        out[bid] = None if v.error is not None else float(v.score)
    return out


def reaudit_round(game: Path, det: str, names: list[str], rec: Remediation, bm: Any,
                  seed: int, prog: Any, adapter_dir: Callable[[Path, str, int], Path],
                  save: Callable[[Path, Remediation], None]) -> None:
    """Score every organism at every budget with `det`; one pool per budget, resumable."""
    if det not in rec.detectors:
        rec.detectors.append(det)
    public = PublicMeta.model_validate_json(
        (GameFolder(game).organism(names[0]) / PUBLIC).read_text())
    for b in rec.budgets:
        key = str(b)
        if all(key in rec.organisms[n].detector_scores.get(det, {}) for n in names):
            continue
        if not all(key in rec.organisms[n].results for n in names):
            continue
        task = prog.add_task(f"re-audit {det} @ {b}", total=None, info="")
        ids = {neutral_id(n, b, seed): n for n in names}
        pool = AdapterPool({i: (adapter_dir(game, n, b), GameFolder(game).organism(n) / TRAIN_DATA)
                            for i, n in ids.items()}, public, seed)
        try:
            scores = audit_pool(det, pool, bm)
        except Exception as e:  # noqa: BLE001 - a detector's failure is a result
            rec.detector_errors[det] = f"{e.__class__.__name__}: {e}"[:500]
            scores = {i: None for i in ids}
        for i, n in ids.items():
            rec.organisms[n].detector_scores.setdefault(det, {})[key] = scores[i]
        save(game, rec)
        prog.update(task, completed=1, total=1)
