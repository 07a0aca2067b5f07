"""Commands on latency tables: profile, estimate, table, validate."""
from __future__ import annotations

import argparse
import contextlib
import csv
import json
import statistics
import sys
import time
from pathlib import Path

from netcut import models
from netcut.estimate import EmpiricalEstimator, quantile_level

from .cmd_agent import add_connection_args, credentials_from_args, timing_pb
from .estimation import ESTIMATORS, analytical, empirical, fit, measured_models
from .profiling import DEFAULT_ROUNDS, MODES, Job, ModelFiles, analyses_for, anchor_cuts, interleave, plan, round_robin, run
from .progress import Progress, bar
from .tables import STALE_DAYS, LatencyDB, RowKey, TableView, fresh_measurements
from .targets import LOCAL, connect, fleet_target


def default_db() -> Path:
    import platformdirs

    return Path(platformdirs.user_data_dir("netcut")) / "latency.sqlite"


def export_cache() -> Path:
    import platformdirs

    return Path(platformdirs.user_cache_dir("netcut")) / "exports"


def add_row_args(p: argparse.ArgumentParser, target_required: bool = False) -> None:
    p.add_argument("--target", default=None if target_required else LOCAL, required=target_required,
                   help="target name: 'local' starts an agent here (default); a name with --agent reaches that "
                   "agent; any other name is a target of the fleet inventory")
    add_connection_args(p, required=False)
    add_fleet_args(p)
    p.add_argument("--db", type=Path, help="latency table file (default: the user's data dir)")
    g = p.add_argument_group("what identifies a row")
    g.add_argument("--input-size", type=int, default=224, help="square input size (default: %(default)s)")
    g.add_argument("--batch", type=int, default=1, help="batch size (default: %(default)s)")
    g.add_argument("--threads", type=int, help="runtime threads on the board (default: the inventory target's, else 1)")
    g.add_argument("--format", choices=["onnx", "tflite"], help="model format (default: the runtime's, else onnx)")
    g.add_argument("--runtime", choices=["onnxruntime", "litert"],
                   help="default: the format's runtime, else the inventory target's, else onnxruntime")
    g.add_argument("--classes", type=int, default=10, help="classes of the TRN head (default: %(default)s)")
    g.add_argument("--granularity", choices=["block", "layer"], default="block", help="cut granularity")


def add_timing_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("timing on the board (the agent's defaults: 10 warm-up runs and 1 s, then >= 50 runs "
                             "and 2 s)")
    for flag, kind in (("--warmup-runs", int), ("--warmup-seconds", float), ("--min-runs", int),
                       ("--min-seconds", float), ("--max-seconds", float)):
        g.add_argument(flag, type=kind)
    g.add_argument("--rounds", type=positive_int, default=DEFAULT_ROUNDS, metavar="N",
                   help="split each measurement into N windows taken in N passes over all measurements (every "
                        "other pass in reverse), so a slow drift of the board (heat, neighbours) averages out "
                        "instead of biasing whichever measurements it caught; the windows add up to the timing "
                        "above (default: %(default)s)")


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def add_fleet_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--fleet", type=Path, help="fleet inventory (TOML) for named targets (default: the user's "
                   "config dir, fleet.toml)")
    p.add_argument("--known-hosts", type=Path, help="SSH known_hosts file (default: ~/.ssh/known_hosts)")


def ssh_options(args):
    from .fleet import SSHOptions

    return SSHOptions(getattr(args, "known_hosts", None), getattr(args, "accept_new", False))


def row_key(args) -> RowKey:
    ft = fleet_target(args.target, args.agent, args.fleet)
    fmt = args.format or ("tflite" if args.runtime == "litert" or (not args.runtime and ft and ft.runtime == "litert")
                          else "onnx")
    runtime = args.runtime or ("litert" if fmt == "tflite" else "onnxruntime")
    threads = args.threads if args.threads is not None else (ft.threads if ft else 1)
    if (runtime == "litert") != (fmt == "tflite"):
        raise ValueError(f"--runtime {runtime} does not run --format {fmt}")
    for name, value in (("input_size", args.input_size), ("batch", args.batch), ("threads", threads),
                        ("classes", args.classes)):
        if value < (0 if name == "threads" else 1):
            raise ValueError(f"--{name.replace('_', '-')} must be positive, got {value}")
    return RowKey(args.input_size, args.batch, fmt, runtime, threads, args.granularity, args.classes)


def open_db(args) -> LatencyDB:
    return LatencyDB(args.db or default_db())


def connected(args, key: RowKey):
    return connect(args.target, args.agent, key.runtime, key.threads, credentials_from_args(args), args.fleet,
                   ssh_options(args))


def warn_other_identities(db: LatencyDB, name: str, identity: str) -> None:
    others = [t for t in db.identities_of(name) if t["identity"] != identity]
    for t in others:
        count = db.count(t["identity"])
        if count:
            print(f"note: {count} rows of target {name!r} were measured under another identity "
                  f"({t['description']}); they are kept apart and not used (see netcut-host table)", file=sys.stderr)
    old = db.count(identity, older_than=time.time() - STALE_DAYS * 86400)
    if old:
        print(f"note: {old} rows of this target are older than {STALE_DAYS} days; the table may be stale "
              "(profile --force to refresh)", file=sys.stderr)


# ------------------------------------------------------------------ profile


def cmd_profile(args) -> int:
    key = row_key(args)
    if key.runtime == "litert" and args.mode != "e2e":
        raise ValueError("per-layer profiles need onnxruntime; use --mode e2e with --format tflite")
    names = [m.strip() for m in args.model.split(",") if m.strip()]
    analyses = analyses_for(names, key)
    jobs = plan(analyses, args.cuts, args.mode)
    progress = Progress(enabled=None if not args.json else False)
    started = time.monotonic()

    def show(done, total, job):
        progress.show(f"{bar(done, total, started)}  {job.label() if job else 'done'}", force=True)

    with open_db(args) as db, connected(args, key) as target:
        warn_other_identities(db, target.name, target.target.identity)
        files = ModelFiles(export_cache(), key, analyses)
        report = run(jobs, target, db, key, files, timing_pb(args), args.force, show, agreement=args.agreement,
                     rounds=args.rounds)
    progress.done()
    out = {"target": target.name, "identity": target.target.identity, "models": names, "mode": args.mode,
           "measured": len(report.measured), "skipped": report.skipped,
           "failed": [{"job": j.label(), "error": e} for j, e in report.failed],
           "seconds": round(report.seconds, 2), "inference_seconds": round(report.inference_seconds, 2),
           "boards": report.boards, "board_errors": report.board_errors, "reference_ms": report.reference_ms}
    if args.json:
        print(json.dumps(out, indent=1))
    else:
        print(f"{target.name}: measured {out['measured']}, already in the table {out['skipped']}, "
              f"failed {len(report.failed)} ({out['seconds']:.0f} s)")
        if len(report.boards) > 1 or report.board_errors:
            print("  per board: " + ", ".join(f"{b} {n}" for b, n in sorted(report.boards.items())) +
                  "".join(f"; {b} failed: {e}" for b, e in report.board_errors.items()))
        for job, error in report.failed:
            print(f"  failed: {job.label()}: {error}", file=sys.stderr)
    return 2 if report.failed else 0


# ------------------------------------------------------------------ estimate


def cmd_estimate(args) -> int:
    key = row_key(args)
    quantile_level(args.quantile)
    name = args.model
    a = analyses_for([name], key)[name]
    only = None
    if args.cut:
        only = [None if args.cut == "full" else a.cut(args.cut).name]
    with open_db(args) as db, contextlib.ExitStack() as stack:
        try:
            target = stack.enter_context(connected(args, key))
            identity, target_name = target.target.identity, target.name
        except ConnectionError:
            known = db.identities_of(args.target)
            if not known:
                raise
            identity, target_name = known[-1]["identity"], args.target
            print(f"note: {args.target} is unreachable; estimating from its last known identity", file=sys.stderr)
        warn_other_identities(db, target_name, identity)
        if args.estimator == "empirical":
            estimates = empirical(db, identity, key, a, args.quantile, only)
        else:
            estimates = analytical(fit(db, identity, key), a, key, args.quantile, only)
    out = {"target": target_name, "model": name, "estimator": args.estimator, "quantile": args.quantile,
           "estimates": [{"cut": e.cut, "estimated_ms": e.estimated_ms, "uncertainty_ms": e.uncertainty_ms,
                          "evidence": e.evidence} for e in estimates]}
    if args.json:
        print(json.dumps(out, indent=1))
    else:
        print(f"{name} on {target_name} ({args.estimator}, {args.quantile}):")
        for e in estimates:
            value = f"{e.estimated_ms:9.3f} ms ± {e.uncertainty_ms:.3f}" if e.estimated_ms is not None else "     n/a"
            print(f"  {e.cut or '(full network)':<34} {value:<24} {e.evidence}")
    missing = [e for e in estimates if e.estimated_ms is None]
    if missing and len(missing) == len(estimates):
        print(f"no estimate: profile first (netcut-host profile --target {target_name} --model {name})",
              file=sys.stderr)
        return 2
    return 0


# ------------------------------------------------------------------ table


def cmd_table(args) -> int:
    with open_db(args) as db:
        if args.action == "export":
            if not args.file:
                raise ValueError("table export needs a FILE")
            data = db.export_rows(args.target)
            Path(args.file).write_text(json.dumps(data))
            print(f"exported {len(data['measurements'])} rows to {args.file}")
            return 0
        if args.action == "import":
            if not args.file:
                raise ValueError("table import needs a FILE")
            try:
                data = json.loads(Path(args.file).read_text())
            except (OSError, ValueError) as exc:
                raise ValueError(f"cannot read {args.file}: {exc}") from None
            added, skipped = db.import_rows(data)
            print(f"imported {added} rows, {skipped} already present")
            return 0
        rows = db.rows(target=args.target, arch=models.architecture_key(args.model) if args.model else None)
        if args.csv:
            writer = csv.writer(sys.stdout)
            columns = ["id", "target", "identity", "model", "input_size", "batch", "cut", "format", "runtime",
                       "runtime_version", "threads", "mode", "classes", "n", "median_ms", "p90_ms", "p95_ms",
                       "p99_ms", "cv", "throttled", "measured_at"]
            writer.writerow(columns)
            for r in rows:
                writer.writerow([r[c] for c in columns])
            return 0
        if args.json:
            print(json.dumps([{k: (json.loads(r[k]) if k in ("samples", "blocks", "timing") else r[k])
                               for k in r.keys() if k not in ("layers", "board")} for r in rows], indent=1))
            return 0
        by_identity: dict[str, list] = {}
        for r in rows:
            by_identity.setdefault(r["identity"], []).append(r)
        described = {t["identity"]: json.loads(t["description"]) for t in db.targets()}
        newest = max(by_identity, key=lambda i: max(r["measured_at"] for r in by_identity[i]), default=None)
        for identity, group in by_identity.items():
            d = described.get(identity, {})
            age = (time.time() - max(r["measured_at"] for r in group)) / 86400
            flags = []
            if identity != newest:
                flags.append("OTHER IDENTITY: not mixed with the newest")
            if age > STALE_DAYS:
                flags.append(f"STALE: newest row {age:.0f} days old")
            print(f"target {group[0]['target']} [{identity}] {d.get('cpu_model', '?')} {d.get('board_model', '')} "
                  f"{d.get('runtime', '')} {d.get('runtime_version', '')}, {d.get('threads', '?')} threads"
                  + (f"  ({'; '.join(flags)})" if flags else ""))
            for r in group:
                round_note = f" round {r['round'] + 1}" if r["round"] else ""
                print(f"  {r['id']:>5} {r['model']:<22} {r['cut'] or '(full)':<30} {r['mode']:<6} "
                      f"{r['input_size']:>4}px b{r['batch']} {r['format']:<6} median {r['median_ms']:9.3f} ms "
                      f"p99 {r['p99_ms']:9.3f} ms n {r['n']:<5}{round_note}"
                      f"{' THROTTLED' if r['throttled'] else ''}")
        if not rows:
            print("no rows" + (f" for target {args.target}" if args.target else ""))
    return 0


# ------------------------------------------------------------------ validate


def ape(estimate: float | None, measured: float) -> float | None:
    return None if estimate is None else abs(estimate - measured) / measured * 100.0


def summary(errors: list[float]) -> dict:
    if not errors:
        return {"n": 0}
    ordered = sorted(errors)
    p95 = ordered[min(len(ordered) - 1, int(round(0.95 * (len(ordered) - 1))))]
    return {"n": len(errors), "median_ape_pct": round(statistics.median(errors), 2), "p95_ape_pct": round(p95, 2),
            "worst_ape_pct": round(max(errors), 2)}


def validate(db: LatencyDB, target, key: RowKey, names: list[str], per_model: int, quantile: str, timing,
             progress=None, rounds: int = DEFAULT_ROUNDS) -> dict:
    """Measure held-out cuts afresh (interleaved) and score both estimators against them."""
    analyses = analyses_for(names, key)
    identity = target.target.identity
    jobs_per_model = []
    for name, a in analyses.items():
        anchors = set(anchor_cuts([c.name for c in a.cuts]))   # measured in layers mode: not held out
        cuts = [c.name for c in a.cuts if c.name not in anchors]
        step = max(1, len(cuts) // per_model)
        held = cuts[step // 2::step][:per_model] + [None]
        jobs_per_model.append([Job(name, c, "e2e") for c in interleave(held)])
    jobs = round_robin(jobs_per_model)
    files = ModelFiles(export_cache(), key, analyses)
    report = run(jobs, target, db, key, files, timing, force=True, progress=progress, rounds=rounds)
    fresh = fresh_measurements(db, identity, key, report.measured)
    q = quantile_level(quantile)
    results = {"empirical": [], "analytical": []}
    per_network = {}
    # Empirical, from the per-layer profile only: the fresh e2e rows are what we score against.
    estimator = EmpiricalEstimator(TableView(db, identity, key, exclude_mode="e2e"))
    measured = measured_models(db, identity, key)
    fit_cache = dict(analyses)
    for name, a in analyses.items():
        arch = models.architecture_key(name)
        held = [j.cut for j in jobs if j.model == name and (arch, j.cut) in fresh]
        names_cuts = [c.name for c in a.cuts]
        others = [m for m in measured if m != arch]
        cost_model = fit(db, identity, key, exclude=arch, analyses=fit_cache) if others else None
        net = {"empirical": [], "analytical": []}
        for cut in held:
            truth = fresh[(arch, cut)].at(q)
            e = estimator.estimate(arch, names_cuts, cut, quantile)
            if e.estimated_ms is not None:
                net["empirical"].append(ape(e.estimated_ms, truth))
            if cost_model is not None:
                net["analytical"].append(ape(analytical(cost_model, a, key, quantile, [cut])[0].estimated_ms, truth))
        for k in results:
            results[k] += net[k]
        per_network[name] = {k: summary(v) for k, v in net.items()}
    return {"target": target.name, "quantile": quantile, "held_out_measurements": len(report.measured),
            "empirical": summary(results["empirical"]),
            "analytical_leave_one_network_out": summary(results["analytical"]),
            "per_network": per_network, "failed": [j.label() for j, _ in report.failed]}


def cmd_validate(args) -> int:
    key = row_key(args)
    progress = Progress(enabled=None if not args.json else False)
    started = time.monotonic()
    with open_db(args) as db, connected(args, key) as target:
        names = [m.strip() for m in args.models.split(",")] if args.models else \
            measured_models(db, target.target.identity, key)
        if not names:
            raise ValueError(f"nothing to validate: the table has no rows for {target.name} with these options; "
                             "profile some networks first (--mode layers)")
        out = validate(db, target, key, names, args.cuts_per_model, args.quantile, timing_pb(args),
                       lambda d, t, j: progress.show(f"{bar(d, t, started)} {j.label() if j else ''}"),
                       rounds=args.rounds)
    progress.done()
    if args.json:
        print(json.dumps(out, indent=1))
    else:
        print(f"{out['target']}: {out['held_out_measurements']} fresh measurements at {out['quantile']}")
        for k in ("empirical", "analytical_leave_one_network_out"):
            s = out[k]
            if s["n"]:
                print(f"  {k:<34} median {s['median_ape_pct']:.1f}%  p95 {s['p95_ape_pct']:.1f}%  "
                      f"worst {s['worst_ape_pct']:.1f}%  (n={s['n']})")
            else:
                print(f"  {k:<34} no estimates (profile with --mode layers; the analytical one needs 2+ networks)")
    return 0


# ------------------------------------------------------------------ parser


def add_table_commands(sub) -> None:
    p = sub.add_parser("profile", help="measure networks on a target and store the rows",
                       description="Export what is needed, upload only what the agent lacks, benchmark and store "
                       "one row per measurement. Cuts are measured interleaved; rows already in the table are "
                       "skipped (unless --force), so an interrupted run resumes. `layers` measures the full network "
                       "once with a per-layer profile, each cut's head alone, and 4 TRNs end to end that calibrate "
                       "the profile; `e2e` measures every TRN.")
    p.add_argument("--model", required=True, help="network name(s), comma-separated")
    p.add_argument("--cuts", default="all", help="all (default), or cut names / indices, comma-separated ('full' too)")
    p.add_argument("--mode", choices=MODES, default="layers", help="layers (default, cheapest), e2e, or both")
    p.add_argument("--force", action="store_true", help="measure again even if the table has the row")
    p.add_argument("--agreement", type=float, default=0.2, metavar="FRACTION",
                   help="fleet targets: a board whose reference time is off the boards' median by more than this "
                   "is left out of the run (default: %(default)s)")
    p.add_argument("--json", action="store_true", help="print a JSON summary")
    add_row_args(p)
    add_timing_args(p)
    p.set_defaults(func=cmd_profile)

    e = sub.add_parser("estimate", help="estimate every cut's latency on a target",
                       description="Estimate each cut's (or one cut's) latency on a target from its latency table: "
                       "empirical (measured rows, or the per-layer profile summed to the cut plus the head) or "
                       "analytical (a cost model calibrated on the target's rows). Says which evidence it used.")
    e.add_argument("--model", required=True)
    e.add_argument("--cut", help="one cut name or index, or 'full' (default: every cut and the full network)")
    e.add_argument("--estimator", choices=ESTIMATORS, default="empirical")
    e.add_argument("--quantile", default="p99", help="p50|median|p90|p95|p99 (default: p99)")
    e.add_argument("--json", action="store_true", help="print JSON")
    add_row_args(e)
    e.set_defaults(func=cmd_estimate)

    t = sub.add_parser("table", help="show, export or import latency tables",
                       description="Show a target's rows (rows measured under another identity are shown apart and "
                       "flagged; stale tables are flagged), or export/import them to share measurements.")
    t.add_argument("action", nargs="?", choices=["show", "export", "import"], default="show")
    t.add_argument("file", nargs="?", help="the file to export to or import from (JSON)")
    t.add_argument("--target", help="only this target")
    t.add_argument("--model", help="only this model")
    t.add_argument("--db", type=Path, help="latency table file (default: the user's data dir)")
    fmt = t.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true")
    fmt.add_argument("--csv", action="store_true")
    t.set_defaults(func=cmd_table)

    v = sub.add_parser("validate", help="measure held-out cuts afresh and score the estimators",
                       description="Measure held-out cuts of each profiled network again, end to end and "
                       "interleaved, and report each estimator's absolute percentage errors (median, 95th "
                       "percentile, worst); the analytical one is scored leave-one-network-out.")
    v.add_argument("--models", help="networks to validate (default: every network in the table for this target)")
    v.add_argument("--cuts-per-model", type=int, default=5, help="held-out cuts per network (default: 5)")
    v.add_argument("--quantile", default="median", help="the quantile to score (default: median)")
    v.add_argument("--json", action="store_true")
    add_row_args(v)
    add_timing_args(v)
    v.set_defaults(func=cmd_validate)
