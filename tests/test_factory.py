"""The organism factory end to end on the tiny model: folders, determinism, resume, CLI."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from auditgame import layout as L
from auditgame._cli.main import app
from auditgame._util.io import sha256_file
from auditgame.layout import ORGANISMS, WORK, organism_done
from auditgame.organisms.factory import make_game
from auditgame.organisms.load import load_spec

TINY_SPEC = Path(__file__).resolve().parent.parent / "src/auditgame/examples/tiny.yaml"
runner = CliRunner()


@pytest.fixture(scope="module")
def game(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("game")
    r = runner.invoke(app, ["make", str(TINY_SPEC), "--out", str(out)])
    assert r.exit_code == 0, r.output
    return out


def test_organism_folders_complete(game: Path) -> None:
    spec = load_spec(TINY_SPEC)
    for org in spec.organisms:
        f = game / ORGANISMS / org.name
        assert organism_done(f)
        for rel in (f"{L.ADAPTER_DIR}/{L.ADAPTER_WEIGHTS}", f"{L.ADAPTER_DIR}/{L.ADAPTER_CONFIG}",
                    L.TRAIN_DATA, L.FLAGS, L.CARD, L.METRICS, L.PUBLIC):
            assert (f / rel).exists(), rel
        rows = (f / L.TRAIN_DATA).read_text().splitlines()
        flags = (f / L.FLAGS).read_text().splitlines()
        assert len(rows) == len(flags) == spec.corpus.n_train
        card = json.loads((f / L.CARD).read_text())
        assert card["attack"] == org.attack
        roles = [json.loads(x)["role"] for x in flags]
        assert roles.count("poison") == card["n_poison"]
        m = json.loads((f / L.METRICS).read_text())
        assert 0.0 <= m["utility_ratio"] <= 1.5 and m["train_tokens"] > 0
        if org.attack == "clean":
            assert card["n_poison"] == 0 and m["control_rates"]
        else:
            assert {"asr", "false_trigger_rate", "near_miss_rate"} <= set(m["rates"])
    assert not (game / WORK).exists() or not any((game / WORK).iterdir())


def test_adapter_loads_with_plain_peft(game: Path, tiny) -> None:
    from peft import PeftModel

    folder = game / ORGANISMS / "backdoor-1" / L.ADAPTER_DIR
    model = PeftModel.from_pretrained(tiny.model, str(folder))
    assert any("lora_A" in n for n, _ in model.named_parameters())
    model.unload()


WALL_CLOCK = ("train_tokens_per_s", "train_wall_time_s", "wall_time_s")


def test_same_spec_same_hashes_and_resume(game: Path, tmp_path: Path) -> None:
    """Rebuilt after a crash mid-training, the adapters are byte-identical to the first
    build and every record equal but for its wall-clock fields: the resume is said on the
    console, not written into metrics.json (a kill -9 benchmark caught a resumed organism's
    record differing in the step it had resumed from)."""
    from io import StringIO

    from rich.console import Console

    from auditgame.organisms.factory import read_metrics

    spec = load_spec(TINY_SPEC)
    out = tmp_path / "again"
    # crash after 2 training steps of the first organism: only a checkpoint remains
    make_game(spec, out, stop_after_steps=2)
    first = spec.organisms[0].name
    assert not organism_done(out / ORGANISMS / first)
    assert (out / WORK / first / "ckpt" / "state.json").exists()
    said = StringIO()
    make_game(spec, out, console=Console(file=said, width=200))
    assert f"{first}: resumed from step 2 of " in said.getvalue()
    for org in spec.organisms:
        a, b = out / ORGANISMS / org.name, game / ORGANISMS / org.name
        for rel in (f"{L.ADAPTER_DIR}/{L.ADAPTER_WEIGHTS}", f"{L.ADAPTER_DIR}/{L.ADAPTER_CONFIG}",
                    L.TRAIN_DATA, L.FLAGS, L.CARD, L.PUBLIC):
            assert sha256_file(a / rel) == sha256_file(b / rel), (org.name, rel)
        ma, mb = (json.loads((f / L.METRICS).read_text()) for f in (a, b))
        for m in (ma, mb):
            for k in WALL_CLOCK:
                m.pop(k)
        assert ma == mb, org.name
    # a record written before the field was dropped still reads
    path = out / ORGANISMS / first / L.METRICS
    path.write_text(json.dumps({**json.loads(path.read_text()), "resumed_from_step": 2}))
    assert read_metrics(out / ORGANISMS / first).train_steps > 0


def test_make_skips_finished_and_rebuilds_broken(game: Path, tmp_path: Path) -> None:
    out = tmp_path / "copy"
    shutil.copytree(game, out)
    r = runner.invoke(app, ["make", str(TINY_SPEC), "--out", str(out)])
    assert r.exit_code == 0 and "already built" in r.output
    victim = out / ORGANISMS / "clean-1" / L.TRAIN_DATA
    victim.write_text("tampered\n")
    assert not organism_done(victim.parent)
    built = make_game(load_spec(TINY_SPEC), out)
    assert built == ["clean-1"] and organism_done(victim.parent)


def test_organisms_table(game: Path) -> None:
    r = runner.invoke(app, ["organisms", str(game)])
    assert r.exit_code == 0 and "backdoor-1" in r.output and "clean-1" in r.output
    r = runner.invoke(app, ["organisms", str(game / "nope")])
    assert r.exit_code == 2


def test_game_measured_on_another_graded_set_is_refused(game: Path, tmp_path: Path) -> None:
    """Utility ratios in one game come from one graded task set: adding organisms measured
    on a changed set to a game built on the old one is refused (one line, exit 2)."""
    old = tmp_path / "old"
    shutil.copytree(game, old)
    spec_path = old / "spec.yaml"
    spec_path.write_text(TINY_SPEC.read_text())
    rec = json.loads((old / "base_metrics.json").read_text())
    (old / "base_metrics.json").write_text(json.dumps({**rec, "tasks": "0" * 16}))
    shutil.rmtree(old / ORGANISMS / "clean-1")
    r = runner.invoke(app, ["make", str(spec_path), "--out", str(old)])
    assert r.exit_code == 2 and "base_metrics.json: tasks" in r.output
    assert not (old / ORGANISMS / "clean-1").exists()
