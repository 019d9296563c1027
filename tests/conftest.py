"""Test tiers: unit tests load no model; integration tests use the tiny random Llama built in
code; `slow` tests load the real SmolLM2 and run only with --runslow."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--runslow", action="store_true", help="run tests that load SmolLM2")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--runslow"):
        return
    skip = pytest.mark.skip(reason="loads the real SmolLM2 model; run with --runslow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch,
                    request: pytest.FixtureRequest) -> None:
    """Fast tests never touch the user's cache; slow tests use it, so SmolLM2's dequantized
    weights and self-distilled answers are reused across runs."""
    if "slow" in request.keywords:
        return
    monkeypatch.setenv("AUDITGAME_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


@pytest.fixture(scope="session")
def tiny():
    from auditgame.models.base import build_tiny

    return build_tiny(0)


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return Path(__file__).resolve().parent.parent
