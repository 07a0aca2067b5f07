"""Exploration time of the `deepest` policy vs `exhaustive`, and regret. Prints JSON.

    python bench/search.py [--finetune full] [--epochs 2] [--deadlines auto,p10,p20,p30,p40,p50] [--models LIST]

Both policies search the same candidates (the built-in backbones on the built-in digits,
--target local) with the same latency table, filled once beforehand so neither pays for
profiling. `--models all` adds the backbones found on NETCUT_BUILTIN_PATH (made by
scripts/pretrain_builtin.py --out DIR). Exploration time = estimation + training + confirmation. Regret = accuracy of
the best feasible candidate found by exhaustive search minus the accuracy of deepest's
pick. `exhaustive` trains every candidate whatever the deadline, so it runs once; `deepest`
runs once per deadline: `auto` (the demo's rule), `pNN` (the NNth percentile of all
candidates' estimated latencies), or a time such as 0.1ms. Where a GPU is present, also
training throughput (images/s) for head and full.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from netcut import models
from netcut.data import digits
from netcut.search import parse_deadline
from netcut.training import TrainConfig, train_full, train_heads
from netcut.trn import build_trn
from netcut_host.search import Search, SearchConfig, normalization_for
from netcut_host.tables import LatencyDB
from netcut_host.targets import connect


def run_policy(policy: str, base: SearchConfig, out: Path, target, db, cache) -> dict:
    cfg = SearchConfig(**{**vars(base), "policy": policy, "out": out})
    started = time.monotonic()
    outcome = Search(cfg, target, db, cache).run()
    seconds = time.monotonic() - started
    trained = [c for c in outcome.candidates if c.trained]
    return {"policy": policy, "exploration_s": round(seconds, 2),
            "phases_s": {k: round(v, 2) for k, v in outcome.phases_s.items()}, "trained": len(trained),
            "candidates": len(outcome.candidates), "pick": outcome.pick.key, "pick_accuracy": outcome.pick.accuracy,
            "pick_measured_ms": outcome.pick.measured_ms,
            "accuracies": {c.key: c.accuracy for c in trained},
            "feasible_keys": [c.key for c in outcome.candidates if c.feasible]}


def throughput(device: str) -> dict:
    name = models.builtin_models()[0]
    task = digits(32, normalization_for("builtin"))
    from netcut.cuts import analyse

    a = analyse(models.build(name, "builtin"), name, 32)
    cut = a.cuts[len(a.cuts) // 2].name
    head = train_heads(a, [cut], task.train_plain, task.val, 10, TrainConfig("head", 30, device=device))[cut][1]
    full = train_full(build_trn(a, cut, 10), task.train, task.val, TrainConfig("full", 2, 256, device=device))[1]
    return {"device": torch.cuda.get_device_name(0) if device == "cuda" else device,
            "head_images_per_s": round(head.images_per_second), "full_images_per_s": round(full.images_per_second)}


def deadline_from(spec: str, auto_ms: float, estimates: list[float]) -> float:
    if spec == "auto":
        return auto_ms
    if spec.startswith("p") and spec[1:].isdigit():
        return float(np.percentile(estimates, int(spec[1:])))
    return parse_deadline(spec)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--finetune", default="full", choices=["head", "full"])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--deadlines", default="auto,p10,p20,p30,p40,p50",
                        help="comma-separated: auto, pNN, or times")
    parser.add_argument("--models", default="shipped",
                        help="shipped (the package's backbones), all (also those on NETCUT_BUILTIN_PATH), or a list")
    args = parser.parse_args(argv)
    if args.models == "shipped":
        names = [m for m in models.builtin_models() if (models.BUILTIN_DIR / f"{m}.pt").is_file()]
    elif args.models == "all":
        names = models.builtin_models()
    else:
        names = args.models.split(",")
    out: dict = {"finetune": args.finetune, "epochs": args.epochs, "models": names, "per_deadline": []}
    with tempfile.TemporaryDirectory() as tmp, LatencyDB(Path(tmp) / "t.sqlite") as db, \
            connect("local", None, "onnxruntime", 1) as target:
        cache = Path(tmp) / "exports"
        base = SearchConfig(None, models=names, finetune=args.finetune, epochs=args.epochs,
                            timing={"min_seconds": 0.5}, out=Path(tmp) / "warm")
        warm = Search(base, target, db, cache)
        warm_start = time.monotonic()
        warmed = warm.run()  # fills the table (profiling) and fixes the demo deadline
        val_images = warmed.task["val"]
        out["table_fill_s"] = round(time.monotonic() - warm_start, 2)
        estimates = [c.estimated_ms for c in warmed.candidates if c.estimated_ms is not None]
        deadlines = [deadline_from(s, warm.cfg.deadline_ms, estimates) for s in args.deadlines.split(",")]
        base.deadline_ms = deadlines[0]
        exhaustive = run_policy("exhaustive", base, Path(tmp) / "exhaustive", target, db, cache)
        out["exhaustive"] = {k: v for k, v in exhaustive.items() if k != "accuracies"}
        for spec, deadline in zip(args.deadlines.split(","), deadlines):
            base.deadline_ms = deadline
            deepest = run_policy("deepest", base, Path(tmp) / f"deepest-{spec}", target, db, cache)
            # The best feasible candidate at this deadline among all that exhaustive trained.
            feasible = set(deepest["feasible_keys"])
            ranked = sorted(((a, k) for k, a in exhaustive["accuracies"].items() if k in feasible), reverse=True)
            best, best_key = ranked[0] if ranked else (None, None)
            out["per_deadline"].append({
                "deadline": spec, "deadline_ms": round(deadline, 4), "feasible": len(feasible),
                "deepest": {k: v for k, v in deepest.items() if k not in ("accuracies", "feasible_keys")},
                "exploration_speedup": round(exhaustive["exploration_s"] / deepest["exploration_s"], 2),
                "training_speedup": round(exhaustive["phases_s"]["training"] /
                                          max(deepest["phases_s"]["training"], 1e-9), 2),
                "best_exhaustive_feasible": best, "best_exhaustive_feasible_key": best_key,
                # Equally good: the pick is as accurate as the best, in one and the same training of each.
                "same_or_better_pick": exhaustive["accuracies"].get(deepest["pick"]) == best if best else None,
                "regret": round(best - deepest["pick_accuracy"], 4) if best is not None else None,
                # The same pick as trained by the exhaustive run (training is seeded per candidate).
                "pick_accuracy_in_exhaustive_run": exhaustive["accuracies"].get(deepest["pick"]),
                # One standard error of a difference of two accuracies on this validation set.
                "regret_standard_error": round(math.sqrt(2 * best * (1 - best) / val_images), 4) if best else None})
    out["goal"] = "speedup >= 27 with regret <= 0"
    out["gpu_throughput"] = throughput("cuda") if torch.cuda.is_available() else "no GPU on this machine"
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
