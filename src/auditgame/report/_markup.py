"""The report's HTML primitives: escaping, number formatting, and the provenance-carrying
`<span class="num">` every shown number goes through (see `auditgame.report._html`)."""

from __future__ import annotations

import html
import json
import math
from collections.abc import Sequence
from typing import Any


def esc(x: Any) -> str:
    """Text or attribute value, escaped (quotes too, so it is safe inside attributes)."""
    return html.escape(str(x), quote=True)


def fmt(v: Any) -> str:
    """How a number is shown: integers as they are, floats to 3 decimals (1 above 100)."""
    if v is None:
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return str(v)
    v = float(v)
    if not math.isfinite(v):
        return str(v)
    return f"{v:.1f}" if abs(v) >= 100 else f"{v:.3f}"


def num(v: Any, src: str, path: Sequence[str | int]) -> str:
    """A number with its provenance: the source file, the keys into it and the exact value,
    so a test (or a reader) can check what is shown against the file."""
    if v is None:
        return '<span class="muted">–</span>'
    return (f'<span class="num" data-src="{esc(src)}" data-path="{esc(json.dumps(list(path)))}" '
            f'data-value="{esc(json.dumps(v))}">{esc(fmt(v))}</span>')


def _num_or_none(v: Any) -> float | int | None:
    """`v` if it is a number (not a bool), else None: free-form record fields (a card's
    params, say) may hold anything, and only numbers get a `num` span."""
    return v if isinstance(v, int | float) and not isinstance(v, bool) else None


def row(label: str, v: Any, src: str, path: list[str]) -> str:
    """One `label | number` table row."""
    return f'<tr><th>{esc(label)}</th><td class="n">{num(_num_or_none(v), src, path)}</td></tr>'


def img(b64: str, fid: str, alt: str, **data: str) -> str:
    """An inline PNG figure (a `data:` URI, so the report needs no other file)."""
    attrs = "".join(f' data-{k}="{esc(v)}"' for k, v in data.items())
    return (f'<figure><img id="{esc(fid)}" alt="{esc(alt)}"{attrs} '
            f'src="data:image/png;base64,{b64}"></figure>')


def slug(name: str) -> str:
    """A name made safe for an element id."""
    return "".join(c if c.isalnum() or c in "-_" else "-" for c in name)
