"""The report's remediation section: each round's persistence curves and table, its depth
tests and shallow/deep call, and, when the spec compares methods, one table of every method's
call per organism. Numbers point into `remediation` or `remediation.<method>`."""

from __future__ import annotations

from typing import Any

from auditgame.layout import REMEDIATION
from auditgame.records import OrganismRemediation, Remediation
from auditgame.report import _figures as F
from auditgame.report._load import ReportData
from auditgame.report._markup import esc, img, num

REMEDIATION_METRICS = (
    ("behaviour_before", "behaviour before"), ("behaviour_after", "after"),
    ("persistence", "persistence"), ("relapse_asr", "ASR (relapse)"),
    ("near_miss_after", "near-miss after"), ("utility_before", "utility before"),
    ("utility_after", "utility after"), ("utility_change", "utility change"),
)


def persistence_curves(rem: Remediation) -> list[dict[str, Any]]:
    """(steps, rate) of the primary metric and (steps, utility ratio) per organism."""
    out = []
    for name, o in sorted(rem.organisms.items()):
        metric = o.primary_metric
        beh = [(r.steps, r.rates[metric]) for r in o.results.values()
               if metric and metric in r.rates]
        util = [(r.steps, r.utility_ratio) for r in o.results.values()]
        out.append({"organism": name, "poisoned": o.poisoned, "metric": metric,
                    "behaviour": sorted(beh), "utility": sorted(util)})
    return out


def remediation_row(name: str, o: OrganismRemediation, dets: list[str],
                    src: str = "remediation") -> str:
    """One organism's persistence, cost, and change of every re-audited detector's score."""
    p = ["organisms", name]
    cells = "".join(f'<td class="n">{num(getattr(o, k), src, [*p, k])}</td>'
                    for k, _ in REMEDIATION_METRICS)
    cells += "".join(
        f'<td class="n">{num(o.detector_delta.get(k), src, [*p, "detector_delta", k])}'
        "</td>" for k in dets)
    kind = "poisoned" if o.poisoned else "clean"
    return (f'<tr class="rem-row" data-organism="{esc(name)}"><td>{esc(name)}</td>'
            f'<td><span class="tag {kind}">{esc(o.attack)}</span></td>'
            f'<td>{esc(o.primary_metric or "–")}</td>{cells}</tr>')


DEPTH_METRICS = (("behaviour_after", "after"), ("reemergence", "re-emergence"),
                 ("variant_max", "variants (max)"), ("probe_auroc", "probe AUROC"),
                 ("probe_auroc_base", "probe on base"), ("readout_retained", "read-out kept"),
                 ("weight_distance", "weight dist."), ("output_kl_fixed", "KL to base"))


def depth_table(rem: Remediation, src: str = "remediation", suffix: str = "") -> str:
    """Per organism, the depth tests of the fix and the shallow/deep call ('' without)."""
    rows = []
    for name, o in sorted(rem.organisms.items()):
        if o.depth is None:
            continue
        p = ["organisms", name, "depth"]
        cells = "".join(f'<td class="n">{num(getattr(o.depth, k), src, [*p, k])}'
                        "</td>" for k, _ in DEPTH_METRICS)
        why = esc("; ".join(o.depth.reasons))
        rows.append(f'<tr class="depth-row" data-organism="{esc(name)}"><td>{esc(name)}</td>'
                    f'<td>{esc(o.attack)}</td>{cells}<td title="{why}">{esc(o.depth.call)}'
                    "</td></tr>")
    if not rows:
        return ""
    head = "".join(f"<th>{esc(lab)}</th>" for _, lab in DEPTH_METRICS)
    return (f"<p>Depth tests of {esc(rem.settings.method)}: is the behaviour gone or under a "
            "shell? Re-emergence after unrelated benign fine-tuning, trigger variants, a "
            "linear read-out of the trigger inside, distance to the base; the call's rule is "
            "in <code>auditgame.remediate.depth</code>.</p>"
            f'<table id="depth-table{suffix}"><tr><th>organism</th><th>kind</th>{head}'
            f'<th>call</th></tr>{"".join(rows)}</table>')


def round_block(rem: Remediation, src: str, suffix: str) -> str:
    """One method's round: persistence curves, the table, the depth tests."""
    curves = persistence_curves(rem)
    fig = (img(F.persistence_figure(curves), f"fig-persistence{suffix}", "persistence curves",
               figure="persistence") if any(c["behaviour"] or c["utility"] for c in curves)
           else "")
    dets = sorted({k for o in rem.organisms.values() for k in o.detector_delta})
    head = "".join(f"<th>{esc(lab)}</th>" for _, lab in REMEDIATION_METRICS)
    head += "".join(f"<th>&Delta; {esc(k)}</th>" for k in dets)
    rows = [remediation_row(name, o, dets, src) for name, o in sorted(rem.organisms.items())]
    budgets = ", ".join(str(b) for b in rem.budgets)
    return f"""
<div class="round" data-method="{esc(rem.settings.method)}">
<h3>{esc(rem.settings.method)}</h3>
<p>{esc(rem.settings.method)} on every organism at step budgets {esc(budgets)}:
does the behaviour persist, what does the fix cost in utility (clean controls show the cost),
and does each detector still flag the fixed organism (&Delta; = score after the largest budget
minus before)?</p>
<div class="figs">{fig}</div>
<table id="remediation-table{suffix}"><tr><th>organism</th><th>kind</th><th>metric</th>{head}
</tr>{"".join(rows)}</table>{depth_table(rem, src, suffix)}</div>"""


METHOD_CELLS = (("behaviour_after", "after"), ("reemergence", "re-emergence"),
                ("readout_retained", "read-out kept"))


def methods_table(rounds: list[tuple[str, Remediation]]) -> str:
    """Organism x method: behaviour after the fix, re-emergence, read-out kept, utility
    change and the call, one row per organism ('' with a single round)."""
    if len(rounds) < 2:
        return ""
    names = sorted({n for _, rem in rounds for n in rem.organisms})
    head = "".join(f'<th colspan="{len(METHOD_CELLS) + 2}">{esc(rem.settings.method)}</th>'
                   for _, rem in rounds)
    sub = "".join("".join(f"<th>{lab}</th>" for _, lab in METHOD_CELLS)
                  + "<th>utility change</th><th>call</th>" for _ in rounds)
    rows = []
    for name in names:
        cells = ""
        for src, rem in rounds:
            o = rem.organisms.get(name)
            d = o.depth if o is not None else None
            p = ["organisms", name]
            for k, _ in METHOD_CELLS:
                v = getattr(d, k) if d else None
                cells += f'<td class="n">{num(v, src, [*p, "depth", k])}</td>'
            uc = o.utility_change if o else None
            cells += (f'<td class="n">{num(uc, src, [*p, "utility_change"])}</td>'
                      f'<td>{esc(d.call) if d else "–"}</td>')
        rows.append(f'<tr class="method-row" data-organism="{esc(name)}"><td>{esc(name)}</td>'
                    f"{cells}</tr>")
    return ("<p>Every method side by side: is the behaviour gone after the fix, does it come "
            "back after benign fine-tuning, is the trigger still read out inside, and what did "
            'the fix cost the organism?</p><table id="methods-table"><tr><th rowspan="2">'
            f'organism</th>{head}</tr><tr>{sub}</tr>{"".join(rows)}</table>')


def remediation_section(d: ReportData) -> str:
    """Every round's persistence curves and tables, or why there are none."""
    if d.remediation is None and not d.compared:
        note = d.remediation_note or f"no {REMEDIATION}: run `auditgame remediate GAME`"
        return (f'<section id="remediation" data-present="0"><h2>Remediation</h2>'
                f'<p class="muted">{esc(note)}</p></section>')
    rounds = ([("remediation", d.remediation)] if d.remediation is not None else []) + [
        (f"remediation.{m}", rem) for m, rem in d.compared]
    blocks = "".join(round_block(rem, src, "" if src == "remediation" else f"-{src[12:]}")
                     for src, rem in rounds)
    return f"""
<section id="remediation" data-present="1"><h2>Remediation</h2>
{methods_table(rounds)}{blocks}</section>"""
