"""Backends: the local default needs no Ray; Ray gives the same organisms and results."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from auditgame._util.io import hash_tree
from auditgame.backends import get_backend
from auditgame.errors import AuditgameError
from auditgame.layout import ORGANISMS
from auditgame.organisms.factory import make_game
from auditgame.organisms.load import load_spec

TINY_SPEC = Path(__file__).resolve().parent.parent / "src/auditgame/examples/tiny.yaml"
DETECTORS = ["metadata", "phrase_association", "weight_diff"]


def test_local_backend_maps_in_order() -> None:
    b = get_backend("local", None)
    seen: list[int] = []
    assert b.map(lambda x: x * x, [3, 1, 2], lambda i, r: seen.append(i)) == [9, 1, 4]
    assert seen == [0, 1, 2] and b.in_process


def test_bad_backend_names() -> None:
    with pytest.raises(AuditgameError, match="unknown backend"):
        get_backend("spark", None)
    with pytest.raises(AuditgameError, match="address"):
        get_backend("local", "10.0.0.1:6379")


def test_local_needs_no_ray() -> None:
    import subprocess

    code = ("import sys; from auditgame.backends import get_backend; "
            "from auditgame.organisms import factory; from auditgame.detectors import runner; "
            "get_backend('local', None); assert 'ray' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


def _play(game: Path, backend: object) -> dict:
    from auditgame.bundle import seal_game
    from auditgame.detectors import run_audit
    from auditgame.referee import score_game

    make_game(load_spec(TINY_SPEC), game, backend=backend)
    seal_game(game, seed=4)
    run_audit(game / "bundle", DETECTORS, backend=backend)
    res = score_game(game, n_boot=50).model_dump(mode="json")
    res.pop("commitment")  # the key's nonce is fresh at every seal, by design
    return res


def test_ray_matches_local(tmp_path: Path) -> None:
    ray = pytest.importorskip("ray", reason="the Ray backend is optional (extra 'ray')")
    local = _play(tmp_path / "local", get_backend("local", None))
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        remote = _play(tmp_path / "ray", get_backend("ray", None))
    finally:
        ray.shutdown()
    for name in [o.name for o in load_spec(TINY_SPEC).organisms]:
        a = hash_tree(tmp_path / "local" / ORGANISMS / name)
        b = hash_tree(tmp_path / "ray" / ORGANISMS / name)
        for volatile in ("private/metrics.json", "hashes.json"):  # wall times
            a.pop(volatile), b.pop(volatile)
        assert a == b, name
        ma = json.loads((tmp_path / "local" / ORGANISMS / name / "private/metrics.json")
                        .read_text())
        mb = json.loads((tmp_path / "ray" / ORGANISMS / name / "private/metrics.json")
                        .read_text())
        for k in ("rates", "control_rates", "utility", "final_loss", "train_tokens"):
            assert ma[k] == mb[k], (name, k)
    for d in DETECTORS:
        va = [json.loads(x) for x in (tmp_path / "local/verdicts" / f"{d}.jsonl").open()]
        vb = [json.loads(x) for x in (tmp_path / "ray/verdicts" / f"{d}.jsonl").open()]
        for x in va + vb:
            x.pop("runtime_s")
        assert va == vb, d
        assert all(v["error"] is None for v in va), [v["error"] for v in va]
    assert local == remote
