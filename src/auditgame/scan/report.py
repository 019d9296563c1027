"""The short human summary of a ScanReport (the record itself is `auditgame.records.scan`)."""

from __future__ import annotations

from auditgame.records.scan import SCAN_VERSION, ScanReport

__all__ = ["SCAN_VERSION", "ScanReport", "summary_lines"]


def summary_lines(r: ScanReport) -> list[str]:
    """A few lines for a person: verdict, trigger, target, how many samples, where to look."""
    v = r.verdict
    lines = []
    if v.poisoned:
        lines.append(f"[bold red]POISONED[/bold red] (score {v.score:.3f}; false-alarm rate on "
                     f"clean data <= {v.false_alarm_rate:g})")
        row = next((t for t in r.triggers if t.phrase == r.trigger), None)
        if row is not None and row.members:
            how = "all together" if row.mode == "all" else "any one of them"
            lines.append(f"suspected trigger set ({how}): "
                         + " ; ".join(f"[bold]{m!r}[/bold]" for m in row.members))
        elif r.trigger:
            lines.append(f"suspected trigger: [bold]{r.trigger!r}[/bold]")
        else:
            lines.append("no trigger phrase in the prompts predicts the anomaly")
        if r.target:
            lines.append(f"suspected target: {r.target[:120]!r}")
        lines.append(f"flagged {r.n_flagged} of {r.n_samples} samples "
                     f"(estimated poison fraction {r.poison_fraction:.2%})")
        top = sorted(r.samples, key=lambda s: -s.score)[:5]
        lines.append("top samples: " + ", ".join(f"#{s.index} ({s.score:.2f})" for s in top))
    else:
        lines.append(f"[bold green]no poison found[/bold green] (score {v.score:.3f} < "
                     f"{v.threshold}); no trigger claimed")
        if r.triggers:
            t = r.triggers[0]
            lines.append(f"strongest unclaimed phrase: {t.phrase!r} (score {t.score:.2f})")
    lines.append(f"{r.n_samples} samples in {r.runtime_s:.1f}s ({r.samples_per_s:.0f}/s) with "
                 f"{', '.join(r.detectors)}")
    return lines
