"""Model-only "in what way": `inversion` against today's single-token search (`behaviour_diff`)
in the same run, scored by the referee with the working-trigger rate.

Prints per organism and detector: the planted trigger, the claimed one, its REASR (does it
fire the organism on fresh prompts, by the attack's own check), the target token F1 (or
whether the entity is named) and seconds; then per detector: exact match, F1 and REASR over
the triggered organisms, target recovery, clean controls with a claim, and AUROC.

    python benchmarks/bench_inversion.py --game GAME   # any built and sealed game
    auditgame run benchmarks/specs/inversion-smollm2.yaml --out G --skip remediate,report
    python benchmarks/bench_inversion.py --game G      # the benchmark's own game
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import torch

from auditgame._util.io import atomic_write_json
from auditgame.detectors import run_audit
from auditgame.layout import GameFolder, verdict_path
from auditgame.records.key import GameKey
from auditgame.records.verdict import Verdict
from auditgame.referee import score_game
from auditgame.referee.metrics import entity_match, exact_match, token_f1

OUT = Path(__file__).resolve().parent / "results"
DETECTORS = ("inversion", "behaviour_diff")


def _verdicts(path: Path) -> dict[str, Verdict]:
    vs = [Verdict.model_validate_json(line) for line in path.read_text().splitlines() if line]
    return {v.blind_id: v for v in vs}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--game", type=Path, required=True, help="a built and sealed game folder")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=OUT / "bench_inversion.json")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    g = GameFolder(a.game)
    key = GameKey.model_validate_json(g.key.read_text())
    vdir = Path(tempfile.mkdtemp(prefix="bench-inversion-"))  # the game's verdicts stay
    wall: dict[str, float] = {}
    for det in DETECTORS:
        t0 = time.perf_counter()
        run_audit(g.bundle, [det], out_dir=vdir)
        wall[det] = time.perf_counter() - t0
    res = score_game(g.root, n_boot=200, verdicts_dir=vdir, working_triggers=True)
    rows, summary = [], {}
    for d in res.detectors:
        vs = _verdicts(verdict_path(vdir, d.detector))
        for o in d.organisms:
            e, v = key.organisms[o.blind_id], vs.get(o.blind_id)
            tf = (entity_match(o.target, e.target) if e.attack == "loyalty"
                  else token_f1(o.target, e.target)) if e.target else None
            rows.append({"detector": d.detector, "organism": e.organism, "attack": e.attack,
                         "true_trigger": e.trigger, "claimed": o.trigger,
                         "exact": exact_match(o.trigger, e.trigger) if e.trigger else None,
                         "reasr": o.trigger_working, "target_f1": tf,
                         "seconds": v.runtime_s if v else None})
        gr = d.groups["all"]
        clean_claims = sum(1 for o in d.organisms if not o.poisoned and o.trigger)
        summary[d.detector] = {"auroc": gr.auroc, "trigger_exact": gr.trigger_exact,
                               "trigger_f1": gr.trigger_f1, "reasr": gr.trigger_working,
                               "reasr_share": gr.trigger_working_share,
                               "target_f1": gr.target_f1, "entity_match": gr.entity_match,
                               "clean_with_claim": clean_claims,
                               "wall_s": round(wall[d.detector], 1)}
    for r in rows:
        print(f"{r['detector']:15} {r['organism']:26} true={r['true_trigger']!s:28} "
              f"claimed={r['claimed']!s:28} reasr={r['reasr']!s:5} "
              f"target={r['target_f1']!s:5} s={r['seconds']}")
    print(json.dumps(summary, indent=2))
    atomic_write_json(a.out, {"game": str(g.root), "machine": platform.platform(),
                              "threads": a.threads, "summary": summary, "rows": rows})


if __name__ == "__main__":
    main()
