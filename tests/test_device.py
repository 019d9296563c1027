"""The `auto` dtype and precision: bfloat16 only where the hardware runs it fast."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from auditgame.errors import AuditgameError
from auditgame.models.base_lm import fast_bf16, resolve_dtype
from auditgame.organisms.spec import GameSpec


def test_fast_bf16_follows_the_cpu_flags() -> None:
    info = Path("/proc/cpuinfo")
    if not info.exists():
        pytest.skip("no /proc/cpuinfo on this system")
    flags = set(info.read_text().split())
    expected = bool({"avx512_bf16", "amx_bf16", "amx_tile"} & flags)
    assert fast_bf16(torch.device("cpu")) is expected


def test_auto_resolves_to_bf16_exactly_when_it_is_fast() -> None:
    cpu = torch.device("cpu")
    want = torch.bfloat16 if fast_bf16(cpu) else torch.float32
    assert resolve_dtype("auto", cpu) is want
    assert resolve_dtype("float32", cpu) is torch.float32
    assert resolve_dtype("bfloat16", cpu) is torch.bfloat16
    with pytest.raises(AuditgameError, match="dtype"):
        resolve_dtype("int8", cpu)


def test_spec_accepts_auto() -> None:
    spec = GameSpec.model_validate({"dtype": "auto", "train": {"precision": "auto"},
                                    "organisms": [{"name": "c", "attack": "clean"}]})
    assert spec.dtype == "auto" and spec.train.precision == "auto"
