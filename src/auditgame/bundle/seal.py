"""Seal a game: blind the organisms into `GAME/bundle/` and commit to the answer key.

Blindness is structural: the bundle gets only the public files, under random blind ids, in a
shuffled creation order, with shuffled training data, fixed timestamps and permissions, and
training files padded to one size. The key (blind id -> organism, attack, trigger, target,
sample roles) stays outside the bundle; its sha256 is the commitment to publish before audits.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import secrets
import shutil
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from auditgame._util.io import (
    atomic_replace_dir,
    atomic_write_bytes,
    atomic_write_text,
    dumps_json,
    hash_tree,
    read_jsonl,
)
from auditgame.errors import AuditgameError
from auditgame.layout import (
    ADAPTER_CONFIG,
    ADAPTER_DIR,
    ADAPTER_WEIGHTS,
    BUNDLE_FILES,
    CARD,
    FLAGS,
    MANIFEST,
    PUBLIC,
    TRAIN_DATA,
    GameFolder,
    organism_done,
)
from auditgame.records._io import validation_error
from auditgame.records.key import GameKey, KeyEntry, Manifest
from auditgame.records.organism import OrganismCard, PublicMeta

FIXED_MTIME = 946684800  # 2000-01-01T00:00:00Z: every bundle file and folder gets this time
FILE_MODE = 0o644
DIR_MODE = 0o755


def canonical_json(obj: Any) -> bytes:
    """The one byte form of a JSON value: sorted keys, no spaces, ASCII."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def key_bytes(key: GameKey) -> bytes:
    """key.json is written in canonical form, so hashing its bytes hashes its content."""
    return canonical_json(key.model_dump(mode="json"))


def commitment_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def bundle_digest(bundle: Path) -> str:
    return hashlib.sha256(canonical_json(hash_tree(bundle))).hexdigest()


def default_seal_seed(game: Path) -> int:
    """Derived from the private spec's bytes (not the bare game seed, which may be public,
    so an auditor cannot recompute the blinding)."""
    spec = GameFolder(game).spec
    text = spec.read_bytes() if spec.exists() else b""
    return int(hashlib.sha256(b"seal:" + text).hexdigest()[:8], 16)


def _blind_ids(names: list[str], rng: random.Random) -> list[str]:
    ids: list[str] = []
    while len(ids) < len(names):
        bid = f"org-{rng.getrandbits(24):06x}"
        if bid not in ids:
            ids.append(bid)
    return ids


def _read_organisms(game: Path) -> list[tuple[str, Path, OrganismCard]]:
    root = GameFolder(game).organisms
    if not root.is_dir():
        raise AuditgameError("no organisms folder; run `auditgame make` first", path=root)
    out = []
    for folder in GameFolder(game).organism_folders():
        if not organism_done(folder):
            raise AuditgameError("organism is incomplete or altered (hashes.json mismatch); "
                                 "run `auditgame make` again", path=folder)
        try:
            card = OrganismCard.model_validate_json((folder / CARD).read_text())
        except (OSError, ValidationError) as e:
            raise AuditgameError(f"unreadable card ({e.__class__.__name__})",
                                 path=folder / CARD) from None
        out.append((folder.name, folder, card))
    if not out:
        raise AuditgameError("no organisms to seal", path=root)
    return out


def _same_everywhere(orgs: list[tuple[str, Path, OrganismCard]], rel: str) -> bytes:
    """Files that must not differ between organisms: differing bytes would be a tell."""
    first = orgs[0][1] / rel
    ref = first.read_bytes()
    for _, folder, _ in orgs[1:]:
        if (folder / rel).read_bytes() != ref:
            raise AuditgameError(f"differs from {first}; sealing it would leak a tell",
                                 path=folder / rel)
    return ref


def _normalise(root: Path) -> None:
    """Same permissions and timestamps everywhere, folders last (writing a file bumps them)."""
    paths = sorted(root.rglob("*"), key=lambda p: len(p.parts), reverse=True)
    for p in paths:
        os.chmod(p, DIR_MODE if p.is_dir() else FILE_MODE)
        os.utime(p, (FIXED_MTIME, FIXED_MTIME))
    os.chmod(root, DIR_MODE)
    os.utime(root, (FIXED_MTIME, FIXED_MTIME))


def seal_game(game: Path | str, seed: int | None = None, force: bool = False) -> GameKey:
    """Write GAME/bundle/, GAME/key.json and GAME/commitment.txt; returns the key.

    Resealing changes every blind id, so it needs `force` and removes the old verdicts and
    results (they answer a different blinding).
    """
    g = GameFolder(game)
    if g.key.exists() and not force:
        raise AuditgameError("already sealed; resealing invalidates a published commitment "
                             "(pass --force to do it anyway)", path=g.key)
    orgs = _read_organisms(g.root)
    seed = default_seal_seed(g.root) if seed is None else int(seed)
    public_raw = _same_everywhere(orgs, PUBLIC)
    try:
        public = PublicMeta.model_validate_json(public_raw)
    except ValidationError as e:
        raise AuditgameError(f"invalid public metadata ({e.errors()[0]['msg']})",
                             path=orgs[0][1] / PUBLIC) from None
    config_raw = _same_everywhere(orgs, f"{ADAPTER_DIR}/{ADAPTER_CONFIG}")

    rng = random.Random(seed)
    ids = _blind_ids([n for n, _, _ in orgs], rng)
    order = list(range(len(orgs)))
    rng.shuffle(order)
    assignment = {ids[k]: orgs[i] for k, i in enumerate(order)}  # creation order = shuffled
    data, roles = _shuffled_data(assignment, seed)

    tmp = g.root / f".{g.bundle.name}.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    _write_bundle(tmp, assignment, data, public, config_raw)
    manifest = Manifest(ids=sorted(ids), public=public, files=list(BUNDLE_FILES))
    atomic_write_text(tmp / MANIFEST, dumps_json(manifest.model_dump(mode="json")))
    _normalise(tmp)
    _check_bundle(tmp, ids)

    key = GameKey(
        seal_seed=seed, nonce=secrets.token_hex(32), bundle_sha256=bundle_digest(tmp),
        organisms={
            bid: KeyEntry(organism=name, attack=card.attack,
                          trigger=_opt_str(card.key.get("trigger")),
                          target=_opt_str(card.key.get("target")),
                          info=card.key, roles=roles[bid], rung=card.rung)
            for bid, (name, _, card) in sorted(assignment.items())
        },
    )
    raw = key_bytes(key)
    atomic_write_bytes(g.key, raw)
    atomic_write_text(g.commitment, commitment_of(raw) + "\n")
    atomic_replace_dir(tmp, g.bundle)
    if force:
        shutil.rmtree(g.verdicts, ignore_errors=True)
        g.results.unlink(missing_ok=True)
    return key


Assignment = dict[str, tuple[str, Path, OrganismCard]]


def _shuffled_data(assignment: Assignment, seed: int
                   ) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """Each organism's training lines (public fields only) in a seeded shuffled order, and
    each sample's private role in that order."""
    data: dict[str, list[str]] = {}
    roles: dict[str, list[str]] = {}
    for bid, (_, folder, _) in assignment.items():
        rows = read_jsonl(folder / TRAIN_DATA)
        flags = sorted(read_jsonl(folder / FLAGS), key=lambda f: int(f["index"]))
        if len(flags) != len(rows):
            raise AuditgameError(f"{len(flags)} flags for {len(rows)} samples",
                                 path=folder / FLAGS)
        perm = list(range(len(rows)))
        random.Random(f"{seed}:{bid}").shuffle(perm)
        data[bid] = [json.dumps({"prompt": rows[i]["prompt"], "response": rows[i]["response"],
                                 "meta": rows[i].get("meta") or {}},
                                sort_keys=True, ensure_ascii=False) for i in perm]
        roles[bid] = [str(flags[i]["role"]) for i in perm]
    return data, roles


def _write_bundle(tmp: Path, assignment: Assignment, data: dict[str, list[str]],
                  public: PublicMeta, config_raw: bytes) -> None:
    """The public files of every blind folder. One size for every train.jsonl: trailing
    spaces on the last line (JSON ignores them); every file gets at least one, so "has
    padding" says nothing either."""
    sizes = {bid: len(("\n".join(lines) + "\n").encode()) for bid, lines in data.items()}
    target = max(sizes.values()) + 1
    for bid, (_, folder, _) in assignment.items():
        dst = tmp / bid
        atomic_write_bytes(dst / ADAPTER_DIR / ADAPTER_WEIGHTS,
                           (folder / ADAPTER_DIR / ADAPTER_WEIGHTS).read_bytes())
        atomic_write_bytes(dst / ADAPTER_DIR / ADAPTER_CONFIG, config_raw)
        atomic_write_text(dst / PUBLIC, dumps_json(public.model_dump(mode="json")))
        lines = data[bid]
        pad = target - sizes[bid]
        text = "\n".join(lines[:-1] + [lines[-1] + " " * pad]) + "\n"
        atomic_write_text(dst / TRAIN_DATA, text)


def _opt_str(v: Any) -> str | None:
    return None if v is None else str(v)


def _check_bundle(root: Path, ids: list[str]) -> None:
    """Last line of defence: nothing but the public files, all of equal size per path."""
    sizes: dict[str, set[int]] = {}
    for bid in ids:
        files = sorted(p.relative_to(root / bid).as_posix()
                       for p in (root / bid).rglob("*") if p.is_file())
        if files != sorted(BUNDLE_FILES):
            raise AuditgameError(f"sealing bug: unexpected files {files}", path=root / bid)
        for rel in files:
            sizes.setdefault(rel, set()).add((root / bid / rel).stat().st_size)
    for rel, s in sizes.items():
        if len(s) > 1:
            raise AuditgameError(f"sealing bug: sizes differ across organisms {sorted(s)}",
                                 path=root, field=rel)


def read_commitment(game: Path | str) -> str:
    path = GameFolder(game).commitment
    if not path.exists():
        raise AuditgameError("no commitment; run `auditgame seal` first", path=path)
    try:
        text = path.read_text(encoding="ascii").strip()
    except UnicodeDecodeError:
        raise AuditgameError("not a sha256 hex digest (not ASCII text)", path=path) from None
    if len(text) != 64 or any(c not in "0123456789abcdef" for c in text):
        raise AuditgameError("not a sha256 hex digest", path=path)
    return text


def verify_key(game: Path | str, check_bundle: bool = True) -> GameKey:
    """The key, only if its exact bytes hash to the commitment (and the bundle is unchanged)."""
    g = GameFolder(game)
    committed = read_commitment(g.root)
    path = g.key
    if not path.exists():
        raise AuditgameError("no key", path=path)
    raw = path.read_bytes()
    actual = commitment_of(raw)
    if actual != committed:
        raise AuditgameError(f"key does not match its commitment (sha256 {actual[:16]}... != "
                             f"committed {committed[:16]}...)", path=path)
    try:
        key = GameKey.model_validate_json(raw)
    except ValidationError as e:
        raise validation_error(e, path) from None
    if check_bundle and g.bundle.is_dir():
        if bundle_digest(g.bundle) != key.bundle_sha256:
            raise AuditgameError("bundle changed since it was sealed", path=g.bundle)
    return key
