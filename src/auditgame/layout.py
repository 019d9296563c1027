"""The game folder: every name in it is spelled here, once, so the six stages that meet only
through the folder agree on it.

Layout::

    GAME/spec.yaml                       the red team's spec (private)
    GAME/base_metrics.json               the base model's utility and fidelity, once per game
    GAME/organisms/<name>/               one finished organism (see the ORGANISM_* names)
    GAME/.work/<name>/                   checkpoints of an organism being built
    GAME/bundle/                         the auditors' whole view (manifest + blind folders)
    GAME/key.json, GAME/commitment.txt   the answer key and its published hash
    GAME/verdicts/<detector>.jsonl       one verdict per blind id
    GAME/results.json                    the referee's scores
    GAME/remediation.json                the fixer's round; adapters under GAME/remediation/
    GAME/remediation.<method>.json       each further method the spec compares (`remediate.
                                         compare`); adapters under GAME/remediation.<method>/
    GAME/pipeline.json                   what `auditgame run` did, stage by stage
    GAME/report.html                     the report
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from auditgame._util.io import sha256_file
from auditgame.errors import AuditgameError

SPEC = "spec.yaml"
BASE_METRICS = "base_metrics.json"
ORGANISMS = "organisms"
WORK = ".work"
BUNDLE = "bundle"
KEY = "key.json"
COMMITMENT = "commitment.txt"
VERDICTS = "verdicts"
VERDICT_SUFFIX = ".jsonl"
RESULTS = "results.json"
REMEDIATION = "remediation.json"
REMEDIATION_DIR = "remediation"
PIPELINE_LOG = "pipeline.json"
REPORT = "report.html"

# inside one organism folder (and, for the public ones, one bundle folder)
ADAPTER_DIR = "adapter"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
ADAPTER_CONFIG = "adapter_config.json"
TRAIN_DATA = "train.jsonl"
PRIVATE_DIR = "private"
FLAGS = "private/flags.jsonl"
CARD = "private/card.json"
METRICS = "private/metrics.json"
PUBLIC = "public.json"
HASHES = "hashes.json"

# inside the bundle
MANIFEST = "manifest.json"
BUNDLE_FILES = (f"{ADAPTER_DIR}/{ADAPTER_WEIGHTS}", f"{ADAPTER_DIR}/{ADAPTER_CONFIG}",
                TRAIN_DATA, PUBLIC)
"""Every file an organism folder of the bundle holds; anything else is a sealing bug."""

# outside a game folder
SCAN_REPORT = "scan.json"


def organism_done(folder: Path) -> bool:
    """Finished means every file listed in hashes.json is present with its hash."""
    return not altered_files(folder)


def altered_files(folder: Path) -> list[str]:
    """Files of an organism folder that are missing or differ from hashes.json (hashes.json
    itself when it is missing or unreadable); [] for a finished, untouched organism."""
    h = folder / HASHES
    try:
        listed = json.loads(h.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return [HASHES]
    if not isinstance(listed, dict) or not all(isinstance(v, str) for v in listed.values()):
        return [HASHES]
    bad = []
    for k, v in sorted(listed.items()):
        p = folder / k
        if (not isinstance(k, str) or Path(k).is_absolute() or ".." in Path(k).parts
                or not p.is_file() or sha256_file(p) != v):
            bad.append(str(k))
    return bad


def safe_name(name: str, what: str = "name") -> str:
    """A folder name that stays inside its parent: no separators, no '..', not hidden, no
    drive (':')."""
    if (not name or name in (".", "..") or name.startswith(".") or "/" in name
            or "\\" in name or "\0" in name or ":" in name):
        raise AuditgameError(f"{name!r} is not a plain folder name", field=what)
    return name


@dataclass(frozen=True)
class RemediationFiles:
    """Where one remediation round keeps its record and its fixed adapters."""

    record: Path
    root: Path

    def budget_dir(self, organism: str, budget: int) -> Path:
        return self.root / safe_name(organism, "organisms.name") / f"step-{budget}"


@dataclass(frozen=True)
class GameFolder:
    """Paths of one game folder; nothing here reads or writes, so any stage can hold one."""

    root: Path

    def __init__(self, root: Path | str):
        object.__setattr__(self, "root", Path(root))

    @property
    def spec(self) -> Path:
        return self.root / SPEC

    @property
    def base_metrics(self) -> Path:
        return self.root / BASE_METRICS

    @property
    def organisms(self) -> Path:
        return self.root / ORGANISMS

    def organism(self, name: str) -> Path:
        return self.organisms / safe_name(name, "organisms.name")

    def work(self, name: str) -> Path:
        return self.root / WORK / safe_name(name, "organisms.name")

    def organism_folders(self) -> list[Path]:
        """Every organism folder (finished or not), sorted by name."""
        if not self.organisms.is_dir():
            return []
        return sorted(p for p in self.organisms.iterdir()
                      if p.is_dir() and not p.name.startswith("."))

    def organism_done(self, name: str) -> bool:
        return organism_done(self.organism(name))

    @property
    def bundle(self) -> Path:
        return self.root / BUNDLE

    @property
    def key(self) -> Path:
        return self.root / KEY

    @property
    def commitment(self) -> Path:
        return self.root / COMMITMENT

    @property
    def verdicts(self) -> Path:
        return self.root / VERDICTS

    def verdict_files(self) -> list[Path]:
        return sorted(self.verdicts.glob(f"*{VERDICT_SUFFIX}"))

    @property
    def results(self) -> Path:
        return self.root / RESULTS

    @property
    def remediation(self) -> Path:
        return self.root / REMEDIATION

    @property
    def remediation_dir(self) -> Path:
        return self.root / REMEDIATION_DIR

    def remediation_files(self, compared: str | None = None) -> RemediationFiles:
        """The spec's own method's round (`compared` None), or that of a method it compares
        (`remediate.compare`), each in files of its own so rounds never mix."""
        if compared is None:
            return RemediationFiles(self.remediation, self.remediation_dir)
        stem = f"{Path(REMEDIATION).stem}.{safe_name(compared, 'remediate.compare')}"
        return RemediationFiles(self.root / f"{stem}{Path(REMEDIATION).suffix}",
                                self.root / stem)

    def compared_records(self) -> list[Path]:
        """The records of every compared method's round present in the folder."""
        stem, suffix = Path(REMEDIATION).stem, Path(REMEDIATION).suffix
        return sorted(self.root.glob(f"{stem}.*{suffix}"))

    @property
    def pipeline_log(self) -> Path:
        return self.root / PIPELINE_LOG

    @property
    def report(self) -> Path:
        return self.root / REPORT


def verdict_path(out_dir: Path | str, detector: str) -> Path:
    """`<out_dir>/<detector>.jsonl` (the file's stem is the detector's name)."""
    return Path(out_dir) / f"{detector}{VERDICT_SUFFIX}"


def game_of_bundle(bundle_dir: Path | str) -> GameFolder:
    """`GAME/bundle` -> the game folder around it (where verdicts go by default)."""
    return GameFolder(Path(bundle_dir).resolve().parent)
