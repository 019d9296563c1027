"""The shape of the source tree: no import circle (imports inside functions count), no file
over 400 lines, no function over 80, the game folder's names spelled only in `layout`, and a
public package. Reads the source; loads no model."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "src"
PKG = SRC / "auditgame"
MAX_FILE_LINES = 400
MAX_FUNCTION_LINES = 80


def _modules() -> dict[str, Path]:
    out = {}
    for p in PKG.rglob("*.py"):
        parts = list(p.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = p
    return out


def _target(mod: str, path: Path, node: ast.ImportFrom) -> str | None:
    if not node.level:
        return node.module
    base = mod.split(".")
    if path.name != "__init__.py":
        base = base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def import_graph() -> dict[str, set[str]]:
    """Module -> auditgame modules it imports anywhere in its body (functions included)."""
    mods = _modules()
    graph: dict[str, set[str]] = {}
    for mod, path in mods.items():
        edges: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                edges |= {a.name for a in node.names if a.name in mods}
            elif isinstance(node, ast.ImportFrom):
                t = _target(mod, path, node)
                if not t or not t.startswith("auditgame"):
                    continue
                for a in node.names:
                    edges.add(f"{t}.{a.name}" if f"{t}.{a.name}" in mods else t)
            elif (isinstance(node, ast.Call) and node.args
                  and isinstance(node.args[0], ast.Constant)
                  and getattr(node.func, "attr", getattr(node.func, "id", "")) == "import_module"
                  and node.args[0].value in mods):
                edges.add(node.args[0].value)
        edges.discard(mod)
        graph[mod] = {e for e in edges if e in mods}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_cycle_finder_finds_a_circle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_circle() -> None:
    assert cycles(import_graph()) == []


def test_organisms_and_detectors_never_import_backends() -> None:
    graph = import_graph()
    bad = [(m, e) for m, es in graph.items() for e in es
           if m.startswith(("auditgame.organisms", "auditgame.detectors"))
           and e.startswith("auditgame.backends")]
    assert bad == []


def test_no_file_or_function_too_long() -> None:
    long_files, long_funcs = [], []
    for path in sorted(PKG.rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        rel = path.relative_to(SRC).as_posix()
        if len(text.splitlines()) > MAX_FILE_LINES:
            long_files.append(rel)
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                n = (node.end_lineno or node.lineno) - node.lineno + 1
                if n > MAX_FUNCTION_LINES:
                    long_funcs.append(f"{rel}:{node.name} ({n})")
    assert long_files == [] and long_funcs == []


def test_game_folder_names_are_spelled_only_in_layout() -> None:
    from auditgame import layout

    names = {v for k, v in vars(layout).items()
             if k.isupper() and isinstance(v, str) and v}
    files = sorted(n for n in names if "." in n.strip("."))  # spec.yaml, key.json, ...
    folders = sorted(n for n in names if n not in files)     # organisms, bundle, .work, ...
    hits = []
    for path in sorted(PKG.rglob("*.py")):
        if path.name == "layout.py" and path.parent == PKG:
            continue
        text = path.read_text(encoding="utf-8")
        for n in files:
            if re.search(rf"[\"']{re.escape(n)}[\"']", text):
                hits.append(f"{path.relative_to(SRC)}: {n}")
        for n in folders:
            if re.search(rf"/\s*[\"']{re.escape(n)}[\"']", text):
                hits.append(f"{path.relative_to(SRC)}: / {n!r}")
    assert hits == []


def test_public_package() -> None:
    code = ("import sys, auditgame; print(auditgame.__version__); "
            "assert 'torch' not in sys.modules; "
            "assert callable(auditgame.make) and callable(auditgame.load_game)")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=False)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() and res.stdout.strip() != "0+unknown"


def test_unknown_api_name_is_an_attribute_error() -> None:
    import auditgame

    with pytest.raises(AttributeError):
        auditgame.no_such_thing  # noqa: B018
