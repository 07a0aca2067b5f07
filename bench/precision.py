"""int8 against fp32 on the built-in backbones and the built-in digits, on the local target. Prints JSON.

    python bench/precision.py [--deadlines p10,p20,p30,p40,p50] [--epochs 30] [--rounds 3] [--models LIST]
                              [--input-size 32]

1. latency: per network, each candidate's int8/fp32 median ratio, measured end to end on the local agent,
   the two precisions of a cut one right after the other, in --rounds passes (every other pass in reverse,
   and int8 first on odd passes), so a drift of the machine touches both alike.
2. accuracy: per candidate, the int8 model's validation accuracy (in onnxruntime, quantized from the float
   TRN the search trained) minus the float TRN's, every candidate quantized.
3. search: at each deadline (percentiles of the fp32 candidates' estimates), the pick of `--precision fp32`
   against `--precision fp32,int8`: its test accuracy (the delivered model in onnxruntime, on the 359 digits
   nothing chose on) and the exploration time (estimation + training + quantization + confirmation; the
   tables are filled once beforehand, as a second search on a board finds them), and what int8 adds to it.
   Goals: int8 adds under 20% to exploration time; the mixed pick is at least as accurate at every deadline.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from netcut import models
from netcut.cuts import candidate_cuts
from netcut.quantize import QuantizationError, calibration_images, runtime_accuracy
from netcut.export import export
from netcut.policy import Policy
from netcut.vocabulary import FP32, INT8
from netcut_host import wire
from netcut_host.errors import NoFeasibleCandidate
from netcut_host.profiling import SEED, Job, ModelFiles, analyses_for, interleave
from netcut_host.records import Timing
from netcut_host.search import Search, SearchConfig
from netcut_host.tables import LatencyDB, RowKey
from netcut_host.targets import connect

GOAL_EXTRA_EXPLORATION = 0.20
TIMING = Timing(warmup_seconds=0.2, min_seconds=0.4)


def latency_ratios(target, names: list[str], cache: Path, rounds: int, size: int) -> dict:
    """Per network and cut: median int8/fp32 latency, measured interleaved."""
    key = RowKey(input_size=size, classes=10)
    keys = {FP32: key, INT8: dataclasses.replace(key, precision=INT8)}
    analyses = analyses_for(names, key)
    files = {p: ModelFiles(cache, k, analyses) for p, k in keys.items()}
    jobs = [Job(m, c, "e2e") for m, a in analyses.items() for c in interleave(candidate_cuts(a))]
    medians: dict[tuple, dict[str, list[float]]] = {}
    for r in range(rounds):
        for job in jobs if r % 2 == 0 else jobs[::-1]:
            for p in (FP32, INT8) if r % 2 == 0 else (INT8, FP32):
                model_id = target.client.upload(files[p].get(job), label=job.label())
                result = wire.benchmark(target.client, model_id, "onnxruntime", 1, TIMING)
                medians.setdefault((job.model, job.cut), {}).setdefault(p, []).append(result.stats.median_ms)
    out = {}
    for (model, cut), m in medians.items():
        f, q = statistics.median(m[FP32]), statistics.median(m[INT8])
        out.setdefault(model, {})[cut or "full"] = {
            "fp32_ms": round(f, 4),
            "int8_ms": round(q, 4),
            "ratio": round(q / f, 3),
        }
    summary = {}
    for model, cuts in out.items():
        ratios = [v["ratio"] for v in cuts.values()]
        summary[model] = {
            "median_ratio": round(statistics.median(ratios), 3),
            "min_ratio": min(ratios),
            "max_ratio": max(ratios),
            "full_network_ratio": cuts["full"]["ratio"],
            "cuts_where_int8_is_slower": sum(r >= 1 for r in ratios),
            "per_cut": cuts,
        }
    return summary


def accuracy_changes(search: Search, outcome) -> dict:
    """Every trained fp32 candidate quantized: int8 minus float validation accuracy, per network and cut."""
    task = search._task_for(outcome.candidates[0].model)
    calibration = calibration_images(task.train_plain, 200, SEED)
    check = calibration_images(task.val, 200, SEED + 1)
    out: dict = {}
    failed: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        for c in outcome.candidates:
            if c.precision != FP32 or c.accuracy is None:
                continue
            path = Path(tmp) / f"{search._stem(c)}.onnx"
            trn = search.trained_trn(c, len(task.classes))
            try:
                shape = search.analyses[c.model].input_shape
                export(trn, path, shape, precision=INT8, calibration=calibration, check=check)
            except QuantizationError as exc:
                failed[c.key] = str(exc)
                continue
            change = runtime_accuracy(path, task.val) - c.accuracy
            out.setdefault(c.model, {})[c.cut or "full"] = round(change * len(task.val))  # in images
    return {
        "unit": f"images of {len(task.val)} validation images (int8 minus float)",
        "per_network": {
            m: {
                "median": statistics.median(v.values()),
                "worst": min(v.values()),
                "best": max(v.values()),
                "per_cut": v,
            }
            for m, v in out.items()
        },
        "failed_verification": failed,
    }


def exploration_s(phases: dict) -> float:
    return sum(phases[k] for k in ("estimation", "training", "quantization", "confirmation"))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--deadlines", default="p10,p20,p30,p40,p50")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved passes for the latency ratios")
    parser.add_argument("--models", default="shipped", help="shipped (the package's backbones) or a list")
    parser.add_argument(
        "--input-size", type=int, default=32, help="the digits upsampled to this size (the demo's is 32)"
    )
    args = parser.parse_args(argv)
    names = models.builtin_models() if args.models == "shipped" else args.models.split(",")
    out: dict = {"models": names, "epochs": args.epochs, "input_size": args.input_size}
    with (
        tempfile.TemporaryDirectory() as tmp,
        LatencyDB(Path(tmp) / "t.sqlite") as db,
        connect("local", None, "onnxruntime", 1) as target,
    ):
        cache = Path(tmp) / "exports"
        started = time.monotonic()
        out["latency"] = latency_ratios(target, names, cache, args.rounds, args.input_size)
        out["latency_s"] = round(time.monotonic() - started, 1)
        base = SearchConfig(
            models=tuple(names), epochs=args.epochs, timing=TIMING, input_size=args.input_size, out=Path(tmp) / "warm"
        )
        # Fill both precisions' tables once, with every cut trained (exhaustive) for the accuracy changes.
        warm = Search(
            dataclasses.replace(base, policy=Policy("exhaustive"), precisions=(FP32, INT8)), target, db, cache
        )
        started = time.monotonic()
        warmed = warm.run()
        out["table_fill_s"] = round(warmed.phases_s["profiling"], 1)
        out["accuracy"] = accuracy_changes(warm, warmed)
        out["accuracy_s"] = round(time.monotonic() - started - warmed.phases_s["profiling"], 1)
        estimates = [c.estimated_ms for c in warmed.candidates if c.precision == FP32 and c.estimated_ms]
        rows = []
        for spec in args.deadlines.split(","):
            deadline = float(np.percentile(estimates, int(spec[1:])))
            row = {"deadline": spec, "deadline_ms": round(deadline, 4)}
            for label, precisions in (("fp32", (FP32,)), ("fp32,int8", (FP32, INT8))):
                cfg = dataclasses.replace(
                    base, deadline_ms=deadline, precisions=precisions, out=Path(tmp) / f"{spec}-{label}"
                )
                try:
                    o = Search(cfg, target, db, cache).run()
                except NoFeasibleCandidate as exc:
                    row[label] = {"error": str(exc)}
                    continue
                row[label] = {
                    "pick": o.pick.key,
                    "pick_measured_ms": round(o.pick.measured_ms, 4),
                    "validation_accuracy": round(o.pick.accuracy, 4),
                    "test_accuracy": round(o.pick.test_accuracy, 4),
                    "exploration_s": round(exploration_s(o.phases_s), 2),
                    "phases_s": {k: round(v, 2) for k, v in o.phases_s.items()},
                    "trained": sum(c.trained for c in o.candidates),
                }
            f, m = row["fp32"], row["fp32,int8"]
            if "error" not in m and "error" not in f:
                row["extra_exploration"] = round(m["exploration_s"] / f["exploration_s"] - 1, 3)
                row["mixed_at_least_as_accurate_on_test"] = m["test_accuracy"] >= f["test_accuracy"]
            elif "error" not in m:  # only int8 meets it
                row["mixed_at_least_as_accurate_on_test"] = True
            rows.append(row)
        out["per_deadline"] = rows
    extras = [r["extra_exploration"] for r in rows if "extra_exploration" in r]
    out["goals"] = {
        "int8_adds_under_20pct_exploration": bool(extras) and max(extras) < GOAL_EXTRA_EXPLORATION,
        "max_extra_exploration": max(extras, default=None),
        "mixed_at_least_as_accurate_everywhere": all(r.get("mixed_at_least_as_accurate_on_test") for r in rows),
    }
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
