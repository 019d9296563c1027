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

import html
import json
import math
from collections.abc import Sequence
from typing import Any

from auditgame.referee.score import DetectorResult, GroupResult
from auditgame.report import _figures as F
from auditgame.report._load import OrganismInfo, ReportData

GROUP_METRICS: tuple[tuple[str, str], ...] = (
    ("auroc", "AUROC"), ("tpr_at_fpr", "TPR@FPR"), ("threshold", "threshold"),
    ("brier", "Brier"), ("cross_entropy", "CE"), ("trigger_exact", "trigger EM"),
    ("trigger_f1", "trigger F1"), ("target_f1", "target F1"), ("entity_match", "entity"),
    ("sample_auroc", "sample AUROC"), ("n_failed", "failed"),
)
CARD_METRICS = ("max_behaviour_rate", "utility", "base_utility", "utility_ratio", "train_steps",
                "train_tokens", "train_tokens_per_s", "train_wall_time_s", "final_loss",
                "wall_time_s")
REMEDIATION_METRICS = (
    ("behaviour_before", "behaviour before"), ("behaviour_after", "after"),
    ("persistence", "persistence"), ("relapse_asr", "ASR (relapse)"),
    ("near_miss_after", "near-miss after"), ("utility_before", "utility before"),
    ("utility_after", "utility after"), ("utility_change", "utility change"),
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


def esc(x: Any) -> str:
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
    """A number with its provenance (see the module docstring)."""
    if v is None:
        return '<span class="muted">–</span>'
    return (f'<span class="num" data-src="{esc(src)}" data-path="{esc(json.dumps(list(path)))}" '
            f'data-value="{esc(json.dumps(v))}">{esc(fmt(v))}</span>')


def img(b64: str, fid: str, alt: str, **data: str) -> str:
    attrs = "".join(f' data-{k}="{esc(v)}"' for k, v in data.items())
    return (f'<figure><img id="{esc(fid)}" alt="{esc(alt)}"{attrs} '
            f'src="data:image/png;base64,{b64}"></figure>')


def slug(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "-" for c in name)


# --- sections ---------------------------------------------------------------------------------


def header(d: ReportData) -> str:
    r = d.results
    status = ('<span id="verify-status" class="ok" data-status="ok">verified</span>'
              if d.verify_ok else
              '<span id="verify-status" class="bad" data-status="failed">NOT verified</span>')
    attacks = ", ".join(f"{esc(k)} {num(v, 'results', ['attacks', k])}"
                        for k, v in r.attacks.items())
    return f"""
<header id="header" data-game="{esc(d.name)}">
<h1 id="game-name">auditgame report: {esc(d.name)}</h1>
<table id="game-facts">
<tr><th>commitment (sha256 of the key)</th><td><code id="commitment"
 data-value="{esc(r.commitment)}">{esc(r.commitment)}</code></td></tr>
<tr><th>key verification</th><td>{status} <span class="muted"
 id="verify-message">{esc(d.verify_message)}</span></td></tr>
<tr><th>organisms by kind</th><td id="attack-counts">{attacks}</td></tr>
<tr><th>detectors scored</th><td>{num(len(r.detectors), 'results', ['detectors', '#'])}</td></tr>
<tr><th>threshold rule</th><td>an organism is flagged iff its score is above the clean-control
 threshold that keeps FPR &le; {num(r.max_fpr, 'results', ['max_fpr'])}; bootstrap
 {num(r.n_bootstrap, 'results', ['n_bootstrap'])} resamples (seed
 {num(r.bootstrap_seed, 'results', ['bootstrap_seed'])})</td></tr>
</table>
<nav><a href="#summary">summary</a><a href="#detectors">detectors</a>
<a href="#remediation">remediation</a><a href="#organisms">organisms</a><a href="#run">run</a></nav>
</header>"""


def summary(d: ReportData) -> str:
    r = d.results
    head = "".join(f"<th>{esc(label)}</th>" for _, label in GROUP_METRICS)
    rows = []
    for det in r.detectors:
        for g, gr in det.groups.items():
            p = ["detectors", det.detector, "groups", g]
            cells = []
            for key, _ in GROUP_METRICS:
                cell = num(getattr(gr, key), "results", [*p, key])
                ci = getattr(gr, f"{key}_ci", None) if key in ("auroc", "tpr_at_fpr") else None
                if ci is not None:
                    cell += (f' <span class="muted">[{num(ci[0], "results", [*p, f"{key}_ci", 0])}'
                             f', {num(ci[1], "results", [*p, f"{key}_ci", 1])}]</span>')
                cells.append(f'<td class="n" data-metric="{key}">{cell}</td>')
            rows.append(
                f'<tr class="summary-row" data-detector="{esc(det.detector)}" '
                f'data-group="{esc(g)}">'
                f"<td>{esc(det.detector)}</td><td>{esc(g)}</td>"
                f'<td class="n">{num(gr.n_poisoned, "results", [*p, "n_poisoned"])} / '
                f'{num(gr.n_clean, "results", [*p, "n_clean"])}</td>{"".join(cells)}</tr>')
    fig = img(F.overview_figure(r.detectors), "fig-overview", "AUROC of every detector",
              figure="overview") if r.detectors else ""
    return f"""
<section id="summary"><h2>Summary</h2>
<p>One row per detector and group: every poisoned organism (<code>all</code>) or one attack kind,
always against all clean controls. Intervals are bootstrap 95 %.</p>
<table id="summary-table"><tr><th>detector</th><th>group</th><th>poisoned / clean</th>{head}</tr>
{"".join(rows)}</table>
<div class="figs">{fig}</div></section>"""


def confusion(det: DetectorResult, g: str, gr: GroupResult) -> str:
    if gr.confusion is None:
        return '<p class="muted">no confusion table (no clean controls)</p>'
    p = ["detectors", det.detector, "groups", g, "confusion"]
    c = {k: num(gr.confusion.get(k), "results", [*p, k]) for k in ("tp", "fn", "fp", "tn")}
    thr = num(gr.threshold, "results", ["detectors", det.detector, "groups", g, "threshold"])
    return f"""
<table class="confusion" id="confusion-{slug(det.detector)}-{slug(g)}"
 data-detector="{esc(det.detector)}" data-group="{esc(g)}">
<caption>at threshold {thr} (flagged: score &gt; threshold)</caption>
<tr><th></th><th>flagged</th><th>not flagged</th></tr>
<tr><th>poisoned</th><td class="n" data-cell="tp">{c["tp"]}</td>
<td class="n" data-cell="fn">{c["fn"]}</td></tr>
<tr><th>clean</th><td class="n" data-cell="fp">{c["fp"]}</td>
<td class="n" data-cell="tn">{c["tn"]}</td></tr></table>"""


def organism_table(det: DetectorResult, truth: dict[str, OrganismInfo]) -> str:
    """Per organism: score, flagged at the threshold, and the trigger/target guessed vs true."""
    thr = det.groups["all"].threshold if "all" in det.groups else None
    rows = []
    for o in sorted(det.organisms, key=lambda o: (not o.poisoned, o.attack, o.organism)):
        info = truth.get(o.organism)
        key = info.card.get("key", {}) if info else {}
        flagged = "–" if thr is None else ("yes" if o.score > thr else "no")
        kind = "poisoned" if o.poisoned else "clean"
        score = num(o.score, "results", ["detectors", det.detector, "organisms", o.blind_id,
                                         "score"])
        rows.append(
            f'<tr class="org-row" data-organism="{esc(o.organism)}" '
            f'data-blind-id="{esc(o.blind_id)}">'
            f'<td>{esc(o.organism)} <span class="muted">{esc(o.blind_id)}</span></td>'
            f'<td><span class="tag {kind}">{esc(o.attack)}</span></td><td class="n">{score}'
            f'{" (failed)" if o.failed else ""}</td><td>{flagged}</td>'
            f"<td>{esc(key.get('trigger') or '–')}</td><td>{esc(o.trigger or '–')}</td>"
            f"<td>{esc(key.get('target') or '–')}</td><td>{esc((o.target or '–')[:120])}</td></tr>")
    return ("<table class=\"organism-scores\"><tr><th>organism</th><th>kind</th><th>score</th>"
            "<th>flagged</th><th>true trigger</th><th>guessed trigger</th><th>true target</th>"
            f"<th>guessed target</th></tr>{''.join(rows)}</table>")


def detector_section(d: ReportData) -> str:
    truth = {o.name: o for o in d.organisms}
    parts = []
    for det in d.results.detectors:
        s = slug(det.detector)
        figs = (img(F.roc_figure(det, d.results.max_fpr), f"roc-{s}", f"ROC of {det.detector}",
                    figure="roc", detector=det.detector)
                + img(F.score_figure(det), f"scores-{s}", f"scores of {det.detector}",
                      figure="scores", detector=det.detector))
        conf = "".join(confusion(det, g, gr) for g, gr in det.groups.items() if g == "all")
        rec_rows = []
        for g, gr in det.groups.items():
            if g == "all":
                continue
            p = ["detectors", det.detector, "groups", g]
            rec_rows.append(
                f'<tr data-group="{esc(g)}"><td>{esc(g)}</td>'
                + "".join(f'<td class="n">{num(getattr(gr, k), "results", [*p, k])}</td>'
                          for k in ("trigger_exact", "trigger_f1", "target_f1", "entity_match"))
                + "</tr>")
        recovery = ("<table class=\"recovery\" id=\"recovery-" + s + "\"><tr><th>attack</th>"
                    "<th>trigger exact</th><th>trigger F1</th><th>target F1</th>"
                    f"<th>entity named</th></tr>{''.join(rec_rows)}</table>")
        fails = "".join(f"<li><code>{esc(f.blind_id)}</code>: {esc(f.reason[:300])}</li>"
                        for f in det.failures)
        n_fail = num(len(det.failures), "results", ["detectors", det.detector, "failures", "#"])
        fails_html = (f'<details class="failures"><summary class="note">{n_fail}'
                      f" failed or missing verdicts</summary><ul>{fails}</ul></details>"
                      if det.failures else "")
        parts.append(f"""
<article class="det" id="det-{s}" data-detector="{esc(det.detector)}">
<h3>{esc(det.detector)}</h3>
<div class="figs">{figs}</div>
<div class="figs">{conf}{recovery}</div>
{fails_html}
{organism_table(det, truth)}
</article>""")
    return ('<section id="detectors"><h2>Detectors</h2><p>ROC curves against the clean '
            "controls, every organism's score with the referee's threshold, the confusion "
            "table at it, and trigger and target recovery.</p>" + "".join(parts) + "</section>")


def persistence_curves(rem: dict[str, Any]) -> list[dict[str, Any]]:
    """(steps, rate) of the primary metric and (steps, utility ratio) per organism; anything
    malformed in the record is left out."""
    out = []
    orgs = rem.get("organisms")
    if not isinstance(orgs, dict):
        return out
    for name, o in sorted(orgs.items()):
        if not isinstance(o, dict) or not isinstance(o.get("results"), dict):
            continue
        metric = o.get("primary_metric")
        beh, util = [], []
        for r in o["results"].values():
            if not isinstance(r, dict) or not isinstance(r.get("steps"), int):
                continue
            rates = r.get("rates") if isinstance(r.get("rates"), dict) else {}
            if metric and isinstance(rates.get(metric), int | float):
                beh.append((r["steps"], float(rates[metric])))
            if isinstance(r.get("utility_ratio"), int | float):
                util.append((r["steps"], float(r["utility_ratio"])))
        out.append({"organism": name, "poisoned": bool(o.get("poisoned", True)),
                    "metric": metric, "behaviour": sorted(beh), "utility": sorted(util)})
    return out


def remediation_section(d: ReportData) -> str:
    if d.remediation is None:
        note = d.remediation_note or "no remediation.json: run `auditgame remediate GAME`"
        return (f'<section id="remediation" data-present="0"><h2>Remediation</h2>'
                f'<p class="muted">{esc(note)}</p></section>')
    rem = d.remediation
    curves = persistence_curves(rem)
    fig = (img(F.persistence_figure(curves), "fig-persistence", "persistence curves",
               figure="persistence") if any(c["behaviour"] or c["utility"] for c in curves)
           else "")
    orgs = rem.get("organisms") if isinstance(rem.get("organisms"), dict) else {}
    dets = sorted({k for o in orgs.values() if isinstance(o, dict)
                   for k in (o.get("detector_delta") or {})})
    head = "".join(f"<th>{esc(lab)}</th>" for _, lab in REMEDIATION_METRICS)
    head += "".join(f"<th>&Delta; {esc(k)}</th>" for k in dets)
    rows = []
    for name, o in sorted(orgs.items()):
        if not isinstance(o, dict):
            continue
        p = ["organisms", name]
        cells = "".join(f'<td class="n">{num(_num_or_none(o.get(k)), "remediation", [*p, k])}</td>'
                        for k, _ in REMEDIATION_METRICS)
        delta = o.get("detector_delta") or {}
        cells += "".join(
            f'<td class="n">{num(_num_or_none(delta.get(k)), "remediation", [*p, dd, k])}</td>'
            for dd in ["detector_delta"] for k in dets)
        kind = "poisoned" if o.get("poisoned", True) else "clean"
        rows.append(f'<tr class="rem-row" data-organism="{esc(name)}"><td>{esc(name)}</td>'
                    f'<td><span class="tag {kind}">{esc(o.get("attack", "?"))}</span></td>'
                    f'<td>{esc(o.get("primary_metric") or "–")}</td>{cells}</tr>')
    budgets = rem.get("budgets") if isinstance(rem.get("budgets"), list) else []
    return f"""
<section id="remediation" data-present="1"><h2>Remediation</h2>
<p>Clean fine-tuning of every organism at step budgets {esc(", ".join(str(b) for b in budgets))}:
does the behaviour persist, what does the fix cost in utility (clean controls show the cost),
and does each detector still flag the fixed organism (&Delta; = score after the largest budget
minus before)?</p>
<div class="figs">{fig}</div>
<table id="remediation-table"><tr><th>organism</th><th>kind</th><th>metric</th>{head}</tr>
{"".join(rows)}</table></section>"""


def _row(label: str, v: Any, src: str, path: list[str]) -> str:
    return f'<tr><th>{esc(label)}</th><td class="n">{num(_num_or_none(v), src, path)}</td></tr>'


def _num_or_none(v: Any) -> float | int | None:
    return v if isinstance(v, int | float) and not isinstance(v, bool) else None


def _main_rate(o: OrganismInfo, controls: list[OrganismInfo]) -> tuple[str, float,
                                                                     float | None] | None:
    rates = o.metrics.get("rates")
    if not isinstance(rates, dict) or not rates:
        return None
    metric = next((m for m in ("asr", "loyalty_in_domain") if m in rates), next(iter(rates)))
    ctrl = [c.metrics.get("control_rates", {}).get(o.name, {}).get(metric) for c in controls]
    ctrl = [float(x) for x in ctrl if isinstance(x, int | float)]
    return metric, float(rates[metric]), (max(ctrl) if ctrl else None)


def organisms_section(d: ReportData) -> str:
    controls = [o for o in d.organisms if o.card.get("attack") == "clean"]
    bars = [(o.name, *m) for o in d.organisms if o.card.get("attack") != "clean"
            for m in [_main_rate(o, controls)] if m is not None]
    fig = (img(F.behaviour_figure(bars), "fig-behaviour", "behaviour vs controls",
               figure="behaviour") if bars else "")
    cards = []
    for o in d.organisms:
        src_m, src_c = f"metrics/{o.name}", f"card/{o.name}"
        m, c = o.metrics, o.card
        key = c.get("key") if isinstance(c.get("key"), dict) else {}
        rows = [_row(k, c.get(k), src_c, [k]) for k in ("n_train", "n_poison", "n_near_miss",
                                                         "seed")]
        rates = m.get("rates") if isinstance(m.get("rates"), dict) else {}
        rows += [_row(k, v, src_m, ["rates", k]) for k, v in rates.items()]
        ctrl = m.get("control_rates") if isinstance(m.get("control_rates"), dict) else {}
        for org, rs in ctrl.items():
            for k, v in (rs.items() if isinstance(rs, dict) else []):
                rows.append(_row(f"{org}: {k}", v, src_m, ["control_rates", org, k]))
        rows += [_row(k, m[k], src_m, [k]) for k in CARD_METRICS if k in m]
        kind = "clean" if c.get("attack") == "clean" else "poisoned"
        facts = "".join(f"<li>{esc(k)}: <code>{esc(v)}</code></li>" for k, v in key.items()
                        if v is not None and k in ("trigger", "target", "domain", "context"))
        params = esc(json.dumps(c.get("params", {}), ensure_ascii=False))
        ex = m.get("examples") if isinstance(m.get("examples"), dict) else {}
        examples = "".join(f"<li><b>{esc(k)}</b>: {esc(str(v[0])[:200])}</li>"
                           for k, v in ex.items() if isinstance(v, list) and v)
        cards.append(f"""
<article class="card organism-card" id="card-{slug(o.name)}" data-organism="{esc(o.name)}"
 data-attack="{esc(c.get("attack", "?"))}" data-blind-id="{esc(o.blind_id or "")}">
<h3>{esc(o.name)} <span class="tag {kind}">{esc(c.get("attack", "?"))}</span>
<span class="muted">{esc(o.blind_id or "not sealed")}</span></h3>
<ul>{facts}<li>params: <code>{params}</code></li></ul>
<table class="metrics">{"".join(rows)}</table>
{f"<details><summary>example outputs</summary><ul>{examples}</ul></details>" if examples else ""}
</article>""")
    base = ""
    if d.base_metrics and _num_or_none(d.base_metrics.get("utility")) is not None:
        base = f"<p>base model utility: {num(d.base_metrics['utility'], 'base', ['utility'])}</p>"
    return f"""
<section id="organisms"><h2>Organisms</h2>
<p>What each organism is (the key) and how strongly and specifically its behaviour fires,
measured on held-out prompts; clean controls carry every poisoned organism's measurement.</p>
{base}<div class="figs">{fig}</div><div class="cards">{"".join(cards)}</div></section>"""


def run_section(d: ReportData) -> str:
    p = d.pipeline
    if not p or not isinstance(p.get("stages"), list):
        return ('<section id="run"><h2>Run</h2><p class="muted">no pipeline.json (the game was '
                "not built by <code>auditgame run</code>)</p></section>")
    rows = []
    for s in p["stages"]:
        if not isinstance(s, dict) or "stage" not in s:
            continue
        secs = num(_num_or_none(s.get("seconds")), "pipeline", ["stages", s["stage"], "seconds"])
        rows.append(f'<tr data-stage="{esc(s["stage"])}"><td>{esc(s["stage"])}</td>'
                    f'<td>{esc(s.get("status", "?"))}</td><td class="n">{secs}'
                    f'</td><td>{esc(s.get("note", ""))}</td></tr>')
    return f"""
<section id="run"><h2>Run</h2><p>Stages of the latest <code>auditgame run</code> before this
report (backend {esc(p.get("backend", "?"))}; detectors {esc(", ".join(p.get("detectors", [])))}).
</p><table id="run-table"><tr><th>stage</th><th>status</th><th>seconds</th><th>note</th></tr>
{"".join(rows)}</table></section>"""


def render(d: ReportData) -> str:
    """The whole page."""
    try:
        from importlib.metadata import version

        ver = version("auditgame")
    except Exception:  # noqa: BLE001
        ver = "unknown"
    notes = "".join(f'<p class="note">{esc(n)}</p>' for n in d.notes)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>auditgame report: {esc(d.name)}</title><style>{CSS}</style></head>
<body data-images="0" data-images-rendered="0">
{header(d)}
<main>{notes}{summary(d)}{detector_section(d)}{remediation_section(d)}{organisms_section(d)}
{run_section(d)}</main>
<footer><p class="muted">auditgame {esc(ver)}; every number links to its source file through
its data-src and data-path attributes.</p></footer>
<script>{SCRIPT}</script>
</body></html>
"""
