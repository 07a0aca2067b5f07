"""Sessions that run a model: prepare the inputs once, run (the only thing timed), and read the per-layer
profile where the runtime has one. Used in the benchmark worker process only (it loads numpy and the runtimes).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import FailedPrecondition, InvalidArgument, ResourceExhausted
from .runtimes import LITERT, ONNXRUNTIME, _litert_module, runtime_info

log = logging.getLogger(__name__)

_NUMPY_OF_ORT = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(double)": np.float64,
    "tensor(int8)": np.int8,
    "tensor(uint8)": np.uint8,
    "tensor(int32)": np.int32,
    "tensor(int64)": np.int64,
    "tensor(bool)": np.bool_,
}


@dataclass
class TensorSpec:
    name: str
    shape: list  # ints, or None/str for dynamic dimensions
    dtype: np.dtype


def random_input(spec: TensorSpec, shape: list[int], rng: np.random.Generator) -> np.ndarray:
    if np.issubdtype(spec.dtype, np.floating):
        return rng.standard_normal(shape).astype(spec.dtype)
    if spec.dtype == np.bool_:
        return rng.integers(0, 2, shape).astype(np.bool_)
    info = np.iinfo(spec.dtype)
    return rng.integers(max(info.min, -128), min(info.max, 127) + 1, shape).astype(spec.dtype)


def resolve_shape(spec: TensorSpec, requested: list[int] | None) -> list[int]:
    """The concrete shape to feed: the request's where given, checked against the model's."""
    declared = list(spec.shape)
    if requested:
        if len(requested) != len(declared):
            raise InvalidArgument(
                f"input {spec.name!r} has {len(declared)} dimensions {declared}, "
                f"the request gave {len(requested)}: {requested}"
            )
        for i, (want, have) in enumerate(zip(requested, declared)):
            if want <= 0:
                raise InvalidArgument(f"input {spec.name!r}: dimension {i} must be positive, got {want}")
            if isinstance(have, int) and have > 0 and have != want:
                raise InvalidArgument(f"input {spec.name!r} is fixed at {declared}; the request asked for {requested}")
        return list(requested)
    shape = []
    for i, dim in enumerate(declared):
        if isinstance(dim, int) and dim > 0:
            shape.append(dim)
        elif i == 0:
            shape.append(1)  # a dynamic batch: time batch 1 unless told otherwise
        else:
            raise InvalidArgument(
                f"input {spec.name!r} has a dynamic dimension {i} ({dim!r}) in {declared}; "
                "give its shape in the request (InputSpec.shape, or --shape on the command line)"
            )
    return shape


class Session:
    runtime: str
    provider: str = ""
    inputs: list[TensorSpec]

    def prepare(self, feeds: dict[str, np.ndarray]) -> None:
        raise NotImplementedError

    def run(self) -> None:
        raise NotImplementedError


class OrtSession(Session):
    runtime = ONNXRUNTIME

    def __init__(self, path: Path, threads: int, provider: str = "", profile_dir: Path | None = None):
        import onnxruntime as ort

        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        if profile_dir is not None:
            options.enable_profiling = True
            options.profile_file_prefix = str(profile_dir / "ort_profile")
        providers = ort.get_available_providers()
        self.provider = provider or "CPUExecutionProvider"
        if self.provider not in providers:
            raise FailedPrecondition(
                f"execution provider {self.provider!r} is not available here; available: {', '.join(providers)}"
            )
        try:
            self.session = ort.InferenceSession(str(path), options, providers=[self.provider])
        except Exception as exc:  # onnxruntime raises its own exception types for bad models
            first = str(exc).splitlines()[0][:400] if str(exc) else type(exc).__name__
            if "alloc" in first.lower():
                raise ResourceExhausted(f"onnxruntime ran out of memory loading this model: {first}") from None
            raise InvalidArgument(f"onnxruntime cannot load this model: {first}") from None
        self.inputs = [
            TensorSpec(i.name, list(i.shape), np.dtype(_NUMPY_OF_ORT.get(i.type, np.float32)))
            for i in self.session.get_inputs()
        ]
        self.metadata = dict(self.session.get_modelmeta().custom_metadata_map)
        self._feeds: dict[str, np.ndarray] = {}

    def prepare(self, feeds):
        self._feeds = feeds
        self._run = self.session.run
        self._outputs = [o.name for o in self.session.get_outputs()]

    def run(self):
        self._run(self._outputs, self._feeds)

    def end_profiling(self) -> str:
        return self.session.end_profiling()


class LiteRtSession(Session):
    runtime = LITERT

    def __init__(self, path: Path, threads: int):
        module, _ = _litert_module()
        if module is None:
            raise FailedPrecondition("LiteRT is not installed on this board: pip install 'netcut[tflite]'")
        try:
            self.interpreter = module.Interpreter(model_path=str(path), num_threads=threads or None)
        except Exception as exc:
            raise InvalidArgument(f"LiteRT cannot load this model: {str(exc).splitlines()[0][:400]}") from None
        self.provider = "CPU"
        self.metadata = {}
        details = self.interpreter.get_input_details()
        self.inputs = [
            TensorSpec(d["name"], [int(s) if s > 0 else None for s in d["shape_signature"]], np.dtype(d["dtype"]))
            for d in details
        ]
        self._index = {d["name"]: d["index"] for d in details}

    def prepare(self, feeds):
        for name, array in feeds.items():
            self.interpreter.resize_tensor_input(self._index[name], list(array.shape))
        self.interpreter.allocate_tensors()
        for name, array in feeds.items():
            self.interpreter.set_tensor(self._index[name], array)
        self._invoke = self.interpreter.invoke

    def run(self):
        self._invoke()


def open_session(
    runtime: str, path: Path, threads: int, provider: str = "", profile_dir: Path | None = None
) -> Session:
    runtime_info(runtime)
    if runtime == ONNXRUNTIME:
        return OrtSession(path, threads, provider, profile_dir)
    if provider and provider.upper() != "CPU":
        raise InvalidArgument("LiteRT runs on the CPU here; leave the execution provider empty")
    return LiteRtSession(path, threads)
