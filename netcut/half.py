"""fp16 exports: the float ONNX with its weights and compute in half precision (onnxconverter-common's
converter, inputs and outputs kept float32 so a user feeds it as before), verified against the float model.

fp16 is the GPU's precision (CUDA, TensorRT on a Jetson). onnxruntime's CPU provider also runs such a model,
through casts to float where it has no half kernel, so a CPU target's fp16 time is measured, never assumed.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .errors import NetcutError
from .export import relative_error

# Weights of these operators must be fp16 after conversion.
COMPUTE_OPS = {"Conv", "Gemm", "MatMul", "ConvTranspose"}
MAX_RELATIVE_ERROR = 0.05  # half precision's 11-bit mantissa keeps logits within a few 1e-3; 5% is broken


class HalfError(NetcutError):
    """A model could not be converted to fp16, or its fp16 form failed verification."""


@dataclass
class Fp16Report:
    path: Path
    converted_initializers: int  # float32 initializers now fp16
    float32_weights_left: list[str]  # compute operators whose weights stayed float32: must be empty
    agreement: float | None = None  # top-1 agreement with the float model on the check images
    relative_error: float | None = None
    check_images: int = 0
    seconds: float = 0.0

    def summary(self) -> dict:
        return {k: v for k, v in asdict(self).items() if k not in ("path", "seconds")}


def to_float16(src: Path, dst: Path, check: list[np.ndarray], label: str) -> Fp16Report:
    """Convert the float ONNX at src to fp16 at dst and verify it on `check` inputs (batches as fed)."""
    import onnx
    import onnxruntime as ort
    from onnxconverter_common import float16

    started = time.perf_counter()
    model = onnx.load(str(src))
    floats = sum(1 for t in model.graph.initializer if t.data_type == onnx.TensorProto.FLOAT)
    try:
        half = float16.convert_float_to_float16(model, keep_io_types=True)
    except Exception as exc:  # the converter's own errors: an operator it cannot convert
        raise HalfError(f"{label}: the fp16 conversion failed: {str(exc).splitlines()[0][:300]}") from None
    weights = {t.name: t.data_type for t in half.graph.initializer}
    left = [
        n.name or n.op_type
        for n in half.graph.node
        if n.op_type in COMPUTE_OPS and len(n.input) > 1 and weights.get(n.input[1]) == onnx.TensorProto.FLOAT
    ]
    if left:
        raise HalfError(f"{label}: {len(left)} compute operators kept float32 weights in fp16 ({', '.join(left[:3])})")
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(half, str(dst))
    report = Fp16Report(dst, floats, left, check_images=sum(len(x) for x in check))
    if check:
        sessions = [ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]) for p in (src, dst)]
        name = sessions[0].get_inputs()[0].name
        ref = np.concatenate([sessions[0].run(None, {name: x})[0] for x in check])
        got = np.concatenate([sessions[1].run(None, {name: x})[0] for x in check])
        report.relative_error = relative_error(got, ref)
        if ref.ndim == 2 and ref.shape[1] > 1:
            report.agreement = float((ref.argmax(1) == got.argmax(1)).mean())
        if not report.relative_error <= MAX_RELATIVE_ERROR:
            raise HalfError(
                f"{label}: the fp16 model is off the float one by {report.relative_error:.1%} (relative error); "
                "a layer overflows half precision's range"
            )
    report.seconds = time.perf_counter() - started
    return report
