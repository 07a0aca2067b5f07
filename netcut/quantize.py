"""Post-training int8 quantization of exported networks, verified against the float export.

ONNX: onnxruntime's static quantization in QDQ format after its `quant_pre_process` (shape inference
and graph clean-up), per-channel int8 weights, uint8 activations (U8S8: the pairing onnxruntime's CPU
kernels fuse into QLinearConv on x86 and Arm; with int8 activations half of resnet18's convolutions stay
float and the "int8" model runs at the float time). TFLite: ai-edge-quantizer's static int8 recipe on
the float `.tflite`, whose input and output tensors become int8 (their scale and zero point are recorded).

Every quantized model is checked twice: structurally (onnxruntime, optimising it as the board will, leaves
no float Conv, Gemm or MatMul; LiteRT's convolutions and fully connected layers take int8 tensors) and
numerically (top-1 agreement and relative error against the float model on the same images).

Latency tables are measured on random weights. A freshly initialised network's BatchNorm layers all have
the same statistics, which a trained one never has: `realistic_statistics` gives them seeded varied ones
first, so that the model quantized for a table is the model a trained one quantizes to.
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Sequence

import numpy as np
import torch
from torch import nn

from .errors import NetcutError
from .export import NODES_KEY, output_to_log, relative_error
from .vocabulary import DEFAULT_CALIBRATION_IMAGES, FP16, FP32, INT8, PRECISIONS  # noqa: F401  (re-exported)

if TYPE_CHECKING:
    from ai_edge_litert.interpreter import Interpreter

log = logging.getLogger(__name__)

# Float operators that must not survive quantization (onnxruntime's fused float forms included).
FLOAT_COMPUTE_OPS = {"Conv", "FusedConv", "Gemm", "MatMul", "FusedGemm", "FusedMatMul", "NhwcFusedConv"}
TFLITE_COMPUTE_OPS = {"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "TRANSPOSE_CONV"}
# Verification: past these the quantized model is not the float model any more (its accuracy, measured, says the rest).
MIN_AGREEMENT = 0.5  # a weak TRN with near-tied logits agrees less; below this, quantization broke it
MAX_RELATIVE_ERROR = 0.5
QUANT_KEY = "netcut.quantization"


class QuantizationError(NetcutError):
    """A model could not be quantized, or its quantized form failed verification."""


@dataclass
class TensorQuant:
    """How a model's int8 input or output maps to real values: real = scale * (q - zero_point)."""

    name: str
    dtype: str
    scale: float | None = None
    zero_point: int | None = None


@dataclass
class Int8Report:
    """What quantization did to one model, and how close it stayed to the float one."""

    path: Path
    format: str
    quantized_ops: dict[str, int]  # op type -> count, after the runtime's optimisation (ONNX) or as stored
    float_ops_left: list[str]  # compute operators still in float: must be empty
    agreement: float | None = None  # top-1 agreement with the float model on the check images
    relative_error: float | None = None  # ||int8 - float|| / ||float|| over them
    check_images: int = 0
    calibration_images: int = 0
    inputs: list[TensorQuant] = field(default_factory=list)
    outputs: list[TensorQuant] = field(default_factory=list)
    seconds: float = 0.0

    def summary(self) -> dict:
        """For a user (model.json, export --json): the quantization and its check, not where it was made."""
        return {k: v for k, v in asdict(self).items() if k not in ("path", "format", "seconds")}


def realistic_statistics(model: nn.Module, seed: int = 0) -> nn.Module:
    """Seeded, varied BatchNorm statistics and affine parameters (in place): what training leaves behind."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.running_var is not None:
                n = m.num_features
                m.running_mean.copy_(0.1 * torch.randn(n, generator=g))
                m.running_var.copy_(0.5 + torch.rand(n, generator=g))
                if m.affine:
                    m.weight.copy_(0.5 + torch.rand(n, generator=g))
                    m.bias.copy_(0.1 * torch.randn(n, generator=g))
    return model


def calibration_images(
    dataset: torch.utils.data.Dataset, count: int = DEFAULT_CALIBRATION_IMAGES, seed: int = 0
) -> list[np.ndarray]:
    """A fixed seeded subset of `dataset` (all of it when smaller), each as a batch of one."""
    n = len(dataset)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()[: min(count, n)]
    return [dataset[i][0].unsqueeze(0).numpy().astype(np.float32) for i in sorted(order)]


def synthetic_images(shape: Sequence[int], count: int = 8, seed: int = 0) -> list[np.ndarray]:
    """Seeded normal images: calibration for models whose latency, not accuracy, is measured."""
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(tuple(shape)).astype(np.float32) for _ in range(count)]


def check_calibration(images: int, classes: int, what: str) -> None:
    if images < classes:
        raise QuantizationError(
            f"{what}: {images} calibration images for {classes} classes is too few to quantize from; "
            "give more training images or --calibration-images"
        )


# ---------------------------------------------------------------------------------------------- ONNX


class _Reader:
    """onnxruntime's CalibrationDataReader protocol over a list of images."""

    def __init__(self, name: str, images: Iterable[np.ndarray]):
        self.name, self.images = name, iter(images)

    def get_next(self):
        x = next(self.images, None)
        return None if x is None else {self.name: x}

    def rewind(self) -> None:  # part of the protocol; calibration reads the images once
        pass


def onnx_float_ops_left(path: Path) -> tuple[dict[str, int], list[str]]:
    """The op types of the graph as onnxruntime runs it here (optimised, before layout changes), and the
    float compute nodes left in it."""
    import onnx
    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as tmp:
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
        so.optimized_model_filepath = str(Path(tmp) / "optimized.onnx")
        ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        graph = onnx.load(so.optimized_model_filepath).graph
    ops = Counter(n.op_type for n in graph.node)
    left = [f"{n.op_type} {n.name}" for n in graph.node if n.op_type in FLOAT_COMPUTE_OPS]
    return dict(sorted(ops.items())), left


def _ort_outputs(path: Path, images: list[np.ndarray]) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return np.concatenate([session.run(None, {name: x})[0] for x in images])


def agreement_of(got: np.ndarray, want: np.ndarray) -> tuple[float | None, float]:
    """(top-1 agreement, relative error) of a quantized model's outputs against the float model's."""
    err = relative_error(got, want)
    if got.ndim != 2 or got.shape[1] < 2:
        return None, err
    return float(np.mean(got.argmax(1) == want.argmax(1))), err


def _check_quantized(report: Int8Report, what: str) -> None:
    if report.float_ops_left:
        raise QuantizationError(
            f"{what}: {len(report.float_ops_left)} compute operators stayed in float after quantization "
            f"({', '.join(report.float_ops_left[:3])}); the int8 model would run at float speed"
        )


def _check_agreement(report: Int8Report, got: np.ndarray, want: np.ndarray, what: str) -> None:
    report.agreement, report.relative_error = agreement_of(got, want)
    report.check_images = len(got)
    low = report.agreement is not None and report.agreement < MIN_AGREEMENT
    if low or report.relative_error > MAX_RELATIVE_ERROR:
        agree = "" if report.agreement is None else f"top-1 agreement {report.agreement:.0%}, "
        raise QuantizationError(
            f"{what}: the int8 model disagrees with the float one ({agree}relative error "
            f"{report.relative_error:.2f}); it is not quantizable this way"
        )


def _quantize_onnx(float_path: Path, out: Path, calibration: list[np.ndarray], what: str) -> Int8Report:
    """Quantize a float ONNX export to int8 (QDQ) and carry its block labels over."""

    import onnx
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    start = time.perf_counter()
    float_model = onnx.load(str(float_path))
    meta = {p.key: p.value for p in float_model.metadata_props}
    input_name = float_model.graph.input[0].name
    with tempfile.TemporaryDirectory() as tmp:
        pre = Path(tmp) / "pre.onnx"
        try:
            with output_to_log("the quantizer", (1, 2)):
                quant_pre_process(str(float_path), str(pre), skip_symbolic_shape=True)
                quantize_static(
                    str(pre),
                    str(out),
                    _Reader(input_name, calibration),
                    quant_format=QuantFormat.QDQ,
                    per_channel=True,
                    activation_type=QuantType.QUInt8,
                    weight_type=QuantType.QInt8,
                )
        except Exception as exc:  # onnxruntime's quantizer raises many types
            first = str(exc).splitlines()[0][:300]
            raise QuantizationError(f"{what}: onnxruntime cannot quantize it: {first}") from None
    model = onnx.load(str(out))
    meta.pop(NODES_KEY, None)  # the float graph's table; netcut.export labels the quantized graph
    meta[QUANT_KEY] = json.dumps(
        {
            "precision": INT8,
            "scheme": "onnxruntime static QDQ, per-channel int8 weights, uint8 activations",
            "calibration_images": len(calibration),
        }
    )
    del model.metadata_props[:]
    for key, value in meta.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(model, str(out))
    ops, left = onnx_float_ops_left(out)
    report = Int8Report(
        out,
        "onnx",
        {k: v for k, v in ops.items() if k.startswith(("QLinear", "QGemm", "MatMulInteger", "ConvInteger"))},
        left,
        calibration_images=len(calibration),
        inputs=[TensorQuant(input_name, "float32")],
        outputs=[TensorQuant(o.name, "float32") for o in model.graph.output],
    )
    report.seconds = time.perf_counter() - start
    return report


# ---------------------------------------------------------------------------------------------- TFLite


def _tensor_quant(detail: dict) -> TensorQuant:
    scale, zero = detail.get("quantization", (0.0, 0))
    dtype = np.dtype(detail["dtype"]).name
    if not scale:
        return TensorQuant(detail["name"], dtype)
    return TensorQuant(detail["name"], dtype, float(scale), int(zero))


def tflite_run(interpreter: Interpreter, x: np.ndarray) -> np.ndarray:
    """One inference of a (possibly int8) LiteRT model on a float input, output dequantized to float."""
    inp, outp = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    scale, zero = inp.get("quantization", (0.0, 0))
    if scale:
        info = np.iinfo(inp["dtype"])
        x = np.clip(np.round(x / scale) + zero, info.min, info.max)
    interpreter.set_tensor(inp["index"], x.astype(inp["dtype"]))
    interpreter.invoke()
    y = interpreter.get_tensor(outp["index"])
    scale, zero = outp.get("quantization", (0.0, 0))
    return (y.astype(np.float32) - zero) * scale if scale else y.astype(np.float32)


def _litert_outputs(path: Path, images: list[np.ndarray]) -> np.ndarray:
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path))
    interpreter.allocate_tensors()
    return np.concatenate([tflite_run(interpreter, x) for x in images])


def tflite_float_ops_left(path: Path) -> tuple[dict[str, int], list[str]]:
    """Op types of a LiteRT model, and its convolutions and fully connected layers that take float inputs."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path))
    interpreter.allocate_tensors()
    dtypes = {t["index"]: np.dtype(t["dtype"]) for t in interpreter.get_tensor_details()}
    ops, left = Counter(), []
    for op in interpreter._get_ops_details():  # the one API that lists a model's operators
        ops[op["op_name"]] += 1
        if op["op_name"] in TFLITE_COMPUTE_OPS:
            first = op["inputs"][0] if len(op["inputs"]) else -1
            if dtypes.get(first) == np.float32:
                left.append(f"{op['op_name']} #{op['index']}")
    return dict(sorted(ops.items())), left


def _quantize_tflite(float_path: Path, out: Path, calibration: list[np.ndarray], what: str) -> Int8Report:
    """Quantize a float .tflite with ai-edge-quantizer's static int8 recipe (int8 weights and activations,
    int8 input and output tensors)."""

    try:
        from ai_edge_litert.interpreter import Interpreter
        from ai_edge_quantizer import quantizer, recipe
    except ImportError:
        raise QuantizationError("TFLite int8 needs ai-edge-quantizer: pip install 'netcut[convert]'") from None
    start = time.perf_counter()
    signatures = Interpreter(model_path=str(float_path)).get_signature_list()
    signature = next(iter(signatures))
    input_name = signatures[signature]["inputs"][0]
    try:
        with output_to_log("the quantizer", (1, 2)):
            q = quantizer.Quantizer(str(float_path), recipe.static_wi8_ai8())
            result = q.calibrate({signature: [{input_name: x} for x in calibration]}, num_threads=1)
            q.quantize(result, enable_progress_report=False).export_model(str(out), overwrite=True)
    except Exception as exc:  # the quantizer raises many types
        first = str(exc).splitlines()[0][:300]
        raise QuantizationError(f"{what}: ai-edge-quantizer cannot quantize it: {first}") from None
    interpreter = Interpreter(model_path=str(out))
    ops, left = tflite_float_ops_left(out)
    report = Int8Report(
        out,
        "tflite",
        {k: v for k, v in ops.items() if k in TFLITE_COMPUTE_OPS},
        left,
        calibration_images=len(calibration),
        inputs=[_tensor_quant(d) for d in interpreter.get_input_details()],
        outputs=[_tensor_quant(d) for d in interpreter.get_output_details()],
    )
    report.seconds = time.perf_counter() - start
    return report


def quantize(
    float_path: Path,
    out: Path,
    calibration: list[np.ndarray],
    check: list[np.ndarray] | None = None,
    what: str | None = None,
    verify_outputs: bool = True,
) -> Int8Report:
    """Quantize a float export (ONNX or TFLite, by its suffix) to int8 with `calibration`, and verify it: no
    compute operator left in float, and (verify_outputs) its outputs close to the float model's on `check`
    (default: the calibration images). verify_outputs False: a random-weight model timed for its latency."""
    what = what or Path(float_path).stem
    if not calibration:
        raise QuantizationError(f"{what}: no calibration images")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tflite = Path(float_path).suffix == ".tflite"
    report = (_quantize_tflite if tflite else _quantize_onnx)(Path(float_path), out, calibration, what)
    _check_quantized(report, what)
    if verify_outputs:
        outputs = _litert_outputs if tflite else _ort_outputs
        images = check if check is not None else calibration
        _check_agreement(report, outputs(out, images), outputs(Path(float_path), images), what)
    return report


def runtime_accuracy(path: Path, dataset: torch.utils.data.Dataset) -> float:
    """Top-1 accuracy of an exported classifier in the runtime it deploys to (onnxruntime or LiteRT), image
    by image, with a LiteRT int8 model's input quantized and output dequantized as a user would."""
    path = Path(path)
    if path.suffix == ".tflite":
        from ai_edge_litert.interpreter import Interpreter

        interpreter = Interpreter(model_path=str(path))
        interpreter.allocate_tensors()
        run = lambda x: tflite_run(interpreter, x)  # noqa: E731
    else:
        import onnxruntime as ort

        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        run = lambda x: session.run(None, {name: x})[0]  # noqa: E731
    correct = 0
    for i in range(len(dataset)):
        x, y = dataset[i]
        correct += int(run(x.unsqueeze(0).numpy()).argmax(1)[0] == int(y))
    return correct / max(len(dataset), 1)
