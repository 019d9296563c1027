"""Model-track audit cost: wall time per detector for one organism, against a baseline.

Audits a sealed game with every model-track detector, one detector at a time, with a fresh
activation cache, and prints per detector the total, the mean per organism (detectors calibrate
against the whole bundle, so the first organism pays for its peers' statistics; the mean is
what one organism costs) and the first organism's time. The baseline, timed in the same run,
is a plain base-model generation pass of the size `behaviour_diff` uses (N_NEUTRAL prompts x
N_NEW_TOKENS, batch 32). The goal: all model detectors together <= 120 s per organism on 2 cores.

    python benchmarks/bench_model_audit.py                 # tiny game built by `make`
    python benchmarks/bench_model_audit.py --game GAME     # any sealed game (e.g. SmolLM2)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

import torch

from auditgame._util.io import atomic_write_json
from auditgame.bundle import Bundle, seal_game
from auditgame.detectors import run_audit
from auditgame.detectors.model._prompts import N_NEUTRAL, N_NEW_TOKENS

OUT = Path(__file__).resolve().parent / "results"
DETECTORS = ("behaviour_diff", "weight_diff", "activation_probe", "activation_diff", "features")
TINY_SPEC = Path(__file__).resolve().parent.parent / "src/auditgame/examples/tiny.yaml"


def tiny_game(work: Path) -> Path:
    """The packaged tiny spec, built and sealed (seconds)."""
    from auditgame.organisms.factory import make_game
    from auditgame.organisms.load import load_spec

    game = work / "game"
    make_game(load_spec(TINY_SPEC), game)
    seal_game(game, seed=0)
    return game


def baseline_s(bundle: Bundle, n_prompts: int = N_NEUTRAL,
               max_new: int = N_NEW_TOKENS) -> float:
    """A plain base-model generation pass of behaviour_diff's size."""
    from auditgame.detectors.model._prompts import neutral_prompts
    from auditgame.models.base_lm import load_base
    from auditgame.models.generate import generate

    bm = load_base(str(bundle.public.base["name"]))
    t = time.perf_counter()
    generate(bm.model, bm.tokenizer, neutral_prompts(n_prompts), max_new, 32)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--game", type=Path, help="a sealed game folder (default: tiny game)")
    ap.add_argument("--threads", type=int, default=2, help="torch threads (2 cores)")
    ap.add_argument("--detectors", default=",".join(DETECTORS))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    work = Path(tempfile.mkdtemp(prefix="bench-model-audit-"))
    os.environ["AUDITGAME_ACTS_CACHE"] = str(work / "acts")
    try:
        game = args.game if args.game else tiny_game(work)
        bundle = Bundle(game / "bundle")
        n = len(bundle.ids)
        base_t = baseline_s(bundle)
        rows = []
        for det in args.detectors.split(","):
            out = work / "verdicts" / det
            t = time.perf_counter()
            path = run_audit(game / "bundle", [det], out_dir=out)[det]
            total = time.perf_counter() - t
            vs = [json.loads(line) for line in path.read_text().splitlines()]
            errors = [v["error"] for v in vs if v["error"]]
            rows.append({"detector": det, "total_s": round(total, 2),
                         "per_organism_s": round(total / n, 2),
                         "first_organism_s": round(vs[0]["runtime_s"], 2),
                         "errors": errors[:3]})
        per_org = sum(r["per_organism_s"] for r in rows)
        print(f"game {game} ({n} organisms, base {bundle.public.base['name']}, "
              f"{args.threads} threads)")
        print(f"baseline: base-model generation {N_NEUTRAL} prompts x {N_NEW_TOKENS} tokens: "
              f"{base_t:.2f} s")
        print(f"{'detector':18s} {'total s':>9s} {'per org s':>10s} {'first s':>8s} "
              f"{'x baseline':>10s}")
        for r in rows:
            print(f"{r['detector']:18s} {r['total_s']:9.2f} {r['per_organism_s']:10.2f} "
                  f"{r['first_organism_s']:8.2f} {r['per_organism_s'] / base_t:10.2f}"
                  + (f"  errors: {r['errors']}" if r["errors"] else ""))
        print(f"{'all model detectors':18s} {'':9s} {per_org:10.2f} per organism "
              f"(goal <= 120 s)")
        OUT.mkdir(parents=True, exist_ok=True)
        name = "tiny" if not args.game else str(bundle.public.base["name"])
        atomic_write_json(OUT / f"bench_model_audit_{name}.json", {
            "game": str(game), "n_organisms": n, "base": bundle.public.base,
            "threads": args.threads, "baseline_generation_s": round(base_t, 3),
            "detectors": rows, "all_per_organism_s": round(per_org, 2),
            "machine": platform.platform(), "torch": torch.__version__,
            "time": time.strftime("%Y-%m-%dT%H:%M:%S")})
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
