"""netcut-host search: the most accurate network that meets a deadline on a target."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from netcut import models
from netcut.errors import NetcutError
from netcut.search import parse_deadline, parse_policy
from netcut.training import resolve_device

from .client import AgentUnavailable
from .cmd_agent import add_connection_args, credentials_from_args
from .cmd_tables import add_fleet_args, add_timing_args, default_db, export_cache, ssh_options
from .progress import Progress
from .search import DEFAULT_MODELS, NoFeasibleCandidate, Search, SearchConfig
from .tables import LatencyDB
from .targets import LOCAL, connect, fleet_target

EXIT_INFEASIBLE = 3


def add_search_command(sub) -> None:
    p = sub.add_parser("search", help="find the most accurate network that meets a deadline (the main job)",
                       description="Estimate every candidate's latency on the target (every cut of every network, "
                       "and each full network), profile what the table lacks, retrain only candidates that can meet "
                       "the deadline, confirm the best on the board, and write a report, a Pareto plot and the "
                       "deployable model. With no options it runs the built-in demo: a local agent, the project's "
                       "own pretrained backbones and scikit-learn's handwritten digits. Exit code 3: no candidate "
                       "can meet the deadline.")
    p.add_argument("--target", default=LOCAL, help="'local' (default: an agent started here), a name with --agent, "
                   "or a target of the fleet inventory")
    add_connection_args(p, required=False)
    add_fleet_args(p)
    p.add_argument("--deadline", help="e.g. 30ms (required with your own data; the built-in demo picks one)")
    p.add_argument("--quantile", default="p99", help="latency quantile to meet: p50|median|p90|p95|p99 (default p99)")
    p.add_argument("--models", help="comma-separated networks (default: the built-in backbones for --data builtin, "
                   "else " + ",".join(DEFAULT_MODELS) + ")")
    p.add_argument("--weights", help="builtin (default for --data builtin), DEFAULT (torchvision's ImageNet weights, "
                   "the default otherwise), none, or a state_dict file")
    p.add_argument("--data", default="builtin", help="an ImageFolder, or 'builtin' (handwritten digits; default)")
    p.add_argument("--classes", default="auto", help="auto (from the data; default) or the expected number")
    p.add_argument("--estimator", choices=["empirical", "analytical"], default="empirical")
    p.add_argument("--policy", default="deepest", help="deepest (default), deepest+K, feasible or exhaustive")
    p.add_argument("--finetune", choices=["head", "full"], default="head",
                   help="head: train new heads on cached features (default, fast); full: fine-tune everything")
    p.add_argument("--epochs", type=int, help="training epochs (default: 30 for head, 5 for full)")
    p.add_argument("--device", default="auto", help="auto (default: a GPU when present), cpu or cuda")
    p.add_argument("--input-size", type=int, help="square input size (default: 32 for the built-in demo, else 224)")
    p.add_argument("--threads", type=int, help="runtime threads on the board (default: the inventory target's, else 1)")
    p.add_argument("--runtime", choices=["onnxruntime", "litert"],
                   help="the board's runtime: onnxruntime (ONNX) or litert (TFLite; needs the convert extra here and "
                   "profiles every candidate end to end, as LiteRT has no per-layer profiler). Default: the "
                   "inventory target's, else onnxruntime")
    p.add_argument("--margin", type=float, default=5.0, help="safety margin on estimates, in %% (default: 5)")
    p.add_argument("--db", type=Path, help="latency table file (default: the user's data dir)")
    p.add_argument("--out", type=Path, default=Path("netcut-out"), help="report folder (default: ./netcut-out)")
    p.add_argument("--resume", action="store_true", help="continue a search in --out that was interrupted")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    add_timing_args(p)
    p.set_defaults(func=cmd_search)


def config_from_args(args):
    builtin_data = args.data == "builtin"
    weights = args.weights or ("builtin" if builtin_data else "DEFAULT")
    names = [m.strip() for m in args.models.split(",") if m.strip()] if args.models else (
        models.builtin_models() if weights == "builtin" else DEFAULT_MODELS)
    if not names:
        raise NetcutError("no models to search: pass --models")
    if args.deadline is None and not builtin_data:
        raise NetcutError("--deadline is required with your own data (e.g. --deadline 30ms)")
    parse_policy(args.policy)
    if args.epochs is not None and args.epochs < 1:
        raise NetcutError("--epochs must be at least 1")
    if not 0 <= args.margin < 100:
        raise NetcutError(f"--margin {args.margin:g}% is out of range: give a percentage from 0 (trust the "
                          "estimates as they are) to below 100 (default 5)")
    input_size = args.input_size or (models.builtin_manifest().get(names[0], {}).get("input_size", 32)
                                     if weights == "builtin" else 224)
    timing = {k: getattr(args, k) for k in ("warmup_runs", "warmup_seconds", "min_runs", "min_seconds", "max_seconds")
              if getattr(args, k) is not None}
    if args.classes != "auto" and not (args.classes.isdigit() and int(args.classes) >= 2):
        raise NetcutError(f"--classes must be 'auto' or a number of classes (2 or more), got {args.classes!r}")
    return SearchConfig(parse_deadline(args.deadline) if args.deadline else None, args.quantile, names, weights,
                        args.data, args.estimator, args.policy, args.finetune,
                        args.epochs or (30 if args.finetune == "head" else 5), resolve_device(args.device),
                        input_size, args.margin, args.out, timing,
                        None if args.classes == "auto" else int(args.classes), args.rounds)


def cmd_search(args) -> int:
    from netcut.estimate import quantile_level

    from .report import write_report

    quantile_level(args.quantile)
    cfg = config_from_args(args)
    progress = Progress(enabled=not args.json)
    say = (lambda s: (progress.done(), print(s, file=sys.stderr))) if not args.json else (lambda s: None)
    ft = fleet_target(args.target, args.agent, args.fleet)
    runtime = args.runtime or (ft.runtime if ft else "onnxruntime")
    threads = args.threads if args.threads is not None else (ft.threads if ft else 1)
    with LatencyDB(args.db or default_db()) as db, \
            connect(args.target, args.agent, runtime, threads, credentials_from_args(args), args.fleet,
                    ssh_options(args)) as target:
        search = Search(cfg, target, db, export_cache(), say, args.resume)
        try:
            outcome = search.run()
        except NoFeasibleCandidate as exc:
            print(f"netcut-host: {exc}", file=sys.stderr)
            return EXIT_INFEASIBLE
        except AgentUnavailable as exc:
            raise AgentUnavailable(f"{exc}. Everything measured and trained so far is kept (the table and {cfg.out}); "
                                   "run the same command again with --resume") from None
        data = write_report(cfg, outcome)
    if args.json:
        print(json.dumps(data, indent=1))
        return 0
    pick, off = outcome.pick, outcome.best_off_the_shelf
    where = "full network" if pick.cut is None else f"cut after {pick.cut}"
    print(f"pick: {pick.model} ({where}): {pick.measured_ms:.3f} ms {cfg.quantile} measured on {target.name} "
          f"(deadline {cfg.deadline_ms:g} ms), validation accuracy {pick.accuracy:.1%}")
    if off:
        lat = off.measured_ms if off.measured_ms is not None else off.estimated_ms
        print(f"best off-the-shelf within the deadline: {off.model}: {lat:.3f} ms, accuracy {off.accuracy:.1%}")
    else:
        print("no off-the-shelf network meets the deadline: only a trimmed network does")
    print(f"model: {outcome.artefact} (+ model.json); report: {Path(cfg.out) / 'report.md'}")
    return 0
