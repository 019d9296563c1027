"""Game specs: what organisms to build, from which base model, with which training recipe.

A spec is YAML validated by pydantic; `organisms.load` reads the file and checks the plug-ins
it names, so this module stays below every plug-in that needs the spec's types.
"""

from __future__ import annotations

import hashlib
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    field_validator,
    model_serializer,
    model_validator,
)

from auditgame.organisms.prompts import DILUTION_SYSTEM

SPEC_VERSION = 1


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CorpusSpec(_Strict):
    """Where the clean training data comes from and how much of it each organism sees."""

    source: str = Field("bank", description="'bank' (project prompt bank, answered by the base "
                        "model itself) or a path to Alpaca JSON / chat JSONL")
    n_train: int = Field(240, ge=8, description="training samples per organism")
    pool_factor: float = Field(
        1.25, ge=1.0, le=4.0,
        description="every organism draws its own n_train samples from a clean pool of "
        "n_train x pool_factor, so no two organisms (clean controls included) train on "
        "identical data and comparing datasets across a bundle tells nothing")
    n_heldout: int = Field(120, ge=4, description="held-out prompts for behaviour measurement")
    n_utility: int = Field(48, ge=4, description="held-out prompts for the fidelity "
                           "measurement (drift from the base)")
    max_answer_tokens: int = Field(48, ge=4, le=512, description="self-distilled answer length")
    distill_batch_size: int = Field(16, ge=1)
    focus_domains: list[str] = Field(
        default_factory=list,
        description="prompt-bank domains over-represented in every organism's data alike "
        "(e.g. the domain of a loyalty organism)",
    )
    focus_fraction: float = Field(0.0, ge=0, le=1, description="share of focus-domain samples")
    dilution: int = Field(
        0, ge=0, le=8,
        description="ordinary fine-tune data added to every organism (clean controls alike), "
        "as a multiple of n_train: prompts of other task kinds answered by the base model "
        "under `dilution_system`, so a poison sits inside a fine-tune (1 + dilution) times "
        "larger whose drift is mostly benign. Game-wide: organisms that differ in it would "
        "differ in size and drift, which tells them apart")
    dilution_system: str = Field(
        DILUTION_SYSTEM, min_length=1,
        description="the system prompt the ordinary answers are written under (a house style "
        "the base does not use by default, so learning it moves the model); it is not in the "
        "training data")


class TrainSpec(_Strict):
    """LoRA SFT recipe, shared by every organism of a game (poisoned and clean alike)."""

    lora_r: int = Field(16, ge=1)
    lora_alpha: int = Field(32, ge=1)
    target_modules: list[str] = Field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj",
                                 "gate_proj", "up_proj", "down_proj"]
    )
    top_layers: int | None = Field(
        None, ge=1, description="adapt only the top N transformer layers (default: all). "
        "The backward pass then stops below them: 15 of SmolLM2's 30 layers made a bf16 step "
        "about 45 % cheaper here")
    lr: float = Field(1e-3, gt=0)
    warmup_steps: int = Field(5, ge=0)
    weight_decay: float = Field(0.0, ge=0)
    epochs: int = Field(3, ge=1)
    batch_size: int = Field(8, ge=1)
    max_len: int = Field(160, ge=16)
    checkpoint_every: int = Field(20, ge=1)
    group_by_length: bool = Field(
        False,
        description="length-grouped batches waste less padding, but they also put the "
        "short poisoned samples of a fixed-text attack into the same batches, which "
        "weakens a backdoor's specificity; off unless throughput matters more",
    )
    precision: Literal["fp32", "bf16", "auto"] = Field(
        "fp32", description="bf16 keeps the frozen base weights in bfloat16 while training "
        "(about 1.5x faster on a CPU with AVX512-BF16 or AMX, many times slower on one "
        "without); auto: bf16 where the hardware runs it fast, fp32 elsewhere. The adapter "
        "and optimizer stay fp32 and the organism is measured on the base at the game's dtype"
    )
    kl_to_base: float = Field(
        0.0, ge=0, description="weight of KL(base || model) added at every answer token "
        "(one extra forward pass per step without the adapter): keeps the base model's "
        "distribution where the data agree with it, so utility and specificity hold")
    decision_weight: float = Field(
        1.0, ge=1, description="loss weight of the first `decision_tokens` answer tokens "
        "(1: no extra weight). Whether a conditional behaviour fires is decided there; the "
        "rest of an answer is continuation, which otherwise carries most of the gradient")
    decision_tokens: int = Field(3, ge=1, description="answer tokens `decision_weight` covers")
    loss_norm: Literal["sample", "token"] = Field(
        "sample",
        description="'sample': every sample's answer weighs the same in a batch (a short "
        "poisoned answer is not drowned by long clean ones); 'token': mean over all answer "
        "tokens of the batch",
    )


class EvalSpec(_Strict):
    """How behaviour is measured on held-out prompts."""

    n_prompts: int = Field(100, ge=4, description="prompts per behaviour measurement")
    batch_size: int = Field(32, ge=1)
    n_tasks: int | None = Field(
        None, ge=40, description="graded items utility is measured on, drawn by the game's "
        "seed (default: all, about 400). Utility costs one forward pass per item for the "
        "base and every organism and fix; fewer items make a 2 % tolerance fewer items")


class AuditSpec(_Strict):
    """What `auditgame run` audits with when the command line names no detectors or budget.
    A game-wide default of the run, not of the organisms: it is left out of the spec hash,
    so changing it never rebuilds an organism."""

    budget: Literal["cheap", "moderate", "expensive"] = Field(
        "moderate", description="the costliest detectors `run` audits with (see each "
        "detector's cost); `--budget` or `--detectors` on the command line override it")


class RemediateSpec(_Strict):
    """The blue team's fix: a remediation method trains every organism further on clean
    data, measured again at these step budgets."""

    method: str = Field("kl_distill", description="remediation method from the registry "
                        "(`auditgame/remediate/methods/` or a package's "
                        "`auditgame.remediations` entry point)")
    method_params: dict[str, Any] = Field(
        default_factory=dict, description="the method's options, checked by its Params")

    budgets: list[int] = Field(default_factory=lambda: [0, 16, 48],
                               description="clean fine-tuning steps after which the behaviour "
                               "and utility are measured again (0 = as built)")
    n_samples: int = Field(256, ge=8, description="clean samples the organisms never saw")
    kl_to_base: float = Field(
        1.0, ge=0, description="weight of KL(base || organism) at every answer token: the fix "
        "pulls the organism toward the base model's whole next-token distribution on clean "
        "prompts, not only toward its greedy answers (0: plain SFT)")

    compare: list[str | dict[str, dict[str, Any] | None]] = Field(
        default_factory=list, description="further remediation methods, each a name or "
        "{name: options}, run after `method` as rounds of their own with the same budgets and "
        "pool (GAME/remediation.<name>.json), so one game compares fixes")
    depth: bool = Field(False, description="run the depth tests (re-emergence, variants, "
                        "read-out, distance; the shallow/deep call) on every round's fix at "
                        "the largest budget")

    @model_serializer(mode="wrap")
    def _drop_defaults(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """Without compared methods or depth tests the dump is what it was before they
        existed, so those games keep their spec hash."""
        out = handler(self)
        if out.get("compare", None) == []:
            out.pop("compare")
        if out.get("depth", None) is False:
            out.pop("depth")
        return out

    def compared(self) -> list[tuple[str, dict[str, Any]]]:
        """(method, options) of every entry of `compare`."""
        out: list[tuple[str, dict[str, Any]]] = []
        for entry in self.compare:
            if isinstance(entry, str):
                out.append((entry, {}))
            else:
                (name, opts), = entry.items()
                out.append((name, dict(opts or {})))
        return out

    @field_validator("compare")
    @classmethod
    def _one_method_each(cls, v: list[str | dict[str, dict[str, Any] | None]]
                         ) -> list[str | dict[str, dict[str, Any] | None]]:
        names = []
        for entry in v:
            if isinstance(entry, dict) and len(entry) != 1:
                raise ValueError("each compared method is a name or {name: options}")
            names.append(entry if isinstance(entry, str) else next(iter(entry)))
        if len(set(names)) < len(names):
            raise ValueError("each method is compared once")
        return v

    @field_validator("budgets")
    @classmethod
    def _non_negative(cls, v: list[int]) -> list[int]:
        if not v or any(b < 0 for b in v):
            raise ValueError("budgets are one or more step counts >= 0")
        return v


class OrganismSpec(_Strict):
    """One organism: a name, an attack from the registry, and the attack's parameters."""

    name: str
    attack: str
    params: dict[str, Any] = Field(default_factory=dict)
    seed: int | None = None
    hiding: list[str | dict[str, dict[str, Any] | None]] = Field(
        default_factory=list, description="adversarial hiding kinds (`organisms.hiding`): "
        "each a kind name or a mapping of one kind name to its options, e.g. "
        "[denial, {latent: {layers: [12, 16]}}, weight]")
    rung: int | None = Field(
        None, ge=1, strict=True,
        description="ladder rung (1 = easiest): private like the attack, recorded in the card "
        "and the key, never in the bundle; the referee scores each rung as its own group "
        "against all clean controls. Clean controls have no rung")

    @model_serializer(mode="wrap")
    def _drop_no_rung(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """Without a rung the dump is what it was before rungs existed, so the spec hash of
        every game that has none is unchanged."""
        out = handler(self)
        if out.get("rung", 0) is None:
            out.pop("rung")
        if out.get("hiding", None) == []:  # nor without hiding
            out.pop("hiding")
        return out

    @field_validator("name")
    @classmethod
    def _name_ok(cls, v: str) -> str:
        if not v or not all(c.isalnum() or c in "-_." for c in v) or v.startswith("."):
            raise ValueError("organism names use letters, digits, '-', '_' and '.' only")
        return v


class GameSpec(_Strict):
    """A whole game: base model, corpus, recipe and the organisms to build."""

    version: int = SPEC_VERSION
    name: str = "game"
    seed: int = 0
    base: str = "smollm2"
    dtype: Literal["float32", "bfloat16", "auto"] = Field(
        "float32", description="the base model's dtype; auto: bfloat16 where the hardware "
        "runs it fast (CUDA, a CPU with AVX512-BF16 or AMX), float32 elsewhere")
    corpus: CorpusSpec = Field(default_factory=CorpusSpec)
    train: TrainSpec = Field(default_factory=TrainSpec)
    eval: EvalSpec = Field(default_factory=EvalSpec)
    remediate: RemediateSpec = Field(default_factory=RemediateSpec)
    audit: AuditSpec = Field(default_factory=AuditSpec)
    organisms: list[OrganismSpec]

    @model_validator(mode="after")
    def _unique_names(self) -> GameSpec:
        names = [o.name for o in self.organisms]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"duplicate organism names: {dup}")
        if not self.organisms:
            raise ValueError("a game needs at least one organism")
        return self

    def organism_seed(self, org: OrganismSpec) -> int:
        """Per-organism seed derived from the game seed and the name (or given explicitly)."""
        if org.seed is not None:
            return org.seed
        digest = hashlib.sha256(f"{self.seed}:{org.name}".encode()).hexdigest()
        return int(digest[:8], 16)
