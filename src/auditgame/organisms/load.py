"""Reading a spec: YAML, then pydantic, then every plug-in it names (attack, hiding,
remediation method) tried on its options, so a bad spec fails when it is read, not hours later.

Kept apart from `organisms.spec` because the plug-ins import the spec's types; the check sits
above both.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from auditgame.errors import AuditgameError
from auditgame.organisms.spec import GameSpec, RemediateSpec


def _loc(err: dict[str, Any]) -> str:
    parts: list[str] = []
    for p in err.get("loc", ()):
        if isinstance(p, int):
            parts[-1:] = [f"{parts[-1]}[{p}]"] if parts else [f"[{p}]"]
        else:
            parts.append(str(p))
    return ".".join(parts) or "<root>"


def parse_spec(data: Any, path: str | Path = "<spec>") -> GameSpec:
    """Validate spec data; raise AuditgameError naming the file and the first bad field."""
    if not isinstance(data, dict):
        raise AuditgameError("a spec must be a YAML mapping", path=path)
    try:
        spec = GameSpec.model_validate(data)
    except ValidationError as e:
        err = e.errors()[0]
        raise AuditgameError(err["msg"], path=path, field=_loc(err)) from None
    if spec.base not in ("smollm2", "tiny") and not (Path(spec.base).expanduser()
                                                     / "config.json").exists():
        raise AuditgameError(
            f"base model {spec.base!r} is neither 'smollm2', 'tiny' nor a local Hugging Face "
            "model directory (no config.json there)", path=path, field="base")
    if spec.corpus.source != "bank" and not Path(spec.corpus.source).expanduser().exists():
        raise AuditgameError(f"dataset {spec.corpus.source!r} not found", path=path,
                             field="corpus.source")
    from auditgame.organisms.attacks import get_attack_class
    from auditgame.plugins import PluginError

    for i, org in enumerate(spec.organisms):
        try:
            cls = get_attack_class(org.attack)
        except PluginError as e:
            raise AuditgameError(e.message, path=path,
                                 field=f"organisms[{i}].attack") from None
        try:
            params = cls.Params.model_validate(org.params)
        except ValidationError as e:
            err = e.errors()[0]
            raise AuditgameError(
                err["msg"], path=path, field=f"organisms[{i}].params.{_loc(err)}"
            ) from None
        if org.rung is not None and cls(params).key_info().get("attack") == "clean":
            raise AuditgameError("a clean control has no rung (rungs order the poisoned "
                                 "organisms; every rung is scored against all controls)",
                                 path=path, field=f"organisms[{i}].rung")
        if org.hiding:
            from auditgame.organisms.hiding import make_hidings

            make_hidings(org, cls(org.params), i, path)
    _check_remediation(spec.remediate, path)
    return spec


def _check_remediation(rem: RemediateSpec, path: str | Path) -> None:
    """An unknown method or option fails when the spec is read, not hours later when the
    remediation round starts."""
    from auditgame.plugins import PluginError
    from auditgame.remediate.method import get_remediation

    try:
        get_remediation(rem.method)(rem.method_params)
    except PluginError as e:
        raise AuditgameError(e.message, path=path, field="remediate.method") from None
    except AuditgameError as e:
        raise AuditgameError(e.message, path=path, field=e.field) from None
    for i, (name, opts) in enumerate(rem.compared()):
        where = f"remediate.compare[{i}]"
        if name == rem.method:
            raise AuditgameError(f"{name!r} is already the round's method", path=path,
                                 field=where)
        try:
            get_remediation(name)(opts)
        except PluginError as e:
            raise AuditgameError(e.message, path=path, field=where) from None
        except AuditgameError as e:
            field = (e.field or "").replace("remediate.method_params", f"{where}.{name}")
            raise AuditgameError(e.message, path=path, field=field) from None


def load_spec(path: str | Path) -> GameSpec:
    """Read and validate a YAML spec file."""
    p = Path(path)
    if not p.is_file():
        raise AuditgameError("spec file not found" if not p.exists() else "not a file", path=p)
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise AuditgameError("not UTF-8 text", path=p) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark is not None else "yaml"
        raise AuditgameError(f"not valid YAML ({getattr(e, 'problem', e)})", path=p,
                             field=where) from None
    return parse_spec(data, p)
