"""The per-kernel estimator on a network family it was not fitted on, against the MACs baseline. Prints JSON.

    python bench/kernel_estimator.py [--fit resnet18,mobilenet_v3_small,mnasnet0_5] [--held-out efficientnet_b0]
                                     [--input-size 96] [--budget 30] [--min-seconds 0.3]

On --target local, 1 thread: layers-mode profiles of the --fit networks, the kernel suite drawn from the
kernels of all of them and of the held-out network (its graph is known, it is never run), then the held-out
network's TRNs measured end to end into a separate table (the truth). Each estimator's error on them:
`kernels` (the per-kernel model), `analytical` (the network-level cost model) and the baseline every
user tries first, latency proportional to MACs at the fitted networks' median ms/MAC. Also how often the
truth stays under the per-kernel estimate plus its margin (the 90% interval's upper side), and the
suite's board time against the profiles'.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from netcut_host.estimation import estimate_candidates
from netcut_host.profiling import analyses_for
from netcut_host.tables import LatencyDB, RowKey

HOST = str(Path(sys.executable).with_name("netcut-host"))


def cli(*argv: str) -> dict:
    out = subprocess.run([HOST, *argv, "--json"], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--fit", default="resnet18,mobilenet_v3_small,mnasnet0_5")
    p.add_argument("--held-out", default="efficientnet_b0")
    p.add_argument("--input-size", type=int, default=96)
    p.add_argument("--budget", type=int, default=30)
    p.add_argument("--min-seconds", type=float, default=0.3)
    p.add_argument("--cuts-per-model", type=int, default=5)
    args = p.parse_args(argv)
    size = ["--input-size", str(args.input_size)]
    timing = ["--min-seconds", str(args.min_seconds), "--warmup-seconds", "0.1"]
    key = RowKey(input_size=args.input_size, threads=1)
    fit, held = args.fit.split(","), args.held_out
    analyses = analyses_for([*fit, held], key)
    a = analyses[held]
    step = max(1, len(a.cuts) // args.cuts_per_model)
    cuts = [c.name for c in a.cuts][step // 2 :: step][: args.cuts_per_model]
    with tempfile.TemporaryDirectory() as tmp:
        db_path, truth_path = Path(tmp) / "t.sqlite", Path(tmp) / "truth.sqlite"
        profile = cli("profile", "--models", args.fit, *size, *timing, "--db", str(db_path))
        suite = cli(
            "calibrate", "--models", f"{args.fit},{held}", *size, *timing, "--budget", str(args.budget),
            "--db", str(db_path),
        )  # fmt: skip
        cli(
            "profile", "--models", held, "--mode", "e2e", "--cuts", ",".join([*cuts, "full"]), *size, *timing,
            "--db", str(truth_path),
        )  # fmt: skip
        with LatencyDB(truth_path) as truth_db:
            truth = {r["cut"]: r["median_ms"] for r in truth_db.rows(arch=held) if r["mode"] == "e2e"}
        with LatencyDB(db_path) as db:
            identity = db.targets()[0]["identity"]
            wanted = [None if c == "full" else c for c in truth]
            results, inside = {}, 0
            for estimator in ("kernels", "analytical"):
                e = estimate_candidates(db, identity, key, {held: a}, estimator, "median", 0.0, only=wanted)
                results[estimator] = {c or "full": e.of(held, c).estimated_ms for c in wanted}
                if estimator == "kernels":
                    for c in wanted:
                        x = e.of(held, c)
                        inside += truth[c or "full"] <= x.estimated_ms + x.uncertainty_ms  # the margin held
            rates = [
                next(r["median_ms"] for r in db.rows(arch=n) if r["mode"] == "layers") / analyses[n].full_macs
                for n in fit
            ]
    rate, macs = statistics.median(rates), {c.name: c.macs for c in a.cuts}
    results["macs_baseline"] = {c or "full": rate * (macs[c] if c else a.full_macs) for c in wanted}
    out = {"fit_on": fit, "held_out": held, "input_size": args.input_size, "truth_ms": truth}
    for name, values in results.items():
        errors = [abs(values[c] - truth[c]) / truth[c] * 100 for c in truth]
        out[name] = {
            "median_ape_pct": round(statistics.median(errors), 1),
            "worst_ape_pct": round(max(errors), 1),
            "estimates_ms": {c: round(v, 4) for c, v in values.items()},
        }
    out["kernels_truth_inside_upper_interval"] = f"{inside}/{len(truth)}"
    out["suite"] = {"kernels": suite["measured"], "seconds": suite["seconds"], "families": suite["families"]}
    out["profiles_seconds"] = profile["seconds"]
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
