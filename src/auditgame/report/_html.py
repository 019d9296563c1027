"""Render GAME/report.html: one self-contained file (inline CSS, inline base64 PNG figures,
one inline script), no external assets, so it opens offline and can be mailed around.

Every number is a `<span class="num">` that names where it comes from: `data-src` is the file
(`results`, `metrics/<organism>`, `card/<organism>`, `remediation`, `pipeline`, `base`) and
`data-path` a JSON list of keys into it (a list is indexed by the `detector`, `blind_id` or
`stage` of its items; a final `#` means its length); `data-value` holds the exact value. A
test (or a reader) can check every number shown against its source. The script marks each
figure `data-rendered="1"` once the browser has decoded it.
"""

from __future__ import annotations

from auditgame import __version__
from auditgame.report._ladder import ladder_section
from auditgame.report._load import ReportData
from auditgame.report._markup import esc
from auditgame.report._remediation import remediation_section
from auditgame.report._sections import (
    detector_section,
    header,
    organisms_section,
    run_section,
    summary,
)

CSS = """
body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',sans-serif;margin:0;color:#1b1b1b;
background:#fafafa}
header,main,footer{max-width:1100px;margin:0 auto;padding:0 20px}
header{padding-top:18px}h1{margin:.2em 0}h2{margin-top:1.6em;border-bottom:2px solid #ddd}
code{font-size:12px;word-break:break-all}.ok{color:#1e8449;font-weight:600}
.bad{color:#c0392b;font-weight:600}table{border-collapse:collapse;margin:.6em 0;font-size:13px}
th,td{border:1px solid #ddd;padding:3px 7px;text-align:left;vertical-align:top}
th{background:#f0f0f0}td.n{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.figs{display:flex;flex-wrap:wrap;gap:12px}figure{margin:0}img{max-width:100%;height:auto;
background:#fff;border:1px solid #eee}.det,.card{background:#fff;border:1px solid #ddd;
border-radius:6px;padding:8px 14px;margin:14px 0}.cards{display:grid;
grid-template-columns:repeat(auto-fill,minmax(320px,1fr));gap:12px}.tag{display:inline-block;
padding:0 6px;border-radius:4px;background:#eee;font-size:12px}.tag.poisoned{background:#f5d5d0}
.tag.clean{background:#d4e6f1}.muted{color:#666}.note{color:#a04000}nav a{margin-right:12px}
"""

SCRIPT = """
window.addEventListener('load', function () {
  var imgs = document.querySelectorAll('img'), ok = 0;
  imgs.forEach(function (im) {
    var good = im.complete && im.naturalWidth > 0 && im.naturalHeight > 0;
    im.setAttribute('data-rendered', good ? '1' : '0');
    im.setAttribute('data-natural-width', String(im.naturalWidth));
    if (good) { ok += 1; }
  });
  document.body.setAttribute('data-images', String(imgs.length));
  document.body.setAttribute('data-images-rendered', String(ok));
});
"""


def render(d: ReportData) -> str:
    """The whole page."""
    notes = "".join(f'<p class="note">{esc(n)}</p>' for n in d.notes)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>auditgame report: {esc(d.name)}</title><style>{CSS}</style></head>
<body data-images="0" data-images-rendered="0">
{header(d)}
<main>{notes}{summary(d)}{ladder_section(d)}{detector_section(d)}{remediation_section(d)}{organisms_section(d)}
{run_section(d)}</main>
<footer><p class="muted">auditgame {esc(__version__)}; every number links to its source file through
its data-src and data-path attributes.</p></footer>
<script>{SCRIPT}</script>
</body></html>
"""
