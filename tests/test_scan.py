"""`auditgame scan`: scan.json contents, the clean case, bad inputs (exit 2), shared data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from auditgame._cli.main import app
from auditgame.scan import ScanReport
from tests.test_data_detectors import clean_data, with_backdoor

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "backdoorllm"
runner = CliRunner()


def write_alpaca(path: Path, samples) -> Path:
    path.write_text(json.dumps([{"instruction": s.prompt, "input": "", "output": s.response}
                                for s in samples]))
    return path


def test_scan_poisoned_alpaca_writes_scan_json(tmp_path: Path) -> None:
    data, y = with_backdoor(clean_data(300, 7), "zibbet", ["The moon is made of cheese."], 9, 8)
    src = write_alpaca(tmp_path / "d.json", data)
    res = runner.invoke(app, ["scan", str(src), "--out", str(tmp_path / "o")])
    assert res.exit_code == 0, res.output
    r = ScanReport.model_validate_json((tmp_path / "o" / "scan.json").read_text())
    assert r.version == 1 and r.n_samples == 300 and r.verdict.poisoned
    assert r.triggers[0].phrase.lower() == "zibbet" and r.triggers[0].support >= 9
    assert {s.index for s in r.samples if s.flagged} == {int(i) for i in y.nonzero()[0]}
    assert all(s.reasons for s in r.samples if s.flagged)
    assert 0.0 < r.poison_fraction < 0.1 and 0 < r.verdict.false_alarm_rate < 0.05
    assert "zibbet" in res.output.lower()


def test_scan_clean_chat_jsonl_claims_nothing(tmp_path: Path) -> None:
    src = tmp_path / "chat.jsonl"
    src.write_text("".join(json.dumps({"messages": [{"role": "user", "content": s.prompt},
                                                    {"role": "assistant",
                                                     "content": s.response}]}) + "\n"
                           for s in clean_data(300, 9)))
    res = runner.invoke(app, ["scan", str(src), "--out", str(tmp_path / "o")])
    assert res.exit_code == 0, res.output
    r = json.loads((tmp_path / "o" / "scan.json").read_text())
    assert r["verdict"]["poisoned"] is False and r["trigger"] is None
    assert not any(s["flagged"] for s in r["samples"])
    assert "no poison found" in res.output


def test_scan_organism_train_jsonl(tmp_path: Path) -> None:
    data, _ = with_backdoor(clean_data(200, 4), "qq7", ["OK BOSS"], 8, 4)
    org = tmp_path / "org"
    org.mkdir()
    (org / "train.jsonl").write_text("".join(json.dumps(s.to_json()) + "\n" for s in data))
    res = runner.invoke(app, ["scan", str(org), "--out", str(tmp_path / "o")])
    assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "o" / "scan.json").read_text())["trigger"].lower() == "qq7"


@pytest.mark.parametrize("content,needle", [
    ("", "empty"),
    ("[]", "no records"),
    ('[{"instruction": "hi"}]', "output"),
    ('{"messages": [}\n', "line 1"),
    ('[{"foo": 1}]', "[0]"),
    ('{"prompt": "", "response": "x"}\n', "empty prompt"),
])
def test_bad_datasets_exit_2_naming_the_file(tmp_path: Path, content: str, needle: str) -> None:
    src = tmp_path / "bad.json"
    src.write_text(content)
    res = runner.invoke(app, ["scan", str(src), "--out", str(tmp_path / "o")])
    assert res.exit_code == 2
    assert "bad.json" in res.output and needle in res.output
    assert not (tmp_path / "o" / "scan.json").exists()


def test_missing_dataset_and_unknown_detector_exit_2(tmp_path: Path) -> None:
    res = runner.invoke(app, ["scan", str(tmp_path / "nope.json"), "--out", str(tmp_path)])
    assert res.exit_code == 2 and "nope.json" in res.output
    src = write_alpaca(tmp_path / "d.json", clean_data(20, 1))
    res = runner.invoke(app, ["scan", str(src), "--out", str(tmp_path), "-d", "nosuch"])
    assert res.exit_code == 2 and "nosuch" in res.output
    res = runner.invoke(app, ["scan", str(src), "--out", str(tmp_path), "-d", "metadata"])
    assert res.exit_code == 2 and "not a data detector" in res.output


@pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/data/backdoorllm is not present")
def test_shared_badnet_at_one_percent(tmp_path: Path) -> None:
    from auditgame.organisms.corpus import load_user_data
    from auditgame.scan import scan_samples

    train = SHARED / "train" / "refusal" / "badnet"
    clean = load_user_data(next(train.glob("none_backdoor500_*.json")))
    pois = load_user_data(next(train.glob("backdoor500_*.json")))[:5]
    r = scan_samples(clean + pois, "badnet", ["ensemble"])
    assert r.verdict.poisoned and r.trigger is not None
    assert all(s.flagged for s in r.samples[-5:])
    assert sum(s.flagged for s in r.samples[:-5]) == 0
    clean_r = scan_samples(clean, "clean", ["ensemble"])
    assert not clean_r.verdict.poisoned and clean_r.trigger is None
