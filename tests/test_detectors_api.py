"""Detector plug-in contract, runner and verdict-file checks, on a fake sealed game."""

from __future__ import annotations

import json
from pathlib import Path
from typing import ClassVar

import pytest
from _fakegame import make_fake_game
from typer.testing import CliRunner

from auditgame._cli.main import app
from auditgame.bundle import Bundle, seal_game
from auditgame.detectors import (
    NEEDS,
    Detector,
    NeedNotDeclared,
    OrganismView,
    Verdict,
    detector_names,
    get_detector,
    read_verdicts,
    register_detector,
    run_audit,
    unregister_detector,
)
from auditgame.errors import AuditgameError
from auditgame.records import SCHEMAS


@pytest.fixture()
def sealed(tmp_path: Path) -> Path:
    game = make_fake_game(tmp_path / "game", n_backdoor=1, n_loyalty=1, n_clean=2)
    seal_game(game, seed=1)
    return game


@pytest.fixture()
def throwaway():
    """Register detectors for one test and remove them afterwards."""
    names: list[str] = []

    def reg(cls: type[Detector]) -> type[Detector]:
        register_detector(cls)
        names.append(cls.name)
        return cls

    yield reg
    for n in names:
        unregister_detector(n)


def test_registry_contract() -> None:
    assert "metadata" in detector_names()
    with pytest.raises(ValueError, match="already registered"):
        register_detector(get_detector("metadata"))

    class Bad(Detector):
        name = "bad_needs"
        needs = frozenset({"the_key"})

    with pytest.raises(ValueError, match="unknown needs"):
        register_detector(Bad)
    with pytest.raises(AuditgameError, match="unknown detector"):
        get_detector("nope")


@pytest.mark.parametrize("name", detector_names())
def test_every_registered_detector_keeps_the_contract(name: str, sealed: Path) -> None:
    """One contract test over the registry: declared needs are known, verdicts valid."""
    cls = get_detector(name)
    assert cls.needs <= NEEDS and cls.name == name
    if cls.needs & {"queries", "activations"}:
        pytest.skip("model detectors are exercised in the tiny-game integration test")
    run_audit(sealed / "bundle", [name])
    vs = read_verdicts(sealed / "verdicts" / f"{name}.jsonl", Bundle(sealed / "bundle").ids)
    assert len(vs) == 4 and all(v.error is None for v in vs)


def test_undeclared_need_raises_and_failure_becomes_verdict(sealed: Path, throwaway) -> None:
    @throwaway
    class Sneaky(Detector):
        name = "sneaky"
        needs: ClassVar[frozenset[str]] = frozenset({"dataset"})

        def audit(self, organism: OrganismView) -> Verdict:
            organism.weights  # noqa: B018 - not declared
            return self.verdict(organism, 1.0)

    run_audit(sealed / "bundle", ["sneaky"])
    vs = read_verdicts(sealed / "verdicts" / "sneaky.jsonl")
    assert len(vs) == 4
    assert all(v.score == 0.5 and "NeedNotDeclared" in (v.error or "") for v in vs)
    view = OrganismView(Bundle(sealed / "bundle"), vs[0].blind_id, frozenset({"weights"}))
    assert view.weights.tensors and view.weights.config["r"] == 4
    with pytest.raises(NeedNotDeclared):
        view.dataset  # noqa: B018
    with pytest.raises(NeedNotDeclared):
        view.model  # noqa: B018


def test_runner_resumes(sealed: Path, throwaway) -> None:
    calls: list[str] = []

    @throwaway
    class Counting(Detector):
        name = "counting"
        needs: ClassVar[frozenset[str]] = frozenset({"dataset"})

        def audit(self, organism: OrganismView) -> Verdict:
            calls.append(organism.blind_id)
            return self.verdict(organism, 0.3, sample_scores=[0.1] * len(organism.dataset))

    path = run_audit(sealed / "bundle", ["counting"])["counting"]
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[:2]) + "\n")  # as if interrupted after two organisms
    run_audit(sealed / "bundle", ["counting"])
    assert len(calls) == 6 and len(read_verdicts(path)) == 4


def test_verdicts_never_inside_bundle(sealed: Path) -> None:
    with pytest.raises(AuditgameError, match="inside the bundle"):
        run_audit(sealed / "bundle", ["metadata"], out_dir=sealed / "bundle" / "v")


def _good_line(bid: str, **kw: object) -> dict:
    return {"version": 1, "blind_id": bid, "detector": "ext", "score": 0.5, **kw}


@pytest.mark.parametrize("bad,message", [
    ("not json", "unparseable JSON"),
    ("UNKNOWN", "unknown blind id"),
    ("DUP", "duplicate verdict"),
    ("SCORE", "score"),
    ("VERSION", "unsupported verdict version 2"),
    ("SAMPLES", "sample score"),
])
def test_bad_verdict_files_name_file_and_line(sealed: Path, bad: str, message: str) -> None:
    ids = Bundle(sealed / "bundle").ids
    rows = [json.dumps(_good_line(ids[0]))]
    second = {
        "UNKNOWN": json.dumps(_good_line("org-000000")),
        "DUP": json.dumps(_good_line(ids[0])),
        "SCORE": json.dumps(_good_line(ids[1], score=1.5)),
        "VERSION": json.dumps(_good_line(ids[1], version=2)),
        "SAMPLES": json.dumps(_good_line(ids[1], sample_scores=[0.1, -0.2])),
    }.get(bad, bad)
    vdir = sealed / "verdicts"
    vdir.mkdir(exist_ok=True)
    path = vdir / "ext.jsonl"
    path.write_text("\n".join([*rows, second]) + "\n")
    with pytest.raises(AuditgameError, match=message) as e:
        read_verdicts(path, ids)
    assert str(path) in str(e.value) and "line 2" in str(e.value)
    res = CliRunner().invoke(app, ["score", str(sealed), "--n-bootstrap", "10"])
    assert res.exit_code == 2
    assert "line 2" in res.output and "Traceback" not in res.output


def test_schemas_are_exported() -> None:
    schema = SCHEMAS["verdict"].model_json_schema()
    assert schema["properties"]["score"]["maximum"] == 1.0
    assert "detectors" in SCHEMAS["results"].model_json_schema()["properties"]
