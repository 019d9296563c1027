"""Test tiers: unit tests load no model; integration tests use the tiny random Llama built in
code; `slow` tests load the real SmolLM2 and run only with --runslow."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

TINY_SPEC = Path(__file__).resolve().parent.parent / "src/auditgame/examples/tiny.yaml"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--runslow", action="store_true", help="run tests that load SmolLM2")


def pytest_configure(config: pytest.Config) -> None:
    """Fast runs get a private cache; --runslow uses the user's, so SmolLM2's dequantized
    weights and self-distilled answers are reused across runs."""
    if not config.getoption("--runslow"):
        import torch

        # the tiny model gains nothing from intra-op threads, and they cost a lot whenever
        # the machine is busy
        torch.set_num_threads(1)
        os.environ["AUDITGAME_CACHE"] = tempfile.mkdtemp(prefix="auditgame-test-cache-")
        config._auditgame_cache = os.environ["AUDITGAME_CACHE"]  # type: ignore[attr-defined]


def pytest_unconfigure(config: pytest.Config) -> None:
    cache = getattr(config, "_auditgame_cache", None)
    if cache:
        shutil.rmtree(cache, ignore_errors=True)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--runslow"):
        return
    skip = pytest.mark.skip(reason="loads the real SmolLM2 model; run with --runslow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def tiny():
    from auditgame.models.base_lm import build_tiny

    return build_tiny(0)


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return Path(__file__).resolve().parent.parent



@pytest.fixture(scope="session")
def talker(tiny):
    """The tiny model fine-tuned to write words (see `tests._talker`)."""
    from tests._talker import build_talker

    return build_talker(tiny)


@contextmanager
def single_thread() -> Iterator[None]:
    """One torch thread for a while: the tiny model gains nothing from intra-op threads, and
    on a shared, busy machine they spin. A fast run is single-threaded throughout
    (pytest_configure); with --runslow this holds only where it is asked for."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


@pytest.fixture(scope="module")
def one_thread() -> Iterator[None]:
    """`single_thread` for a whole module (`pytestmark = pytest.mark.usefixtures(...)`)."""
    with single_thread():
        yield


@pytest.fixture(scope="session")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny game (examples/tiny.yaml) made once for the session. Shared across modules,
    so read it only: a test that changes a game works on a copy."""
    from auditgame.organisms.factory import make_game
    from auditgame.organisms.load import load_spec

    game = tmp_path_factory.mktemp("tiny-game") / "game"
    with single_thread():
        make_game(load_spec(TINY_SPEC), game)
    return game
