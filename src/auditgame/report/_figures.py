"""Report figures with matplotlib (Agg, no pyplot state), returned as base64 PNG strings.

Every plotted value comes from the referee's results or the remediation record; nothing is
recomputed from verdicts here, except the ROC curve's points, which sklearn derives from the
scores the results list per organism.
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure

from auditgame.records import DetectorResult
from auditgame.records.results import Ladder, group_rung

POISON = "#c0392b"
CLEAN = "#2471a3"
GROUP_COLORS = ("#111111", "#c0392b", "#d68910", "#7d3c98", "#1e8449", "#a04000", "#5d6d7e")
DPI = 96


def to_png(fig: Figure) -> str:
    """Base64 PNG of a figure (for an inline `data:` URI)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight",
                metadata={"Software": None})  # no version string: same bytes on every host
    return base64.b64encode(buf.getvalue()).decode("ascii")


def roc_points(labels: Sequence[int], scores: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """FPR and TPR of every threshold (sklearn), or empty when a class is missing."""
    from sklearn.metrics import roc_curve

    if len(set(labels)) < 2:
        return np.array([]), np.array([])
    fpr, tpr, _ = roc_curve(np.asarray(labels), np.asarray(scores), drop_intermediate=False)
    return fpr, tpr


def roc_figure(det: DetectorResult, max_fpr: float) -> str:
    """ROC curve of every group (all poisoned, then each attack kind) against the controls,
    with the referee's operating point (threshold at FPR <= max_fpr) on the `all` curve."""
    fig = Figure(figsize=(4.6, 4.0))
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], ls=":", color="#999999", lw=1, label="chance")
    clean = [o for o in det.organisms if not o.poisoned]
    kinds = [(g, gr) for g, gr in det.groups.items() if group_rung(g) is None]  # rungs: ladder
    for i, (group, gr) in enumerate(kinds):
        pois = [o for o in det.organisms if o.poisoned and group in ("all", o.attack)]
        members = pois + clean
        fpr, tpr = roc_points([int(o.poisoned) for o in members], [o.score for o in members])
        if len(fpr) == 0:
            continue
        auc = "-" if gr.auroc is None else f"{gr.auroc:.3f}"
        ax.plot(fpr, tpr, drawstyle="steps-post", color=GROUP_COLORS[i % len(GROUP_COLORS)],
                lw=2.2 if group == "all" else 1.3, alpha=1.0 if group == "all" else 0.8,
                label=f"{group} (AUROC {auc})")
    allg = det.groups.get("all")
    if allg is not None and allg.confusion is not None:
        c = allg.confusion
        n_clean, n_pois = c["fp"] + c["tn"], c["tp"] + c["fn"]
        if n_clean and n_pois:
            ax.plot([c["fp"] / n_clean], [c["tp"] / n_pois], "o", ms=8, mfc="none", mec="black",
                    label=f"threshold (FPR<={max_fpr:.0%})")
    ax.axvline(max_fpr, color="#bbbbbb", lw=0.8, ls="--")
    ax.set(xlim=(-0.02, 1.02), ylim=(-0.02, 1.02), xlabel="false positive rate",
           ylabel="true positive rate", title=f"ROC: {det.detector}")
    ax.legend(loc="lower right", fontsize=7, frameon=False)
    fig.tight_layout()
    return to_png(fig)


def score_figure(det: DetectorResult) -> str:
    """Each organism's score by kind (clean controls first), with the referee's threshold."""
    kinds = ["clean", *sorted({o.attack for o in det.organisms if o.poisoned})]
    fig = Figure(figsize=(4.6, 4.0))
    ax = fig.add_subplot()
    for x, kind in enumerate(kinds):
        orgs = sorted((o for o in det.organisms if o.attack == kind), key=lambda o: o.organism)
        n = len(orgs)
        for j, o in enumerate(orgs):
            dx = 0.0 if n == 1 else -0.25 + 0.5 * j / (n - 1)
            ax.plot(x + dx, o.score, "x" if o.failed else "o", ms=7,
                    color=POISON if o.poisoned else CLEAN, alpha=0.85)
    thr = det.groups["all"].threshold if "all" in det.groups else None
    if thr is not None and math.isfinite(thr):
        ax.axhline(thr, color="black", lw=1, ls="--", label=f"threshold {thr:.3f}")
        ax.legend(loc="upper left", fontsize=7, frameon=False)
    ax.set_xticks(range(len(kinds)), kinds, rotation=20)
    ax.set(ylim=(-0.03, 1.03), xlim=(-0.6, len(kinds) - 0.4), ylabel="score (x = failed)",
           title=f"scores: {det.detector}")
    fig.tight_layout()
    return to_png(fig)


def overview_figure(dets: list[DetectorResult]) -> str:
    """AUROC (all poisoned vs controls) of every detector with its bootstrap 95 % interval."""
    fig = Figure(figsize=(max(4.6, 0.7 * len(dets) + 2.0), 3.4))
    ax = fig.add_subplot()
    xs = np.arange(len(dets))
    for x, d in zip(xs, dets, strict=True):
        g = d.groups.get("all")
        if g is None or g.auroc is None:
            continue
        ax.bar(x, g.auroc, color="#5d6d7e", width=0.6)
        if g.auroc_ci is not None:
            lo, hi = g.auroc_ci
            ax.errorbar(x, g.auroc, yerr=[[g.auroc - lo], [hi - g.auroc]], color="black",
                        capsize=4, lw=1)
    ax.axhline(0.5, color="#999999", ls=":", lw=1)
    ax.set_xticks(xs, [d.detector for d in dets], rotation=25, ha="right")
    ax.set(ylim=(0, 1.05), xlim=(-0.8, max(len(dets), 3) - 0.2), ylabel="AUROC [95% CI]",
           title="detectors: all poisoned vs clean")
    fig.tight_layout()
    return to_png(fig)


def persistence_figure(curves: list[dict[str, Any]]) -> str:
    """Left: each organism's behaviour rate against clean fine-tuning steps. Right: utility
    ratio against steps (the cost of the fix, clean controls included)."""
    fig = Figure(figsize=(9.2, 3.8))
    ax1, ax2 = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    for i, c in enumerate(curves):
        color = GROUP_COLORS[(i + 1) % len(GROUP_COLORS)] if c["poisoned"] else CLEAN
        ls = "-" if c["poisoned"] else "--"
        if c["behaviour"]:
            xs, ys = zip(*c["behaviour"], strict=True)
            ax1.plot(xs, ys, marker="o", ls=ls, color=color,
                     label=f"{c['organism']} ({c['metric']})")
        if c["utility"]:
            xs, ys = zip(*c["utility"], strict=True)
            ax2.plot(xs, ys, marker="o", ls=ls, color=color, label=c["organism"])
    ax1.set(ylim=(-0.03, 1.03), xlabel="clean SFT steps", ylabel="behaviour rate",
            title="persistence of the behaviour")
    ax2.set(xlabel="clean SFT steps", ylabel="utility / base", title="utility after the fix")
    for ax in (ax1, ax2):
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7, frameon=False)
    fig.tight_layout()
    return to_png(fig)


def behaviour_figure(rows: list[tuple[str, str, float, float | None]]) -> str:
    """Each poisoned organism's main behaviour rate next to the highest rate of the same
    measurement on any clean control: (organism, metric, own rate, max control rate)."""
    fig = Figure(figsize=(max(4.6, 1.1 * len(rows) + 2.0), 3.4))
    ax = fig.add_subplot()
    xs = np.arange(len(rows))
    own = [r[2] for r in rows]
    ctrl = [np.nan if r[3] is None else r[3] for r in rows]
    ax.bar(xs - 0.18, own, width=0.36, color=POISON, label="organism")
    ax.bar(xs + 0.18, ctrl, width=0.36, color=CLEAN, label="max over clean controls")
    ax.set_xticks(xs, [f"{r[0]}\n{r[1]}" for r in rows], fontsize=8)
    ax.set(ylim=(0, 1.05), ylabel="rate", title="implanted behaviour vs clean controls")
    ax.legend(fontsize=7, frameon=False)
    fig.tight_layout()
    return to_png(fig)


def ladder_figure(dets: list[DetectorResult], ladder: Ladder) -> str:
    """The breaking-rung chart: every detector's AUROC on each rung (its poisoned organisms
    against all clean controls), with chance and the break bar; a detector's line falls
    through the bar at its breaking rung."""
    order = ladder.order()
    rungs = [r for r, _ in order]
    fig = Figure(figsize=(max(5.2, 0.9 * len(rungs) + 3.4), 3.8))
    ax = fig.add_subplot()
    colors = colormaps["tab20"].colors
    for i, d in enumerate(dets):
        pts = [(r, d.groups[g].auroc) for r, g in order
               if g in d.groups and d.groups[g].auroc is not None]
        if not pts:
            continue
        xs, ys = zip(*pts, strict=True)
        ax.plot(xs, ys, marker="os^Dv"[i % 5], ls=("-", "--", "-.")[(i // 10) % 3], lw=1.4,
                ms=5, color=colors[(2 * i) % 20 + (i // 10) % 2], label=d.detector)
    ax.axhline(0.5, color="#999999", ls=":", lw=1, label="chance")
    ax.axhline(ladder.break_auroc, color="black", ls="--", lw=0.9,
               label=f"break (AUROC <= {ladder.break_auroc:g})")
    ax.set_xticks(rungs, [str(r) for r in rungs])
    ax.set(ylim=(-0.03, 1.03), xlim=(min(rungs) - 0.3, max(rungs) + 0.3), xlabel="rung",
           ylabel="AUROC (rung vs all clean)", title="breaking rung: AUROC by rung")
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=7, frameon=False)
    fig.tight_layout()
    return to_png(fig)
