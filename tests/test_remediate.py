"""Remediation on the tiny game: records, exact resume, clean pool, re-audit, methods, CLI."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar

import pytest
from typer.testing import CliRunner

from auditgame import layout as L
from auditgame._cli.main import app
from auditgame.detectors import (
    Detector,
    OrganismView,
    Verdict,
    register_detector,
    unregister_detector,
)
from auditgame.layout import REMEDIATION
from auditgame.organisms.load import load_spec
from auditgame.records.remediation import RemediationSettings
from auditgame.remediate import read_remediation, remediate_game
from auditgame.remediate.method import (
    FixerView,
    RemediationMethod,
    register_remediation,
    unregister_remediation,
)

TINY_SPEC = Path(__file__).resolve().parent.parent / "src/auditgame/examples/tiny.yaml"
runner = CliRunner()


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture()
def game(built: Path, tmp_path: Path) -> Path:
    """A private copy of the session's tiny game (conftest.built)."""
    g = tmp_path / "game"
    shutil.copytree(built, g)
    return g


class LoraNormDetector(Detector):
    """Weights-only: the norm of the LoRA update, squashed to [0, 1]."""

    name = "test_lora_norm"
    needs: ClassVar[frozenset[str]] = frozenset({"weights"})

    def audit(self, organism: OrganismView) -> Verdict:
        n = sum(float(t.float().norm()) for k, t in organism.weights.tensors.items()
                if "lora_B" in k)
        return self.verdict(organism, score=n / (1.0 + n))


def _norm_score(adapter: Path) -> float:
    from safetensors.torch import load_file

    n = sum(float(t.float().norm()) for k, t in load_file(str(adapter)).items() if "lora_B" in k)
    return n / (1.0 + n)


def test_records_and_exact_resume(game: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    shutil.copytree(game, other)
    remediate_game(game, budgets=[0, 2, 5], detectors=[], n_samples=24)
    rec = read_remediation(game)
    assert rec is not None and rec.budgets == [0, 2, 5]
    spec = load_spec(TINY_SPEC)
    assert set(rec.organisms) == {o.name for o in spec.organisms}
    for name, o in rec.organisms.items():
        metrics = json.loads((game / "organisms" / name / L.METRICS).read_text())
        assert sorted(o.results, key=int) == ["0", "2", "5"]
        assert o.results["0"].rates == metrics["rates"]  # before = what `make` measured
        assert o.results["0"].utility == metrics["utility"]
        hashes = {r.adapter_sha256 for r in o.results.values()}
        assert len(hashes) == 3  # the adapter changes at every budget
        for b in ("2", "5"):
            r = o.results[b]
            assert set(r.rates) == set(metrics["rates"]) and 0 <= r.utility <= 1
            assert r.train_loss is not None and r.train_loss > 0
            assert (game / "remediation" / name / f"step-{b}" / "adapter" /
                    L.ADAPTER_WEIGHTS).exists()
        assert o.poisoned == (o.attack != "clean")
        if o.poisoned:
            assert o.primary_metric == "asr" and o.relapse_asr == o.results["5"].rates["asr"]
            assert o.near_miss_after == o.results["5"].rates["near_miss_rate"]
    # only the newest optimizer state is kept
    assert not (game / "remediation" / "backdoor-1" / "step-2" / "optimizer.safetensors").exists()
    # the same budgets reached in two runs (resume from step 2) give the same adapters
    remediate_game(other, budgets=[0, 2], detectors=[], n_samples=24)
    before = (other / REMEDIATION).read_text()
    remediate_game(other, budgets=[0, 2], detectors=[], n_samples=24)  # nothing to do
    assert (other / REMEDIATION).read_text() == before
    remediate_game(other, budgets=[0, 2, 5], detectors=[], n_samples=24)
    rec2 = read_remediation(other)
    assert rec2 is not None
    for name, o in rec.organisms.items():
        for b in ("2", "5"):
            assert rec2.organisms[name].results[b].adapter_sha256 == o.results[b].adapter_sha256
            assert rec2.organisms[name].results[b].rates == o.results[b].rates


def test_a_fix_adapter_config_is_the_same_bytes_in_every_process(game: Path,
                                                                  tmp_path: Path) -> None:
    """PEFT keeps `target_modules` as a set and saves it in hash order, so two processes
    (PYTHONHASHSEED) wrote one fix's config differently. Given the modules in an unsorted
    order, the saved config lists them sorted, as an organism's config does."""
    from auditgame.models.base_lm import load_base
    from auditgame.remediate.fixing import save_budget
    from auditgame.remediate.train import load_trainable, make_optimizer

    spec = load_spec(TINY_SPEC)
    bm = load_base("tiny")
    model = load_trainable(bm.model, game / L.ORGANISMS / "backdoor-1" / L.ADAPTER_DIR)
    modules = sorted(model.peft_config["default"].target_modules)
    assert len(modules) > 1
    model.peft_config["default"].target_modules = modules[::-1]  # any order but sorted
    settings = RemediationSettings(lr=1e-3, warmup_steps=0, batch_size=4, n_samples=4,
                                   seed=0, max_len=spec.train.max_len)
    out = save_budget(L.GameFolder(tmp_path).remediation_files(), "backdoor-1", 1, model,
                      make_optimizer(model, settings))
    cfg = json.loads((out / L.ADAPTER_DIR / L.ADAPTER_CONFIG).read_text())
    assert cfg["target_modules"] == modules
    built = json.loads((game / L.ORGANISMS / "backdoor-1" / L.ADAPTER_DIR /
                        L.ADAPTER_CONFIG).read_text())
    assert cfg == built  # a fix is the organism's adapter trained further: the same config


def test_other_settings_need_force(game: Path) -> None:
    from auditgame.errors import AuditgameError

    remediate_game(game, budgets=[0, 1], detectors=[], n_samples=16)
    with pytest.raises(AuditgameError, match="other settings"):
        remediate_game(game, budgets=[0, 1], detectors=[], n_samples=20)
    remediate_game(game, budgets=[0, 1], detectors=[], n_samples=20, force=True)
    rec = read_remediation(game)
    assert rec is not None and rec.settings.n_samples == 20


def _drift(game: Path, name: str, budget: int) -> float:
    """Mean KL(base || organism) of next-token distributions on the game's utility answers."""
    import torch
    from peft import PeftModel

    from auditgame.models.base_lm import load_base
    from auditgame.models.generate import chat_full

    bm = load_base("tiny")
    rows = [json.loads(line) for line in
            (game / "organisms" / name / L.TRAIN_DATA).read_text().splitlines()[:8]]
    texts = ["".join(chat_full(bm.tokenizer, r["prompt"], r["response"])) for r in rows]
    model = PeftModel.from_pretrained(
        bm.model, str(game / "remediation" / name / f"step-{budget}" / "adapter"))
    total = 0.0
    with torch.no_grad():
        for t in texts:
            ids = bm.tokenizer(t, return_tensors="pt", add_special_tokens=False).input_ids
            own = torch.log_softmax(model(input_ids=ids).logits.float(), -1)
            with model.disable_adapter():
                ref = torch.log_softmax(model(input_ids=ids).logits.float(), -1)
            total += float((ref.exp() * (ref - own)).sum(-1).mean())
    return total / len(texts)


def test_kl_to_base_pulls_the_fix_toward_the_base(game: Path, tmp_path: Path) -> None:
    """The default fix (KL to the base at every answer token) leaves a clean control closer
    to the base model than plain SFT on the same samples and steps."""
    import yaml

    spec = yaml.safe_load((game / "spec.yaml").read_text())
    spec["train"]["lr"] = 0.02  # a fix that moves the tiny model measurably
    spec.setdefault("remediate", {})["kl_to_base"] = 5.0
    (game / "spec.yaml").write_text(yaml.safe_dump(spec))
    plain = tmp_path / "plain"
    shutil.copytree(game, plain)
    spec["remediate"]["kl_to_base"] = 0.0
    (plain / "spec.yaml").write_text(yaml.safe_dump(spec))
    for g in (game, plain):
        remediate_game(g, budgets=[0, 6], detectors=[], n_samples=24)
    assert read_remediation(game).settings.kl_to_base == 5.0
    assert read_remediation(plain).settings.kl_to_base == 0.0
    kept, free = _drift(game, "clean-1", 6), _drift(plain, "clean-1", 6)
    assert kept < 0.95 * free


def test_pool_never_holds_game_prompts(game: Path) -> None:
    from auditgame.models.base_lm import load_base
    from auditgame.organisms.corpus import build_corpus
    from auditgame.organisms.factory import plan
    from auditgame.remediate.data import pool_prompts, words

    spec = load_spec(TINY_SPEC)
    corpus = build_corpus(spec.corpus, spec.seed, load_base("tiny"))
    sets = [es for p in plan(spec, corpus) for es in p.sets]
    assert sets and any("cf" in q.split() for es in sets for q in es.prompts)
    pool = pool_prompts(spec, corpus, sets, 400)
    assert len(pool) == 400
    taken = {s.prompt for s in corpus.train + corpus.utility}
    assert not taken & {s.prompt for s in pool}
    eval_words = [words(q) for es in sets for q in es.prompts]
    assert not any(words(s.prompt) <= e for s in pool for e in eval_words)
    # held-out prompts used by the eval sets (trigger inserted) are recognised and dropped
    used = [s for s in corpus.heldout if any(words(s.prompt) <= e for e in eval_words)]
    assert used and not {s.prompt for s in used} & {s.prompt for s in pool}


def test_reaudit_scores_the_fix(game: Path) -> None:
    register_detector(LoraNormDetector)
    try:
        remediate_game(game, budgets=[0, 3], n_samples=16)  # default: weights/activations detectors
    finally:
        unregister_detector(LoraNormDetector.name)
    rec = read_remediation(game)
    assert rec is not None and LoraNormDetector.name in rec.detectors
    # the model-track detectors that need no dataset and no open queries re-audit too
    assert {"weight_diff", "activation_diff"} <= set(rec.detectors)
    assert not rec.detector_errors
    for o in rec.organisms.values():
        for d in rec.detectors:
            assert all(v is not None for v in o.detector_scores[d].values()), (d, o.organism)
    for name, o in rec.organisms.items():
        scores = o.detector_scores[LoraNormDetector.name]
        assert set(scores) == {"0", "3"}
        orig = game / "organisms" / name / L.ADAPTER_DIR / L.ADAPTER_WEIGHTS
        fixed = game / "remediation" / name / "step-3" / L.ADAPTER_DIR / L.ADAPTER_WEIGHTS
        assert scores["0"] == pytest.approx(_norm_score(orig))
        assert scores["3"] == pytest.approx(_norm_score(fixed))
        assert o.detector_delta[LoraNormDetector.name] == pytest.approx(
            scores["3"] - scores["0"], abs=1e-4)


def test_cli(game: Path) -> None:
    res = runner.invoke(app, ["remediate", str(game), "--budgets", "0,2", "--detectors", "none",
                              "--n-samples", "16"])
    assert res.exit_code == 0, res.output
    assert "backdoor-1" in res.output and (game / REMEDIATION).exists()
    res = runner.invoke(app, ["remediate", str(game), "--budgets", "a,b"])
    assert res.exit_code == 2 and "budgets" in res.output
    res = runner.invoke(app, ["remediate", str(game / "nope")])
    assert res.exit_code == 2 and "spec" in res.output


def _set_remediate(game: Path, **fields: object) -> None:
    import yaml

    spec = yaml.safe_load((game / "spec.yaml").read_text())
    spec.setdefault("remediate", {}).update(fields)
    (game / "spec.yaml").write_text(yaml.safe_dump(spec))


def test_unknown_method_or_option_is_one_clean_error(game: Path) -> None:
    from auditgame.errors import AuditgameError

    res = runner.invoke(app, ["remediate", str(game), "--method", "nope", "-d", "none"])
    assert res.exit_code == 2 and "--method" in res.output and "unknown remediation 'nope'" \
        in res.output and "clean_sft" in res.output, res.output
    assert "Traceback" not in res.output and not (game / REMEDIATION).exists()
    _set_remediate(game, method="nope")
    with pytest.raises(AuditgameError) as e:
        remediate_game(game, detectors=[])
    assert e.value.field == "remediate.method" and e.value.path.endswith("spec.yaml")
    res = runner.invoke(app, ["remediate", str(game), "-d", "none"])
    assert res.exit_code == 2 and "remediate.method: unknown remediation" in res.output
    _set_remediate(game, method="kl_distill", method_params={"kl_to_bsae": 1.0})
    with pytest.raises(AuditgameError) as e:
        remediate_game(game, detectors=[])
    assert e.value.field == "remediate.method_params.kl_to_bsae"
    _set_remediate(game, method="clean_sft", method_params={"kl_to_base": 1.0})
    with pytest.raises(AuditgameError, match="Extra inputs") as e:
        remediate_game(game, detectors=[])  # clean_sft takes no options
    assert e.value.field == "remediate.method_params.kl_to_base"


def test_clean_sft_differs_from_kl_distill_and_is_recorded(game: Path, tmp_path: Path) -> None:
    from auditgame.errors import AuditgameError

    plain, sft = tmp_path / "plain", tmp_path / "sft"
    shutil.copytree(game, plain)
    shutil.copytree(game, sft)
    remediate_game(game, budgets=[0, 2], detectors=[], n_samples=16)
    res = runner.invoke(app, ["remediate", str(sft), "--method", "clean_sft", "--budgets",
                              "0,2", "-d", "none", "--n-samples", "16"])
    assert res.exit_code == 0 and "clean_sft" in res.output, res.output
    kl, cs = read_remediation(game), read_remediation(sft)
    assert kl is not None and cs is not None
    assert (kl.settings.method, kl.settings.method_params) == ("kl_distill",
                                                               {"kl_to_base": None})
    assert kl.settings.kl_to_base == 1.0  # the spec's remediate.kl_to_base
    # clean_sft records the KL weight it trained with, not the spec's
    assert (cs.settings.method, cs.settings.method_params, cs.settings.kl_to_base) == (
        "clean_sft", {}, 0.0)
    saved = json.loads((sft / REMEDIATION).read_text())["settings"]
    assert saved["method"] == "clean_sft" and saved["method_params"] == {}
    for name, o in kl.organisms.items():
        assert o.results["0"] == cs.organisms[name].results["0"]  # the same organism
        assert o.results["2"].adapter_sha256 != cs.organisms[name].results["2"].adapter_sha256
    # another method is another setting: starting over needs --force
    with pytest.raises(AuditgameError, match="other settings"):
        remediate_game(game, budgets=[0, 2], detectors=[], n_samples=16, method="clean_sft")
    # plain SFT is kl_distill at KL weight 0: the same adapters as clean_sft
    _set_remediate(plain, method_params={"kl_to_base": 0.0})
    remediate_game(plain, budgets=[0, 2], detectors=[], n_samples=16)
    pl = read_remediation(plain)
    assert pl is not None and pl.settings.kl_to_base == 0.0
    for name, o in pl.organisms.items():
        assert o.results["2"].adapter_sha256 == cs.organisms[name].results["2"].adapter_sha256


class _Seen:
    views: ClassVar[list[object]] = []
    verdicts: ClassVar[list[list[str]]] = []


class _PeekMethod(RemediationMethod):
    """Declares only the weights, then reaches for the clean pool."""

    name = "test_peek"
    needs: ClassVar[frozenset[str]] = frozenset({"weights"})

    def train(self, organism: FixerView, settings: RemediationSettings, start: int,
              stop: int, on_step: Callable[[int], None] | None = None
              ) -> tuple[float | None, float]:
        _Seen.views.append(organism)
        assert organism.model is not None and organism.tokenizer is not None
        organism.clean_pool  # noqa: B018 - undeclared: raises
        return None, 0.0


class _VerdictMethod(RemediationMethod):
    """Reads the blue team's verdicts on its organism and trains nothing."""

    name = "test_verdicts"
    needs: ClassVar[frozenset[str]] = frozenset({"weights", "verdicts"})

    def train(self, organism: FixerView, settings: RemediationSettings, start: int,
              stop: int, on_step: Callable[[int], None] | None = None
              ) -> tuple[float | None, float]:
        _Seen.verdicts.append([v.blind_id for v in organism.verdicts])
        return None, 0.0


def _fake_seal(game: Path, ids: dict[str, str]) -> None:
    """A key (and its commitment) mapping blind ids to organisms, and one verdict each."""
    from auditgame.bundle.seal import commitment_of
    from auditgame.records.key import GameKey, KeyEntry
    from auditgame.records.verdict import Verdict, write_verdicts

    key = GameKey(seal_seed=0, nonce="n", bundle_sha256="x", organisms={
        b: KeyEntry(organism=n, attack="clean", roles=[]) for b, n in ids.items()})
    raw = key.model_dump_json().encode()
    (game / L.KEY).write_bytes(raw)
    (game / L.COMMITMENT).write_text(commitment_of(raw) + "\n")
    (game / L.VERDICTS).mkdir()
    write_verdicts(game / L.VERDICTS / "fake.jsonl",
                   [Verdict(blind_id=b, detector="fake", score=0.5) for b in ids])


def test_a_method_sees_only_what_it_declared(game: Path) -> None:
    from auditgame.remediate.method import NeedNotDeclared

    register_remediation(_PeekMethod)
    register_remediation(_VerdictMethod)
    try:
        with pytest.raises(NeedNotDeclared, match="clean_pool"):
            remediate_game(game, budgets=[0, 1], detectors=[], n_samples=16,
                           method="test_peek")
        # the whole surface of the view: nothing leads to the key, the card or the name
        assert {a for a in dir(_Seen.views[0]) if not a.startswith("_")} == {
            "model", "optimizer", "tokenizer", "clean_pool", "verdicts", "as_built", "scratch"}
        _fake_seal(game, {"org-aaa": "clean-1", "org-bbb": "backdoor-1"})
        remediate_game(game, budgets=[0, 1], detectors=[], n_samples=16,
                       method="test_verdicts", force=True)
    finally:
        unregister_remediation(_PeekMethod.name)
        unregister_remediation(_VerdictMethod.name)
    assert _Seen.verdicts == [["org-bbb"], ["org-aaa"]]  # spec order: backdoor-1, clean-1
    rec = read_remediation(game)
    assert rec is not None and rec.settings.method == "test_verdicts"
