"""A new target identity from a reference's kernel model and ten measurements (calibrate --from). Prints JSON.

    python bench/new_target.py --db TABLE [--models LIST] [--input-size 96] [--threads 2] [--budget 10]
                               [--min-seconds 1] [--keep DIR] [--draws 20]

TABLE holds the reference: layers-mode profiles (and the kernel suite) of --models on --target local at
1 thread, as `bench/estimators.py --db` leaves them; it is copied, never written. The reference's kernel
model is fitted on the copy, then `netcut-host calibrate --threads N --from local --budget B` rescales it
from B TRNs measured at N threads, and every TRN of --models is measured end to end at N threads into a
table of its own (the truth). Scored on the TRNs calibrate did not measure: the rescaled model, the
reference's model as it is (what the B measurements bought), and the MACs baseline at the B
measurements' median ms per MAC; with how often the truth fell inside the rescaled model's 90% interval.
And, without more board time, --draws random picks of B TRNs of the truth in place of calibrate's, each
scored on the rest, with and without the rescaled model's per-kernel cost: how much the picks matter.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from netcut.kernels import rescaled
from netcut_host import kernel_estimation as ke
from netcut_host.choices import DEFAULT_MODELS
from netcut_host.profiling import analyses_for
from netcut_host.tables import LatencyDB, RowKey, fresh_measurements
from netcut_host.targets import connect
from netcut_host.validation import summary

HOST = str(Path(sys.executable).with_name("netcut-host"))


def cli(*argv: str) -> dict:
    out = subprocess.run([HOST, *argv, "--json"], capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"netcut-host {' '.join(argv)} failed:\n{out.stderr}")
    return json.loads(out.stdout)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--db", type=Path, required=True, help="the reference's table (bench/estimators.py --db)")
    p.add_argument("--models", default=",".join([*DEFAULT_MODELS, "mnasnet1_0"]))
    p.add_argument("--input-size", type=int, default=96)
    p.add_argument("--threads", type=int, default=2, help="the new target identity's thread count")
    p.add_argument("--budget", type=int, default=10)
    p.add_argument("--min-seconds", type=float, default=1.0)
    p.add_argument("--keep", type=Path, help="copy the new target's table and the truth's into this folder")
    p.add_argument(
        "--draws",
        type=int,
        default=20,
        help="also rescale from this many random picks of --budget TRNs of the truth (no board time), with and "
        "without the per-kernel cost, scored on the rest: how much the picks matter",
    )
    args = p.parse_args(argv)
    if not args.db.is_file():
        p.error(f"--db {args.db}: no such table; make one with bench/estimators.py --db")
    names = args.models.split(",")
    reference_key = RowKey(input_size=args.input_size, threads=1)
    key = RowKey(input_size=args.input_size, threads=args.threads)
    analyses = analyses_for(names, key)
    common = ["--models", args.models, "--input-size", str(args.input_size), "--threads", str(args.threads)]
    timing = ["--min-seconds", str(args.min_seconds), "--warmup-seconds", "0.1"]
    with tempfile.TemporaryDirectory() as tmp:
        db_path, truth_path, cache = Path(tmp) / "t.sqlite", Path(tmp) / "truth.sqlite", Path(tmp) / "exports"
        shutil.copy(args.db, db_path)
        with LatencyDB(db_path) as db, connect("local", None, "onnxruntime", 1) as one:
            source = ke.KernelSource(cache, reference_key, dict(analyses))
            reference = ke.fit(db, one.identity.key, reference_key, source)  # stored: what --from reads
        calibration = cli("calibrate", *common, "--from", "local", "--budget", str(args.budget), *timing,
                          "--db", str(db_path))  # fmt: skip
        chosen = set(calibration["chosen"])
        cli("profile", *common, "--mode", "e2e", *timing, "--db", str(truth_path))
        with (
            LatencyDB(db_path) as db,
            LatencyDB(truth_path) as truth_db,
            connect("local", None, "onnxruntime", args.threads) as target,
        ):
            identity = target.identity.key
            model = ke.stored(db, identity, key)
            truth = fresh_measurements(truth_db, identity, key)
            measured = fresh_measurements(db, identity, key)
        source = ke.KernelSource(cache, key, dict(analyses))
        used = [(n, c) for (n, c) in measured if f"{n}@{c or 'full'}" in chosen]
        rate = statistics.median(
            measured[(n, c)].median_ms / (analyses[n].cut(c).macs if c else analyses[n].full_macs) for n, c in used
        )
        errors: dict[str, list[float]] = {"rescaled": [], "reference_as_is": [], "macs_baseline": []}
        inside = 0
        for (name, cut), row in truth.items():
            if f"{name}@{cut or 'full'}" in chosen or name not in analyses:
                continue
            a, ms = analyses[name], row.median_ms
            kernels = source.trn(a, cut, key.classes)
            e = model.estimate(kernels)
            inside += e.low_ms <= ms <= e.high_ms
            for label, value in (
                ("rescaled", e.ms),
                ("reference_as_is", reference.estimate(kernels).ms),
                ("macs_baseline", rate * (a.cut(cut).macs if cut else a.full_macs)),
            ):
                errors[label].append(abs(value - ms) / ms * 100)
        if args.keep:  # to score other models on the same measurements later
            args.keep.mkdir(parents=True, exist_ok=True)
            shutil.copy(db_path, args.keep / "new_target.sqlite")
            shutil.copy(truth_path, args.keep / "truth.sqlite")
        draws = random_draws(reference, source, analyses, truth, key, args.budget, args.draws)
    n = len(errors["rescaled"])
    out = {
        "input_size": args.input_size,
        "reference": "local, 1 thread",
        "new_target": f"local, {args.threads} threads",
        "measurements_used": model.measurements_used,
        "calibration_seconds": calibration["seconds"],
        "chosen": sorted(chosen),
        "scored_trns": n,
        **{f"{label}_ape": summary(v) for label, v in errors.items()},
        "rescaled_interval_90_coverage": round(inside / n, 3) if n else None,
        "random_draws": draws,
        "goal": "rescaled median <= 10%",
    }
    print(json.dumps(out, indent=1))
    return 0


def random_draws(reference, source, analyses, truth, key, budget: int, draws: int) -> dict:  # noqa: ANN001
    """The reference rescaled from `draws` random picks of `budget` measured TRNs, each scored on the others:
    the median error's median and range over the draws, with and without the per-kernel cost."""
    items = [(source.trn(analyses[n], c, key.classes), row.median_ms) for (n, c), row in truth.items() if n in analyses]
    if draws <= 0 or len(items) <= budget:
        return {}
    out = {"draws": draws, "budget": budget}
    for label, per_kernel in (("with_per_kernel_cost", True), ("factors_only", False)):
        medians, p95s, costs = [], [], []
        for seed in range(draws):
            picked = set(random.Random(seed).sample(range(len(items)), budget))
            model = rescaled(reference, [items[i] for i in sorted(picked)], "draw", per_kernel)
            errors = [abs(model.estimate(ks).ms - ms) / ms * 100 for i, (ks, ms) in enumerate(items) if i not in picked]
            medians.append(statistics.median(errors))
            p95s.append(summary(errors)["p95_ape_pct"])
            costs.append(model.per_kernel_ms * 1000)
        out[label] = {
            "median_ape_pct": round(statistics.median(medians), 2),
            "median_range": [round(min(medians), 2), round(max(medians), 2)],
            "p95_ape_pct": round(statistics.median(p95s), 2),
            "per_kernel_us": round(statistics.median(costs), 2),
        }
    return out


if __name__ == "__main__":
    sys.exit(main())
