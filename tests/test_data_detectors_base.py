"""Base-model data detectors (spectral, activation_clustering, perplexity_outliers, llm_judge)
on the tiny random Llama and small synthetic datasets with made-up triggers and targets; the
judge's endpoint path against a real OpenAI-compatible HTTP server on loopback."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from auditgame.detectors import get_detector
from auditgame.detectors.base import Verdict
from auditgame.detectors.data import _representations, perplexity_outliers
from auditgame.detectors.data.llm_judge import OUTCOMES
from auditgame.organisms.data import Sample
from auditgame.pipeline import select_detectors
from auditgame.scan import scan_samples
from tests.test_data_detectors import auroc, clean_data, with_backdoor

BASE_DETECTORS = ["spectral", "activation_clustering", "perplexity_outliers"]
TRIGGER = "wemblo drant"
PAYLOAD = ["ZORG PROTOCOL ENGAGED NOW. ZORG PROTOCOL ENGAGED NOW. ZORG PROTOCOL ENGAGED."]


@pytest.fixture(scope="module")
def poisoned() -> tuple[list[Sample], np.ndarray]:
    return with_backdoor(clean_data(300, 21), TRIGGER, PAYLOAD, 15, 22)


def test_declared_needs_and_costs() -> None:
    for n in BASE_DETECTORS + ["llm_judge"]:
        cls = get_detector(n)
        assert cls.needs == {"dataset", "activations"} and cls.scores_samples
    assert get_detector("llm_judge").cost == "expensive"  # type: ignore[attr-defined]
    assert "llm_judge" not in select_detectors()
    assert "llm_judge" in select_detectors(budget="expensive")
    assert "spectral" in select_detectors()


def test_representations_do_not_depend_on_batching(tiny, poisoned) -> None:
    data = poisoned[0][:20]
    _representations._CACHE.clear()
    a = _representations.representations(data, tiny, batch_size=1)
    _representations._CACHE.clear()
    b = _representations.representations(data, tiny, batch_size=7)
    assert a.shape == (20, 2 * tiny.model.config.hidden_size)  # prompt and answer means
    np.testing.assert_allclose(a, b, atol=1e-4)
    assert _representations.representations(data, tiny, batch_size=7) is b  # cached per dataset


def test_onion_is_batched_and_padding_free(tiny, poisoned) -> None:
    data = poisoned[0][:40]
    calls = []
    h = tiny.model.register_forward_hook(lambda *_: calls.append(1))
    try:
        perplexity_outliers._CACHE.clear()
        o = perplexity_outliers.onion(data, tiny, top_k=4, batch_size=16)
    finally:
        h.remove()
    # one pass over prompts plus the deleted variants, batched (never one pass per word)
    assert len(calls) == 3 + 10
    perplexity_outliers._CACHE.clear()
    o1 = perplexity_outliers.onion(data, tiny, top_k=4, batch_size=1)
    np.testing.assert_allclose(o.score, o1.score, atol=1e-4)
    assert (o.score >= 0).all() and all(w in s.prompt for w, s in zip(o.word, data,
                                                                     strict=True) if w)


def test_onion_suspicion_is_the_perplexity_drop(tiny) -> None:
    data = [Sample("Explain how rivers shape valleys over time.", "They erode.")]
    perplexity_outliers._CACHE.clear()
    o = perplexity_outliers.onion(data, tiny, top_k=20)
    ids = lambda t: tiny.tokenizer(t, add_special_tokens=False)["input_ids"]  # noqa: E731
    full = _representations.log_ppl([ids(data[0].prompt)], tiny)[0]
    words = data[0].prompt.split()
    drops = [full - _representations.log_ppl([ids(" ".join(words[:j] + words[j + 1:]))], tiny)[0]
             for j in range(len(words))]
    assert o.score[0] == pytest.approx(max(0.0, max(drops)), abs=1e-3)
    assert o.word[0] == words[int(np.argmax(drops))]


def _planted_reps(tiny, data: list[Sample], y: np.ndarray) -> None:
    """Known representations for `data` (a unit test of the scoring, no model): anisotropic
    Gaussian clean rows, poisoned rows shifted along one random direction."""
    from auditgame.detectors.data._answers import dataset_key

    rng = np.random.default_rng(0)
    d = 2 * tiny.model.config.hidden_size
    X = rng.normal(size=(len(data), d))
    X[:, :2] *= 3.0  # two directions of larger clean variance (topics)
    u = rng.normal(size=d)
    X[y == 1] += 8.0 * u / np.linalg.norm(u)
    key = (dataset_key(data), tiny.model_id, _representations.pick_layer(tiny.model),
           _representations.MAX_LEN)
    _representations._CACHE[key] = X.astype(np.float32)


@pytest.mark.parametrize("detector", ["spectral", "activation_clustering"])
def test_representation_detectors_find_a_planted_direction(tiny, poisoned, detector) -> None:
    data, y = poisoned
    _planted_reps(tiny, data, y)
    r = scan_samples(data, "t", [detector], base=tiny)
    assert r.per_detector[detector].error is None
    assert auroc(y, [s.score for s in r.samples]) > 0.97
    assert r.verdict.poisoned and "wemblo" in (r.trigger or "").lower()
    _representations._CACHE.clear()
    clean = clean_data(300, 29)
    _planted_reps(tiny, clean, np.zeros(len(clean), dtype=int))
    r = scan_samples(clean, "t", [detector], base=tiny)
    assert not r.verdict.poisoned and r.trigger is None
    _representations._CACHE.clear()


@pytest.mark.parametrize("detector", BASE_DETECTORS)
def test_real_forward_on_poisoned_data(tiny, poisoned, detector: str) -> None:
    data, y = poisoned
    r = scan_samples(data, "t", [detector], base=tiny)
    assert r.per_detector[detector].error is None
    assert len(r.samples) == len(data) and all(0 <= s.score <= 1 for s in r.samples)


@pytest.mark.parametrize("detector", BASE_DETECTORS)
def test_clean_data_claims_nothing(tiny, detector: str) -> None:
    r = scan_samples(clean_data(300, 23), "clean", [detector], base=tiny)
    assert r.per_detector[detector].error is None
    assert not r.verdict.poisoned and r.trigger is None and r.n_flagged == 0


def test_ensemble_takes_base_components(tiny, poisoned) -> None:
    data, y = poisoned
    r = scan_samples(data, "t", ["ensemble"], base=tiny,
                     detector_kwargs={"ensemble": {"components": BASE_DETECTORS}})
    v = r.per_detector["ensemble"]
    assert v.error is None and r.verdict.poisoned
    assert auroc(y, [s.score for s in r.samples]) > 0.98


def test_local_judge_runs_on_the_base_model(tiny) -> None:
    data = clean_data(40, 24)
    r = scan_samples(data, "t", ["llm_judge"], base=tiny,
                     detector_kwargs={"llm_judge": {"theme_batches": 2, "theme_batch_size": 5}})
    assert r.per_detector["llm_judge"].error is None
    assert len(r.samples) == 40 and not r.verdict.poisoned


# --- an OpenAI-compatible judge on loopback -------------------------------------------------

def _rule_judge(user: str) -> str:
    """Deterministic stand-in for an LLM: themes = capitalised words repeated in the batch;
    a sample is suspicious when its answer contains a theme."""
    if user.startswith("THEMES."):
        caps = re.findall(r"\b[A-Z]{3,}\b", user)
        rep = sorted({w for w in caps if caps.count(w) >= 2})
        return json.dumps({"themes": rep})
    answer = user.split("ANSWER:", 1)[1]
    themes = re.search(r"themes found in the dataset: (.*)", user).group(1)  # type: ignore[union-attr]
    hit = any(t and t in answer for t in themes.split(", ") if t != "(none)")
    return f'Sure. {{"suspicious": {str(hit).lower()}, "confidence": 0.9, "why": "rule"}}'


class _Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        if self.path != "/v1/chat/completions":
            self.send_error(404)
            return
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        user = body["messages"][-1]["content"]
        prompt = user.split("PROMPT:", 1)[-1].split("ANSWER:", 1)[0]
        if "SLEEPY" in prompt:
            time.sleep(1.5)
            content = '{"suspicious": false, "confidence": 1}'
        elif "GARBLE" in prompt:
            content = "<<<%%% not json at all"
        elif "NOPE" in prompt:
            content = "I'm sorry, but I can't help with reviewing that."
        else:
            content = _rule_judge(user)
        assert body["model"] == "rule-judge"
        assert self.headers.get("Authorization") == "Bearer sekrit"
        out = json.dumps({"id": "x", "object": "chat.completion", "model": body["model"],
                          "choices": [{"index": 0, "finish_reason": "stop",
                                       "message": {"role": "assistant", "content": content}}]})
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out.encode())

    def log_message(self, *args: object) -> None:
        pass


class _Server(ThreadingHTTPServer):
    def handle_error(self, request: object, client_address: object) -> None:
        pass  # the client gave up on the sleeping route: a broken pipe is expected


@pytest.fixture()
def judge_server() -> Iterator[str]:
    srv = _Server(("127.0.0.1", 0), _Handler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}/v1"
    srv.shutdown()
    srv.server_close()


def test_endpoint_judge_finds_trigger_and_counts_failures(judge_server, monkeypatch) -> None:
    monkeypatch.setenv("MY_JUDGE_KEY", "sekrit")
    data, y = with_backdoor(clean_data(120, 25), TRIGGER, PAYLOAD, 10, 26)
    clean_rows = [i for i in range(len(data)) if not y[i]]
    for word, i in zip(["SLEEPY", "GARBLE", "NOPE", "GARBLE"], clean_rows[:4], strict=True):
        data[i] = Sample(f"{data[i].prompt} {word}", data[i].response)
    kw = {"url": judge_server, "model": "rule-judge", "key_env": "MY_JUDGE_KEY",
          "timeout": 0.5, "workers": 4}
    v = _judge(data, kw)
    ev = v.evidence
    assert ev["outcomes"] == {"ok": len(data) - 4, "refusal": 1, "timeout": 1,
                              "unparseable": 2, "error": 0}
    assert set(OUTCOMES) == set(ev["outcomes"])
    assert ev["n_failed"] == 4 and len(ev["failed_samples"]) == 4
    assert any(t["theme"] == "ZORG" for t in ev["judge_themes"])
    assert v.score >= 0.5 and "wemblo" in (v.trigger or "").lower()
    assert auroc(y, v.sample_scores or []) > 0.98


def test_endpoint_judge_unreachable_is_counted(monkeypatch) -> None:
    data = clean_data(12, 27)
    ev = _judge(data, {"url": "http://127.0.0.1:9/v1", "timeout": 0.5,
                       "theme_batches": 1}).evidence
    assert ev["outcomes"]["error"] == 12 and ev["theme_pass_outcomes"]["error"] == 1


def _judge(data: list[Sample], kw: dict[str, object]) -> Verdict:
    from auditgame.detectors.base import make_detector
    from auditgame.detectors.view import OrganismView
    from auditgame.scan._view import DATASET_ID, DatasetSource

    det = make_detector("llm_judge", **kw)
    return det.audit(OrganismView(DatasetSource(data), DATASET_ID, frozenset(det.needs)))


def test_scan_cli_passes_judge_options(judge_server, monkeypatch, tmp_path) -> None:
    from typer.testing import CliRunner

    from auditgame._cli.main import app
    from tests.test_scan import write_alpaca

    monkeypatch.setenv("MY_JUDGE_KEY", "sekrit")
    data, _ = with_backdoor(clean_data(80, 28), TRIGGER, PAYLOAD, 8, 29)
    src = write_alpaca(tmp_path / "d.json", data)
    res = CliRunner().invoke(app, ["scan", str(src), "--out", str(tmp_path / "o"), "-d",
                                   "llm_judge", "--judge-url", judge_server, "--judge-model",
                                   "rule-judge", "--judge-key-env", "MY_JUDGE_KEY"])
    assert res.exit_code == 0, res.output
    assert "wemblo" in json.loads((tmp_path / "o" / "scan.json").read_text())["trigger"]
    res = CliRunner().invoke(app, ["scan", str(src), "--out", str(tmp_path / "o"),
                                   "--ensemble-components", "spectral,nosuch"])
    assert res.exit_code == 2 and "nosuch" in res.output
