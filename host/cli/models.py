"""netcut-host cuts and export: where a network can be cut, and a trimmed network written to a file."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from netcut.vocabulary import DEFAULT_CALIBRATION_IMAGES, FULL, GRANULARITIES, PRECISIONS, parse_cut_label

from ..choices import FORMATS
from ..errors import ConfigError
from .options import CLASSES_HELP, add_json, positive_int

MODEL_HELP = (
    "a torchvision model name (e.g. mobilenet_v2), timm/NAME[.TAG] (e.g. timm/efficientnet_lite0; needs the "
    "timm extra) or package.module:factory"
)


def add_commands(sub: argparse._SubParsersAction) -> None:
    cuts = sub.add_parser(
        "cuts",
        help="list where a network can be cut",
        description="List a network's cut points in execution order with the cumulative "
        "multiply-adds (MACs) and parameters up to each cut and the size of the activation there. "
        "Names are torchvision node names (get_graph_node_names; for timm networks, timm's FX node "
        "names) or their top-level block. Other commands take a cut by its name, or by its index as #N. "
        "Blocks that fuse for deployment (MobileOne, RepViT...) are fused first and never cut inside.",
    )
    cuts.add_argument("model", help=MODEL_HELP)
    cuts.add_argument(
        "--input-size",
        type=int,
        help="square input size in pixels (default: 224; 299 for inception_v3; a timm network's pretrained size)",
    )
    cuts.add_argument(
        "--granularity",
        choices=GRANULARITIES,
        default="block",
        help="block: the ends of top-level blocks; layer: every possible cut (default: %(default)s)",
    )
    add_json(cuts)
    cuts.set_defaults(func=cmd_cuts)

    export = sub.add_parser(
        "export",
        help="build a trimmed network and export it",
        description="Cut a network after a block, add a head (global average pooling and a "
        "linear layer to K classes), and export it as ONNX (verified in onnxruntime) or TFLite "
        "(verified in LiteRT; needs the convert extra). The head is untrained: export is for "
        "latency work; `search` retrains.",
    )
    export.add_argument("model", help=MODEL_HELP)
    export.add_argument(
        "--cut",
        default=FULL,
        help=f"a cut name from `netcut-host cuts`, #N for its index, or '{FULL}' (default: %(default)s)",
    )
    export.add_argument(
        "--classes",
        type=int,
        default=None,
        help=f"{CLASSES_HELP} (default: 1000; for '{FULL}', keeps the network's own)",
    )
    export.add_argument(
        "--head",
        choices=["gap-linear", "none"],
        default="gap-linear",
        help="gap-linear (default) or none: the bare prefix, whose output is the activation at the cut",
    )
    export.add_argument("--format", choices=FORMATS, default="onnx", help="onnx or tflite (default: %(default)s)")
    export.add_argument(
        "--input-size",
        type=int,
        help="square input size (default: 224; 299 for inception_v3; a timm network's pretrained size)",
    )
    export.add_argument("--batch", type=int, default=1, help="batch size (default: 1)")
    export.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="fp32",
        help="fp32; int8: post-training static quantization calibrated on --data, verified against the "
        "float model (top-1 agreement, relative error) and checked that every convolution and linear "
        "layer is quantized; fp16 (ONNX, for GPU boards): weights and compute in half precision, inputs and "
        "outputs float32, verified against the float model on --data's validation images (default: %(default)s)",
    )
    export.add_argument(
        "--data",
        default="builtin",
        help="int8 and fp16: an ImageFolder whose training images calibrate the quantization and whose "
        "validation images check it, or builtin (the handwritten digits) (default: %(default)s)",
    )
    export.add_argument(
        "--calibration-images",
        type=positive_int,
        default=DEFAULT_CALIBRATION_IMAGES,
        metavar="N",
        help="int8: a fixed seeded subset of N training images calibrates (default: %(default)s)",
    )
    export.add_argument(
        "--weights",
        default="none",
        help="none (random; default, fine for latency), a torchvision weights name such as DEFAULT, "
        "DEFAULT for a timm network's pretrained tag, or a state_dict file",
    )
    export.add_argument(
        "--granularity",
        choices=GRANULARITIES,
        default="block",
        help="which cut names --cut refers to, and how nodes are labelled (default: %(default)s)",
    )
    export.add_argument("-o", "--output", type=Path, required=True, help="file to write (.onnx or .tflite)")
    add_json(export, "what was written as JSON")
    export.set_defaults(func=cmd_export)


def cuts_dict(a) -> dict:  # noqa: ANN001 - a NetworkAnalysis (netcut.cuts loads torch)
    return {
        "model": a.model_name,
        "input_shape": list(a.input_shape),
        "granularity": a.granularity,
        "cuts": [
            {
                "index": c.index,
                "name": c.name,
                "node": c.node,
                "output_shape": list(c.output_shape),
                "macs": c.macs,
                "params": c.params,
                "activation_bytes": c.activation_bytes,
            }
            for c in a.cuts
        ],
        "full": {"macs": a.full_macs, "params": a.full_params},
    }


def cmd_cuts(args: argparse.Namespace) -> int:
    from netcut.cuts import analyse_by_name

    a = analyse_by_name(args.model, args.input_size, args.granularity)
    if args.json:
        print(json.dumps(cuts_dict(a), indent=1))
        return 0
    print(
        f"{a.model_name} at {'x'.join(map(str, a.input_shape))}: {len(a.cuts)} cuts ({a.granularity}), "
        f"full network {a.full_macs / 1e6:.1f} M MACs, {a.full_params / 1e6:.2f} M params"
    )
    print(f"{'#':>4}  {'cut':<34} {'output':<18} {'MACs (M)':>10} {'% of full':>9} {'params (M)':>10} {'act (KB)':>9}")
    for c in a.cuts:
        print(
            f"{'#' + str(c.index):>4}  {c.name:<34} {'x'.join(map(str, c.output_shape)):<18} {c.macs / 1e6:>10.2f} "
            f"{100 * c.macs / a.full_macs:>8.1f}% {c.params / 1e6:>10.3f} {c.activation_bytes / 1024:>9.1f}"
        )
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from netcut import models
    from netcut.cuts import analyse
    from netcut.export import export
    from netcut.trn import build_trn

    if args.batch < 1:
        raise ConfigError(f"--batch must be at least 1, got {args.batch}")
    fmt = args.format
    if args.output.suffix.lower() not in (f".{fmt}",):
        raise ConfigError(f"the output {args.output} should end in .{fmt} for --format {fmt}")
    size = args.input_size or models.default_input_size(args.model)
    model = models.build(args.model, args.weights)
    a = analyse(model, args.model, size, args.granularity, batch=args.batch)
    full = parse_cut_label(args.cut) is None
    cut = None if full else a.cut(args.cut)
    classes = args.classes if args.classes is not None else (None if full else 1000)
    trn = build_trn(a, cut, classes, args.head)
    metadata = {
        "netcut.model": args.model,
        "netcut.cut": FULL if full else cut.name,
        "netcut.granularity": args.granularity,
        "netcut.head": args.head,
        "netcut.weights": args.weights,
    }
    calibration, check = _calibration(args, size) if args.precision != "fp32" else (None, None)
    result = export(
        trn, args.output, a.input_shape, fmt, metadata, precision=args.precision, calibration=calibration, check=check
    )
    info = {
        "path": str(result.path),
        "format": fmt,
        "model": args.model,
        "cut": None if full else cut.name,
        "input_shape": list(a.input_shape),
        "macs": a.full_macs if full else cut.macs,
        "relative_error": result.relative_error,
        "precision": args.precision,
        "seconds": round(result.seconds, 3),
        "bytes": result.path.stat().st_size,
    }
    if result.int8 is not None:
        info["int8"] = result.int8.summary()
    if result.fp16 is not None:
        info["fp16"] = result.fp16.summary()
    if args.json:
        print(json.dumps(info, indent=1))
        return 0
    print(
        f"wrote {result.path} ({fmt} {args.precision}, {info['bytes'] / 1e6:.1f} MB): {args.model} "
        f"{'full network' if full else 'cut after ' + cut.name}, input {'x'.join(map(str, a.input_shape))}, "
        f"float export verified against torch (relative error {result.relative_error:.1e})"
    )
    q = result.int8
    if q is not None:
        agree = "" if q.agreement is None else f"top-1 agreement {q.agreement:.1%}, "
        print(
            f"int8: {sum(q.quantized_ops.values())} quantized operators "
            f"({', '.join(f'{k} {v}' for k, v in q.quantized_ops.items())}), none left in float; against the "
            f"float model on {q.check_images} images: {agree}relative error {q.relative_error:.3f} "
            f"(calibrated on {q.calibration_images} training images of {args.data})"
        )
        for t in q.inputs + q.outputs:
            if t.scale is not None:
                print(f"  {t.name}: {t.dtype}, real = {t.scale:.6g} * (q - {t.zero_point})")
    h = result.fp16
    if h is not None:
        agree = "" if h.agreement is None else f"top-1 agreement {h.agreement:.1%}, "
        print(
            f"fp16: {h.converted_initializers} weights in half precision, none left float32 in a convolution or "
            f"linear layer; inputs and outputs float32; against the float model on {h.check_images} images of "
            f"{args.data}: {agree}relative error {h.relative_error:.2e}"
        )
    return 0


def _calibration(args: argparse.Namespace, size: int) -> tuple[list, list]:
    """int8 export: a seeded subset of the data's training images calibrates, its validation images check."""
    from netcut.data import load_task
    from netcut.quantize import calibration_images

    from ..search import normalization_for

    task = load_task(args.data, size, normalization_for(args.weights, args.model))
    calibration = calibration_images(task.train_plain, args.calibration_images)
    return calibration, calibration_images(task.val, args.calibration_images, seed=1)
