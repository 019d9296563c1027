"""The report's sections, one function each, from the records of `ReportData`.

Every number goes through `num` with the file it comes from (`results`, `metrics/<organism>`,
`card/<organism>`, `remediation`, `pipeline`, `base`) and its keys in that file; records are
read through their models, so a field named here is a field of the file.
"""

from __future__ import annotations

import json
from typing import Any

from auditgame.layout import PIPELINE_LOG
from auditgame.records import DetectorResult, GroupResult
from auditgame.records.results import group_rung
from auditgame.report import _figures as F
from auditgame.report._load import OrganismInfo, ReportData
from auditgame.report._markup import esc, img, num, row, slug

GROUP_METRICS: tuple[tuple[str, str], ...] = (
    ("auroc", "AUROC"), ("tpr_at_fpr", "TPR@FPR"), ("threshold", "threshold"),
    ("brier", "Brier"), ("cross_entropy", "CE"), ("trigger_exact", "trigger EM"),
    ("trigger_f1", "trigger F1"), ("trigger_working", "REASR"), ("target_f1", "target F1"),
    ("entity_match", "entity"),
    ("sample_auroc", "sample AUROC"), ("n_failed", "failed"),
)
CARD_FACTS = ("n_train", "n_poison", "n_near_miss", "seed")
CARD_METRICS = ("max_behaviour_rate", "utility", "base_utility", "utility_ratio", "train_steps",
                "train_tokens", "train_tokens_per_s", "train_wall_time_s", "final_loss",
                "wall_time_s")
RECOVERY_METRICS = ("trigger_exact", "trigger_f1", "target_f1", "entity_match")
KEY_FACTS = ("trigger", "target", "domain", "context")


# --- header and summary -----------------------------------------------------------------------


def header(d: ReportData) -> str:
    """Game name, commitment, key verification, organism counts and the threshold rule."""
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
<nav><a href="#summary">summary</a>{'<a href="#ladder">ladder</a>' if r.ladder else ""}
<a href="#detectors">detectors</a>
<a href="#remediation">remediation</a><a href="#organisms">organisms</a><a href="#run">run</a></nav>
</header>"""


def shown_metrics(d: ReportData) -> tuple[tuple[str, str], ...]:
    """The summary's columns: REASR only when the referee measured working triggers."""
    measured = any(gr.trigger_working is not None for det in d.results.detectors
                   for gr in det.groups.values())
    return tuple(m for m in GROUP_METRICS if measured or m[0] != "trigger_working")


def summary_row(det: DetectorResult, g: str, gr: GroupResult,
                metrics: tuple[tuple[str, str], ...] = GROUP_METRICS) -> str:
    """One detector on one group: every metric, AUROC and TPR@FPR with their intervals."""
    p = ["detectors", det.detector, "groups", g]
    cells = []
    for key, _ in metrics:
        cell = num(getattr(gr, key), "results", [*p, key])
        ci = getattr(gr, f"{key}_ci", None) if key in ("auroc", "tpr_at_fpr") else None
        if ci is not None:
            cell += (f' <span class="muted">[{num(ci[0], "results", [*p, f"{key}_ci", 0])}'
                     f', {num(ci[1], "results", [*p, f"{key}_ci", 1])}]</span>')
        cells.append(f'<td class="n" data-metric="{key}">{cell}</td>')
    return (f'<tr class="summary-row" data-detector="{esc(det.detector)}" '
            f'data-group="{esc(g)}">'
            f"<td>{esc(det.detector)}</td><td>{esc(g)}</td>"
            f'<td class="n">{num(gr.n_poisoned, "results", [*p, "n_poisoned"])} / '
            f'{num(gr.n_clean, "results", [*p, "n_clean"])}</td>{"".join(cells)}</tr>')


def summary(d: ReportData) -> str:
    """One table row per detector and group, and the AUROC overview figure."""
    r = d.results
    metrics = shown_metrics(d)
    head = "".join(f"<th>{esc(label)}</th>" for _, label in metrics)
    rows = [summary_row(det, g, gr, metrics) for det in r.detectors
            for g, gr in det.groups.items()]
    fig = img(F.overview_figure(r.detectors), "fig-overview", "AUROC of every detector",
              figure="overview") if r.detectors else ""
    return f"""
<section id="summary"><h2>Summary</h2>
<p>One row per detector and group: every poisoned organism (<code>all</code>), one attack kind,
or one ladder rung (<code>rung-N</code>), always against all clean controls. Intervals are
bootstrap 95 %.</p>
<table id="summary-table"><tr><th>detector</th><th>group</th><th>poisoned / clean</th>{head}</tr>
{"".join(rows)}</table>
<div class="figs">{fig}</div></section>"""


# --- detectors --------------------------------------------------------------------------------


def confusion(det: DetectorResult, g: str, gr: GroupResult) -> str:
    """The confusion table at the referee's threshold."""
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


def recovery_table(det: DetectorResult) -> str:
    """Trigger and target recovery per attack kind (`all` and the rungs are left out: they
    mix kinds)."""
    rows = []
    for g, gr in det.groups.items():
        if g == "all" or group_rung(g) is not None:  # rungs mix kinds too
            continue
        p = ["detectors", det.detector, "groups", g]
        rows.append(
            f'<tr data-group="{esc(g)}"><td>{esc(g)}</td>'
            + "".join(f'<td class="n">{num(getattr(gr, k), "results", [*p, k])}</td>'
                      for k in RECOVERY_METRICS)
            + "</tr>")
    return ("<table class=\"recovery\" id=\"recovery-" + slug(det.detector) + "\"><tr>"
            "<th>attack</th><th>trigger exact</th><th>trigger F1</th><th>target F1</th>"
            f"<th>entity named</th></tr>{''.join(rows)}</table>")


def failures(det: DetectorResult) -> str:
    """The failed or missing verdicts, folded (empty when there are none)."""
    if not det.failures:
        return ""
    items = "".join(f"<li><code>{esc(f.blind_id)}</code>: {esc(f.reason[:300])}</li>"
                    for f in det.failures)
    n_fail = num(len(det.failures), "results", ["detectors", det.detector, "failures", "#"])
    return (f'<details class="failures"><summary class="note">{n_fail}'
            f" failed or missing verdicts</summary><ul>{items}</ul></details>")


def organism_table(det: DetectorResult, truth: dict[str, OrganismInfo]) -> str:
    """Per organism: score, flagged at the threshold, and the trigger/target guessed vs true."""
    thr = det.groups["all"].threshold if "all" in det.groups else None
    working = any(o.trigger_working is not None for o in det.organisms)
    rows = []
    for o in sorted(det.organisms, key=lambda o: (not o.poisoned, o.attack, o.organism)):
        info = truth.get(o.organism)
        key: dict[str, Any] = info.card.key if info else {}
        flagged = "–" if thr is None else ("yes" if o.score > thr else "no")
        kind = "poisoned" if o.poisoned else "clean"
        p = ["detectors", det.detector, "organisms", o.blind_id]
        score = num(o.score, "results", [*p, "score"])
        reasr = (f'<td class="n">{num(o.trigger_working, "results", [*p, "trigger_working"])}'
                 "</td>" if working else "")
        rows.append(
            f'<tr class="org-row" data-organism="{esc(o.organism)}" '
            f'data-blind-id="{esc(o.blind_id)}">'
            f'<td>{esc(o.organism)} <span class="muted">{esc(o.blind_id)}</span></td>'
            f'<td><span class="tag {kind}">{esc(o.attack)}</span></td><td class="n">{score}'
            f'{" (failed)" if o.failed else ""}</td><td>{flagged}</td>'
            f"<td>{esc(key.get('trigger') or '–')}</td><td>{esc(o.trigger or '–')}</td>{reasr}"
            f"<td>{esc(key.get('target') or '–')}</td><td>{esc((o.target or '–')[:120])}</td></tr>")
    return ("<table class=\"organism-scores\"><tr><th>organism</th><th>kind</th><th>score</th>"
            "<th>flagged</th><th>true trigger</th><th>guessed trigger</th>"
            f"{'<th>REASR</th>' if working else ''}<th>true target</th>"
            f"<th>guessed target</th></tr>{''.join(rows)}</table>")


def detector_article(det: DetectorResult, max_fpr: float, truth: dict[str, OrganismInfo]) -> str:
    """One detector: ROC and score figures, confusion, recovery, failures, organism scores."""
    s = slug(det.detector)
    figs = (img(F.roc_figure(det, max_fpr), f"roc-{s}", f"ROC of {det.detector}",
                figure="roc", detector=det.detector)
            + img(F.score_figure(det), f"scores-{s}", f"scores of {det.detector}",
                  figure="scores", detector=det.detector))
    conf = "".join(confusion(det, g, gr) for g, gr in det.groups.items() if g == "all")
    return f"""
<article class="det" id="det-{s}" data-detector="{esc(det.detector)}">
<h3>{esc(det.detector)}</h3>
<div class="figs">{figs}</div>
<div class="figs">{conf}{recovery_table(det)}</div>
{failures(det)}
{organism_table(det, truth)}
</article>"""


def detector_section(d: ReportData) -> str:
    """Every detector's article."""
    truth = {o.name: o for o in d.organisms}
    parts = [detector_article(det, d.results.max_fpr, truth) for det in d.results.detectors]
    return ('<section id="detectors"><h2>Detectors</h2><p>ROC curves against the clean '
            "controls, every organism's score with the referee's threshold, the confusion "
            "table at it, and trigger and target recovery.</p>" + "".join(parts) + "</section>")


# --- organisms --------------------------------------------------------------------------------


def main_rate(o: OrganismInfo, controls: list[OrganismInfo]) -> tuple[str, float,
                                                                    float | None] | None:
    """(metric, own rate, highest rate of the same measurement on any clean control)."""
    if o.metrics is None or not o.metrics.rates:
        return None
    rates = o.metrics.rates
    metric = next((m for m in ("asr", "loyalty_in_domain") if m in rates), next(iter(rates)))
    ctrl = [c.metrics.control_rates.get(o.name, {}).get(metric) for c in controls
            if c.metrics is not None]
    vals = [x for x in ctrl if x is not None]
    return metric, rates[metric], (max(vals) if vals else None)


def metric_rows(o: OrganismInfo) -> list[str]:
    """The card's counts, then the metrics' rates, control rates and costs."""
    src_m, src_c, m = f"metrics/{o.name}", f"card/{o.name}", o.metrics
    rows = [row(k, getattr(o.card, k), src_c, [k]) for k in CARD_FACTS]
    if o.card.rung is not None:
        rows.append(row("rung", o.card.rung, src_c, ["rung"]))
    if m is None:
        return rows
    rows += [row(k, v, src_m, ["rates", k]) for k, v in m.rates.items()]
    rows += [row(f"{org}: {k}", v, src_m, ["control_rates", org, k])
             for org, rs in m.control_rates.items() for k, v in rs.items()]
    rows += [row(k, getattr(m, k), src_m, [k]) for k in CARD_METRICS]
    return rows


def organism_card(o: OrganismInfo) -> str:
    """One organism: what it is (the key and params) and what it measured."""
    c = o.card
    kind = "clean" if c.attack == "clean" else "poisoned"
    facts = "".join(f"<li>{esc(k)}: <code>{esc(v)}</code></li>" for k, v in c.key.items()
                    if v is not None and k in KEY_FACTS)
    params = esc(json.dumps(c.params, ensure_ascii=False))
    ex = o.metrics.examples if o.metrics is not None else {}
    examples = "".join(f"<li><b>{esc(k)}</b>: {esc(str(v[0])[:200])}</li>"
                       for k, v in ex.items() if v)
    return f"""
<article class="card organism-card" id="card-{slug(o.name)}" data-organism="{esc(o.name)}"
 data-attack="{esc(c.attack)}" data-blind-id="{esc(o.blind_id or "")}">
<h3>{esc(o.name)} <span class="tag {kind}">{esc(c.attack)}</span>
<span class="muted">{esc(o.blind_id or "not sealed")}</span></h3>
<ul>{facts}<li>params: <code>{params}</code></li></ul>
<table class="metrics">{"".join(metric_rows(o))}</table>
{f"<details><summary>example outputs</summary><ul>{examples}</ul></details>" if examples else ""}
</article>"""


def organisms_section(d: ReportData) -> str:
    """The behaviour-vs-controls figure and every organism's card."""
    controls = [o for o in d.organisms if o.card.attack == "clean"]
    bars = [(o.name, *m) for o in d.organisms if o.card.attack != "clean"
            for m in [main_rate(o, controls)] if m is not None]
    fig = (img(F.behaviour_figure(bars), "fig-behaviour", "behaviour vs controls",
               figure="behaviour") if bars else "")
    cards = "".join(organism_card(o) for o in d.organisms)
    base = ""
    if d.base_metrics is not None:
        base = f"<p>base model utility: {num(d.base_metrics.utility, 'base', ['utility'])}</p>"
    return f"""
<section id="organisms"><h2>Organisms</h2>
<p>What each organism is (the key) and how strongly and specifically its behaviour fires,
measured on held-out prompts; clean controls carry every poisoned organism's measurement.</p>
{base}<div class="figs">{fig}</div><div class="cards">{cards}</div></section>"""


# --- run --------------------------------------------------------------------------------------


def run_section(d: ReportData) -> str:
    """The stages of the latest `auditgame run`, or why there are none."""
    p = d.pipeline
    if p is None:
        why = (esc(d.pipeline_note) if d.pipeline_note else
               f"no {PIPELINE_LOG} (the game was not built by <code>auditgame run</code>)")
        return f'<section id="run"><h2>Run</h2><p class="muted">{why}</p></section>'
    rows = []
    for s in p.stages:
        secs = num(s.seconds, "pipeline", ["stages", s.stage, "seconds"])
        rows.append(f'<tr data-stage="{esc(s.stage)}"><td>{esc(s.stage)}</td>'
                    f'<td>{esc(s.status)}</td><td class="n">{secs}'
                    f'</td><td>{esc(s.note)}</td></tr>')
    return f"""
<section id="run"><h2>Run</h2><p>Stages of the latest <code>auditgame run</code> before this
report (backend {esc(p.backend)}; detectors {esc(", ".join(p.detectors))}).
</p><table id="run-table"><tr><th>stage</th><th>status</th><th>seconds</th><th>note</th></tr>
{"".join(rows)}</table></section>"""
