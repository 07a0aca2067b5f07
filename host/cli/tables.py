"""netcut-host profile, estimate, table and validate: the latency tables."""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

from ..choices import ESTIMATORS, MODES
from ..errors import EXIT_TARGET_FAILED, ConfigError
from .options import (
    add_db,
    add_json,
    add_models,
    add_quantile,
    add_row_args,
    add_timing_args,
    add_remeasure,
    connected,
    names_list,
    open_db,
    row_key,
    timing_from_args,
)


# What a user chooses about a target besides its runtime and threads (its other tables are that choice's, not
# strays; see targets.identity_description). Absent: the default (the CPU, no Jetson power state).
CHOSEN_ABSENT_MEANS_DEFAULT = ("execution_providers", "power_mode", "jetson_clocks")


def warn_other_identities(db, name: str, identity: str, description: dict | None = None) -> None:  # noqa: ANN001 - a LatencyDB
    from ..tables import STALE_DAYS

    known = db.identities_of(name)
    mine = description or next((json.loads(t["description"]) for t in known if t["identity"] == identity), None)
    for t in known:
        if t["identity"] == identity:
            continue
        theirs = json.loads(t["description"])
        if mine is not None and (
            any(k in theirs and theirs[k] != mine.get(k) for k in ("runtime", "threads"))
            or any(theirs.get(k) != mine.get(k) for k in CHOSEN_ABSENT_MEANS_DEFAULT)
        ):
            continue  # another runtime, thread count, provider list or power mode: that choice's table, not a stray
        count = db.count(t["identity"])
        if count:
            print(
                f"note: {count} rows of target {name!r} were measured under another identity "
                f"({t['description']}); they are kept apart and not used (see netcut-host table)",
                file=sys.stderr,
            )
    old = db.count(identity, older_than=time.time() - STALE_DAYS * 86400)
    if old:
        print(
            f"note: {old} rows of this target are older than {STALE_DAYS} days; the table may be stale "
            "(profile --force to refresh)",
            file=sys.stderr,
        )


# ------------------------------------------------------------------ profile


def cmd_profile(args: argparse.Namespace) -> int:
    from ..paths import export_cache
    from ..profiling import ModelFiles, analyses_for, mode_for, plan, run
    from ..progress import Progress, job_progress

    key = row_key(args)
    if key.runtime == "litert" and args.mode != "e2e":
        raise ConfigError("per-layer profiles need onnxruntime; use --mode e2e with --format tflite")
    names = names_list(args.models)
    analyses = analyses_for(names, key)
    progress = Progress(enabled=None if not args.json else False)
    started = time.monotonic()

    with open_db(args) as db, connected(args, key.runtime, key.threads) as target:
        warn_other_identities(db, target.name, target.identity.key, target.identity.description)
        args.mode = mode_for(args.mode, target, lambda s: print(f"note: {s}", file=sys.stderr))
        jobs = plan(analyses, args.cuts, args.mode)
        files = ModelFiles(export_cache(), key, analyses)
        report = run(
            jobs,
            target,
            db,
            key,
            files,
            timing_from_args(args),
            args.force,
            job_progress(progress, started),
            agreement=args.agreement,
            rounds=args.rounds,
            remeasure=args.remeasure,
        )
    progress.done()
    out = {
        "target": target.name,
        "identity": target.identity.key,
        "models": names,
        "mode": args.mode,
        "measured": len(report.measured),
        "skipped": report.skipped,
        "measured_elsewhere": report.measured_elsewhere,
        "failed": [{"job": j.label(), "error": e} for j, e in report.failed],
        "seconds": round(report.seconds, 2),
        "inference_seconds": round(report.inference_seconds, 2),
        "boards": report.boards,
        "board_errors": report.board_errors,
        "reference_ms": report.reference_ms,
        "remeasured": [{"job": j.label(), "warnings": list(w)} for j, w in report.remeasured],
        "other_warnings": sorted(report.other_warnings),
        "warnings": [
            {"job": j.label(), "cv": cv, "p99_ms": p99, "warnings": list(w)} for j, cv, p99, w in report.doubtful
        ],
    }
    if args.json:
        print(json.dumps(out, indent=1))
    else:
        print(
            f"{target.name}: measured {out['measured']}, already in the table {out['skipped']}, "
            f"failed {len(report.failed)} ({out['seconds']:.0f} s)"
        )
        for line in report.doubts():
            print(f"  warning: {line}")
        if len(report.boards) > 1 or report.board_errors:
            print(
                "  per board: "
                + ", ".join(f"{b} {n}" for b, n in sorted(report.boards.items()))
                + "".join(f"; {b} failed: {e}" for b, e in report.board_errors.items())
            )
        if report.measured_elsewhere:
            print(
                f"  {report.measured_elsewhere} measurements were stored meanwhile by another run on this table "
                "(theirs kept, nothing is stored twice)"
            )
        for job, error in report.failed:
            print(f"  failed: {job.label()}: {error}", file=sys.stderr)
    return EXIT_TARGET_FAILED if report.failed else 0


# ------------------------------------------------------------------ estimate


def _measured_at(db, identity: str, model: str, key) -> list[str]:  # noqa: ANN001 - LatencyDB, RowKey
    """The other options a network was measured at on this target, as the flags that select them."""
    seen = sorted(
        {
            (r["input_size"], r["threads"], r["runtime"], r["batch"], r["precision"])
            for r in db.rows(identity=identity, arch=model)
        }
    )
    return [
        f"--input-size {size} --threads {threads} --runtime {runtime} --precision {precision}"
        + (f" --batch {batch}" if batch != 1 else "")
        for size, threads, runtime, batch, precision in seen
        if (size, threads, runtime, batch, precision)
        != (key.input_size, key.threads, key.runtime, key.batch, key.precision)
    ]


def cmd_estimate(args: argparse.Namespace) -> int:
    import contextlib

    from netcut.estimate import quantile_level
    from netcut.vocabulary import parse_cut_label

    from ..errors import TargetError
    from ..estimation import estimate_candidates
    from ..profiling import analyses_for

    key = row_key(args)
    quantile_level(args.quantile)
    names = names_list(args.models)
    analyses = analyses_for(names, key)
    only = None
    if args.cut:
        if len(names) > 1:
            raise ConfigError("--cut names one cut of one network; give one network, or leave --cut out")
        cut = parse_cut_label(args.cut)
        only = [None if cut is None else analyses[names[0]].cut(cut).name]
    with open_db(args) as db, contextlib.ExitStack() as stack:
        try:
            target = stack.enter_context(connected(args, key.runtime, key.threads))
            identity, target_name, description = target.identity.key, target.name, target.identity.description
        except TargetError:
            known = db.identities_of(args.target)
            if not known:
                raise
            identity, target_name = known[-1]["identity"], args.target
            description = json.loads(known[-1]["description"])
            print(f"note: {args.target} is unreachable; estimating from its last known identity", file=sys.stderr)
        warn_other_identities(db, target_name, identity, description)
        estimates = estimate_candidates(db, identity, key, analyses, args.estimator, args.quantile, 0.0, only=only)
        missing = [n for n in names if all(e.estimated_ms is None for e in estimates.by_model[n])]
        elsewhere = {n: _measured_at(db, identity, n, key) for n in missing}
    out = {
        "target": target_name,
        "estimator": args.estimator,
        "quantile": args.quantile,
        "networks": [
            {
                "model": name,
                "estimates": [
                    {
                        "cut": e.cut,
                        "estimated_ms": e.estimated_ms,
                        "uncertainty_ms": e.uncertainty_ms,
                        "evidence": e.evidence,
                    }
                    for e in estimates.by_model[name]
                ],
            }
            for name in names
        ],
        "notes": estimates.notes,
    }
    if len(names) == 1:  # one network: its fields at the top, as scripts read them
        out = {**{k: v for k, v in out.items() if k != "networks"}, **out["networks"][0]}
    if args.json:
        print(json.dumps(out, indent=1))
    else:
        for name in names:
            print(f"{name} on {target_name} ({key.precision}, {args.estimator}, {args.quantile}):")
            for e in estimates.by_model[name]:
                value = (
                    f"{e.estimated_ms:9.3f} ms ± {e.uncertainty_ms:.3f}" if e.estimated_ms is not None else "     n/a"
                )
                print(f"  {e.cut or '(full network)':<34} {value:<24} {e.evidence}")
    for note in estimates.notes:
        print(f"note: {note}", file=sys.stderr)
    if missing:
        print(
            f"no estimate for {', '.join(missing)} at {key.input_size} px, {key.threads} thread"
            f"{'s' if key.threads > 1 else ''}, {key.runtime}, {key.precision}: profile first (netcut-host profile "
            f"--target {target_name} --models {','.join(missing)}"
            f"{'' if key.precision == 'fp32' else ' --precision ' + key.precision})",
            file=sys.stderr,
        )
        for name, options in elsewhere.items():
            if options:
                print(f"  the table has {name} on {target_name} at: {'; '.join(options)}", file=sys.stderr)
        return 2
    return 0


# ------------------------------------------------------------------ table


def _doubts(row) -> list[str]:  # noqa: ANN001 - a sqlite3.Row of the measurements table
    """The agent's warnings on a stored row that put its figures in doubt (busy, noisy, throttled)."""
    from ..records import doubts

    return doubts(json.loads(row["board"]).get("warnings", []), row["median_ms"], row["p99_ms"])


def cmd_table(args: argparse.Namespace) -> int:
    from ..tables import STALE_DAYS

    with open_db(args) as db:
        if args.action == "export":
            if not args.file:
                raise ConfigError("table export needs a FILE: netcut-host table export FILE")
            data = db.export_rows(args.target)
            Path(args.file).write_text(json.dumps(data))
            print(f"exported {len(data['measurements'])} rows to {args.file}")
            return 0
        if args.action == "import":
            if not args.file:
                raise ConfigError("table import needs a FILE: netcut-host table import FILE")
            try:
                data = json.loads(Path(args.file).read_text())
            except (OSError, ValueError) as exc:
                raise ConfigError(f"cannot read {args.file}: {exc}") from None
            added, skipped = db.import_rows(data)
            print(f"imported {added} rows, {skipped} already present")
            return 0
        wanted = set(names_list(args.models))
        rows = [r for r in db.rows(target=args.target) if not wanted or r["model"] in wanted]
        if args.csv:
            writer = csv.writer(sys.stdout)
            columns = [
                "id",
                "target",
                "identity",
                "model",
                "input_size",
                "batch",
                "cut",
                "format",
                "precision",
                "runtime",
                "runtime_version",
                "threads",
                "mode",
                "classes",
                "n",
                "median_ms",
                "p90_ms",
                "p95_ms",
                "p99_ms",
                "cv",
                "throttled",
                "measured_at",
            ]
            writer.writerow(columns)
            for r in rows:
                writer.writerow([r[c] for c in columns])
            return 0
        if args.json:
            print(
                json.dumps(
                    [
                        {
                            k: (json.loads(r[k]) if k in ("samples", "blocks", "timing") else r[k])
                            for k in r.keys()
                            if k not in ("layers", "board")
                        }
                        for r in rows
                    ],
                    indent=1,
                )
            )
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
            print(
                f"target {group[0]['target']} [{identity}] {d.get('cpu_model', '?')} {d.get('board_model', '')} "
                f"{d.get('runtime', '')} {d.get('runtime_version', '')}, {d.get('threads', '?')} threads"
                + (f"  ({'; '.join(flags)})" if flags else "")
            )
            for r in group:
                round_note = f" round {r['round'] + 1}" if r["round"] else ""
                doubts = _doubts(r)
                print(
                    f"  {r['id']:>5} {r['model']:<22} {r['cut']:<30} {r['mode']:<6} "
                    f"{r['input_size']:>4}px b{r['batch']} {r['format']:<6} {r['precision']:<4} "
                    f"median {r['median_ms']:9.3f} ms "
                    f"p99 {r['p99_ms']:9.3f} ms n {r['n']:<5}{round_note}"
                    f"{' THROTTLED' if r['throttled'] else ''}" + "".join(f" {w.split(':')[0].upper()}" for w in doubts)
                )
        warned = [(r, _doubts(r)) for r in rows if _doubts(r)]
        if warned:
            worst = sorted(warned, key=lambda rw: -rw[0]["cv"])[:3]
            print(
                f"{len(warned)} of {len(rows)} rows carry the agent's warnings (BUSY, NOISY); the worst: "
                + "; ".join(f"row {r['id']} ({r['model']} {r['cut']}, cv {r['cv']:.2f}): {ws[-1]}" for r, ws in worst)
            )
        if not rows:
            print("no rows" + (f" for target {args.target}" if args.target else ""))
    return 0


# ------------------------------------------------------------------ validate


def cmd_validate(args: argparse.Namespace) -> int:
    from ..paths import export_cache
    from ..progress import Progress, bar
    from ..validation import validate

    key = row_key(args)
    progress = Progress(enabled=None if not args.json else False)
    started = time.monotonic()
    with open_db(args) as db, connected(args, key.runtime, key.threads) as target:
        names = names_list(args.models) or db.archs(target.identity.key, key)
        if not names:
            raise ConfigError(
                f"nothing to validate: the table has no rows for {target.name} with these options; "
                "profile some networks first (--mode layers)"
            )
        out = validate(
            db,
            target,
            key,
            names,
            args.cuts_per_model,
            args.quantile,
            timing_from_args(args),
            export_cache(),
            lambda d, t, j: progress.show(f"{bar(d, t, started)} {j.label() if j else ''}"),
            rounds=args.rounds,
            stage=lambda text: progress.show(text, force=True),
        )
    progress.done()
    if args.json:
        print(json.dumps(out, indent=1))
    else:
        print(
            f"{out['target']} ({out['precision']}): {out['held_out_measurements']} fresh measurements at "
            f"{out['quantile']}"
        )
        for k in ("empirical", "analytical_leave_one_network_out", "kernels_leave_one_network_out"):
            s = out[k]
            if s["n"]:
                print(
                    f"  {k:<34} median {s['median_ape_pct']:.1f}%  p95 {s['p95_ape_pct']:.1f}%  "
                    f"worst {s['worst_ape_pct']:.1f}%  (n={s['n']})"
                )
            else:
                print(f"  {k:<34} no estimates (profile with --mode layers; the analytical one needs 2+ networks)")
        if out["kernels_interval_90_coverage"] is not None:
            print(
                f"  per-kernel 90% intervals held {out['kernels_interval_90_coverage']:.0%} of the fresh measurements"
            )
    return EXIT_TARGET_FAILED if out["failed"] else 0


# ------------------------------------------------------------------ parser


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "profile",
        help="measure networks on a target and store the rows",
        description="Export what is needed, upload only what the agent lacks, benchmark and store "
        "one row per measurement. Cuts are measured interleaved; rows already in the table are "
        "skipped (unless --force), so an interrupted run resumes. `layers` measures the full network "
        "once with a per-layer profile, each cut's head alone, and a few TRNs end to end that calibrate "
        "the profile (the first three cuts, then cuts 4, 8, 16... up to three quarters of the way); "
        "`e2e` measures every TRN. Exit code 4 when some measurements failed (the "
        "others are stored).",
    )
    add_models(p, True, "network name(s), comma-separated")
    p.add_argument(
        "--cuts", default="all", help="all, or cut names / indices, comma-separated ('full' too) (default: %(default)s)"
    )
    p.add_argument(
        "--mode", choices=MODES, default="layers", help="layers (cheapest), e2e, or both (default: %(default)s)"
    )
    p.add_argument("--force", action="store_true", help="measure again even if the table has the row")
    p.add_argument(
        "--agreement",
        type=float,
        default=0.2,
        metavar="FRACTION",
        help="fleet targets: a board whose reference time is off the boards' median by more than this "
        "is left out of the run (default: %(default)s)",
    )
    add_json(p, "a JSON summary")
    add_row_args(p)
    add_timing_args(p)
    add_remeasure(p)
    p.set_defaults(func=cmd_profile)

    e = sub.add_parser(
        "estimate",
        help="estimate every cut's latency on a target",
        description="Estimate each cut's (or one cut's) latency on a target from its latency table: "
        "empirical (measured rows, or the per-layer profile summed to the cut plus the head) or "
        "analytical (a cost model calibrated on the target's rows, kept in the table and fitted "
        "again only when its rows change). Says which evidence it used.",
    )
    add_models(e, True, "network name(s), comma-separated")
    e.add_argument("--cut", help="one cut name or index, or 'full' (default: every cut and the full network)")
    e.add_argument(
        "--estimator",
        choices=ESTIMATORS,
        default="empirical",
        help="empirical: from measured rows; analytical: a cost model fitted on them (default: %(default)s)",
    )
    add_quantile(e)
    add_json(e)
    add_row_args(e)
    e.set_defaults(func=cmd_estimate)

    t = sub.add_parser(
        "table",
        help="show, export or import latency tables",
        description="Show a target's rows (rows measured under another identity are shown apart and "
        "flagged; stale tables are flagged), or export/import them to share measurements.",
    )
    t.add_argument(
        "action",
        nargs="?",
        choices=["show", "export", "import"],
        default="show",
        help="show the rows, export them to FILE, or import FILE (default: %(default)s)",
    )
    t.add_argument("file", nargs="?", help="the file to export to or import from (JSON)")
    t.add_argument("--target", help="only this target (default: all)")
    add_models(t, False, "only these networks, comma-separated (default: all)")
    add_db(t)
    fmt = t.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="print the rows as JSON (default: a table for people)")
    fmt.add_argument("--csv", action="store_true", help="print the rows as CSV")
    t.set_defaults(func=cmd_table)

    v = sub.add_parser(
        "validate",
        help="measure held-out cuts afresh and score the estimators",
        description="Measure held-out cuts of each profiled network again, end to end and "
        "interleaved, and report each estimator's absolute percentage errors (median, 95th "
        "percentile, worst); the analytical one is scored leave-one-network-out.",
    )
    add_models(v, False, "networks to validate (default: every network in the table for this target)")
    v.add_argument("--cuts-per-model", type=int, default=5, help="held-out cuts per network (default: %(default)s)")
    add_quantile(v, "median")
    add_json(v)
    add_row_args(v)
    add_timing_args(v)
    v.set_defaults(func=cmd_validate)
