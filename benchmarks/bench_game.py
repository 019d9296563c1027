"""Wall time and peak memory of `auditgame run`, stage by stage, against a baseline.

Each stage (make, seal, audit, score, remediate, report) runs in its own fresh process on the
same game folder, exactly as `auditgame run` would run it, so each stage's peak RSS
(getrusage) is its own; the clock starts after imports. (tracemalloc is not used: it slows
Python code several-fold and misses torch's tensor memory.) The baseline, measured in the
same run on the same machine, is what any use of the base model costs: loading it and one
plain greedy generation pass over bank prompts. Prints a table and saves JSON under
benchmarks/results/.

    python benchmarks/bench_game.py [SPEC] [--out DIR] [--detectors a,b] [--skip remediate]
                                    [--cold-cache] [--threads N]

Default SPEC: the embedded default game. Make's time is also broken down per organism
(training and measuring, from each organism's metrics); audit's per detector. The game
folder is wiped first unless --resume.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
BASELINE_PROMPTS = 32


def _peak_rss_mb() -> float:
    """This process's peak resident set size (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024, 1)


def _child_stage(spec: Path, game: Path, stage: str, detectors: list[str] | None,
                 budget: str | None, n_bootstrap: int) -> dict[str, Any]:
    """Run one pipeline stage in this process. The modules every stage uses are imported
    before the clock starts, as `auditgame run` imports them once for all stages."""
    import importlib

    from rich.console import Console
    from rich.progress import Progress

    from auditgame.pipeline import (
        Pipeline,
        remediate_entry,
        resolve_backend,
        select_detectors,
        spec_budget,
    )

    for mod in ("auditgame.organisms.factory", "auditgame.bundle", "auditgame.detectors",
                "auditgame.referee", "auditgame.report._html", "peft"):
        importlib.import_module(mod)
    remediate_entry()

    p = Pipeline(spec_path=spec, game=game, detectors=select_detectors(detectors,
                                                                 budget or spec_budget(spec)),
                 n_bootstrap=n_bootstrap, console=Console(stderr=True, quiet=True))
    p.backend = resolve_backend("local", None)
    prog = Progress(console=p.console)
    task = prog.add_task(stage, total=1)
    rss0 = _peak_rss_mb()
    t0 = time.perf_counter()
    rec = p.run_stage(stage, prog, task)
    wall = time.perf_counter() - t0
    return {"stage": stage, "status": rec.status, "note": rec.note, "wall_s": round(wall, 3),
            "detail": rec.detail, "peak_rss_mb": _peak_rss_mb(), "rss_after_imports_mb": rss0}


def _child_baseline(spec_path: Path) -> dict[str, Any]:
    """Load the spec's base model, then one greedy pass over bank prompts."""
    from auditgame.models.base_lm import load_base
    from auditgame.models.generate import generate
    from auditgame.organisms.load import load_spec
    from auditgame.organisms.prompts import prompt_bank

    spec = load_spec(spec_path)
    t0 = time.perf_counter()
    bm = load_base(spec.base, spec.dtype)
    load_s = time.perf_counter() - t0
    prompts = [p.text for p in prompt_bank(spec.seed)[:BASELINE_PROMPTS]]
    t1 = time.perf_counter()
    outs = generate(bm.model, bm.tokenizer, prompts, spec.corpus.max_answer_tokens,
                    spec.eval.batch_size)
    gen_s = time.perf_counter() - t1
    n_tok = sum(len(bm.tokenizer(o, add_special_tokens=False)["input_ids"]) for o in outs)
    return {"base": bm.model_id, "load_s": round(load_s, 3), "generate_s": round(gen_s, 3),
            "prompts": len(prompts), "max_new_tokens": spec.corpus.max_answer_tokens,
            "generated_tokens": n_tok, "generate_tokens_per_s": round(n_tok / gen_s, 1),
            "peak_rss_mb": _peak_rss_mb()}


def _per_organism(game: Path) -> dict[str, dict[str, float]]:
    """Make's time per organism, split into training and measuring (from its metrics)."""
    from auditgame.errors import AuditgameError
    from auditgame.layout import GameFolder
    from auditgame.organisms.factory import read_metrics

    out: dict[str, dict[str, float]] = {}
    for folder in GameFolder(game).organism_folders():
        try:
            m = read_metrics(folder)
        except AuditgameError:  # an unfinished organism has no metrics: nothing to break down
            continue
        out[folder.name] = {"train_s": m.train_wall_time_s,
                            "measure_s": round(m.wall_time_s - m.train_wall_time_s, 1),
                            "train_tokens_per_s": m.train_tokens_per_s}
    return out


def _spawn(args: list[str], env: dict[str, str]) -> dict[str, Any]:
    """Run this script as a child; its last stdout line is its JSON result."""
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True,
                          env=env)
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr[-4000:])
        raise SystemExit(f"child {' '.join(args[:2])} failed with exit code {proc.returncode}")
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    res["process_s"] = round(time.perf_counter() - t0, 3)  # with interpreter start and imports
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("spec", nargs="?", type=Path, default=None)
    ap.add_argument("--out", type=Path, default=None, help="game folder (default: a temp dir)")
    ap.add_argument("--detectors", default=None, help="comma-separated (default: the budget's)")
    ap.add_argument("--budget", default=None, help="default: the spec's audit.budget")
    ap.add_argument("--skip", default="", help="comma-separated stages not to run")
    ap.add_argument("--n-bootstrap", type=int, default=1000)
    ap.add_argument("--resume", action="store_true", help="keep an existing game folder")
    ap.add_argument("--cold-cache", action="store_true",
                    help="empty AUDITGAME_CACHE (as on a fresh machine: dequantize SmolLM2, "
                    "self-distil the corpus)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--results", type=Path, default=None, help="JSON file to write")
    ap.add_argument("--child-stage", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--child-baseline", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()

    from auditgame.pipeline import STAGES

    if args.threads is not None:
        import torch

        torch.set_num_threads(args.threads)
    spec = args.spec
    if spec is None:
        from auditgame._cli.main import run_spec_path

        spec = run_spec_path()
    dets = None if args.detectors is None else args.detectors.split(",")
    if args.child_stage is not None:
        print(json.dumps(_child_stage(spec, args.out, args.child_stage, dets, args.budget,
                                      args.n_bootstrap)))
        return
    if args.child_baseline:
        print(json.dumps(_child_baseline(spec)))
        return

    from auditgame.organisms.load import load_spec

    name = load_spec(spec).name
    tmp = None
    game = args.out
    if game is None:
        tmp = Path(tempfile.mkdtemp(prefix="auditgame-bench-"))
        game = tmp / "game"
    elif game.exists() and not args.resume:
        shutil.rmtree(game)
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    if args.cold_cache:
        env["AUDITGAME_CACHE"] = tempfile.mkdtemp(prefix="auditgame-bench-cache-")
    common = [str(spec), "--out", str(game), *(["--budget", args.budget] if args.budget else []),
              "--n-bootstrap", str(args.n_bootstrap)]
    if args.detectors:
        common += ["--detectors", args.detectors]
    if args.threads is not None:
        common += ["--threads", str(args.threads)]
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}

    print(f"bench_game: {name} ({spec}) into {game}", flush=True)
    baseline = _spawn([str(spec), "--child-baseline"]
                      + (["--threads", str(args.threads)] if args.threads else []), env)
    print(f"baseline: load {baseline['load_s']:.1f} s, generate {baseline['prompts']} prompts "
          f"x {baseline['max_new_tokens']} tokens {baseline['generate_s']:.1f} s, peak RSS "
          f"{baseline['peak_rss_mb']:.0f} MB", flush=True)
    stages: list[dict[str, Any]] = []
    for stage in STAGES:
        if stage in skip:
            stages.append({"stage": stage, "status": "skipped", "note": "--skip",
                           "wall_s": 0.0, "process_s": 0.0})
            continue
        r = _spawn(["--child-stage", stage, *common], env)
        stages.append(r)
        print(f"{stage:<10} {r['status']:<11} {r['wall_s']:8.1f} s  peak RSS "
              f"{r.get('peak_rss_mb', 0):6.0f} MB (imports {r.get('rss_after_imports_mb', 0):.0f})"
              f"  {r['note']}", flush=True)
    per_org = _per_organism(game)
    for name_, o in per_org.items():
        print(f"  {name_:<24} train {o['train_s']:6.1f} s  measure {o['measure_s']:6.1f} s  "
              f"{o['train_tokens_per_s']:.0f} tok/s", flush=True)
    total = sum(s["wall_s"] for s in stages)
    base_unit = baseline["load_s"] + baseline["generate_s"]
    import torch

    res = {
        "version": 1, "spec": str(spec), "game": name, "cold_cache": args.cold_cache,
        "threads": args.threads or torch.get_num_threads(), "cpus": os.cpu_count(),
        "load_average_1m": round(os.getloadavg()[0], 2),
        "machine": platform.platform(), "python": platform.python_version(),
        "baseline": baseline, "stages": stages, "organisms": per_org,
        "total_stage_s": round(total, 1),
        "total_process_s": round(sum(s.get("process_s", 0.0) for s in stages), 1),
        "total_in_baselines": round(total / base_unit, 1) if base_unit else None,
        "peak_rss_mb": max([s.get("peak_rss_mb", 0.0) for s in stages]
                           + [baseline["peak_rss_mb"]]),
    }
    print(f"total {total:.1f} s in stages ({res['total_process_s']:.1f} s with process "
          f"start-up) = {res['total_in_baselines']} x the baseline; peak RSS "
          f"{res['peak_rss_mb']:.0f} MB; load average {res['load_average_1m']}")
    out = args.results or RESULTS / f"bench_game_{name}.json"
    from auditgame._util.io import atomic_write_json

    atomic_write_json(out, res)
    print(f"saved {out}")
    if tmp is not None:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
