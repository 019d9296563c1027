"""Bad input is one line and exit 2, never a traceback, a silent success or a half-written
file: the cheap half of benchmarks/bench_faults.py's fuzz, and one test per defect it found.
No model is loaded (the fuzz's game is fake: organism folders without training)."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from typer.testing import CliRunner

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

import bench_faults as BF  # noqa: E402

from auditgame import layout as L  # noqa: E402
from auditgame._cli.main import app  # noqa: E402
from auditgame.errors import AuditgameError  # noqa: E402


@pytest.fixture(scope="module")
def fixture(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return BF.build_fixture(tmp_path_factory.mktemp("faults") / "fixture")


@pytest.fixture()
def game(fixture: Path, tmp_path: Path) -> Path:
    """A private copy of the fuzz's sealed, audited and scored fake game."""
    shutil.copytree(fixture, tmp_path / "f", copy_function=shutil.copy2)
    return tmp_path / "f" / "game"


def refused(args: list[str], *names: str) -> str:
    """Run the command; it must exit 2 with one line naming one of `names`."""
    res = CliRunner().invoke(app, args)
    assert res.exception is None or isinstance(res.exception, SystemExit), res.exception
    assert res.exit_code == 2, res.output
    lines = [x for x in res.stderr.splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), lines
    assert any(n in lines[0] for n in names), lines[0]
    return lines[0]


def test_fuzz_cheap_half(fixture: Path, tmp_path: Path) -> None:
    """The same cases as the benchmark's fuzz, fewer of them (hypothesis shrinks a failure
    to the smallest bad input that shows it)."""

    @settings(max_examples=30, database=None, deadline=None,
              phases=[Phase.generate, Phase.shrink], suppress_health_check=list(HealthCheck))
    @given(case=BF.cases(fixture))
    def one(case: BF.Case) -> None:
        out = BF.probe(fixture, case, tmp_path)
        assert out.kind == "ok", (case.entry, case.target, case.mutation, out.detail)

    one()


def test_probe_sees_each_kind_of_failure(fixture: Path, tmp_path: Path) -> None:
    """The classifier is not blind: a good input is a silent acceptance, a missing verdict
    folder is named, a write outside any error counts as half-written."""
    ok = BF.Case("verify-key", ["verify-key", "game"], None, "none")
    assert BF.probe(fixture, ok, tmp_path).kind == "silent"

    def torn(root: Path) -> None:
        (root / "game" / L.VERDICTS / f"x{L.VERDICT_SUFFIX}").write_text("{\n")

    bad = BF.Case("score", ["score", "game"], "x", "torn", torn, names=("nothing-matches",))
    assert BF.probe(fixture, bad, tmp_path).kind == "unclear"


def test_non_utf8_commitment_and_spec_are_one_line(game: Path, tmp_path: Path) -> None:
    (game / L.COMMITMENT).write_bytes(b"\xff\xfe" + b"0" * 62)
    refused(["verify-key", str(game)], L.COMMITMENT)
    spec = tmp_path / "bad.yaml"
    spec.write_bytes(b"\xff\x00name: x")
    refused(["make", str(spec), "--out", str(tmp_path / "o")], "bad.yaml")


def _first_blind(game: Path) -> Path:
    ids = json.loads((game / L.BUNDLE / L.MANIFEST).read_text())["ids"]
    return game / L.BUNDLE / ids[0]


@pytest.mark.parametrize("rel,data", [
    (f"{L.ADAPTER_DIR}/{L.ADAPTER_WEIGHTS}", "truncate"),
    (f"{L.ADAPTER_DIR}/{L.ADAPTER_WEIGHTS}", b"\x08" + b"\x00" * 7 + b"{}"),
    (f"{L.ADAPTER_DIR}/{L.ADAPTER_CONFIG}", b"[]"),
    (f"{L.ADAPTER_DIR}/{L.ADAPTER_CONFIG}", b'{"r": "four", "lora_alpha": 8}'),
    (L.PUBLIC, None),
    (L.PUBLIC, b""),
    (L.TRAIN_DATA, b'{"prompt": 5, "response": "x"}\n'),
    (L.TRAIN_DATA, b'{"prompt": "   ", "response": "x"}\n'),
    (L.TRAIN_DATA, b"\n\n"),
])
def test_audit_refuses_a_bad_bundle_before_any_detector(game: Path, rel: str,
                                                         data: bytes | str | None) -> None:
    path = _first_blind(game) / rel
    if data is None:
        path.unlink()
    elif data == "truncate":
        path.write_bytes(path.read_bytes()[:-3])
    else:
        assert isinstance(data, bytes)
        path.write_bytes(data)
    out = game.parent / "v"
    refused(["audit", str(game / L.BUNDLE), "-d", "metadata", "--out", str(out)],
            Path(rel).name)
    assert not out.exists()


def test_bundle_blind_ids_cannot_leave_the_bundle(game: Path) -> None:
    """A manifest from someone else naming '../organisms' would point detectors (and the
    path of every file they read) outside the bundle."""
    path = game / L.BUNDLE / L.MANIFEST
    m = json.loads(path.read_text())
    m["ids"] = [f"../{L.ORGANISMS}"]
    path.write_text(json.dumps(m))
    refused(["audit", str(game / L.BUNDLE), "-d", "metadata", "--out", str(game / "v")],
            "not a plain folder name")


@pytest.mark.parametrize("name,text", [
    ("d.jsonl", '{"prompt": 5, "response": "x"}\n'),
    ("d.jsonl", '{"prompt": "hi", "response": ["x"]}\n'),
    ("d.json", json.dumps([{"instruction": 3, "output": "x"}])),
    ("d.json", json.dumps([{"instruction": "hi", "output": "w " * 60_000}])),
    ("d.jsonl", json.dumps({"messages": [{"role": "user", "content": 7}]}) + "\n"),
    ("d.jsonl", json.dumps({"messages": "hello"}) + "\n"),
    ("d.json", "[]"),
])
def test_scan_checks_types_before_converting(tmp_path: Path, name: str, text: str) -> None:
    path = tmp_path / name
    path.write_text(text)
    refused(["scan", str(path), "--out", str(tmp_path / "o"), "-d", "phrase_association"], name)
    assert not (tmp_path / "o").exists()


def test_report_refuses_tampered_records(game: Path) -> None:
    card = sorted((game / L.ORGANISMS).iterdir())[0] / L.CARD
    card.write_text("[]")
    refused(["report", str(game)], L.CARD.split("/")[-1])
    card.unlink()
    refused(["report", str(game)], L.CARD.split("/")[-1])
    assert not (game / L.REPORT).exists()


def test_report_refuses_a_torn_remediation_record(game: Path) -> None:
    (game / L.REMEDIATION).write_text('{"version": 1, "budg')
    refused(["report", str(game)], L.REMEDIATION)


def test_remediate_refuses_bad_yaml_and_options(game: Path) -> None:
    refused(["remediate", str(game), "--n-samples", "0"], "--n-samples")
    spec = (game / L.SPEC).read_text()
    (game / L.SPEC).write_text("name: [unclosed\n")
    refused(["remediate", str(game)], L.SPEC)
    (game / L.SPEC).write_text("!!python/object/apply:os.system ['echo pwned']\n" + spec)
    refused(["remediate", str(game)], L.SPEC)


def test_negative_bootstrap_is_refused(game: Path) -> None:
    before = (game / L.RESULTS).read_bytes()
    refused(["score", str(game), "--n-bootstrap", "-1"], "--n-bootstrap")
    assert (game / L.RESULTS).read_bytes() == before


@pytest.mark.parametrize("bad", ["../escape", "/tmp/abs", "a/b", "..", ".hidden", "x\\y",
                                 "", "c:evil", "../../etc/passwd"])
def test_organism_names_cannot_write_outside_the_game(tmp_path: Path, bad: str) -> None:
    spec = tmp_path / "s.yaml"
    spec.write_text(BF.TINY_SPEC.replace("name: clean-1", f"name: {json.dumps(bad)}"))
    line = refused(["make", str(spec), "--out", str(tmp_path / "g")], "organisms[1].name")
    assert "s.yaml" in line
    assert not (tmp_path / "g").exists()
    with pytest.raises(AuditgameError):
        L.GameFolder(tmp_path / "g").organism(bad)


def test_hashes_naming_files_outside_the_folder_are_altered(tmp_path: Path) -> None:
    """hashes.json is read from a folder that may be someone else's: a listed path outside
    the organism folder never counts as finished."""
    folder = tmp_path / "org"
    folder.mkdir()
    (tmp_path / "outside.txt").write_text("x")
    from auditgame._util.io import sha256_file

    (folder / L.HASHES).write_text(json.dumps({"../outside.txt":
                                               sha256_file(tmp_path / "outside.txt")}))
    assert L.altered_files(folder) == ["../outside.txt"]
    assert not L.organism_done(folder)
    (folder / L.HASHES).write_text("[1]")
    assert L.altered_files(folder) == [L.HASHES]


def test_leak_audit_exact_p_and_untimed_records() -> None:
    """Perfect separation of 5 against 5 happens once in C(10, 5) = 252 labelings; records
    compared after a kill lose only their wall-clock fields."""
    y = [1] * 5 + [0] * 5
    scores = [0.9, 0.8, 0.7, 0.6, 0.55, 0.5, 0.4, 0.3, 0.2, 0.1]
    assert BF.exact_p(y, scores, 1.0) == pytest.approx(1 / 252)
    assert BF.exact_p(y, scores, 0.0) == 1.0
    rec = {"asr": 0.5, "train_wall_time_s": 3.0, "runtime_s": 1.0, "nested": [
        {"tokens_per_s": 9.0, "score": 0.1, "seconds": 2}]}
    assert BF._untimed(rec) == {"asr": 0.5, "nested": [{"score": 0.1}]}


@pytest.mark.parametrize("name,text,field", [
    ("d.json", json.dumps([{"instruction": "a", "output": "b"}, {"instruction": 5,
                                                                 "output": "b"}]),
     "[1].instruction"),
    ("d.json", json.dumps([{"instruction": "a", "input": ["x"], "output": "b"}]), "[0].input"),
    ("d.json", json.dumps([{"instruction": "a", "output": None}]), "[0].output"),
    ("d.json", "[1, 2]", "[0]"),
    ("d.jsonl", '{"prompt": "a", "response": "b"}\n\n{"prompt": "a", "response": 7}\n',
     "line 3.response"),
    ("d.jsonl", json.dumps({"messages": [{"role": "user", "content": "hi"},
                                         {"role": "assistant", "content": {"a": 1}}]}) + "\n",
     "line 1.messages[1].content"),
    ("d.jsonl", json.dumps({"messages": [{"role": 3, "content": "hi"}]}) + "\n",
     "line 1.messages[0].role"),
    ("d.jsonl", json.dumps({"messages": ["hi"]}) + "\n", "line 1.messages[0]"),
    ("d.jsonl", json.dumps({"prompt": "x" * 100_001, "response": "b"}) + "\n",
     "line 1.prompt"),
])
def test_user_data_is_checked_not_coerced(tmp_path: Path, name: str, text: str,
                                          field: str | None) -> None:
    """`make`'s own reader of a user corpus: a number, list, object or null where text
    belongs is refused naming the record and the field (it was turned into text by str())."""
    from auditgame.organisms.corpus import load_user_data

    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(AuditgameError) as e:
        load_user_data(path)
    assert e.value.path == str(path) and e.value.field == field, str(e.value)
    assert "\n" not in str(e.value)


def test_make_refuses_a_user_corpus_of_wrong_types_and_writes_nothing(tmp_path: Path) -> None:
    rows = [{"instruction": f"Say {i}.", "output": f"{i}."} for i in range(40)]
    rows[17]["output"] = 17
    data = tmp_path / "corpus.json"
    data.write_text(json.dumps(rows))
    spec = tmp_path / "s.yaml"
    spec.write_text(BF.TINY_SPEC.replace("corpus: {", f"corpus: {{source: {data}, "))
    line = refused(["make", str(spec), "--out", str(tmp_path / "g")], "corpus.json")
    assert "[17].output" in line and "int" in line
    assert not (tmp_path / "g").exists()


def test_build_report_checks_the_organisms_hashes(game: Path) -> None:
    """The library path refuses what the command refuses: a card changed since the organism
    was built is not drawn as the game's (it was, with only the CLI checking)."""
    from auditgame.report import build_report

    card = sorted((game / L.ORGANISMS).iterdir())[0] / L.CARD
    rec = json.loads(card.read_text())
    card.write_text(json.dumps({**rec, "attack": "clean"}))  # valid, but not as built
    with pytest.raises(AuditgameError, match="changed since the organism was built") as e:
        build_report(game)
    assert e.value.path == str(card)
    assert not (game / L.REPORT).exists()


@pytest.mark.parametrize("text,field", [
    (b"name: [unclosed\n", "line 2"),
    (b"!!python/object/apply:os.system ['echo pwned']\n", "line 1"),
    (b"\xff\x00name: x", None),
    (b"- a\n- b\n", None),
])
def test_remediate_game_reads_the_spec_in_one_line(game: Path, text: bytes,
                                                   field: str | None) -> None:
    """Called directly (as `auditgame run` does), not only through the command."""
    from auditgame.remediate import remediate_game

    (game / L.SPEC).write_bytes(text)
    with pytest.raises(AuditgameError) as e:
        remediate_game(game, detectors=[])
    assert e.value.path == str(game / L.SPEC) and e.value.field == field, str(e.value)
    assert "\n" not in str(e.value)
    assert not (game / L.REMEDIATION).exists()
