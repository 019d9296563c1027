"""report.html: every number shown equals its source file, every detector has its figures and
tables, nothing is loaded from outside the file, and headless Chromium renders the figures.

The game is the tiny-model game built by `auditgame run` (tests/_pipegame.py).
"""

from __future__ import annotations

import base64
import json
import math
import os
import shutil
import struct
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from _pipegame import built_game, copy_game
from typer.testing import CliRunner

from auditgame._cli.main import app
from auditgame._util.io import hash_tree
from auditgame.layout import HASHES
from auditgame.report import build_report

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


@pytest.fixture(scope="module")
def game(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return built_game(tmp_path_factory.getbasetemp())


class Node:
    def __init__(self, tag: str, attrs: dict[str, str], parent: Node | None):
        self.tag, self.attrs, self.parent = tag, attrs, parent
        self.children: list[Node] = []
        self.text = ""

    def all_text(self) -> str:
        return self.text + "".join(c.all_text() for c in self.children)

    def iter(self) -> Any:
        yield self
        for c in self.children:
            yield from c.iter()


VOID = {"img", "meta", "br", "hr", "input", "link"}


class Tree(HTMLParser):
    """A small DOM: enough to find elements by tag and attribute and read their text."""

    def __init__(self, text: str):
        super().__init__(convert_charrefs=True)
        self.root = Node("#root", {}, None)
        self.cur = self.root
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        node = Node(tag, {k: v or "" for k, v in attrs}, self.cur)
        self.cur.children.append(node)
        if tag not in VOID:
            self.cur = node

    def handle_endtag(self, tag: str) -> None:
        n = self.cur
        while n is not self.root and n.tag != tag:
            n = n.parent  # type: ignore[assignment]
        if n is not self.root:
            self.cur = n.parent  # type: ignore[assignment]

    def handle_data(self, data: str) -> None:
        self.cur.text += data

    def find(self, tag: str | None = None, **attrs: str) -> list[Node]:
        want = {k.replace("_", "-"): v for k, v in attrs.items()}
        return [n for n in self.root.iter() if (tag is None or n.tag == tag)
                and all(n.attrs.get(k) == v for k, v in want.items())]


def resolve(game: Path, src: str, path: list[Any]) -> Any:
    """Follow a number's data-src/data-path back to the file it came from."""
    files = {"results": game / "results.json", "remediation": game / "remediation.json",
             "pipeline": game / "pipeline.json", "base": game / "base_metrics.json"}
    if src.startswith(("metrics/", "card/")):
        kind, org = src.split("/", 1)
        node: Any = json.loads((game / "organisms" / org / "private" / f"{kind}.json")
                               .read_text())
    else:
        node = json.loads(files[src].read_text())
    for seg in path:
        if seg == "#":
            return len(node)
        if isinstance(node, list) and isinstance(seg, str):
            node = next(x for x in node if seg in (x.get("detector"), x.get("blind_id"),
                                                   x.get("stage")))
        else:
            node = node[seg]
    return node


def check_numbers(tree: Tree, game: Path) -> int:
    """Every number shown equals its source; returns how many were checked."""
    nums = tree.find("span", **{"class": "num"})
    for n in nums:
        src, path = n.attrs["data-src"], json.loads(n.attrs["data-path"])
        truth = resolve(game, src, path)
        shown = n.all_text().strip()
        assert json.loads(n.attrs["data-value"]) == truth, (src, path)
        if isinstance(truth, int) and not isinstance(truth, bool):
            assert shown == str(truth), (src, path, shown)
        else:
            decimals = len(shown.split(".")[1]) if "." in shown else 0
            assert math.isclose(float(shown), truth, abs_tol=0.5 * 10 ** -decimals + 1e-12), (
                src, path, shown, truth)
    return len(nums)


def png_size(b64: str) -> tuple[int, int]:
    raw = base64.b64decode(b64)
    assert raw[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", raw[16:24])


def test_report_shows_results_json(game: Path) -> None:
    results = json.loads((game / "results.json").read_text())
    tree = Tree((game / "report.html").read_text())
    n = check_numbers(tree, game)
    assert n > 100
    assert tree.find(id="game-name")[0].all_text().endswith("pipeline-test")
    assert tree.find(id="commitment")[0].all_text().strip() == results["commitment"]
    assert results["commitment"] == (game / "commitment.txt").read_text().strip()
    assert tree.find(id="verify-status")[0].attrs["data-status"] == "ok"
    for det in results["detectors"]:
        name = det["detector"]
        assert tree.find("article", data_detector=name)
        for fig in ("roc", "scores"):
            (im,) = tree.find("img", id=f"{fig}-{name}")
            w, h = png_size(im.attrs["src"].removeprefix("data:image/png;base64,"))
            assert w > 200 and h > 200
        rows = tree.find("tr", **{"class": "summary-row", "data-detector": name})
        assert {r.attrs["data-group"] for r in rows} == set(det["groups"])
        (conf,) = tree.find("table", **{"class": "confusion", "data-detector": name})
        shown = {c.attrs["data-cell"]: int(c.all_text()) for c in conf.iter()
                 if "data-cell" in c.attrs}
        assert shown == det["groups"]["all"]["confusion"]
        # the confusion table is what the listed scores give at the listed threshold
        thr = det["groups"]["all"]["threshold"]
        flagged = [o for o in det["organisms"] if o["score"] > thr]
        assert shown["tp"] == sum(o["poisoned"] for o in flagged)
        assert shown["fp"] == sum(not o["poisoned"] for o in flagged)
        assert len(tree.find("tr", **{"class": "org-row"})) >= len(det["organisms"])
    orgs = sorted(p.name for p in (game / "organisms").iterdir())
    cards = tree.find("article", **{"class": "card organism-card"})
    assert sorted(c.attrs["data-organism"] for c in cards) == orgs
    key = json.loads((game / "key.json").read_text())["organisms"]
    assert {c.attrs["data-organism"]: c.attrs["data-blind-id"] for c in cards} == {
        e["organism"]: bid for bid, e in key.items()}


def test_informative_detector_recovers_the_trigger(game: Path) -> None:
    """Sanity of the fixture the report is built from, so the figures are not all chance."""
    res = {d["detector"]: d for d in json.loads((game / "results.json").read_text())
           ["detectors"]}
    g = res["test_pipe_trigger"]["groups"]["all"]
    assert g["auroc"] == 1.0 and g["confusion"]["tp"] == 2 and g["confusion"]["fp"] == 0
    assert g["trigger_exact"] == 1.0


def test_report_is_self_contained(game: Path) -> None:
    text = (game / "report.html").read_text()
    tree = Tree(text)
    assert not tree.find("link") and not tree.find("iframe")
    for n in tree.root.iter():
        for attr in ("src", "href"):
            v = n.attrs.get(attr, "")
            assert not v or v.startswith(("data:image/png;base64,", "#")), (n.tag, v[:60])
    assert "http://" not in text and "https://" not in text
    assert (game / "report.html").stat().st_mode & 0o777 == 0o644


def test_remediation_curves_and_tampered_key(game: Path, tmp_path: Path) -> None:
    """A remediation record (in the remediation package's own format) becomes persistence
    curves and a table; a key that no longer matches the commitment shows as not verified."""
    rec_mod = pytest.importorskip("auditgame.records.remediation")
    g = copy_game(game, tmp_path / "game")
    orgs = {}
    for folder in sorted((g / "organisms").iterdir()):
        card = json.loads((folder / "private" / "card.json").read_text())
        m = json.loads((folder / "private" / "metrics.json").read_text())
        rates = m["rates"]
        res = {str(s): rec_mod.BudgetResult(
            steps=s, rates={k: round(v / (1 + s), 4) for k, v in rates.items()},
            utility=m["utility"], utility_ratio=m["utility_ratio"], wall_time_s=0.1 * s,
            adapter_sha256="0" * 64) for s in (0, 4, 8)}
        o = rec_mod.OrganismRemediation(
            organism=folder.name, attack=card["attack"], poisoned=card["attack"] != "clean",
            primary_metric="asr" if "asr" in rates else None, results=res)
        orgs[folder.name] = o
    rem = rec_mod.Remediation(
        budgets=[0, 4, 8], base_utility=0.5, organisms=orgs,
        settings=rec_mod.RemediationSettings(lr=1e-3, warmup_steps=0, batch_size=8,
                                             n_samples=16, seed=0, max_len=48))
    (g / "remediation.json").write_text(rem.model_dump_json())
    key = g / "key.json"
    key.write_bytes(key.read_bytes().replace(b'"seal_seed":', b'"seal_seed": '))
    res = CliRunner().invoke(app, ["report", str(g)])
    assert res.exit_code == 0, res.output
    tree = Tree((g / "report.html").read_text())
    check_numbers(tree, g)
    assert tree.find("section", id="remediation")[0].attrs["data-present"] == "1"
    assert tree.find("img", id="fig-persistence")
    rows = tree.find("tr", **{"class": "rem-row"})
    assert sorted(r.attrs["data-organism"] for r in rows) == sorted(orgs)
    assert tree.find(id="verify-status")[0].attrs["data-status"] == "failed"
    assert "commitment" in tree.find(id="verify-message")[0].all_text()


def test_bad_optional_records_are_notes(game: Path, tmp_path: Path) -> None:
    """Every optional record is read through its model: a missing, malformed or old-version
    one is a one-line note naming the file (and field), never a crash, and what is shown still
    equals its source."""
    g = copy_game(game, tmp_path / "game")
    orgs = g / "organisms"
    (orgs / "backdoor-1" / "private" / "card.json").write_text("{not json")
    old = json.loads((orgs / "backdoor-2" / "private" / "metrics.json").read_text())
    del old["rates"]
    old["version"] = 0
    (orgs / "backdoor-2" / "private" / "metrics.json").write_text(json.dumps(old))
    (orgs / "clean-1" / "private" / "metrics.json").unlink()
    for name in ("backdoor-1", "backdoor-2", "clean-1"):  # records as written, not tampered
        folder = orgs / name
        (folder / HASHES).write_text(json.dumps(hash_tree(folder, exclude=[HASHES])))
    (g / "remediation.json").write_text('{"version": 0, "budgets": [1]}')
    (g / "pipeline.json").write_text("[]")
    (g / "base_metrics.json").write_text('{"utility": "high"}')
    # the command refuses a torn remediation round in one line; the library draws it as a note
    res = CliRunner().invoke(app, ["report", str(g)])
    assert res.exit_code == 2 and "remediation.json" in res.output, res.output
    tree = Tree(build_report(g).read_text())
    check_numbers(tree, g)
    notes = [n.all_text() for n in tree.find("p", **{"class": "note"})]
    assert len(notes) == 4 and all("\n" not in n for n in notes), notes
    assert any(n.startswith("organisms/backdoor-1/private/card.json: ") for n in notes)
    assert any(n.startswith("organisms/backdoor-2/private/metrics.json: rates: ")
               and "version 0" in n for n in notes)
    assert any("clean-1" in n and "metrics.json" in n for n in notes)
    assert any(n.startswith("base_metrics.json: utility: ") for n in notes)
    cards = {c.attrs["data-organism"]
             for c in tree.find("article", **{"class": "card organism-card"})}
    assert cards == {"backdoor-2", "clean-1", "clean-2"}
    assert not tree.find("span", **{"class": "num", "data-src": "base"})
    (rem,) = tree.find("section", id="remediation")
    assert rem.attrs["data-present"] == "0"
    assert "remediation.json: " in rem.all_text() and "version 0" in rem.all_text()
    (run,) = tree.find("section", id="run")
    assert "pipeline.json: " in run.all_text() and not tree.find("table", id="run-table")


def test_report_command_errors(tmp_path: Path) -> None:
    res = CliRunner().invoke(app, ["report", str(tmp_path)])
    assert res.exit_code == 2 and "results.json" in res.output
    (tmp_path / "results.json").write_text('{"version": 1}')
    res = CliRunner().invoke(app, ["report", str(tmp_path)])
    assert res.exit_code == 2 and "results.json" in res.output and "Traceback" not in res.output
    (tmp_path / "results.json").write_text("{not json")
    res = CliRunner().invoke(app, ["report", str(tmp_path)])
    assert res.exit_code == 2 and "results.json" in res.output and "Traceback" not in res.output
    assert len(res.output.strip().splitlines()) == 1, res.output


def find_chromium() -> str | None:
    for name in CHROMIUM_NAMES:
        path = shutil.which(name)
        if path:
            return path
    return None


def test_report_renders_in_headless_chromium(game: Path, tmp_path: Path) -> None:
    browser = find_chromium()
    if browser is None:
        pytest.skip("no chromium binary on PATH (.ci/run installs Debian's chromium)")
    g = copy_game(game, tmp_path / "game")
    build_report(g)
    cmd = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
           "--no-first-run", "--disable-background-networking", "--disable-component-update",
           "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}",
           "--virtual-time-budget=10000", "--dump-dom", (g / "report.html").as_uri()]
    env = {**os.environ, "HOME": str(tmp_path)}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    tree = Tree(proc.stdout)
    (body,) = tree.find("body")
    imgs = tree.find("img")
    assert len(imgs) >= 5
    assert body.attrs["data-images"] == str(len(imgs))
    assert body.attrs["data-images-rendered"] == str(len(imgs))
    for im in imgs:
        assert im.attrs.get("data-rendered") == "1", im.attrs.get("id")
        assert int(im.attrs["data-natural-width"]) > 200
    assert check_numbers(tree, g) > 100  # the numbers as the browser holds them
