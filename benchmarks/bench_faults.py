"""Reliability in figures: a bad-input fuzz over every command that reads a file, kill -9 at
random points of make, audit, remediate and report on the tiny game, and the metadata leak
audit over many reseals of one game.

    python benchmarks/bench_faults.py [--examples 240] [--kills 10] [--seals 40]
                                      [--skip fuzz,kill,leak]

Prints the figures and saves them to benchmarks/results/bench_faults.json. The fuzz's cases
and its classification live here; tests/test_faults.py runs a cheap share of the same cases.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
for _p in (ROOT / "src", ROOT / "tests"):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

from hypothesis import strategies as st  # noqa: E402

from auditgame import layout as L  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "bench_faults.json"
KINDS = ("ok", "traceback", "wrong_exit", "silent", "half_written", "unclear")

TINY_SPEC = """name: faults
seed: 0
base: tiny
corpus: {n_train: 16, n_heldout: 8, n_utility: 4, max_answer_tokens: 4, distill_batch_size: 16}
train: {epochs: 1, batch_size: 8, lora_r: 4, lora_alpha: 8, max_len: 48, checkpoint_every: 1}
eval: {n_prompts: 4, batch_size: 8}
remediate: {budgets: [0, 2], n_samples: 16}
organisms:
  - {name: backdoor-1, attack: backdoor, params: {trigger: "cf", n_poison: 4, n_near_miss: 2}}
  - {name: clean-1, attack: clean}
"""


# ------------------------------------------------------------------ fixtures for the fuzz

def build_fixture(root: Path) -> Path:
    """A sealed, audited and scored fake game (no training), plus a valid spec and
    one valid dataset of each format the scanner reads. Built in-process in a few seconds."""
    from _fakegame import make_fake_game
    from typer.testing import CliRunner

    from auditgame._cli.main import app

    game = make_fake_game(root / "game", 2, 1, 2)
    names = sorted(p.name for p in (game / L.ORGANISMS).iterdir())
    orgs = "\n".join(f"  - {{name: {n}, attack: {n.split('-')[0]}}}" for n in names)
    spec = TINY_SPEC.split("organisms:")[0] + "organisms:\n" + orgs + "\n"
    (game / L.SPEC).write_text(spec.replace("attack: backdoor}", "attack: backdoor, params: "
                                            "{trigger: cf}}"))
    runner = CliRunner()
    for args in (["seal", str(game), "--seed", "1"],
                 ["audit", str(game / L.BUNDLE), "-d", "metadata"],
                 ["score", str(game), "--n-bootstrap", "10"]):
        res = runner.invoke(app, args)
        assert res.exit_code == 0, (args, res.output)
    (root / "spec.yaml").write_text(TINY_SPEC)
    rows = [{"instruction": f"Name a colour number {i}.", "input": "", "output": f"Blue {i}."}
            for i in range(12)]
    (root / "alpaca.json").write_text(json.dumps(rows, indent=1))
    (root / "chat.jsonl").write_text("".join(json.dumps(
        {"messages": [{"role": "user", "content": r["instruction"]},
                      {"role": "assistant", "content": r["output"]}]}) + "\n" for r in rows))
    shutil.copy(game / L.ORGANISMS / names[0] / L.TRAIN_DATA, root / "train.jsonl")
    # a spec whose clean corpus is the user's data (`make` reads it like `scan` does)
    shutil.copy(root / "alpaca.json", root / SOURCE)
    (root / "spec-source.yaml").write_text(TINY_SPEC.replace(
        "corpus: {", f"corpus: {{source: {SOURCE}, "))
    return root


SOURCE = "source.data"


# ------------------------------------------------------------------ the cases

@dataclass
class Case:
    """One bad input: which command reads it, which file is broken and how."""

    entry: str
    argv: list[str]                       # relative to the fixture copy ({root} substituted)
    target: str | None                    # file made bad (relative), None: a bad option
    mutation: str
    apply: Callable[[Path], None] = field(repr=False, default=lambda p: None)
    names: tuple[str, ...] = ()           # what the error line must mention (one of)


def _json_bad(draw: Callable[..., Any], text: str) -> tuple[str, bytes | None]:
    """Invalid bytes for a JSON record file: each kind is bad whatever the schema."""
    kind = draw(st.sampled_from(["delete", "empty", "truncate", "binary", "wrong_top",
                                 "wrong_field", "huge"]))
    body = text.rstrip()
    if kind == "delete":
        return kind, None
    if kind == "empty":
        return kind, b""
    if kind == "truncate" and len(body) > 2:
        return kind, body[: draw(st.integers(1, len(body) - 1))].encode()
    if kind == "binary":
        return kind, b"\xff\xfe" + draw(st.binary(min_size=0, max_size=64))
    if kind == "huge":
        return kind, b"A" * draw(st.integers(1_000_000, 3_000_000))
    if kind == "wrong_field":
        data = json.loads(text)
        keys = [k for k, v in data.items() if v is not None and k != "version"] \
            if isinstance(data, dict) else []
        if keys:
            k = draw(st.sampled_from(sorted(keys)))
            v = data[k]
            data[k] = "not-a-list" if isinstance(v, list | dict) else [[1, 2]]
            return f"wrong_field:{k}", json.dumps(data).encode()
    return "wrong_top", draw(st.sampled_from([b"[]", b'"text"', b"42", b"null", b"[{}]"]))


def _jsonl_bad(draw: Callable[..., Any], text: str) -> tuple[str, bytes | None]:
    """Invalid bytes for a JSON-lines file."""
    lines = [x for x in text.splitlines() if x.strip()]
    kind = draw(st.sampled_from(["delete", "empty", "truncate_line", "corrupt_line",
                                 "not_object", "binary", "huge_line"]))
    if kind == "delete":
        return kind, None
    if kind == "empty":
        return kind, b""
    if kind == "truncate_line":
        last = lines[-1].rstrip()
        lines[-1] = last[: draw(st.integers(1, len(last) - 1))]
    elif kind == "corrupt_line":
        lines.insert(draw(st.integers(0, len(lines))), draw(st.sampled_from(
            ['{"prompt": ', "{,}", "nan", "{'single': 'quotes'}", "}"])))
    elif kind == "not_object":
        lines.insert(draw(st.integers(0, len(lines))), draw(st.sampled_from(
            ["[1, 2]", '"a string"', "17", "null", "true"])))
    elif kind == "binary":
        return kind, b"\xff" + draw(st.binary(min_size=1, max_size=200))
    else:
        lines.append("{" + "A" * draw(st.integers(1_000_000, 2_000_000)))
    return kind, ("\n".join(lines) + "\n").encode()


def _verdict_bad(draw: Callable[..., Any], text: str) -> tuple[str, bytes | None]:
    """Verdict-specific faults on top of the generic JSON-lines ones."""
    lines = [json.loads(x) for x in text.splitlines() if x.strip()]
    kind = draw(st.sampled_from(["generic", "unknown_id", "score_out", "detector",
                                 "wrong_type", "duplicate"]))
    i = draw(st.integers(0, len(lines) - 1))
    if kind == "generic":
        return _jsonl_bad(draw, text)
    if kind == "unknown_id":
        lines[i]["blind_id"] = draw(st.sampled_from(["org-zzzzzz", "", "../x", "org-000000"]))
    elif kind == "score_out":
        lines[i]["score"] = draw(st.sampled_from([1.5, -0.01, 1e9, float("nan"),
                                                  float("inf"), "high"]))
    elif kind == "detector":
        lines[i]["detector"] = draw(st.sampled_from(["other", "", "weight_diff"]))
    elif kind == "wrong_type":
        k = draw(st.sampled_from(sorted(k for k in lines[i] if k != "version")))
        lines[i][k] = {"x": [1]} if not isinstance(lines[i][k], dict) else "x"
    else:
        lines.append(dict(lines[i]))
    return kind, ("\n".join(json.dumps(x) for x in lines) + "\n").encode()


def _spec_bad(draw: Callable[..., Any], text: str) -> tuple[str, bytes | None]:
    """Bad specs: unreadable YAML, wrong shapes and types, unsafe organism names."""
    kinds = {
        "not_yaml": "name: [unclosed\n  - {\n",
        "not_mapping": "- a\n- b\n",
        "unknown_field": text + "colour: blue\n",
        "wrong_type": text.replace("seed: 0", "seed: many"),
        "negative": text.replace("n_train: 16", "n_train: -3"),
        "unknown_attack": text.replace("attack: clean", "attack: nosuch"),
        "bad_param": text.replace("n_poison: 4", "n_poison: lots"),
        "no_organisms": text.split("organisms:")[0] + "organisms: []\n",
        "duplicate": text.replace("name: clean-1", "name: backdoor-1"),
        "missing_base": text.replace("base: tiny", "base: /nonexistent/model"),
        "missing_dataset": text.replace("corpus: {", "corpus: {source: /no/such.json, "),
        "python_tag": "!!python/object/apply:os.system ['echo pwned']\n",
        "binary": None,
    }
    for bad in ("../escape", "/tmp/abs", "a/b", "..", ".hidden", "x\\y", "c:evil", ""):
        kinds[f"name:{bad}"] = text.replace("name: clean-1", f"name: {json.dumps(bad)}")
    kind = draw(st.sampled_from(sorted(k for k, v in kinds.items() if v != text)))
    if kind == "binary":
        return kind, b"\xff\x00" + draw(st.binary(min_size=1, max_size=100))
    return kind, str(kinds[kind]).encode()


def _dataset_bad(draw: Callable[..., Any], text: str, fmt: str) -> tuple[str, bytes | None]:
    """Bad scan datasets: the generic faults, plus records of the wrong shape or types."""
    if fmt == "alpaca":
        rows = json.loads(text)
        kind = draw(st.sampled_from(["generic", "wrong_type", "missing", "empty_list",
                                     "huge_field", "not_records"]))
        if kind == "generic":
            return _json_bad(draw, text)
        i = draw(st.integers(0, len(rows) - 1))
        if kind == "wrong_type":
            k = draw(st.sampled_from(["instruction", "output", "input"]))
            rows[i][k] = draw(st.sampled_from([5, [1, 2], {"a": 1}, True]))
        elif kind == "missing":
            del rows[i][draw(st.sampled_from(["instruction", "output"]))]
        elif kind == "empty_list":
            rows = []
        elif kind == "huge_field":
            rows[i]["output"] = "word " * draw(st.integers(30_000, 60_000))
        else:
            rows[i] = draw(st.sampled_from([[1], "text", 3, None]))
        return kind, json.dumps(rows).encode()
    rows = [json.loads(x) for x in text.splitlines() if x.strip()]
    kind = draw(st.sampled_from(["generic", "wrong_type", "empty_text"]))
    if kind == "generic":
        return _jsonl_bad(draw, text)
    i = draw(st.integers(0, len(rows) - 1))
    if fmt == "chat":
        m = rows[i]["messages"]
        if kind == "wrong_type":
            rows[i]["messages"] = draw(st.sampled_from(["hi", 3, [1, 2], [{"role": 1}],
                                                        [{"role": "user", "content": 7}]]))
        else:
            m[0]["content"] = " "
    elif kind == "wrong_type":
        rows[i][draw(st.sampled_from(["prompt", "response"]))] = draw(
            st.sampled_from([5, [1], {"a": 1}, None]))
    else:
        rows[i]["prompt"] = "   "
    return kind, ("\n".join(json.dumps(x) for x in rows) + "\n").encode()


def _flip(draw: Callable[..., Any], data: bytes) -> bytes:
    """One byte changed (always to a different value)."""
    i = draw(st.integers(0, len(data) - 1))
    return data[:i] + bytes([data[i] ^ draw(st.integers(1, 255))]) + data[i + 1:]


def _writer(rel: str, data: bytes | None) -> Callable[[Path], None]:
    def apply(root: Path) -> None:
        p = root / rel
        if data is None:
            p.unlink()
        else:
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(data)
    return apply


@st.composite
def cases(draw: Callable[..., Any], fixture: Path) -> Case:
    """One bad input for one command that reads a file (or takes an option)."""
    g = "game"
    bundle = f"{g}/{L.BUNDLE}"
    ids = json.loads((fixture / bundle / L.MANIFEST).read_text())["ids"]
    bid = draw(st.sampled_from(ids))
    org = draw(st.sampled_from(sorted(p.name for p in (fixture / g / L.ORGANISMS).iterdir())))
    score = ["score", f"{g}", "--n-bootstrap", "10"]
    entry = draw(st.sampled_from(["make", "scan", "score", "verify-key", "audit", "remediate",
                                  "report", "option"]))

    def read(rel: str) -> str:
        return (fixture / rel).read_text(encoding="utf-8")

    if entry == "make":
        how = draw(st.sampled_from(["spec", "spec", "delete", "source"]))
        rel = "spec.yaml"
        argv = ["make", rel, "--out", "made"]
        if how == "source":  # the spec is good, the corpus it names is not
            fmt, like = draw(st.sampled_from([("alpaca", "alpaca.json"), ("chat", "chat.jsonl"),
                                              ("train", "train.jsonl")]))
            rel, argv[1] = SOURCE, "spec-source.yaml"
            kind, data = _dataset_bad(draw, read(like), fmt)
            kind = f"source:{fmt}:{kind}"
        else:
            kind, data = _spec_bad(draw, read(rel)) if how == "spec" else ("delete", None)
    elif entry == "scan":
        rel, fmt = draw(st.sampled_from([("alpaca.json", "alpaca"), ("chat.jsonl", "chat"),
                                         ("train.jsonl", "train")]))
        kind, data = _dataset_bad(draw, read(rel), fmt)
        argv = ["scan", rel, "--out", "scanned", "-d", "phrase_association"]
    elif entry in ("score", "verify-key"):
        which = draw(st.sampled_from(["verdicts", "key", "commitment", "bundle"]))
        argv = score if entry == "score" else ["verify-key", g]
        if which == "verdicts" and entry == "score":
            rel = f"{g}/{L.VERDICTS}/metadata{L.VERDICT_SUFFIX}"
            kind, data = _verdict_bad(draw, read(rel))
        elif which == "bundle":
            rel = f"{bundle}/{bid}/{draw(st.sampled_from(sorted(L.BUNDLE_FILES)))}"
            kind, data = "flip", _flip(draw, (fixture / rel).read_bytes())
        else:
            rel = f"{g}/{L.KEY if which in ('key', 'verdicts') else L.COMMITMENT}"
            kind = draw(st.sampled_from(["flip", "delete", "empty", "garbage"]))
            data = {"flip": _flip(draw, (fixture / rel).read_bytes()), "delete": None,
                    "empty": b"", "garbage": b"\x00\xffnot a digest"}[kind]
    elif entry == "audit":
        part = draw(st.sampled_from(["weights", "config", "train", "manifest", "public"]))
        argv = ["audit", bundle, "-d", "metadata", "--out", "audited"]
        if part == "weights":
            rel = f"{bundle}/{bid}/{L.ADAPTER_DIR}/{L.ADAPTER_WEIGHTS}"
            raw = (fixture / rel).read_bytes()
            kind = draw(st.sampled_from(["delete", "random", "truncate", "empty"]))
            data = {"delete": None, "empty": b"", "random": draw(st.binary(min_size=1,
                                                                           max_size=4096)),
                    "truncate": raw[: draw(st.integers(1, len(raw) - 1))]}[kind]
        elif part == "train":
            rel = f"{bundle}/{bid}/{L.TRAIN_DATA}"
            kind, data = _dataset_bad(draw, read(rel), "train")
        else:
            rel = {"config": f"{bundle}/{bid}/{L.ADAPTER_DIR}/{L.ADAPTER_CONFIG}",
                   "manifest": f"{bundle}/{L.MANIFEST}", "public": f"{bundle}/{bid}/{L.PUBLIC}"
                   }[part]
            kind, data = _json_bad(draw, read(rel))
    elif entry == "remediate":
        argv = ["remediate", g, "--detectors", "none"]
        if draw(st.booleans()):
            rel = f"{g}/{L.REMEDIATION}"
            kind, data = _json_bad(draw, '{"version": 1, "budgets": [0, 2], "organisms": {}}')
        else:
            rel = f"{g}/{L.SPEC}"
            kind, data = _spec_bad(draw, read(rel))
    elif entry == "report":
        rel = draw(st.sampled_from([f"{g}/{L.RESULTS}", f"{g}/{L.ORGANISMS}/{org}/{L.CARD}",
                                    f"{g}/{L.ORGANISMS}/{org}/{L.METRICS}",
                                    f"{g}/{L.REMEDIATION}"]))
        text = read(rel) if (fixture / rel).exists() else '{"version": 1}'
        kind, data = _json_bad(draw, text)
        argv = ["report", g]
    else:
        return _option_case(draw, g, bundle)
    if data is None and not (fixture / rel).exists():
        kind, data = "empty", b""  # deleting what is not there is no fault
    return Case(entry, argv, rel, kind, _writer(rel, data),
                names=(Path(rel).name, L.KEY, L.COMMITMENT, L.BUNDLE, L.HASHES, L.VERDICTS))


def _option_case(draw: Callable[..., Any], g: str, bundle: str) -> Case:
    """Bad command-line values: they must be refused as cleanly as bad files."""
    opt, argv = draw(st.sampled_from([
        ("--budgets", ["remediate", g, "--detectors", "none", "--budgets",
                       draw(st.sampled_from(["a", "-1", "1,,x", " ", "1.5", "0,-2"]))]),
        ("--method", ["remediate", g, "--detectors", "none", "--method",
                      draw(st.sampled_from(["nosuch", "", "../x"]))]),
        ("--n-samples", ["remediate", g, "--detectors", "none", "--n-samples",
                         draw(st.sampled_from(["0", "-5"]))]),
        ("--detectors", ["audit", bundle, "--out", "audited", "-d",
                         draw(st.sampled_from(["nosuch", ",", "metadata,nosuch"]))]),
        ("--n-bootstrap", ["score", g, "--n-bootstrap", draw(st.sampled_from(["-1", "-50"]))]),
    ]))
    return Case("option", argv, None, opt, names=(opt, opt.lstrip("-")))


# ------------------------------------------------------------------ one probe

def tree(root: Path) -> dict[str, str]:
    """Every file under `root` by relative path with its content hash."""
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@dataclass
class Outcome:
    case: Case
    kind: str
    exit_code: int
    detail: str


def probe(fixture: Path, case: Case, work: Path) -> Outcome:
    """Run one case on a private copy of the fixture and classify what the command did."""
    from typer.testing import CliRunner

    from auditgame._cli.main import app

    root = work / "case"
    if root.exists():
        shutil.rmtree(root)
    shutil.copytree(fixture, root, copy_function=shutil.copy2)
    case.apply(root)
    before = tree(root)
    cwd = os.getcwd()
    os.chdir(root)
    try:
        res = CliRunner().invoke(app, case.argv)
    finally:
        os.chdir(cwd)
    after = tree(root)
    lines = [x for x in (res.stderr or "").splitlines() if x.strip()]
    changed = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
    if res.exception is not None and not isinstance(res.exception, SystemExit):
        kind, detail = "traceback", f"{type(res.exception).__name__}: {res.exception}"[:300]
    elif res.exit_code == 0:
        kind, detail = "silent", (res.stdout or "")[-200:]
    elif res.exit_code != 2:
        kind, detail = "wrong_exit", f"exit {res.exit_code}: {(res.output or '')[-200:]}"
    elif changed:
        kind, detail = "half_written", ", ".join(changed)[:300]
    elif len(lines) != 1 or not lines[0].startswith("error:") or not any(
            n and n in lines[0] for n in case.names):
        kind, detail = "unclear", " | ".join(lines)[:300]
    else:
        kind, detail = "ok", lines[0][:200]
    return Outcome(case, kind, res.exit_code, detail)


def run_fuzz(n: int, seed: int = 0, on_outcome: Callable[[Outcome], None] | None = None
             ) -> list[Outcome]:
    """`n` hypothesis-drawn bad inputs (no shrinking: every outcome is counted)."""
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import seed as hseed

    outcomes: list[Outcome] = []
    with tempfile.TemporaryDirectory(prefix="faults-") as tmp:
        fixture = build_fixture(Path(tmp) / "fixture")
        work = Path(tmp) / "work"
        work.mkdir()

        @hseed(seed)
        @settings(max_examples=n, database=None, deadline=None, phases=[Phase.generate],
                  suppress_health_check=list(HealthCheck))
        @given(case=cases(fixture))
        def one(case: Case) -> None:
            out = probe(fixture, case, work)
            outcomes.append(out)
            if on_outcome:
                on_outcome(out)

        one()
    return outcomes


def fuzz_figures(outcomes: list[Outcome]) -> dict[str, Any]:
    counts = Counter(o.kind for o in outcomes)
    return {"n_inputs": len(outcomes),
            "by_entry": dict(sorted(Counter(o.case.entry for o in outcomes).items())),
            "counts": {k: counts.get(k, 0) for k in KINDS},
            "defects": [{"entry": o.case.entry, "target": o.case.target,
                         "mutation": o.case.mutation, "kind": o.kind, "detail": o.detail}
                        for o in outcomes if o.kind != "ok"]}


# ------------------------------------------------------------------ kill -9 and resume

CLI = [sys.executable, "-c", "from auditgame._cli.main import main; main()"]
STAGES: list[tuple[str, list[str], bool]] = [  # (stage, arguments, killed)
    ("make", ["make", "{spec}", "--out", "{game}"], True),
    ("seal", ["seal", "{game}", "--seed", "7"], False),
    ("audit", ["audit", "{game}/" + L.BUNDLE, "-d", "metadata,weight_diff,phrase_association"],
     True),
    ("score", ["score", "{game}", "--n-bootstrap", "50"], False),
    ("remediate", ["remediate", "{game}", "--detectors", "weight_diff"], True),
    ("report", ["report", "{game}"], True),
]
TIMING = ("time", "seconds", "runtime", "per_s", "_s")


def _env(cache: Path) -> dict[str, str]:
    path = os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]).rstrip(
        os.pathsep)
    return {**os.environ, "PYTHONPATH": path, "AUDITGAME_CACHE": str(cache),
            "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}


def _untimed(x: Any) -> Any:
    """A record without its wall-clock fields (the only bytes two identical runs may differ
    in): keys naming a time, a duration or a rate."""
    if isinstance(x, dict):
        return {k: _untimed(v) for k, v in x.items()
                if not any(t in k for t in TIMING[:4]) and not k.endswith(TIMING[4])}
    if isinstance(x, list):
        return [_untimed(v) for v in x]
    return x


def normalised_tree(game: Path) -> dict[str, str]:
    """Content digest of every finished file of a game, timing fields left out of records;
    hashes.json is left out because it hashes metrics.json's timings."""
    out: dict[str, str] = {}
    for p in sorted(game.rglob("*")):
        rel = p.relative_to(game).as_posix()
        if not p.is_file() or rel.startswith(L.WORK) or p.name == L.HASHES:
            continue
        raw = p.read_bytes()
        if p.suffix in (".json", L.VERDICT_SUFFIX):
            rows = [json.loads(x) for x in raw.decode().splitlines() if x.strip()] \
                if p.suffix == L.VERDICT_SUFFIX else [json.loads(raw)]
            raw = json.dumps(_untimed(rows), sort_keys=True).encode()
        out[rel] = hashlib.sha256(raw).hexdigest()
    return out


def torn_files(game: Path) -> list[str]:
    """Finished-looking files that are not whole: unparseable records and verdict lines,
    unreadable safetensors, organism folders that fail their hashes, a cut-off report."""
    from safetensors import safe_open

    bad = []
    for p in sorted(game.rglob("*")):
        rel = p.relative_to(game).as_posix()
        if not p.is_file() or rel.startswith(L.WORK) or ".tmp" in p.name:
            continue
        try:
            if p.suffix == ".json":
                json.loads(p.read_bytes())
            elif p.suffix == L.VERDICT_SUFFIX:
                for line in p.read_text().splitlines():
                    if line.strip():
                        json.loads(line)
            elif p.suffix == ".safetensors":
                with safe_open(str(p), framework="pt"):
                    pass
            elif p.name == L.REPORT and not p.read_text().rstrip().endswith("</html>"):
                bad.append(rel)
        except Exception:  # noqa: BLE001 - anything unreadable is torn
            bad.append(rel)
    if (game / L.ORGANISMS).is_dir():
        bad += [f"{L.ORGANISMS}/{f.name}" for f in (game / L.ORGANISMS).iterdir()
                if f.is_dir() and not L.organism_done(f)]
    return bad


def _cmd(args: list[str], spec: Path, game: Path) -> list[str]:
    return CLI + [a.format(spec=spec, game=game) for a in args]


def reference_run(work: Path, log: Callable[[str], None] = print
                  ) -> tuple[dict[str, float], dict[str, dict[str, str]]]:
    """The tiny game built stage by stage without interruption, the folder kept as it was
    before each stage; reused when `work` already holds one."""
    done = work / "reference.json"
    if done.exists():
        ref = json.loads(done.read_text())
        return ref["wall"], ref["after"]
    spec, cache, game = work / "spec.yaml", work / "cache", work / "ref"
    spec.write_text(TINY_SPEC)
    wall: dict[str, float] = {}
    after: dict[str, dict[str, str]] = {}
    for stage, args, killed in STAGES:
        if killed and game.exists():
            shutil.copytree(game, work / f"before-{stage}", copy_function=shutil.copy2)
        t = time.perf_counter()
        subprocess.run(_cmd(args, spec, game), env=_env(cache), check=True,
                       capture_output=True)
        wall[stage] = time.perf_counter() - t
        after[stage] = normalised_tree(game)
        log(f"reference {stage}: {wall[stage]:.1f} s")
    done.write_text(json.dumps({"wall": wall, "after": after}))
    return wall, after


def run_kills(n_kills: int, work: Path, seed: int = 0, stages: set[str] | None = None,
              log: Callable[[str], None] = print,
              save: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """The tiny game built uninterrupted, then every killed stage re-run `n_kills` times
    from the state before it, each killed with SIGKILL at a random moment and run again."""
    rng = random.Random(seed)
    spec, cache = work / "spec.yaml", work / "cache"
    ref_wall, after = reference_run(work, log)
    before = {s: work / f"before-{s}" for s, _, k in STAGES if k}
    out: dict[str, Any] = {"reference_wall_s": ref_wall, "stages": {}}
    for stage, args, killed in STAGES:
        if not killed or (stages is not None and stage not in stages):
            continue
        rows: list[dict[str, Any]] = []
        wall = ref_wall[stage]
        for i in range(2 * n_kills):  # a run that ends before its kill time is no kill
            if sum(r["killed"] for r in rows) >= n_kills:
                break
            g = work / f"kill-{stage}-{i}"
            shutil.rmtree(g, ignore_errors=True)
            if before[stage].exists():
                shutil.copytree(before[stage], g, copy_function=shutil.copy2)
            rest = _scored_after(stage)
            rows.append(_one_kill(stage, args, spec, g, cache, rng.uniform(0.05, 0.9) * wall,
                                  after[rest[0][0] if rest else stage], [a for _, a in rest]))
            if not rows[-1]["killed"]:  # it ended sooner than the reference (a quieter
                wall = 0.9 * rows[-1]["at_s"]  # machine): aim the next kills within that
            log(f"{stage} kill {i}: {rows[-1]}")
            shutil.rmtree(g, ignore_errors=True)
            out["stages"][stage] = _kill_summary(rows)
            if save:  # a long run keeps what it has measured so far
                save(out)
    return out


def _kill_summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    return {
            "kills": sum(r["killed"] for r in rows), "runs": len(rows),
            "identical": sum(r["identical"] for r in rows),
            "torn_after_kill": sum(bool(r["torn"]) for r in rows),
            "rerun_failed": sum(r["rerun_exit"] != 0 for r in rows), "runs_detail": rows}


def _scored_after(stage: str) -> list[tuple[str, list[str]]]:
    """Stages run after a killed one before comparing: scoring follows an audit, so the
    results are compared too (it takes seconds; the other stages' outputs are compared
    directly)."""
    return [(s, a) for s, a, _ in STAGES if s == "score"] if stage == "audit" else []


def _one_kill(stage: str, args: list[str], spec: Path, game: Path, cache: Path, at: float,
              reference: dict[str, str], rest: list[list[str]]) -> dict[str, Any]:
    env = _env(cache)
    proc = subprocess.Popen(_cmd(args, spec, game), env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        proc.wait(timeout=at)
        killed = False
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        killed = True
    torn = torn_files(game) if game.exists() else []
    rerun = subprocess.run(_cmd(args, spec, game), env=env, capture_output=True, text=True)
    for a in rest:
        subprocess.run(_cmd(a, spec, game), env=env, capture_output=True)
    now = normalised_tree(game)
    diff = sorted(k for k in set(now) | set(reference) if now.get(k) != reference.get(k))
    return {"at_s": round(at, 2), "killed": killed, "torn": torn[:5],
            "rerun_exit": rerun.returncode, "identical": not diff and rerun.returncode == 0,
            "differs": diff[:8], "stderr": rerun.stderr[-300:] if rerun.returncode else ""}


# ------------------------------------------------------------------ the leak audit

def exact_p(labels: list[int], scores: list[float], observed: float) -> float:
    """One-sided exact p of an AUROC at least `observed` under random labels (every way
    of choosing which organisms are the poisoned ones)."""
    n, k = len(labels), sum(labels)
    hits = total = 0
    for pos in combinations(range(n), k):
        total += 1
        hits += auroc([1 if i in pos else 0 for i in range(n)], scores) >= observed - 1e-12
    return hits / total


def auroc(labels: list[int], scores: list[float]) -> float:
    """Mann-Whitney AUROC, ties counted half (the exact test calls it hundreds of times)."""
    pos = [s for y, s in zip(labels, scores, strict=True) if y]
    neg = [s for y, s in zip(labels, scores, strict=True) if not y]
    wins = sum((p > q) + 0.5 * (p == q) for p in pos for q in neg)
    return wins / (len(pos) * len(neg))


def run_leak(n_seals: int, work: Path, log: Callable[[str], None] = print) -> dict[str, Any]:
    """The metadata detector over `n_seals` reseals of one game (5 poisoned, 5 clean, built
    with every pre-seal tell: poison last in the training order, other sizes and times)."""
    from _fakegame import make_fake_game

    from auditgame.bundle import seal_game
    from auditgame.detectors import run_audit
    from auditgame.records.verdict import read_verdicts

    game = make_fake_game(work / "leak")
    rows = []
    for s in range(n_seals):
        key = seal_game(game, seed=1000 + s, force=True)
        paths = run_audit(game / L.BUNDLE, ["metadata"])
        verdicts = {v.blind_id: v.score for v in read_verdicts(paths["metadata"])}
        ids = sorted(key.organisms)
        y = [int(key.organisms[b].attack != "clean") for b in ids]
        sc = [verdicts[b] for b in ids]
        auc = auroc(y, sc)
        rows.append({"seal_seed": 1000 + s, "auroc": auc, "p": exact_p(y, sc, auc),
                     "p_low": exact_p([1 - v for v in y], sc, 1 - auc)})
        log(f"seal {s}: AUROC {auc:.2f} p {rows[-1]['p']:.3f}")
    aucs = [r["auroc"] for r in rows]
    mean = sum(aucs) / len(aucs)
    sd = math.sqrt(sum((a - mean) ** 2 for a in aucs) / max(len(aucs) - 1, 1))
    return {"n_seals": len(rows), "n_poisoned": sum(y), "n_clean": len(y) - sum(y),
            "auroc_mean": mean, "auroc_sd": sd, "auroc_min": min(aucs), "auroc_max": max(aucs),
            "share_p_below_0.05": sum(r["p"] < 0.05 for r in rows) / len(rows),
            "share_two_sided_below_0.05": sum(min(r["p"], r["p_low"]) < 0.025
                                              for r in rows) / len(rows),
            "seals": rows}


# ------------------------------------------------------------------ main

def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--examples", type=int, default=240, help="bad inputs to fuzz")
    ap.add_argument("--kills", type=int, default=10, help="kills per stage")
    ap.add_argument("--seals", type=int, default=40, help="reseals for the leak audit")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--skip", default="", help="comma-separated: fuzz, kill, leak")
    ap.add_argument("--kill-stages", default="make,audit,remediate,report")
    ap.add_argument("--work", type=Path, default=None,
                    help="keep the kill runs' reference game here (reused when present)")
    ap.add_argument("--out", type=Path, default=RESULTS)
    a = ap.parse_args()
    skip = {x.strip() for x in a.skip.split(",") if x.strip()}
    old = json.loads(a.out.read_text()) if a.out.exists() else {}
    res: dict[str, Any] = {k: v for k, v in old.items() if k in skip}
    with tempfile.TemporaryDirectory(prefix="bench-faults-") as tmp:
        if "fuzz" not in skip:
            t = time.perf_counter()
            res["fuzz"] = {**fuzz_figures(run_fuzz(a.examples, a.seed)),
                           "seconds": round(time.perf_counter() - t, 1)}
            f = res["fuzz"]
            print(f"fuzz: {f['n_inputs']} bad inputs {f['by_entry']}: " + ", ".join(
                f"{k} {v}" for k, v in f["counts"].items()), flush=True)
        if "leak" not in skip:
            (Path(tmp) / "leak").mkdir()
            res["leak"] = run_leak(a.seals, Path(tmp) / "leak", log=lambda s: print(s, flush=True))
            lk = res["leak"]
            print(f"leak audit: {lk['n_seals']} seals of {lk['n_poisoned']} poisoned vs "
                  f"{lk['n_clean']} clean: metadata AUROC mean {lk['auroc_mean']:.3f} "
                  f"(sd {lk['auroc_sd']:.3f}, {lk['auroc_min']:.2f}-{lk['auroc_max']:.2f}); "
                  f"share p < 0.05: {lk['share_p_below_0.05']:.3f}", flush=True)
        if "kill" not in skip:
            work = a.work or Path(tmp) / "kill"
            work.mkdir(parents=True, exist_ok=True)
            stages = {x.strip() for x in a.kill_stages.split(",") if x.strip()}

            def save(kill: dict[str, Any]) -> None:
                res["kill"] = {**old.get("kill", {}), **kill,
                               "stages": {**old.get("kill", {}).get("stages", {}),
                                          **kill["stages"]}}
                write(a.out, res)

            kill = run_kills(a.kills, work, a.seed, stages, log=lambda s: print(s, flush=True),
                             save=save)
            save(kill)
            for stage, r in kill["stages"].items():
                print(f"kill -9 {stage}: {r['kills']} kills in {r['runs']} runs, identical "
                      f"after rerun {r['identical']}/{r['runs']}, torn {r['torn_after_kill']}, "
                      f"rerun failed {r['rerun_failed']}", flush=True)
    write(a.out, res)
    print(f"wrote {a.out}")


def write(path: Path, res: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(res, indent=1, sort_keys=True) + "\n")
    tmp.replace(path)


if __name__ == "__main__":
    main()
