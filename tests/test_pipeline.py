"""`auditgame run`: every stage on a tiny-model game, resume and skip logic, detector budget,
backend choice and the remediation hook."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, ClassVar

import pytest
from _pipegame import (
    DETECTORS,
    TriggerWordDetector,
    built_game,
    copy_game,
    invoke_run,
    spec_of_built,
)
from typer.testing import CliRunner

from auditgame import layout as L
from auditgame import pipeline as P
from auditgame._cli.main import app
from auditgame.detectors import Detector, read_verdicts, register_detector
from auditgame.detectors.base import unregister_detector


@pytest.fixture(scope="module")
def game(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return built_game(tmp_path_factory.getbasetemp())


def stages(game: Path) -> dict[str, dict[str, Any]]:
    return {s["stage"]: s for s in json.loads((game / L.PIPELINE_LOG).read_text())["stages"]}


def mtimes(game: Path) -> dict[str, int]:
    return {p.relative_to(game).as_posix(): p.stat().st_mtime_ns
            for p in game.rglob("*") if p.is_file() and p.name != L.PIPELINE_LOG}


def test_first_run_runs_every_stage(game: Path) -> None:
    st = stages(game)
    assert list(st) == list(P.STAGES)
    for s in ("make", "seal", "audit", "score", "report"):
        assert st[s]["status"] == "ran", st[s]
    assert st["remediate"]["status"] == "skipped" and "--skip" in st["remediate"]["note"]
    assert st["audit"]["note"] == "8 verdicts from 2 detector(s)"
    res = json.loads((game / "results.json").read_text())
    assert {d["detector"] for d in res["detectors"]} == set(DETECTORS.split(","))
    assert res["n_bootstrap"] == 50
    assert len(list((game / "organisms").iterdir())) == 4
    assert (game / "report.html").stat().st_size > 10_000
    log = json.loads((game / L.PIPELINE_LOG).read_text())
    assert log["detectors"] == DETECTORS.split(",") and log["backend"] == "local"
    print("\nstage seconds: " + ", ".join(f"{k} {v['seconds']:.2f}" for k, v in st.items()))


def test_rerun_skips_every_stage_and_touches_nothing(game: Path, tmp_path: Path) -> None:
    g = copy_game(game, tmp_path / "game")
    before = mtimes(g)
    res = invoke_run(spec_of_built(), g)
    assert res.exit_code == 0, res.output
    st = stages(g)
    assert all(s["status"] == "skipped" for s in st.values()), st
    assert mtimes(g) == before


def test_lost_verdicts_are_redone_and_downstream_refreshed(game: Path, tmp_path: Path) -> None:
    g = copy_game(game, tmp_path / "game")
    vfile = g / "verdicts" / f"{TriggerWordDetector.name}.jsonl"
    lines = vfile.read_text().splitlines(keepends=True)
    vfile.write_text("".join(lines[:1]))  # as if the audit crashed after one organism
    kept = (g / "verdicts" / "metadata.jsonl").stat().st_mtime_ns
    organisms_before = {k: v for k, v in mtimes(g).items() if k.startswith("organisms/")}
    res = invoke_run(spec_of_built(), g)
    assert res.exit_code == 0, res.output
    st = stages(g)
    assert [st[s]["status"] for s in P.STAGES] == ["skipped", "skipped", "ran", "ran",
                                                   "skipped", "ran"]
    assert st["audit"]["note"] == "3 verdicts from 1 detector(s)"
    assert len(read_verdicts(vfile)) == 4
    assert (g / "verdicts" / "metadata.jsonl").stat().st_mtime_ns == kept
    assert {k: v for k, v in mtimes(g).items() if k.startswith("organisms/")} == organisms_before
    assert (g / "report.html").stat().st_mtime >= (g / "results.json").stat().st_mtime


def test_changed_bootstrap_rescores_only(game: Path, tmp_path: Path) -> None:
    g = copy_game(game, tmp_path / "game")
    register_detector(TriggerWordDetector)
    try:
        res = CliRunner().invoke(app, ["run", str(spec_of_built()), "--out", str(g),
                                       "--detectors", DETECTORS, "--skip", "remediate",
                                       "--n-bootstrap", "20"])
    finally:
        unregister_detector(TriggerWordDetector.name)
    assert res.exit_code == 0, res.output
    st = stages(g)
    assert [st[s]["status"] for s in ("audit", "score", "report")] == ["skipped", "ran", "ran"]
    assert json.loads((g / "results.json").read_text())["n_bootstrap"] == 20


def test_organisms_changed_after_sealing_is_a_clean_error(game: Path, tmp_path: Path) -> None:
    g = copy_game(game, tmp_path / "game")
    shutil.copytree(g / "organisms" / "clean-2", g / "organisms" / "clean-9")
    res = invoke_run(spec_of_built(), g)
    assert res.exit_code == 2
    assert "sealed with other organisms" in res.output and "clean-9" in res.output
    assert "Traceback" not in res.output


class _Costly(Detector):
    needs: ClassVar[frozenset[str]] = frozenset({"dataset"})


def test_budget_picks_detectors_by_declared_cost() -> None:
    made = []
    for cost in ("moderate", "expensive", None):
        name = f"test_cost_{cost or 'undeclared'}"
        cls = type(f"D{len(made)}", (_Costly,), {"name": name, **({"cost": cost} if cost else {})})
        register_detector(cls)
        made.append(name)
    try:
        cheap = P.select_detectors(budget="cheap")
        moderate = P.select_detectors(budget="moderate")
        expensive = P.select_detectors(budget="expensive")
        assert "metadata" in cheap and "test_cost_undeclared" in cheap
        assert "test_cost_moderate" not in cheap and "test_cost_moderate" in moderate
        assert "test_cost_expensive" not in moderate and "test_cost_expensive" in expensive
        assert set(cheap) < set(moderate) < set(expensive)
        assert P.select_detectors(["test_cost_expensive"], "cheap") == ["test_cost_expensive"]
        with pytest.raises(P.AuditgameError, match="no_such"):
            P.select_detectors(["no_such"])
        with pytest.raises(P.AuditgameError, match="budget"):
            P.select_detectors(budget="lavish")
    finally:
        for n in made:
            unregister_detector(n)


@pytest.mark.parametrize("args, message", [
    (["--backend", "spark"], "unknown backend"),
    (["--address", "10.0.0.1:6379"], "--address"),
    (["--skip", "bake"], "unknown stage"),
    (["--budget", "lavish"], "unknown budget"),
    (["--detectors", "nope"], "unknown detector"),
])
def test_bad_options_are_one_line_errors(tmp_path: Path, args: list[str], message: str) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text("name: x\n")
    res = CliRunner().invoke(app, ["run", str(spec), "--out", str(tmp_path / "g"), *args])
    assert res.exit_code == 2 and message in res.output, res.output
    assert "Traceback" not in res.output


def test_ray_without_backends_package_is_a_clean_error(tmp_path: Path) -> None:
    try:
        from auditgame.backends import get_backend  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("auditgame.backends is installed; the Ray backend's own tests cover it")
    spec = tmp_path / "spec.yaml"
    spec.write_text("name: x\n")
    res = CliRunner().invoke(app, ["run", str(spec), "--out", str(tmp_path / "g"),
                                   "--backend", "ray"])
    assert res.exit_code == 2 and "not available" in res.output, res.output


def test_remediate_stage_calls_the_remediation_entry(game: Path, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """The hook, not remediation itself (tests/test_remediate.py covers that): the stage
    hands the game folder and console over, and skips when the module is missing."""
    g = copy_game(game, tmp_path / "game")
    calls: list[tuple[Path, Any]] = []

    def fake_remediate(game: Path, console: Any) -> None:
        calls.append((game, console))
        (game / L.REMEDIATION).write_text(json.dumps({"version": 1, "budgets": [0],
                                                      "organisms": {}}))

    monkeypatch.setattr(P, "remediate_entry", lambda: fake_remediate)
    recs = P.run_pipeline(spec_of_built(), g, detectors=DETECTORS.split(",")[:1],
                          n_bootstrap=50, skip=["report"])
    st = {r.stage: r for r in recs}
    assert st["remediate"].status == "ran" and calls and calls[0][0] == g
    recs = P.run_pipeline(spec_of_built(), g, detectors=["metadata"], n_bootstrap=50)
    st = {r.stage: r for r in recs}
    assert st["remediate"].status == "ran" and len(calls) == 2  # it resumes by itself
    assert st["report"].status == "ran"  # remediation.json is newer than the report
    monkeypatch.setattr(P, "remediate_entry", lambda: None)
    recs = P.run_pipeline(spec_of_built(), g, detectors=["metadata"], n_bootstrap=50)
    assert {r.stage: r.status for r in recs}["remediate"] == "unavailable"


def test_spec_audit_budget_is_runs_default_and_not_part_of_the_spec_hash(tmp_path: Path) -> None:
    """`audit.budget` picks `run`'s detectors when the command line names none, and changing
    it does not change what `make` builds (the spec hash leaves it out)."""
    from auditgame.organisms.load import load_spec

    body = "name: g\norganisms:\n  - {name: a, attack: clean}\n"
    cheap, plain, bad = (tmp_path / f"{n}.yaml" for n in ("cheap", "plain", "bad"))
    cheap.write_text(body + "audit: {budget: cheap}\n")
    plain.write_text(body)
    bad.write_text(body + "audit: {budget: lavish}\n")
    assert P.spec_budget(cheap) == "cheap" and P.spec_budget(plain) == "moderate"
    a, b = load_spec(cheap), load_spec(plain)
    assert a.model_dump(mode="json", exclude={"audit"}) == b.model_dump(mode="json",
                                                                        exclude={"audit"})
    res = CliRunner().invoke(app, ["run", str(bad), "--out", str(tmp_path / "g")])
    assert res.exit_code == 2 and "audit.budget" in res.output
    assert "Traceback" not in res.output and not (tmp_path / "g").exists()
