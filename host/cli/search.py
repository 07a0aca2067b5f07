"""netcut-host search: the most accurate network that meets a deadline on a target."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from netcut.vocabulary import DEFAULT_CALIBRATION_IMAGES, parse_precisions

from ..choices import DEFAULT_MODELS, ESTIMATORS, FINETUNE, LOCAL, RUNTIMES, TIMM_EDGE_MODELS, default_models
from ..errors import ConfigError

if TYPE_CHECKING:
    from ..search import SearchConfig
from .options import (
    CLASSES_HELP,
    TARGET_HELP,
    add_connection_args,
    add_providers,
    add_db,
    add_fleet_args,
    add_json,
    add_models,
    add_quantile,
    add_timing_args,
    add_remeasure,
    configured,
    connected,
    names_list,
    open_db,
    positive_int,
    timing_from_args,
)


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "search",
        help="find the most accurate network that meets a deadline (the main job)",
        description="Estimate every candidate's latency on the target (every cut of every network, "
        "and each full network), profile what the table lacks, retrain only candidates that can meet "
        "the deadline, confirm the best on the board, and write a report, a Pareto plot and the "
        "deployable model. With no options it runs the built-in demo: a local agent, the project's "
        "own pretrained backbones and scikit-learn's handwritten digits. Exit code 3: no candidate "
        "can meet the deadline; 4: the target failed midway (rerun with --resume).",
    )
    p.add_argument("--target", default=LOCAL, help=f"{TARGET_HELP} (default: %(default)s)")
    add_connection_args(p)
    add_fleet_args(p)
    add_providers(p)
    p.add_argument(
        "--deadline",
        help="e.g. 30ms, 0.5ms or 2s (required with your own data; the built-in demo "
        "picks one: the median of the off-the-shelf networks' estimates)",
    )
    add_quantile(p)
    add_models(
        p,
        False,
        "comma-separated networks: torchvision names, timm/NAME[.TAG] (needs the timm extra) or "
        "package.module:factory (default: the built-in backbones for --data builtin, else "
        + ",".join(DEFAULT_MODELS)
        + ", and where timm is installed its edge set "
        + ",".join(TIMM_EDGE_MODELS)
        + ")",
    )
    p.add_argument(
        "--weights",
        help="builtin (default for --data builtin), DEFAULT (torchvision's ImageNet weights, timm's "
        "pretrained tag; the default otherwise), none, or a state_dict file",
    )
    p.add_argument(
        "--data", default="builtin", help="an ImageFolder, or 'builtin' (handwritten digits) (default: %(default)s)"
    )
    p.add_argument(
        "--classes",
        default="auto",
        help=f"{CLASSES_HELP}: auto (as many as the data has) or the number the data must have (default: %(default)s)",
    )
    p.add_argument(
        "--estimator",
        choices=ESTIMATORS,
        default="empirical",
        help="empirical: from measured rows; analytical: a cost model fitted on them (default: %(default)s)",
    )
    p.add_argument(
        "--policy",
        help="which feasible candidates to retrain: deepest, deepest+K, feasible or exhaustive (default: feasible "
        "with --finetune head, as every cut's head trains on one forward pass's features; deepest with --finetune "
        "full, where each candidate costs a training run)",
    )
    p.add_argument(
        "--finetune",
        choices=FINETUNE,
        default="head",
        help="head: train new heads on cached features (fast); full: fine-tune everything (default: %(default)s)",
    )
    p.add_argument("--epochs", type=int, help="training epochs (default: 30 for head, 5 for full)")
    p.add_argument("--device", default="auto", help="auto (a GPU when present), cpu or cuda (default: %(default)s)")
    p.add_argument("--input-size", type=int, help="square input size (default: 32 for the built-in demo, else 224)")
    p.add_argument("--threads", type=int, help="runtime threads on the board (default: the inventory target's, else 1)")
    p.add_argument(
        "--runtime",
        choices=RUNTIMES,
        help="the board's runtime: onnxruntime (ONNX) or litert (TFLite; needs the convert extra here and "
        "profiles every candidate end to end, as LiteRT has no per-layer profiler) (default: the "
        "inventory target's, else onnxruntime)",
    )
    p.add_argument("--margin", type=float, default=5.0, help="safety margin on estimates, in %% (default: %(default)s)")
    p.add_argument(
        "--precision",
        default="auto",
        metavar="LIST",
        help="fp32, int8, fp16 or a list (fp32,int8): every network and cut is a candidate in each, with its "
        "own latency table and deepest feasible cut; an int8 candidate is its trained float TRN quantized "
        "(a calibration pass, no training run), an fp16 one converted (ONNX); either's accuracy is measured "
        "as it is, in the runtime. auto: fp32,fp16 on a GPU target (--ep cuda or tensorrt first), else "
        "fp32,int8 (default: %(default)s)",
    )
    p.add_argument(
        "--calibration-images",
        type=positive_int,
        default=DEFAULT_CALIBRATION_IMAGES,
        metavar="N",
        help="int8: a fixed seeded subset of N training images calibrates the quantization (default: %(default)s)",
    )
    add_db(p)
    p.add_argument("--out", type=Path, default=Path("netcut-out"), help="report folder (default: %(default)s)")
    p.add_argument("--resume", action="store_true", help="continue a search in --out that was interrupted")
    add_json(p, "the report as JSON")
    add_timing_args(p)
    add_remeasure(p)
    p.set_defaults(func=cmd_search)


def config_from_args(args: argparse.Namespace) -> SearchConfig:
    from netcut import models
    from netcut.errors import NetcutError
    from netcut.estimate import quantile_level
    from netcut.policy import Policy, default_policy, parse_deadline
    from netcut.training import resolve_device

    from ..search import SearchConfig

    quantile_level(args.quantile)
    builtin_data = args.data == "builtin"
    weights = args.weights or ("builtin" if builtin_data else "DEFAULT")
    names = (
        names_list(args.models)
        if args.models
        else (models.builtin_models() if weights == "builtin" else list(default_models()))
    )
    if not names:
        raise ConfigError("no models to search: pass --models")
    if args.deadline is None and not builtin_data:
        raise ConfigError("--deadline is required with your own data (e.g. --deadline 30ms)")
    if args.epochs is not None and args.epochs < 1:
        raise ConfigError("--epochs must be at least 1")
    if not 0 <= args.margin < 100:
        raise ConfigError(
            f"--margin {args.margin:g}% is out of range: give a percentage from 0 (trust the "
            "estimates as they are) to below 100 (default 5)"
        )
    if args.classes != "auto" and not (args.classes.isdigit() and int(args.classes) >= 2):
        raise ConfigError(f"--classes must be 'auto' or a number of classes (2 or more), got {args.classes!r}")
    input_size = args.input_size or (
        models.builtin_manifest().get(names[0], {}).get("input_size", 32) if weights == "builtin" else 224
    )
    try:
        policy = Policy.parse(args.policy) if args.policy else default_policy(args.finetune)
    except NetcutError as exc:
        raise ConfigError(f"--policy: {exc}") from None
    try:
        deadline = parse_deadline(args.deadline) if args.deadline else None
    except NetcutError as exc:
        raise ConfigError(f"--deadline: {exc}") from None
    try:
        precisions = () if args.precision == "auto" else parse_precisions(args.precision)  # auto: by the target
    except ValueError as exc:
        raise ConfigError(f"--precision: {exc}") from None
    return SearchConfig(
        deadline_ms=deadline,
        quantile=args.quantile,
        models=tuple(names),
        weights=weights,
        data=args.data,
        estimator=args.estimator,
        policy=policy,
        finetune=args.finetune,
        epochs=args.epochs or (30 if args.finetune == "head" else 5),
        device=resolve_device(args.device),
        input_size=input_size,
        margin_pct=args.margin,
        out=args.out,
        timing=timing_from_args(args),
        expected_classes=None if args.classes == "auto" else int(args.classes),
        rounds=args.rounds,
        remeasure=args.remeasure,
        precisions=precisions,
        calibration_images=args.calibration_images,
    )


def cmd_search(args: argparse.Namespace) -> int:
    from ..errors import TargetError
    from ..paths import export_cache
    from ..progress import Progress
    from ..records import doubts
    from ..report import held_out_words, write_report
    from ..errors import NoFeasibleCandidate
    from ..search import ClassesMismatch, OutputInUse, Search, default_precisions

    cfg = config_from_args(args)
    progress = Progress(enabled=not args.json)
    say = (lambda s: (progress.done(), print(s, file=sys.stderr))) if not args.json else (lambda s: None)
    ft = configured(args)
    runtime = args.runtime or (ft.runtime if ft else "onnxruntime")
    threads = args.threads if args.threads is not None else (ft.threads if ft else 1)
    with open_db(args) as db, connected(args, runtime, threads) as target:
        if not cfg.precisions:
            cfg = dataclasses.replace(cfg, precisions=default_precisions(target))
        try:
            outcome = Search(cfg, target, db, export_cache(), say, args.resume).run()
        except OutputInUse as exc:
            raise ConfigError(
                f"{exc}; "
                + (
                    "continue it with --resume, or pass another --out"
                    if exc.resumable
                    else "--resume needs the options it was started with, or pass another --out"
                )
            ) from None
        except ClassesMismatch as exc:
            raise ConfigError(f"--classes: {exc} (--classes auto)") from None
        except NoFeasibleCandidate as exc:
            if exc.outcome is None:
                raise
            write_report(cfg, exc.outcome)  # every candidate's estimate, and why each is out
            raise NoFeasibleCandidate(f"{exc}; report: {Path(cfg.out) / 'report.md'}") from None
        except TargetError as exc:
            raise type(exc)(
                f"{exc}. Everything measured and trained so far is kept (the table and {cfg.out}); "
                "run the same command again with --resume"
            ) from None
        data = write_report(cfg, outcome)
    if args.json:
        print(json.dumps(data, indent=1))
        return 0
    pick, off = outcome.pick, outcome.best_off_the_shelf
    where = ("full network" if pick.cut is None else f"cut after {pick.cut}") + f", {pick.precision}"
    print(
        f"pick: {pick.model} ({where}): {pick.measured_ms:.3f} ms {cfg.quantile} measured on {target.name} "
        f"(deadline {outcome.deadline.ms:g} ms), validation accuracy {pick.accuracy:.1%}{held_out_words(data['pick'])}"
    )
    sidecar = outcome.sidecar or {}
    measured = sidecar.get("measured_latency_ms", {})
    headline_doubts = doubts(sidecar.get("warnings", []), measured.get("median_ms", 0.0), measured.get("p99_ms", 0.0))
    for warning in headline_doubts:  # never silently the headline
        print(f"  warning: that {cfg.quantile} is not one to sign off yet: {warning}")
    if off:
        lat = off.measured_ms if off.measured_ms is not None else off.estimated_ms
        print(
            f"best off-the-shelf within the deadline: {off.model} ({off.precision}): {lat:.3f} ms, validation accuracy "
            f"{off.accuracy:.1%}{held_out_words(data['best_off_the_shelf'])}"
        )
    else:
        print("no off-the-shelf network meets the deadline: only a trimmed network does")
    print(f"model: {outcome.artefact} (+ model.json); report: {Path(cfg.out) / 'report.md'}")
    return 0
