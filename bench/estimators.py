"""Estimator accuracy and profiling cost on --target local. Prints JSON.

    python bench/estimators.py [--models mobilenet_v2,resnet18,efficientnet_b0,mnasnet1_0] [--input-size 224]

For each network at 1 thread: profile in `layers` mode (full network + per-layer
profile + heads + 4 anchor TRNs), then at once in `e2e` mode (every TRN, cuts interleaved), timing each;
the e2e measurements, taken right after the profile, are the fresh truth that scores
- the empirical estimator from the per-layer profile only (goal: median APE < 3%, p95 < 8%), also
  with each network's estimates divided by its own drift (its full network measured in both phases),
- the analytical estimator leave-one-network-out (goal: median APE < 10%),
and report each mode's profiling wall time against the pure inference time it contains.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from netcut.estimate import EmpiricalEstimator
from netcut_host.cmd_tables import summary
from netcut_host.estimation import analytical, fit
from netcut_host.profiling import ModelFiles, analyses_for, anchor_cuts, plan, run
from netcut_host.tables import LatencyDB, RowKey, TableView, to_measurement
from netcut_host.targets import connect
from netcut_protos.agent.v1 import agent_pb2 as pb


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="mobilenet_v2,resnet18,efficientnet_b0,mnasnet1_0")
    parser.add_argument("--input-size", type=int, default=224)
    parser.add_argument("--min-seconds", type=float, default=2.0)
    parser.add_argument("--db", type=Path, help="keep the measurements in this table (default: a temporary one)")
    parser.add_argument("--rescore", action="store_true",
                        help="measure nothing: score the estimators on the rows an earlier run left in --db")
    args = parser.parse_args(argv)
    if args.rescore and not (args.db and args.db.is_file()):
        parser.error("--rescore needs --db FILE from an earlier run")
    names = args.models.split(",")
    key = RowKey(input_size=args.input_size, threads=1)
    timing = pb.TimingConfig(min_seconds=args.min_seconds)
    analyses = analyses_for(names, key)
    out = {"input_size": args.input_size, "threads": 1, "profiling": {}, "per_cut": []}
    with tempfile.TemporaryDirectory() as tmp, LatencyDB(args.db or Path(tmp) / "t.sqlite") as db, \
            connect("local", None, "onnxruntime", 1) as target:
        files = ModelFiles(Path(tmp) / "exports", key, analyses)
        # Export outside the timed region: both modes then pay only for the board.
        for name in names if not args.rescore else []:
            for job in plan({name: analyses[name]}, "all", "both"):
                files.get(job)
        # Per network: the per-layer profile, then at once every TRN end to end (interleaved cuts). The
        # e2e run is both the e2e profiling cost and the fresh truth, about a minute after the profile:
        # measuring everything first and re-measuring later puts minutes of machine drift in the error.
        empirical_errors, analytical_errors, fresh = [], [], {}
        if args.rescore:
            fresh = {(r["arch"], r["cut"] or None): to_measurement(r)
                     for r in db.rows(identity=target.target.identity, key=key) if r["mode"] == "e2e"}
        for name in names if not args.rescore else []:
            cost = {}
            for mode in ("layers", "e2e"):
                report = run(plan({name: analyses[name]}, "all", mode), target, db, key, files, timing, force=True)
                cost[mode] = {"wall_s": round(report.seconds, 2), "inference_s": round(report.inference_seconds, 2),
                              "overhead_ratio": round(report.seconds / max(report.inference_seconds, 1e-9), 2),
                              "measurements": len(report.measured)}
                if mode == "e2e":
                    fresh.update({(r["arch"], r["cut"] or None): to_measurement(r)
                                  for r in db.rows(identity=target.target.identity)
                                  if r["id"] in set(report.measured)})
            cost["layers_vs_e2e_wall"] = round(cost["layers"]["wall_s"] / cost["e2e"]["wall_s"], 3)
            out["profiling"][name] = cost
            print(json.dumps({name: cost}), file=sys.stderr)
        for name in names:
            a = analyses[name]
            estimator = EmpiricalEstimator(TableView(db, target.target.identity, key, exclude_mode="e2e"))
            cost_model = fit(db, target.target.identity, key, exclude=name, analyses=analyses)
            cuts = [c.name for c in a.cuts]
            anchors = set(anchor_cuts(cuts))
            for cut in cuts + [None]:
                measured = fresh[(name, cut)].median_ms
                emp = estimator.estimate(name, cuts, cut, "median").estimated_ms
                ana = analytical(cost_model, a, key, "median", [cut])[0].estimated_ms
                e_err = abs(emp - measured) / measured * 100
                a_err = abs(ana - measured) / measured * 100
                empirical_errors.append(e_err)
                analytical_errors.append(a_err)
                out["per_cut"].append({"model": name, "cut": cut, "anchor": cut in anchors,
                                       "measured_ms": round(measured, 4),
                                       "empirical_ms": round(emp, 4), "analytical_lono_ms": round(ana, 4),
                                       "empirical_ape_pct": round(e_err, 2), "analytical_ape_pct": round(a_err, 2)})
        out["empirical"] = {**summary(empirical_errors), "goal": "median < 3%, p95 < 8%"}
        # Cuts whose estimate is not simply their own anchor row (measured in the layers phase).
        out["empirical_non_anchor_cuts"] = summary([r["empirical_ape_pct"] for r in out["per_cut"]
                                                    if r["cut"] is not None and not r["anchor"]])
        # The machine's repeatability: the same TRN measured in both phases (anchor row vs fresh row).
        out["same_trn_measured_twice"] = summary([r["empirical_ape_pct"] for r in out["per_cut"] if r["anchor"]])
        # The same full network, profiled minutes before the fresh run, drifts with the machine; dividing
        # each network's estimates by its own drift separates the estimator's error from the machine's.
        drift = {r["model"]: r["measured_ms"] / r["empirical_ms"] for r in out["per_cut"] if r["cut"] is None}
        normalised = [abs(r["empirical_ms"] * drift[r["model"]] - r["measured_ms"]) / r["measured_ms"] * 100
                      for r in out["per_cut"] if r["cut"] is not None]
        out["machine_drift_between_phases"] = {m: round(v, 4) for m, v in drift.items()}
        out["empirical_drift_normalised"] = summary(normalised)
        out["analytical_leave_one_network_out"] = {**summary(analytical_errors), "goal": "median < 10%"}
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
