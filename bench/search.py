"""Exploration time of the `deepest` policy vs `exhaustive`, and regret. Prints JSON.

    python bench/search.py [--finetune full] [--epochs 2] [--deadline auto]

Both policies search the same candidates (the built-in backbones on the built-in digits,
--target local) with the same latency table, filled once beforehand so neither pays for
profiling. Exploration time = estimation + training + confirmation. Regret = accuracy of
the best feasible candidate found by exhaustive search minus the accuracy of deepest's
pick. Where a GPU is present, also training throughput (images/s) for head and full.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

from netcut import models
from netcut.data import digits
from netcut.search import parse_deadline
from netcut.training import TrainConfig, train_full, train_heads
from netcut.trn import build_trn
from netcut_host.search import Search, SearchConfig, normalization_for
from netcut_host.tables import LatencyDB
from netcut_host.targets import connect


def run_policy(policy: str, base: SearchConfig, out: Path, target, db, cache) -> tuple[dict, float]:
    cfg = SearchConfig(**{**vars(base), "policy": policy, "out": out})
    started = time.monotonic()
    outcome = Search(cfg, target, db, cache).run()
    seconds = time.monotonic() - started
    trained = [c for c in outcome.candidates if c.trained]
    best_feasible = max((c.accuracy for c in trained if c.feasible), default=None)
    return {"policy": policy, "exploration_s": round(seconds, 2),
            "phases_s": {k: round(v, 2) for k, v in outcome.phases_s.items()}, "trained": len(trained),
            "candidates": len(outcome.candidates), "feasible": sum(c.feasible for c in outcome.candidates),
            "pick": outcome.pick.key, "pick_accuracy": outcome.pick.accuracy,
            "best_feasible_accuracy": best_feasible}, cfg.deadline_ms


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


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--finetune", default="full", choices=["head", "full"])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--deadline", default="auto", help="e.g. 0.1ms; auto: the demo's rule")
    args = parser.parse_args(argv)
    out: dict = {"finetune": args.finetune, "epochs": args.epochs}
    with tempfile.TemporaryDirectory() as tmp, LatencyDB(Path(tmp) / "t.sqlite") as db, \
            connect("local", None, "onnxruntime", 1) as target:
        cache = Path(tmp) / "exports"
        base = SearchConfig(None if args.deadline == "auto" else parse_deadline(args.deadline),
                            models=models.builtin_models(), finetune=args.finetune, epochs=args.epochs,
                            timing={"min_seconds": 0.5}, out=Path(tmp) / "warm")
        warm = Search(base, target, db, cache)
        warm_start = time.monotonic()
        warm.run()  # fills the table (profiling) and fixes the deadline
        out["table_fill_s"] = round(time.monotonic() - warm_start, 2)
        base.deadline_ms = warm.cfg.deadline_ms
        out["deadline_ms"] = base.deadline_ms
        deepest, _ = run_policy("deepest", base, Path(tmp) / "deepest", target, db, cache)
        exhaustive, _ = run_policy("exhaustive", base, Path(tmp) / "exhaustive", target, db, cache)
    out["deepest"], out["exhaustive"] = deepest, exhaustive
    out["exploration_speedup"] = round(exhaustive["exploration_s"] / deepest["exploration_s"], 2)
    out["regret"] = round(exhaustive["best_feasible_accuracy"] - deepest["pick_accuracy"], 4)
    out["goal"] = "speedup >= 27 with regret <= 0"
    out["gpu_throughput"] = throughput("cuda") if torch.cuda.is_available() else "no GPU on this machine"
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
