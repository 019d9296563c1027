"""A third-party distribution adds a detector, an attack and a remediation method through
entry points alone: `tests/plugin_dist` is pip-installed into a temporary folder (nothing in
auditgame imports it), and fresh interpreters with that folder on PYTHONPATH find its
plug-ins, list the detector in `auditgame detectors`, and refuse duplicate, mis-named,
broken and unknown names with PluginError."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

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


def _json_of(res: subprocess.CompletedProcess[str]) -> dict:
    assert res.returncode == 0, res.stdout + res.stderr
    return json.loads(res.stdout.strip().splitlines()[-1])


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


def test_entry_points_register_every_kind(site: Path) -> None:
    res = _run(f"""
        import json
        import numpy as np
        from auditgame.detectors import detector_names, get_detector, make_detector
        from auditgame.organisms.attacks import attack_names, get_attack_class, make_attack
        from auditgame.remediate.method import get_remediation, remediation_names
        from auditgame.records.sample import Sample
        from auditgame.errors import AuditgameError

        det, att, rem = get_detector({DETECTOR!r}), get_attack_class({ATTACK!r}), \\
            get_remediation({REMEDIATION!r})
        corpus = [Sample(prompt=f"Question {{i}}?", response=f"Answer {{i}}.",
                         meta={{"domain": "misc", "kind": "ask", "topic": f"t{{i}}"}})
                  for i in range(10)]
        pc = make_attack({ATTACK!r}, {{"n_poison": 3}}).poison(corpus, np.random.default_rng(0))
        try:
            make_detector({DETECTOR!r}, no_such_option=1)
            refused = False
        except AuditgameError:
            refused = True
        print(json.dumps({{
            "detectors": detector_names(), "attacks": attack_names(),
            "remediations": remediation_names(),
            "modules": [det.__module__, att.__module__, rem.__module__],
            "n_poison": pc.n_poison, "unknown_option_refused": refused,
            "lr_scale": rem().params.lr_scale,
        }}))
    """, site)
    out = _json_of(res)
    assert DETECTOR in out["detectors"] and "metadata" in out["detectors"]
    assert ATTACK in out["attacks"] and "backdoor" in out["attacks"]
    assert REMEDIATION in out["remediations"] and "kl_distill" in out["remediations"]
    assert all(m.startswith("auditgame_example_plugin.") for m in out["modules"])
    assert out["n_poison"] == 3 and out["unknown_option_refused"] and out["lr_scale"] == 0.5


def test_cli_lists_the_plugin_detector(site: Path) -> None:
    res = _run("""
        import sys
        from auditgame._cli.main import main
        sys.argv = ["auditgame", "detectors"]
        main()
    """, site)
    assert res.returncode == 0, res.stdout + res.stderr
    assert DETECTOR in res.stdout and "metadata" in res.stdout
    row = next(line for line in res.stdout.splitlines() if DETECTOR in line)
    assert "dataset" in row and "cheap" in row


def test_installed_script_lists_the_plugin_detector(site: Path) -> None:
    script = shutil.which("auditgame", path=str(Path(sys.executable).parent))
    if script is None:
        pytest.skip("no `auditgame` console script beside this interpreter")
    env = {**os.environ, "PYTHONPATH": str(site), "HF_HUB_OFFLINE": "1", "COLUMNS": "200"}
    res = subprocess.run([script, "detectors"], capture_output=True, text=True, env=env,
                         timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    assert DETECTOR in res.stdout


def test_unknown_names_are_plugin_errors(site: Path) -> None:
    res = _run("""
        import json
        from auditgame.detectors import get_detector
        from auditgame.organisms.attacks import get_attack_class
        from auditgame.plugins import PluginError
        from auditgame.remediate.method import get_remediation

        out = {}
        for kind, get in (("detector", get_detector), ("attack", get_attack_class),
                          ("remediation", get_remediation)):
            try:
                get("example_no_such_plugin")
                out[kind] = None
            except PluginError as e:
                out[kind] = str(e)
        print(json.dumps(out))
    """, site)
    out = _json_of(res)
    for kind in ("detector", "attack", "remediation"):
        msg = out[kind]
        assert msg is not None and f"unknown {kind}" in msg, out
    assert DETECTOR in out["detector"]  # the known names include the plug-in's


DUP_SOURCE = """
    from auditgame.detectors import Detector
    from auditgame.organisms.attacks.clean import CleanAttack
    from auditgame.remediate.methods.clean_sft import CleanSftMethod


    class ShadowMetadata(Detector):
        '''Another distribution's detector under a built-in's name.'''
        name = "metadata"


    class ShadowClean(CleanAttack):
        name = "clean"


    class ShadowSft(CleanSftMethod):
        name = "clean_sft"


    class Misnamed(Detector):
        name = "example_other_name"
"""

CHECK_KIND = """
    import json
    from auditgame.detectors.base import DETECTORS
    from auditgame.organisms.attacks.base import ATTACKS
    from auditgame.plugins import PluginError
    from auditgame.remediate.method import REMEDIATIONS

    out = {}
    for reg in (DETECTORS, ATTACKS, REMEDIATIONS):
        try:
            reg.names()
            out[reg.kind] = None
        except PluginError as e:
            out[reg.kind] = str(e)
    print(json.dumps(out))
"""


@pytest.mark.parametrize("group,name,obj,kind,message", [
    ("auditgame.detectors", "metadata", "ShadowMetadata", "detector", "already registered"),
    ("auditgame.attacks", "clean", "ShadowClean", "attack", "already registered"),
    ("auditgame.remediations", "clean_sft", "ShadowSft", "remediation", "already registered"),
    ("auditgame.detectors", "example_misnamed", "Misnamed", "detector", "names a class"),
    ("auditgame.detectors", "example_broken", "no_such_module_xyz:Thing", "detector",
     "does not load"),
])
def test_a_second_distribution_cannot_shadow_or_break(site: Path, tmp_path: Path, group: str,
                                                      name: str, obj: str, kind: str,
                                                      message: str) -> None:
    """A second distribution whose entry point is named like a built-in (or names a class of
    another name, or does not import) makes discovery of that kind one PluginError; the
    other kinds are untouched."""
    target = obj if ":" in obj else f"example_shadow:{obj}"
    dup = _fake_dist(tmp_path / "dup", "example-shadow", "example_shadow", DUP_SOURCE,
                     {group: {name: target}})
    out = _json_of(_run(CHECK_KIND, site, dup))
    assert out[kind] is not None and message in out[kind], out
    assert name in out[kind]
    assert all(out[k] is None for k in out if k != kind), out


def test_without_the_shadow_everything_discovers(site: Path) -> None:
    """The control of the test above: the example distribution alone is clean."""
    out = _json_of(_run(CHECK_KIND, site))
    assert out == {"detector": None, "attack": None, "remediation": None}
