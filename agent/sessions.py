"""Sessions that run a model: prepare the inputs once, run (the only thing timed), and read the per-layer
profile where the runtime has one. Used in the benchmark worker process only (it loads numpy and the runtimes).
"""

from __future__ import annotations

import functools
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from netcut_protos.providers import short

from .errors import FailedPrecondition, InvalidArgument, ResourceExhausted
from .providers import ProviderRequest, device_of, fallback_disabled
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
    timed_call: str = ""
    session_providers: list[str] = []
    inputs: list[TensorSpec]

    def prepare(self, feeds: dict[str, np.ndarray]) -> None:
        raise NotImplementedError

    def run(self) -> None:
        raise NotImplementedError


class OrtSession(Session):
    """An onnxruntime session on an ordered list of execution providers, fall-back off, timed through
    IOBinding: inputs and outputs bound once on the providers' device, so the timed call is compute alone
    (onnxruntime still synchronises the device at the end of each run). The profiler is on from creation
    until end_profiling: the first run tells which provider ran which kernel, the profiled pass (where
    asked for) gives per-node times, and the timed runs come after it ends."""

    runtime = ONNXRUNTIME
    timed_call = "run_with_iobinding"

    def __init__(self, path: Path, threads: int, providers: list[ProviderRequest], profile_dir: Path):
        import onnxruntime as ort

        self._ort = ort
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        options.enable_profiling = True
        options.profile_file_prefix = str(profile_dir / "ort_profile")
        if fallback_disabled(providers):
            options.add_session_config_entry("session.disable_cpu_ep_fallback", "1")
        self.provider = providers[0].name
        self.device = device_of(providers)
        try:
            self.session = ort.InferenceSession(str(path), options, providers=[(p.name, p.options) for p in providers])
        except Exception as exc:  # onnxruntime raises its own exception types for bad models
            first = str(exc).splitlines()[0][:400] if str(exc) else type(exc).__name__
            if "fallback" in first.lower() and "cpu" in first.lower():
                raise FailedPrecondition(
                    f"{', '.join(short(p.name) for p in providers)} cannot run every node of this model and the "
                    f"CPU is not in the provider list ({first}); add cpu to the list to time it as it would run"
                ) from None
            if "alloc" in first.lower():
                raise ResourceExhausted(f"onnxruntime ran out of memory loading this model: {first}") from None
            raise InvalidArgument(f"onnxruntime cannot load this model: {first}") from None
        self.session.disable_fallback()  # no silent re-creation on the CPU after a provider failure in run()
        self.session_providers = list(self.session.get_providers())
        self.inputs = [
            TensorSpec(i.name, list(i.shape), np.dtype(_NUMPY_OF_ORT.get(i.type, np.float32)))
            for i in self.session.get_inputs()
        ]
        self.metadata = dict(self.session.get_modelmeta().custom_metadata_map)
        self._feeds: dict[str, np.ndarray] = {}

    def prepare(self, feeds):
        ort, (device, device_id) = self._ort, self.device
        self._feeds = {name: array.copy() for name, array in feeds.items()}  # on the CPU the bound value is `array`
        self._io = self.session.io_binding()
        self._input_values = {}
        for name, array in feeds.items():
            value = ort.OrtValue.ortvalue_from_numpy(array, device, device_id)
            self._io.bind_ortvalue_input(name, value)
            self._input_values[name] = value
        self._output_names = [o.name for o in self.session.get_outputs()]
        for name in self._output_names:
            self._io.bind_output(name, device, device_id)
        self.run = functools.partial(self.session.run_with_iobinding, self._io)

    def keep_outputs(self) -> None:
        """After a first run: bind the outputs it allocated, so later runs write into them instead of
        allocating new ones (what a deployed pipeline does)."""
        self._output_values = self._io.get_outputs()
        for name, value in zip(self._output_names, self._output_values):
            self._io.bind_ortvalue_output(name, value)

    def copy_times(self, repeats: int = 15) -> tuple[float, float]:
        """Median ms to copy all inputs onto the device and all outputs back to the host."""
        copy_in, copy_out = [], []
        perf = time.perf_counter
        for _ in range(repeats):
            t0 = perf()
            for name, value in self._input_values.items():
                value.update_inplace(self._feeds[name])
            t1 = perf()
            for value in self._output_values:
                value.numpy()
            t2 = perf()
            copy_in.append((t1 - t0) * 1000.0)
            copy_out.append((t2 - t1) * 1000.0)
        return float(np.median(copy_in)), float(np.median(copy_out))

    def end_profiling(self) -> list[dict]:
        """Stop the profiler (the timed runs pay nothing for it) and return its events."""
        path = Path(self.session.end_profiling())
        try:
            return json.loads(path.read_text())
        finally:
            path.unlink(missing_ok=True)


class LiteRtSession(Session):
    runtime = LITERT
    timed_call = "invoke"

    def __init__(self, path: Path, threads: int):
        module, _ = _litert_module()
        if module is None:
            raise FailedPrecondition("LiteRT is not installed on this board: pip install 'netcut[tflite]'")
        try:
            self.interpreter = module.Interpreter(model_path=str(path), num_threads=threads or None)
        except Exception as exc:
            raise InvalidArgument(f"LiteRT cannot load this model: {str(exc).splitlines()[0][:400]}") from None
        self.provider = "CPU"
        self.session_providers = ["CPU"]
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
    runtime: str, path: Path, threads: int, providers: list[ProviderRequest], profile_dir: Path
) -> Session:
    """A session on `providers` (checked already by requests.check_request, names resolved)."""
    runtime_info(runtime)
    if runtime == ONNXRUNTIME:
        return OrtSession(path, threads, providers, profile_dir)
    return LiteRtSession(path, threads)
