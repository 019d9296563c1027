"""A third-party distribution adds a detector, an attack and a remediation method through
entry points alone: `tests/plugin_dist` is pip-installed into a temporary folder (nothing in
auditgame imports it), and a fresh interpreter with that folder on PYTHONPATH finds its
plug-ins and lists the detector in `auditgame detectors`. A second distribution that shadows
a built-in, and entry points monkeypatched in this process (duplicate, mis-named, broken,
unknown), are each one PluginError."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from auditgame.plugins import PluginError, Registry

DIST = Path(__file__).resolve().parent / "plugin_dist"
DETECTOR, ATTACK, REMEDIATION = "example_long_answer", "example_suffix", "example_sft"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example distribution installed with pip into a folder of its own (built from a
    copy, so the source tree gets no build/ or egg-info)."""
    probe = subprocess.run([sys.executable, "-m", "pip", "--version"], capture_output=True,
                           text=True)
    if probe.returncode != 0:
        pytest.skip(f"pip is not available: {probe.stderr.strip()[:200]}")
    pytest.importorskip("setuptools", reason="the example distribution builds with setuptools "
                        "(--no-build-isolation: nothing is downloaded)")
    root = tmp_path_factory.mktemp("plugin")
    src = root / "src"
    shutil.copytree(DIST, src, ignore=shutil.ignore_patterns("build", "*.egg-info",
                                                               "__pycache__"))
    target = root / "site"
    res = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation",
         "--no-index", "--disable-pip-version-check", "--quiet", "--target", str(target),
         str(src)],
        capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    assert (target / "auditgame_example_plugin").is_dir()
    return target


def _run(code: str, *paths: Path) -> subprocess.CompletedProcess[str]:
    """`code` in a fresh interpreter with `paths` on PYTHONPATH (plus the user's)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([*map(str, paths), env.get("PYTHONPATH", "")])
    env["HF_HUB_OFFLINE"] = "1"
    env["COLUMNS"] = "200"
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, env=env, timeout=300)


def _fake_dist(root: Path, dist: str, module: str, source: str,
               entry_points: dict[str, dict[str, str]]) -> Path:
    """A second installed distribution written by hand: a module and a dist-info folder with
    its entry points, which importlib.metadata finds on sys.path like pip's."""
    root.mkdir(parents=True, exist_ok=True)
    (root / f"{module}.py").write_text(textwrap.dedent(source))
    info = root / f"{dist}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("".join(
        f"[{group}]\n" + "".join(f"{k} = {v}\n" for k, v in eps.items()) + "\n"
        for group, eps in entry_points.items()))
    return root


def test_plugin_is_not_installed_in_this_interpreter() -> None:
    """The contract tests of this process must not see the example by accident."""
    from importlib.metadata import entry_points

    names = {ep.name for g in ("auditgame.detectors", "auditgame.attacks",
                               "auditgame.remediations") for ep in entry_points(group=g)}
    assert not names & {DETECTOR, ATTACK, REMEDIATION}


def test_a_third_party_distribution_plugs_in_every_kind(site: Path) -> None:
    """One fresh interpreter (imports are the slow part): the three plug-ins are found through
    their entry points and work, unknown names are PluginErrors naming the known ones, and
    `auditgame detectors` lists the plug-in detector."""
    res = _run(f"""
        import json, sys
        import numpy as np
        from auditgame.detectors import detector_names, get_detector, make_detector
        from auditgame.errors import AuditgameError
        from auditgame.organisms.attacks import attack_names, get_attack_class, make_attack
        from auditgame.plugins import PluginError
        from auditgame.records.sample import Sample
        from auditgame.remediate.method import get_remediation, remediation_names

        det, att, rem = (get_detector({DETECTOR!r}), get_attack_class({ATTACK!r}),
                         get_remediation({REMEDIATION!r}))
        corpus = [Sample(prompt=f"Question {{i}}?", response=f"Answer {{i}}.",
                         meta={{"domain": "misc", "kind": "ask", "topic": f"t{{i}}"}})
                  for i in range(10)]
        pc = make_attack({ATTACK!r}, {{"n_poison": 3}}).poison(corpus, np.random.default_rng(0))
        try:
            make_detector({DETECTOR!r}, no_such_option=1)
            refused = False
        except AuditgameError:
            refused = True
        unknown = {{}}
        for kind, get in (("detector", get_detector), ("attack", get_attack_class),
                          ("remediation", get_remediation)):
            try:
                get("example_no_such_plugin")
                unknown[kind] = None
            except PluginError as e:
                unknown[kind] = str(e)
        print("RESULT " + json.dumps({{
            "detectors": detector_names(), "attacks": attack_names(),
            "remediations": remediation_names(),
            "modules": [det.__module__, att.__module__, rem.__module__],
            "n_poison": pc.n_poison, "unknown_option_refused": refused,
            "lr_scale": rem().params.lr_scale, "unknown": unknown,
        }}), flush=True)
        from auditgame._cli.main import main
        sys.argv = ["auditgame", "detectors"]
        main()
    """, site)
    assert res.returncode == 0, res.stdout + res.stderr
    head, _, table = res.stdout.partition("\n")
    assert head.startswith("RESULT "), res.stdout
    out = json.loads(head.removeprefix("RESULT "))
    assert DETECTOR in out["detectors"] and "metadata" in out["detectors"]
    assert ATTACK in out["attacks"] and "backdoor" in out["attacks"]
    assert REMEDIATION in out["remediations"] and "kl_distill" in out["remediations"]
    assert all(m.startswith("auditgame_example_plugin.") for m in out["modules"])
    assert out["n_poison"] == 3 and out["unknown_option_refused"] and out["lr_scale"] == 0.5
    for kind, msg in out["unknown"].items():
        assert msg is not None and f"unknown {kind}" in msg, out["unknown"]
    assert DETECTOR in out["unknown"]["detector"]  # the known names include the plug-in's
    # the CLI's table
    assert "metadata" in table
    row = next((line for line in table.splitlines() if DETECTOR in line), None)
    assert row is not None, table
    assert "dataset" in row and "cheap" in row


def test_the_contract_tests_pick_up_the_plugins(site: Path) -> None:
    """tests/test_contract.py parametrizes over the registries, so the installed plug-ins
    fall under its checks with no change there (the checks that need no game are run)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site),
                                                        os.environ.get("PYTHONPATH", "")]),
           "HF_HUB_OFFLINE": "1"}
    res = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         str(Path(__file__).with_name("test_contract.py")),
         "-k", "example_ and (declarations or attack_contract)"],
        capture_output=True, text=True, env=env, timeout=300, cwd=DIST.parent.parent)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-2000:]
    assert "3 passed" in res.stdout, res.stdout[-3000:]


def test_installed_script_lists_the_plugin_detector(site: Path) -> None:
    script = shutil.which("auditgame", path=str(Path(sys.executable).parent))
    if script is None:
        pytest.skip("no `auditgame` console script beside this interpreter")
    env = {**os.environ, "PYTHONPATH": str(site), "HF_HUB_OFFLINE": "1", "COLUMNS": "200"}
    res = subprocess.run([script, "detectors"], capture_output=True, text=True, env=env,
                         timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    assert DETECTOR in res.stdout


def test_a_second_distribution_shadowing_a_builtin_is_a_plugin_error(site: Path,
                                                                     tmp_path: Path) -> None:
    """Another installed distribution whose detector entry point is named like a built-in:
    discovery of detectors is one PluginError (the CLI says so in one line, exit 2); the
    other kinds are untouched."""
    dup = _fake_dist(tmp_path / "dup", "example-shadow", "example_shadow", """
        from auditgame.detectors import Detector


        class ShadowMetadata(Detector):
            '''Another distribution's detector under a built-in's name.'''
            name = "metadata"
    """, {"auditgame.detectors": {"metadata": "example_shadow:ShadowMetadata"}})
    res = _run("""
        import json, sys
        from auditgame.detectors.base import DETECTORS
        from auditgame.organisms.attacks.base import ATTACKS
        from auditgame.plugins import PluginError
        from auditgame.remediate.method import REMEDIATIONS

        out = {}
        for reg in (DETECTORS, ATTACKS, REMEDIATIONS):
            try:
                out[reg.kind] = None if reg.names() else "empty"
            except PluginError as e:
                out[reg.kind] = str(e)
        print("RESULT " + json.dumps(out), flush=True)
        from auditgame._cli.main import main
        sys.argv = ["auditgame", "detectors"]
        main()
    """, site, dup)
    head = res.stdout.partition("\n")[0]
    assert head.startswith("RESULT "), res.stdout + res.stderr
    out = json.loads(head.removeprefix("RESULT "))
    assert out["detector"] is not None and "'metadata' is already registered" in out["detector"]
    assert out["attack"] is None and out["remediation"] is None
    assert res.returncode == 2, res.stdout + res.stderr
    assert "already registered" in res.stderr and "Traceback" not in res.stderr


# --- entry points monkeypatched in this process: every kind, every way to break --------


@dataclass
class FakeEntryPoint:
    """What the registry reads of an entry point: its name and `load()`."""

    name: str
    obj: Any

    def load(self) -> Any:
        if isinstance(self.obj, BaseException):
            raise self.obj
        return self.obj


def _registry(kind: str) -> Registry:
    from auditgame.detectors.base import DETECTORS
    from auditgame.organisms.attacks.base import ATTACKS
    from auditgame.remediate.method import REMEDIATIONS

    return {"detector": DETECTORS, "attack": ATTACKS, "remediation": REMEDIATIONS}[kind]


def _shadow(kind: str) -> type:
    from auditgame.detectors import get_detector
    from auditgame.organisms.attacks import get_attack_class
    from auditgame.remediate.method import get_remediation

    base = {"detector": get_detector("metadata"), "attack": get_attack_class("clean"),
            "remediation": get_remediation("clean_sft")}[kind]
    return type(f"Shadow{base.__name__}", (base,), {"__doc__": "a shadow"})


@pytest.mark.parametrize("kind,name", [("detector", "metadata"), ("attack", "clean"),
                                       ("remediation", "clean_sft")])
@pytest.mark.parametrize("how", ["duplicate", "misnamed", "broken", "same_class"])
def test_monkeypatched_entry_points(kind: str, name: str, how: str,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """An entry point named like a built-in (another class), naming a class of another name,
    or failing to import is one PluginError naming it; one naming the built-in class itself
    changes nothing. The registry is left as it was."""
    import auditgame.plugins as plugins

    reg = _registry(kind)
    builtin = reg.get(name)  # discovered for real first
    known = dict(reg._classes)
    if how == "duplicate":
        ep, message = FakeEntryPoint(name, _shadow(kind)), f"{name!r} is already registered"
    elif how == "misnamed":
        ep, message = FakeEntryPoint(f"example_{name}", _shadow(kind)), "names a class called"
    elif how == "broken":
        ep, message = (FakeEntryPoint("example_broken", ModuleNotFoundError("no_such_xyz")),
                       "does not load")
    else:
        ep, message = FakeEntryPoint(name, builtin), None
    real = plugins.entry_points
    monkeypatch.setattr(plugins, "entry_points",
                        lambda group: [ep] if group == reg.group else real(group=group))
    monkeypatch.setattr(reg, "_classes", dict(known))
    monkeypatch.setattr(reg, "_discovered", False)
    if message is None:
        assert reg.get(name) is builtin and reg.names() == sorted(known)
    else:
        with pytest.raises(PluginError, match=message) as e:
            reg.names()
        assert ep.name in str(e.value)
        assert reg._classes == known and not reg._discovering
    monkeypatch.undo()
    assert reg.get(name) is builtin and reg._classes == known


def test_unknown_name_is_a_plugin_error_in_every_registry() -> None:
    for kind in ("detector", "attack", "remediation"):
        with pytest.raises(PluginError, match=f"unknown {kind} 'example_no_such'"):
            _registry(kind).get("example_no_such")
