"""netcut-host calibrate: the kernel suite on a target, or a new target from a reference's kernel model."""

from __future__ import annotations

import argparse
import json
import time

from ..choices import DEFAULT_MODELS
from ..errors import EXIT_TARGET_FAILED
from .options import (
    add_json,
    add_remeasure,
    add_row_args,
    add_timing_args,
    connected,
    names_list,
    open_db,
    positive_int,
    row_key,
    timing_from_args,
)

DEFAULT_BUDGET = 40


def cmd_calibrate(args: argparse.Namespace) -> int:
    from ..calibration import Board, from_reference, run_suite, summary
    from ..paths import export_cache
    from ..profiling import analyses_for
    from ..progress import Progress, job_progress

    key = row_key(args)
    names = names_list(args.models) or list(DEFAULT_MODELS)
    budget = args.budget if args.budget is not None else (10 if args.reference else DEFAULT_BUDGET)
    analyses = analyses_for(names, key)
    progress = Progress(enabled=None if not args.json else False)
    started = time.monotonic()

    with open_db(args) as db, connected(args, key.runtime, key.threads) as target:
        board = Board(
            db, target, key, analyses, export_cache(), timing_from_args(args), job_progress(progress, started)
        )
        if args.reference:
            report = from_reference(board, args.reference, budget)
        else:
            report = run_suite(board, budget, args.remeasure)
    progress.done()
    out = {"target": target.name, "identity": target.identity.key, "models": names, "budget": budget, **summary(report)}
    if args.json:
        print(json.dumps(out, indent=1))
    else:
        m = report.model
        if args.reference:
            print(
                f"{target.name}: kernel model rescaled from {args.reference} with {report.measured} new measurements "
                f"({report.reused} already in the table) of {len(report.chosen)} TRNs: {', '.join(report.chosen)} "
                f"({report.seconds:.0f} s)"
            )
        else:
            fams = ", ".join(f"{f} {n}" for f, n in sorted(report.families.items()))
            print(
                f"{target.name}: measured {report.measured} suite kernels ({report.reused} already in the table; "
                f"{fams or 'none new'}) in {report.seconds:.0f} s"
            )
        if m is not None:
            print(
                f"  kernel model: {len(m.kinds)} kinds, fitted on {m.kernels} kernels ({m.suite} from the suite) "
                f"of {len(m.networks)} networks; whole model = {m.network_scale:.3f} x kernels + "
                f"{m.overhead_ms * 1000:.1f} us"
                + (f" + {m.per_kernel_ms * 1000:.1f} us per kernel" if m.per_kernel_ms > 0 else "")
                + (f"; warmth against a {m.cache_bytes / 1e6:.1f} MB L2" if m.warm_share > 0 else "")
                + (f"; compute peak {1000 / m.peak_ms_per_gmac:.1f} GMAC/s" if m.peak_ms_per_gmac > 0 else "")
                + (f"; channels in blocks of {m.channel_block}" if m.channel_block > 1 else "")
            )
        for line in report.failed:
            print(f"  failed: {line}")
    return EXIT_TARGET_FAILED if report.failed else 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    c = sub.add_parser(
        "calibrate",
        help="measure the kernel suite on a target (or start it from another board) for --estimator kernels",
        description="Measure single-kernel models drawn from the kernels of the networks given (the kinds "
        "and shapes they contain, then more where the per-kernel model errs most), store them as rows "
        "of the target's table, and fit the target's per-kernel model from them and from every "
        "layers-mode profile there. Interrupted, it resumes: what is in the table is not measured again. "
        "With --from REFERENCE, start from that target's kernel model instead and refit its per-kind "
        "scale factors from at most --budget TRNs measured end to end here (a new board in ten runs).",
    )
    c.add_argument(
        "--models",
        help=f"networks whose kernels to cover, comma-separated (default: {','.join(DEFAULT_MODELS)})",
    )
    c.add_argument(
        "--budget",
        type=positive_int,
        help=f"measurements to make at most (default: {DEFAULT_BUDGET} suite kernels; 10 TRNs with --from)",
    )
    c.add_argument(
        "--from",
        dest="reference",
        metavar="REFERENCE",
        help="a target whose kernel model (calibrated before, at the same input size and precision) to start from",
    )
    add_json(c, "a JSON summary")
    add_row_args(c)
    add_timing_args(c)
    add_remeasure(c)
    c.set_defaults(func=cmd_calibrate)
