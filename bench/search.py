"""Exploration time of the `deepest` and `feasible` policies vs `exhaustive`, and regret. Prints JSON.

    python bench/search.py [--finetune full|head] [--epochs 2] [--deadlines auto,p10,p20,p30,p40,p50]
                           [--policies deepest,feasible] [--models LIST]

Both policies search the same candidates (the built-in backbones on the built-in digits,
--target local) with the same latency table, filled once beforehand so neither pays for
profiling. `--models all` adds the backbones found on NETCUT_BUILTIN_PATH (made by
scripts/pretrain_builtin.py --out DIR). Exploration time = estimation + training + confirmation. Regret = accuracy of
the best feasible candidate found by exhaustive search minus the accuracy of each policy's
pick, on validation (the images both searches choose by) and on a test split that neither
saw (20% of each digit, set aside first): the best of many on the images that chose it is
flattered by their noise, so the test figures are the fair comparison of the two picks.
`exhaustive` trains every candidate whatever the deadline, so it runs once; each policy
runs once per deadline: `auto` (the demo's rule), `pNN` (the NNth percentile of all
candidates' estimated latencies), or a time such as 0.1ms. Where a GPU is present, also
training throughput (images/s) for head and full.
"""

from __future__ import annotations

import argparse
import dataclasses
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
from netcut.policy import DEFAULT_POLICY, Policy, parse_deadline, ranked_for_confirmation
from netcut.training import TrainConfig, evaluate, train_full, train_heads
from netcut.trn import build_trn
from netcut.vocabulary import FP32
from netcut_host.profiling import SEED
from netcut_host.errors import NoFeasibleCandidate
from netcut_host.records import Timing
from netcut_host.search import Search, SearchConfig, normalization_for
from netcut_host.tables import LatencyDB
from netcut_host.targets import connect


TEST_FRACTION = 0.2
GOAL_SPEEDUP = 27.0


def run_policy(policy: str, base: SearchConfig, out: Path, target, db, cache, task) -> tuple[dict, Search, list]:
    cfg = dataclasses.replace(base, policy=Policy.parse(policy), out=out)
    started = time.monotonic()
    search = Search(cfg, target, db, cache, task=task)
    outcome = search.run()
    seconds = time.monotonic() - started
    trained = [c for c in outcome.candidates if c.trained]
    return (
        {
            "policy": policy,
            "exploration_s": round(seconds, 2),
            "phases_s": {k: round(v, 2) for k, v in outcome.phases_s.items()},
            "trained": len(trained),
            "candidates": len(outcome.candidates),
            "pick": outcome.pick.key,
            "pick_accuracy": outcome.pick.accuracy,
            "pick_measured_ms": outcome.pick.measured_ms,
            "accuracies": {c.key: c.accuracy for c in trained},
            "feasible_keys": [c.key for c in outcome.candidates if c.feasible],
        },
        search,
        outcome.candidates,
    )


class TestAccuracy:
    """Accuracy on the held-out test images of a candidate as trained by a search (from its checkpoint)."""

    def __init__(self, task):
        self.task, self.classes, self.cache = task, len(task.classes), {}

    def __call__(self, search: Search, candidate) -> float:
        key = (str(search.out), candidate.key)
        if key not in self.cache:
            self.cache[key] = evaluate(search.trained_trn(candidate, self.classes), self.task.test, "cpu")
        return self.cache[key]


def throughput(device: str) -> dict:
    name = models.builtin_models()[0]
    task = digits(32, normalization_for("builtin"))
    from netcut.cuts import analyse

    a = analyse(models.build(name, "builtin"), name, 32)
    cut = a.cuts[len(a.cuts) // 2].name
    head = train_heads(a, [cut], task.train_plain, task.val, 10, TrainConfig("head", 30, device=device))[cut][1]
    full = train_full(build_trn(a, cut, 10), task.train, task.val, TrainConfig("full", 2, 256, device=device))[1]
    return {
        "device": torch.cuda.get_device_name(0) if device == "cuda" else device,
        "head_images_per_s": round(head.images_per_second),
        "full_images_per_s": round(full.images_per_second),
    }


def deadline_from(spec: str, auto_ms: float, estimates: list[float]) -> float:
    if spec == "auto":
        return auto_ms
    if spec.startswith("p") and spec[1:].isdigit():
        return float(np.percentile(estimates, int(spec[1:])))
    return parse_deadline(spec)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--finetune", default="full", choices=["head", "full"])
    parser.add_argument("--policies", default="deepest,feasible", help="policies compared with exhaustive")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--deadlines", default="auto,p10,p20,p30,p40,p50", help="comma-separated: auto, pNN, or times")
    parser.add_argument(
        "--models",
        default="shipped",
        help="shipped (the package's backbones), all (also those on NETCUT_BUILTIN_PATH), or a list",
    )
    args = parser.parse_args(argv)
    if args.models == "shipped":
        names = [m for m in models.builtin_models() if (models.BUILTIN_DIR / f"{m}.pt").is_file()]
    elif args.models == "all":
        names = models.builtin_models()
    else:
        names = args.models.split(",")
    policies = args.policies.split(",")
    default = DEFAULT_POLICY[args.finetune]
    out: dict = {
        "finetune": args.finetune,
        "epochs": args.epochs,
        "models": names,
        "default_policy": default,
        "per_deadline": [],
    }
    with (
        tempfile.TemporaryDirectory() as tmp,
        LatencyDB(Path(tmp) / "t.sqlite") as db,
        connect("local", None, "onnxruntime", 1) as target,
    ):
        cache = Path(tmp) / "exports"
        base = SearchConfig(
            models=tuple(names),
            finetune=args.finetune,
            epochs=args.epochs,
            timing=Timing(min_seconds=0.5),
            out=Path(tmp) / "warm",
            precisions=(FP32,),  # the paper's claims are about float TRNs; bench/precision.py weighs int8
        )
        task = digits(base.input_size, normalization_for(base.weights), SEED, test_fraction=TEST_FRACTION)
        out["images"] = task.counts
        test_accuracy = TestAccuracy(task)
        warm = Search(base, target, db, cache, task=task)
        warm_start = time.monotonic()
        warmed = warm.run()  # fills the table (profiling) and fixes the demo deadline
        val_images = warmed.task["val"]
        out["table_fill_s"] = round(time.monotonic() - warm_start, 2)
        estimates = [c.estimated_ms for c in warmed.candidates if c.estimated_ms is not None]
        deadlines = [deadline_from(s, warmed.deadline.ms, estimates) for s in args.deadlines.split(",")]
        # Exhaustive trains everything whatever the deadline; a loose one makes its confirmation one measurement.
        loose = dataclasses.replace(base, deadline_ms=2 * max(estimates))
        exhaustive, ex_search, ex_candidates = run_policy(
            "exhaustive", loose, Path(tmp) / "exhaustive", target, db, cache, task
        )
        out["exhaustive"] = {k: v for k, v in exhaustive.items() if k not in ("accuracies", "feasible_keys")}
        for spec, deadline in zip(args.deadlines.split(","), deadlines):
            row: dict = {"deadline": spec, "deadline_ms": round(deadline, 4), "policies": {}}
            out["per_deadline"].append(row)
            for policy in policies:
                try:
                    at_deadline = dataclasses.replace(base, deadline_ms=deadline)
                    result, search, candidates = run_policy(
                        policy, at_deadline, Path(tmp) / f"{policy}-{spec}", target, db, cache, task
                    )
                except NoFeasibleCandidate as exc:  # an estimate the board contradicted: worth reporting, not fatal
                    row["policies"][policy] = {"error": str(exc), "same_or_better_on_test": False}
                    continue
                # What exhaustive search would pick at this deadline: its most accurate feasible candidate on
                # validation, feasible as this search left them (those its confirmation measured over are out).
                feasible = set(result["feasible_keys"])
                row["feasible"] = len(feasible)
                missed = [c.key for c in candidates if c.confirmation.startswith("missed")]
                for c in ex_candidates:
                    c.feasible = c.key in feasible
                ex_pick = ranked_for_confirmation(ex_candidates)[0]
                pick = next(c for c in candidates if c.key == result["pick"])
                test_pick, test_ex = test_accuracy(search, pick), test_accuracy(ex_search, ex_pick)
                # The paper's first claim: the pick against the best off-the-shelf network meeting the same
                # deadline (the most accurate on validation among the full networks feasible here).
                shelf = [c for c in ex_candidates if c.off_the_shelf and c.feasible and c.accuracy is not None]
                best_off = max(shelf, key=lambda c: c.accuracy, default=None)
                test_off = test_accuracy(ex_search, best_off) if best_off else None
                speedup = exhaustive["exploration_s"] / result["exploration_s"]
                # The pick as trained by the exhaustive run (training is seeded per candidate: the same training).
                pick_val = exhaustive["accuracies"][result["pick"]]
                row["policies"][policy] = {
                    **{k: v for k, v in result.items() if k not in ("accuracies", "feasible_keys")},
                    "exploration_speedup": round(speedup, 2),
                    "training_speedup": round(
                        exhaustive["phases_s"]["training"] / max(result["phases_s"]["training"], 1e-9), 2
                    ),
                    "measured_over_the_deadline": missed,
                    "validation": {
                        "images": val_images,
                        "pick_accuracy": round(pick_val, 4),
                        "exhaustive_pick": ex_pick.key,
                        "exhaustive_pick_accuracy": round(ex_pick.accuracy, 4),
                        "regret": round(ex_pick.accuracy - pick_val, 4),
                        # One standard error of a difference of two accuracies on these images.
                        "regret_standard_error": round(
                            math.sqrt(2 * ex_pick.accuracy * (1 - ex_pick.accuracy) / val_images), 4
                        ),
                    },
                    "test": {
                        "images": len(task.test),
                        "pick_accuracy": round(test_pick, 4),
                        "exhaustive_pick": ex_pick.key,
                        "exhaustive_pick_accuracy": round(test_ex, 4),
                        "regret": round(test_ex - test_pick, 4),
                    },
                    "same_or_better_on_test": test_pick >= test_ex,
                    "best_off_the_shelf": best_off.key if best_off else None,
                    "best_off_the_shelf_test_accuracy": round(test_off, 4) if test_off is not None else None,
                    # Relative test-accuracy gain of the pick over it (paper: up to 10.43%); None when no
                    # off-the-shelf network meets the deadline (the gain is then the whole pick).
                    "relative_gain_over_off_the_shelf_pct": round(100 * (test_pick - test_off) / test_off, 2)
                    if test_off
                    else None,
                }
            chosen = row["policies"].get(default)
            row["goal_met"] = bool(chosen and chosen["same_or_better_on_test"])
    out["goal"] = (
        f"the default policy for {args.finetune} fine-tuning ({default}) picks as well or better on test than "
        f"exhaustive search at every deadline; for deepest, an exploration speedup >= {GOAL_SPEEDUP:g}"
    )
    out["goal_met_at"] = [d["deadline"] for d in out["per_deadline"] if d["goal_met"]]
    out["gpu_throughput"] = throughput("cuda") if torch.cuda.is_available() else "no GPU on this machine"
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
