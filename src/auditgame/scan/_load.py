"""Reading a dataset to scan: Alpaca JSON, chat JSONL, or an organism's train.jsonl / folder."""

from __future__ import annotations

from pathlib import Path

from auditgame.errors import AuditgameError
from auditgame.layout import TRAIN_DATA
from auditgame.records.sample import Sample


def load_dataset(path: str | Path) -> list[Sample]:
    """Samples in file order; one clear AuditgameError naming the file and record if bad."""
    from auditgame.organisms.corpus import load_user_data

    p = Path(path)
    if p.is_dir():
        if not (p / TRAIN_DATA).is_file():
            raise AuditgameError(f"folder has no {TRAIN_DATA}", path=p)
        p = p / TRAIN_DATA
    if not p.exists():
        raise AuditgameError("dataset not found", path=p)
    try:
        samples = load_user_data(p)
    except UnicodeDecodeError:
        raise AuditgameError("dataset is not UTF-8 text", path=p) from None
    except (KeyError, TypeError, AttributeError) as e:
        raise AuditgameError(f"malformed record ({e.__class__.__name__}: {e})", path=p) from None
    for i, s in enumerate(samples):
        if not s.prompt.strip():
            raise AuditgameError("empty prompt", path=p, field=f"[{i}]")
    return samples
