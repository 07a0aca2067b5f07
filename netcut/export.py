"""Export a (trimmed) network to ONNX or TFLite, verified against torch.

ONNX: the TorchScript-based exporter (well under a second per TRN). Every ONNX node's
name starts with the segment it came from (`/s03_features_3/...`), which we turn into a
block label stored twice: on the node (`metadata_props["netcut.block"]`) for people and
tools, and as one compact table in the model's metadata (`netcut.nodes`: name, block,
outputs), which onnxruntime exposes to the agent without the onnx package.

TFLite: litert-torch (the `convert` extra), verified in ai-edge-litert.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import re
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

import numpy as np
import torch
from torch import nn

from .errors import NetcutError
from .vocabulary import BLOCK_KEY, NODES_KEY

if TYPE_CHECKING:
    import onnx

    from .half import Fp16Report
    from .quantize import Int8Report

log = logging.getLogger(__name__)

FORMATS = ("onnx", "tflite")
MIN_OPSET = 17
TOLERANCE = 1e-4
NAME_SCOPES_KEY = "pkg.torch.onnx.name_scopes"


@dataclass
class ExportResult:
    path: Path
    format: str
    input_shape: tuple[int, ...]
    relative_error: float  # ||runtime - torch|| / ||torch|| on a random input
    seconds: float
    int8: Int8Report | None = None  # precision int8: what quantization did, and its check against float
    fp16: Fp16Report | None = None  # precision fp16: the conversion and its check against float


def relative_error(got: np.ndarray, want: np.ndarray) -> float:
    denom = float(np.linalg.norm(want))
    return float(np.linalg.norm(got - want)) / (denom if denom > 0 else 1.0)


def _labels(module: nn.Module) -> dict[str, str]:
    return dict(getattr(module, "labels", {}) or {})


def _own_block(node: onnx.NodeProto, labels: dict[str, str]) -> str:
    """The block from the node's scope: its name (TorchScript exporter) or its name scopes (dynamo)."""
    if node.name.startswith("/"):
        return labels.get(node.name.lstrip("/").split("/", 1)[0], "")
    scopes = next((p.value for p in node.metadata_props if p.key == NAME_SCOPES_KEY), "")
    for scope in re.findall(r"'([^']*)'", scopes):
        label = labels.get(scope.split(".", 1)[0])
        if label:
            return label
    return ""


def annotate_onnx(model_proto: onnx.ModelProto, labels: dict[str, str], metadata: dict[str, str]) -> dict[str, str]:
    """Label each node with its block (again, if it was labelled before: a quantized export).

    Nodes without a scope are the exporter's or the quantizer's own (Identity copies of shared weights,
    constants, a weight's or the input's Quantize/DequantizeLinear): they take the block of the first
    consumer that has one, following unlabelled consumers forward, else of the node before.
    """
    nodes = list(model_proto.graph.node)
    own = {n.name: _own_block(n, labels) for n in nodes}
    consumer: dict[str, str] = {}
    for node in reversed(nodes):  # topological order reversed: the last write is the first consumer's
        block = own[node.name] or next((consumer[o] for o in node.output if o in consumer), "")
        if block:
            for name in node.input:
                consumer[name] = block
    for node in nodes:
        kept = [p for p in node.metadata_props if p.key != BLOCK_KEY]
        del node.metadata_props[:]
        node.metadata_props.extend(kept)
    kept = [p for p in model_proto.metadata_props if p.key != NODES_KEY]
    del model_proto.metadata_props[:]
    model_proto.metadata_props.extend(kept)
    table, blocks, previous = [], {}, ""
    for node in nodes:
        block = own[node.name] or next((consumer[o] for o in node.output if o in consumer), "") or previous
        previous = block
        blocks[node.name] = block
        if block:
            entry = node.metadata_props.add()
            entry.key, entry.value = BLOCK_KEY, block
        table.append([node.name, block, list(node.output)])
    props = {NODES_KEY: json.dumps(table, separators=(",", ":")), **metadata}
    for key, value in props.items():
        entry = model_proto.metadata_props.add()
        entry.key, entry.value = key, value
    return blocks


def _reference(module: nn.Module, x: torch.Tensor) -> np.ndarray:
    with torch.no_grad():
        return module(x).detach().numpy()


def export_onnx(
    module: nn.Module,
    path: Path,
    input_shape: tuple[int, ...],
    opset: int = MIN_OPSET,
    metadata: dict[str, str] | None = None,
    verify: bool = True,
) -> ExportResult:
    import onnx

    if opset < MIN_OPSET:
        raise NetcutError(f"opset {opset} is too old; use {MIN_OPSET} or newer")
    module = module.eval()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    x = torch.randn(*input_shape)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(
                module,
                (x,),
                str(path),
                dynamo=False,
                opset_version=opset,
                input_names=["input"],
                output_names=["output"],
                do_constant_folding=True,
            )
        except Exception as exc:  # the fast exporter lacks some ops (e.g. non-divisible adaptive pooling)
            log.info("TorchScript-based export failed (%s); using the dynamo exporter", str(exc)[:120])
            try:
                torch.onnx.export(
                    module,
                    (x,),
                    str(path),
                    dynamo=True,
                    opset_version=max(opset, 18),
                    input_names=["input"],
                    output_names=["output"],
                    verbose=False,
                )
            except Exception as exc2:
                first = re.sub(r"\x1b\[[0-9;]*m", "", str(exc2)).splitlines()[0][:300]  # torch colours it
                raise NetcutError(f"neither ONNX exporter can export this network: {first}") from None
    proto = onnx.load(str(path))
    annotate_onnx(proto, _labels(module), {"netcut.input_shape": json.dumps(list(input_shape)), **(metadata or {})})
    onnx.save(proto, str(path))
    seconds = time.perf_counter() - start
    error = 0.0
    if verify:
        import onnxruntime as ort

        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        got = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
        error = relative_error(got, _reference(module, x))
        if not error < TOLERANCE:
            raise NetcutError(
                f"the ONNX export of {path.name} disagrees with torch (relative error {error:.2e}); "
                "please report this with the model name and cut"
            )
    return ExportResult(path, "onnx", tuple(input_shape), error, seconds)


@contextlib.contextmanager
def output_to_log(what: str, fds: tuple[int, ...] = (1,)) -> Iterator[None]:
    """Keep a converter's or quantizer's progress lines (hundreds, printed from Python and native code) out
    of the command's output, which may be JSON: what goes to `fds` (stdout; with 2, stderr's progress bars
    too) goes to the debug log instead."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(fd) for fd in fds]
    with tempfile.TemporaryFile(mode="w+b") as sink:
        for fd in fds:
            os.dup2(sink.fileno(), fd)  # Python's sys.stdout and sys.stderr write to fds 1 and 2 too
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            for fd, copy in zip(fds, saved):
                os.dup2(copy, fd)
                os.close(copy)
            sink.seek(0)
            lines = sink.read().decode(errors="replace").splitlines()
            log.debug("%s printed %d lines; the last: %s", what, len(lines), lines[-5:])


def export_tflite(module: nn.Module, path: Path, input_shape: tuple[int, ...], verify: bool = True) -> ExportResult:
    try:
        import litert_torch
    except ImportError:
        raise NetcutError("TFLite export needs litert-torch: pip install 'netcut[convert]' (about 1.1 GB)") from None
    module = module.eval()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    x = torch.randn(*input_shape)
    start = time.perf_counter()
    with output_to_log("litert-torch"):
        try:
            converted = litert_torch.convert(module, (x,))
        except Exception as exc:  # the converter raises many types
            raise NetcutError(f"litert-torch cannot convert this network: {str(exc).splitlines()[0][:300]}") from None
        converted.export(str(path))
    seconds = time.perf_counter() - start
    error = 0.0
    if verify:
        from ai_edge_litert.interpreter import Interpreter

        interpreter = Interpreter(model_path=str(path))
        interpreter.allocate_tensors()
        interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x.numpy())
        interpreter.invoke()
        got = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
        error = relative_error(got, _reference(module, x))
        if not error < TOLERANCE:
            raise NetcutError(f"the TFLite export of {path.name} disagrees with torch (relative error {error:.2e})")
    return ExportResult(path, "tflite", tuple(input_shape), error, seconds)


def export(
    module: nn.Module,
    path: Path,
    input_shape: tuple[int, ...],
    fmt: str = "onnx",
    metadata: dict[str, str] | None = None,
    verify: bool = True,
    precision: str = "fp32",
    calibration: list[np.ndarray] | None = None,
    check: list[np.ndarray] | None = None,
    verify_outputs: bool = True,
) -> ExportResult:
    """Export in a format and precision. int8: the float export (verified against torch) is quantized with
    `calibration` images and verified against itself on `check` (default: the calibration images);
    verify_outputs False checks only that it is really quantized (random weights, timed for latency)."""
    from . import quantize

    if fmt not in FORMATS:
        raise NetcutError(f"unknown format {fmt!r}; use one of: {', '.join(FORMATS)}")
    if precision not in quantize.PRECISIONS:
        raise NetcutError(f"unknown precision {precision!r}; use one of: {', '.join(quantize.PRECISIONS)}")

    def float_export(to: Path) -> ExportResult:
        if fmt == "onnx":
            return export_onnx(module, to, input_shape, metadata=metadata, verify=verify)
        return export_tflite(module, to, input_shape, verify=verify)

    if precision == quantize.FP32:
        return float_export(path)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if precision == quantize.FP16:
        return _export_fp16(float_export, path, input_shape, fmt, check, verify_outputs)
    if calibration is None:
        calibration = quantize.synthetic_images(input_shape)
    with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
        result = float_export(Path(tmp) / f"float{path.suffix}")
        report = quantize.quantize(result.path, path, calibration, check, path.stem, verify_outputs)
    if fmt == "onnx":  # the quantizer's nodes labelled with their blocks, as the float ones were
        import onnx

        proto = onnx.load(str(path))
        annotate_onnx(proto, _labels(module), {})
        onnx.save(proto, str(path))
    return dataclasses.replace(result, path=path, int8=report, seconds=result.seconds + report.seconds)


def _export_fp16(float_export, path: Path, input_shape, fmt: str, check, verify_outputs: bool) -> ExportResult:  # noqa: ANN001
    from . import half, quantize

    if fmt != "onnx":
        raise half.HalfError(
            "fp16 is exported as ONNX (for onnxruntime's CUDA or TensorRT providers); LiteRT's fp16 is its GPU "
            "delegate's business: use --format onnx, or fp32 or int8 for TFLite"
        )
    if not verify_outputs:
        check = []  # a table's model: random weights, only its latency counts
    elif check is None:
        check = quantize.synthetic_images(input_shape, 4)
    with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
        result = float_export(Path(tmp) / f"float{path.suffix}")
        report = half.to_float16(result.path, path, check, path.stem)
    return dataclasses.replace(result, path=path, fp16=report, seconds=result.seconds + report.seconds)
