"""`llm_judge` against a real OpenAI-compatible server on loopback: `transformers serve`
(from `transformers[serving]`) serving a model directory. The tiny model's answers are not
JSON, so every sample is an unparseable outcome, counted and kept. (SmolLM2-135M served the
same way echoes the request instead of answering in JSON, 10 of 10 unparseable: an endpoint
judge needs a larger model; the local judge reads P(yes) against P(no) instead.)"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from auditgame.detectors.base import Verdict, make_detector
from auditgame.detectors.data.llm_judge import OUTCOMES
from auditgame.detectors.view import OrganismView
from auditgame.scan._view import DATASET_ID, DatasetSource
from tests.test_data_detectors import clean_data, with_backdoor

pytest.importorskip("fastapi", reason="transformers[serving] (the dev extra) is not installed")
pytest.importorskip("uvicorn", reason="transformers[serving] (the dev extra) is not installed")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def _serve(model_dir: Path, tmp: Path) -> Iterator[str]:
    """`transformers serve DIR` on a free loopback port; yields its /v1 url once healthy."""
    port = _free_port()
    log = (tmp / "serve.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-c", "from transformers.cli.transformers import main; main()",
         "serve", str(model_dir), "--host", "127.0.0.1", "--port", str(port)],
        stdout=log, stderr=subprocess.STDOUT,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"})
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    log.flush()
                    pytest.fail("transformers serve did not come up:\n"
                                + (tmp / "serve.log").read_text()[-2000:])
                time.sleep(0.5)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def _judge(url: str, model: str, n: int, seed: int, **kw: object) -> tuple[Verdict, int]:
    data, _ = with_backdoor(clean_data(n, seed), "wemblo", ["Buy ZORG now."], 3, seed + 1)
    det = make_detector("llm_judge", url=url, model=model, timeout=120, workers=2,
                        theme_batches=1, theme_batch_size=6, **kw)
    view = OrganismView(DatasetSource(data), DATASET_ID, frozenset(det.needs))
    return det.audit(view), len(data)


@pytest.fixture(scope="module")
def tiny_server(tiny, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    d = tmp_path_factory.mktemp("served") / "tiny"
    tiny.model.save_pretrained(str(d))
    tiny.tokenizer.save_pretrained(str(d))
    with _serve(d, d.parent) as url:
        yield url, str(d)


def test_served_tiny_model_answers_are_counted_never_dropped(tiny_server) -> None:
    url, model = tiny_server
    v, n = _judge(url, model, 12, 41, max_tokens=8)
    ev = v.evidence
    # the HTTP round trip works: no transport error, no timeout ...
    assert ev["outcomes"]["error"] == 0 and ev["outcomes"]["timeout"] == 0, ev["failed_samples"]
    # ... and a random model's answers are not JSON: every one is counted as unparseable
    assert sum(ev["outcomes"].values()) == n and set(ev["outcomes"]) == set(OUTCOMES)
    assert ev["outcomes"]["unparseable"] == n and ev["n_failed"] == n
    assert sum(ev["theme_pass_outcomes"].values()) == 1
    assert v.sample_scores is not None and len(v.sample_scores) == n
    json.dumps(ev)
