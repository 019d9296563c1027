"""The report's ladder section: which organisms stand on each rung, every detector's AUROC by
rung and its breaking rung, from `results.ladder`."""

from __future__ import annotations

from auditgame.records import DetectorResult
from auditgame.records.results import Ladder
from auditgame.report import _figures as F
from auditgame.report._load import ReportData
from auditgame.report._markup import esc, img, num


def ladder_rungs_table(d: ReportData, ladder: Ladder) -> str:
    """Which poisoned organisms stand on each rung, and how many controls each is scored
    against (read from the first detector: every detector's groups have the same members)."""
    first = d.results.detectors[0] if d.results.detectors else None
    rows = []
    for rung, g in ladder.order():
        names, n_clean = "", '<span class="muted">–</span>'
        if first is not None:
            orgs = sorted((o.organism, o.attack) for o in first.organisms
                          if o.poisoned and o.rung == rung)
            names = ", ".join(f'{esc(n)} <span class="tag poisoned">{esc(a)}</span>'
                              for n, a in orgs)
            if g in first.groups:
                n_clean = num(first.groups[g].n_clean, "results",
                              ["detectors", first.detector, "groups", g, "n_clean"])
        rows.append(f'<tr class="rung-row" data-rung="{rung}"><td>{rung}</td>'
                    f'<td class="n">{num(ladder.rungs[g], "results", ["ladder", "rungs", g])}'
                    f" / {n_clean}</td><td>{names}</td></tr>")
    return ('<table id="ladder-rungs"><tr><th>rung</th><th>poisoned / clean</th>'
            f"<th>organisms</th></tr>{''.join(rows)}</table>")


def ladder_cell(det: DetectorResult, g: str) -> str:
    """One detector's AUROC on one rung with its bootstrap interval."""
    gr = det.groups.get(g)
    if gr is None:
        return '<span class="muted">–</span>'
    p = ["detectors", det.detector, "groups", g]
    cell = num(gr.auroc, "results", [*p, "auroc"])
    if gr.auroc_ci is not None:
        cell += (f' <span class="muted">[{num(gr.auroc_ci[0], "results", [*p, "auroc_ci", 0])}'
                 f', {num(gr.auroc_ci[1], "results", [*p, "auroc_ci", 1])}]</span>')
    return cell


def ladder_table(d: ReportData, ladder: Ladder) -> str:
    """Rung x detector AUROC, and each detector's breaking rung (or that it holds)."""
    order = ladder.order()
    head = "".join(f"<th>rung {rung}</th>" for rung, _ in order)
    rows = []
    for det in d.results.detectors:
        cells = "".join(f'<td class="n" data-rung="{rung}">{ladder_cell(det, g)}</td>'
                        for rung, g in order)
        br = ladder.breaking_rung.get(det.detector)
        brk = ("holds" if br is None else
               num(br, "results", ["ladder", "breaking_rung", det.detector]))
        rows.append(f'<tr class="ladder-row" data-detector="{esc(det.detector)}">'
                    f"<td>{esc(det.detector)}</td>{cells}"
                    f'<td class="n" data-breaking="{"" if br is None else br}">{brk}</td></tr>')
    return (f'<table id="ladder-table"><tr><th>detector</th>{head}<th>breaking rung</th></tr>'
            f"{''.join(rows)}</table>")


def ladder_section(d: ReportData) -> str:
    """The breaking-rung chart and the rung tables ('' outside a ladder game)."""
    ladder = d.results.ladder
    if ladder is None or not ladder.order():
        return ""
    fig = img(F.ladder_figure(d.results.detectors, ladder), "fig-ladder",
              "AUROC of every detector by rung", figure="ladder")
    bar = num(ladder.break_auroc, "results", ["ladder", "break_auroc"])
    return f"""
<section id="ladder"><h2>Ladder</h2>
<p>Each rung's poisoned organisms against all clean controls. A detector breaks on the lowest
rung where its AUROC is at most {bar}; it holds if no rung brings it there.</p>
<div class="figs">{fig}</div>
{ladder_rungs_table(d, ladder)}
{ladder_table(d, ladder)}</section>"""
