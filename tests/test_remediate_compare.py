"""One game, several fixes: `remediate.compare` runs further methods as rounds of their own
(GAME/remediation.<method>.json), with the depth tests when `remediate.depth` is set; the CLI
prints every round and the report puts every method's call side by side."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from auditgame._cli.main import app
from auditgame.errors import AuditgameError
from auditgame.layout import GameFolder
from auditgame.organisms.load import parse_spec
from auditgame.records.verdict import Verdict, write_verdicts
from auditgame.remediate import read_remediation, remediate_game

runner = CliRunner()
pytestmark = pytest.mark.usefixtures("one_thread")


def _untimed(path: Path) -> object:
    """A record without its wall-clock fields (two identical rounds differ only there)."""
    def strip(x: object) -> object:
        if isinstance(x, dict):
            return {k: strip(v) for k, v in x.items() if k != "wall_time_s"}
        return [strip(v) for v in x] if isinstance(x, list) else x
    return strip(json.loads(path.read_text()))


def _set_remediate(game: Path, **fields: object) -> None:
    spec = yaml.safe_load((game / "spec.yaml").read_text())
    spec.setdefault("remediate", {}).update(fields)
    (game / "spec.yaml").write_text(yaml.safe_dump(spec))


@pytest.fixture(scope="module")
def compared(built: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny game, sealed, with a blue-team verdict file (the targeted fix reads it),
    remediated by kl_distill and compared with clean_sft and targeted, depth tests on."""
    from auditgame.bundle.seal import seal_game

    game = tmp_path_factory.mktemp("compare") / "game"
    shutil.copytree(built, game)
    key = seal_game(game)
    g = GameFolder(game)
    g.verdicts.mkdir(exist_ok=True)
    write_verdicts(g.verdicts / "blue.jsonl",
                   [Verdict(blind_id=i, detector="blue", score=0.8, trigger="qv zeph")
                    for i in sorted(key.organisms)])
    _set_remediate(game, budgets=[0, 2], n_samples=16, depth=True,
                   compare=["clean_sft", {"targeted": {"n_prompts": 8}}])
    remediate_game(game, detectors=[])
    return game


def test_every_method_gets_its_own_round_and_every_organism_a_call(compared: Path) -> None:
    g = GameFolder(compared)
    main = read_remediation(compared)
    assert main is not None and main.settings.method == "kl_distill"
    assert [p.name for p in g.compared_records()] == ["remediation.clean_sft.json",
                                                      "remediation.targeted.json"]
    for name in (None, "clean_sft", "targeted"):
        rec = read_remediation(compared, name)
        assert rec is not None and rec.settings.method == (name or "kl_distill")
        assert rec.budgets == [0, 2] and rec.depth_settings is not None
        for o in rec.organisms.values():
            assert o.depth is not None and set(o.results) == {"0", "2"}
            assert (o.depth.call == "control") == (not o.poisoned)
        assert (g.remediation_files(name).budget_dir("backdoor-1", 2) / "adapter").is_dir()
    targeted = read_remediation(compared, "targeted")
    assert targeted is not None and targeted.settings.method_params["n_prompts"] == 8
    # the rounds are separate fixes: same organism as built, different adapters after
    shas = {read_remediation(compared, n).organisms["backdoor-1"].results["2"].adapter_sha256
            for n in (None, "clean_sft", "targeted")}
    assert len(shas) == 3


def test_a_rerun_redoes_nothing_and_method_picks_the_compared_round(compared: Path,
                                                                    tmp_path: Path) -> None:
    game = tmp_path / "g"
    shutil.copytree(compared, game)
    files = [GameFolder(game).remediation, *GameFolder(game).compared_records()]
    before = [p.read_bytes() for p in files]
    remediate_game(game, detectors=[])
    assert [p.read_bytes() for p in files] == before
    (GameFolder(game).compared_records()[0]).unlink()  # clean_sft's record lost
    remediate_game(game, detectors=[], method="clean_sft")  # only that round runs again
    assert files[0].read_bytes() == before[0] and files[2].read_bytes() == before[2]
    assert _untimed(files[1]) == _untimed(compared / files[1].name)


def test_the_cli_and_the_report_show_every_round(compared: Path, tmp_path: Path) -> None:
    game = tmp_path / "g"
    shutil.copytree(compared, game)
    res = runner.invoke(app, ["remediate", str(game), "-d", "none"])
    assert res.exit_code == 0, res.output
    for m in ("kl_distill", "clean_sft", "targeted"):
        assert f"by {m}" in res.output and f"depth tests of {m}" in res.output
    from auditgame.referee import score_game
    from auditgame.report import build_report

    score_game(game)
    html = build_report(game).read_text()
    assert html.count('class="round"') == 3 and 'id="methods-table"' in html
    assert 'id="depth-table-targeted"' in html and 'id="remediation-table-clean_sft"' in html
    raw = json.loads((game / "remediation.targeted.json").read_text())
    v = raw["organisms"]["backdoor-1"]["depth"]["behaviour_after"]
    path = json.dumps(["organisms", "backdoor-1", "depth", "behaviour_after"])
    assert (f'data-src="remediation.targeted" data-path="{path.replace(chr(34), "&quot;")}" '
            f'data-value="{json.dumps(v)}"') in html


@pytest.mark.parametrize(("compare", "field", "words"), [
    (["no_such_fix"], "remediate.compare[0]", "unknown remediation"),
    (["kl_distill"], "remediate.compare[0]", "already the round's method"),
    ([{"clean_sft": {"bogus": 1}}], "remediate.compare[0].clean_sft.bogus", "xtra"),
    (["clean_sft", "clean_sft"], "remediate.compare", "once"),
    ([{"clean_sft": {}, "targeted": {}}], "remediate.compare", "name or"),
])
def test_a_bad_compared_method_is_one_line_naming_it(compare: list, field: str,
                                                      words: str) -> None:
    spec = {"organisms": [{"name": "a", "attack": "clean"}],
            "remediate": {"compare": compare}}
    with pytest.raises(AuditgameError) as e:
        parse_spec(spec, "s.yaml")
    assert (e.value.field or "").startswith(field) and words in e.value.message, e.value


def test_a_spec_without_compare_or_depth_keeps_its_dump() -> None:
    spec = parse_spec({"organisms": [{"name": "a", "attack": "clean"}]})
    rem = spec.model_dump(mode="json")["remediate"]
    assert "compare" not in rem and "depth" not in rem
    other = parse_spec({"organisms": [{"name": "a", "attack": "clean"}],
                        "remediate": {"compare": ["clean_sft"], "depth": True}})
    assert other.model_dump(mode="json")["remediate"]["compare"] == ["clean_sft"]
