"""What a benchmark request is, what it produces, and the checks a request passes before it is queued.
Light (no numpy, no runtime): the server process imports it; the worker runs the benchmark."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from . import providers, runtimes
from .errors import InvalidArgument
from .measure import TimingConfig
from .providers import ProviderRequest

if TYPE_CHECKING:
    from . import board
    from .layer_profile import LayerTime
    from .measure import Statistics

DTYPES = ("float32", "float16", "int8", "uint8", "int32", "int64")
MAX_THREADS_PER_CORE = 4  # more threads than this per core is refused: nothing on a board wants that
MAX_INPUT_BYTES = 256 * 2**20


@dataclass
class InputRequest:
    name: str = ""
    shape: list[int] = field(default_factory=list)
    dtype: str = ""  # "" = the model's declared type


@dataclass
class BenchmarkRequest:
    model_id: str
    runtime: str = runtimes.ONNXRUNTIME
    threads: int = 0
    inputs: list[InputRequest] = field(default_factory=list)
    timing: TimingConfig = field(default_factory=TimingConfig)
    profile_layers: bool = False
    seed: int = 0
    execution_provider: str = ""
    time_limit_seconds: float = 0.0
    cooldown_celsius: float = 0.0
    execution_providers: list[ProviderRequest] = field(default_factory=list)


@dataclass
class ProviderPlacement:
    provider: str
    kernels: int


# Progress events, in the order a client sees them.
@dataclass
class Queued:
    position: int


@dataclass
class CoolingDown:
    celsius: float
    target_celsius: float


@dataclass
class WarmingUp:
    runs: int


@dataclass
class Measuring:
    runs: int
    elapsed_seconds: float


@dataclass
class Profiling:
    pass


@dataclass
class BenchmarkResult:
    model_id: str
    runtime: str
    runtime_version: str
    execution_provider: str
    threads: int
    timing: TimingConfig
    inputs: list[InputRequest]
    stats: Statistics
    samples_ms: list[float]
    session_create_ms: float
    first_run_ms: float
    layers: list[LayerTime]
    layer_profile_available: bool
    layer_profile_note: str
    board: board.BoardDescription
    state_start: board.BoardState
    state_end: board.BoardState
    throttled: bool
    clock_dropped: bool
    warnings: list[str]
    started_unix: float
    finished_unix: float
    agent_version: str
    max_celsius: float
    runs_per_sample: int = 1
    interference: board.Interference | None = None
    session_providers: list[str] = field(default_factory=list)
    placement: list[ProviderPlacement] = field(default_factory=list)
    copy_in_ms: float = 0.0
    copy_out_ms: float = 0.0
    timed_call: str = ""
    time_limit_seconds: float = 0.0


def check_request(
    req: BenchmarkRequest, model_format: str, infos: list[runtimes.RuntimeInfo] | None = None
) -> tuple[runtimes.RuntimeInfo, list[str]]:
    """Everything that can be refused before queueing, so bad requests fail fast; returns the runtime and the
    warnings the request deserves, and leaves onnxruntime's resolved provider list in the request. `infos`: the
    runtimes the benchmark worker found (default: found here)."""
    info = runtimes.runtime_info(req.runtime, infos)
    wanted = runtimes.FORMAT_OF_RUNTIME[req.runtime]
    if model_format != wanted:
        other = next(r for r, f in runtimes.FORMAT_OF_RUNTIME.items() if f == model_format)
        raise InvalidArgument(f"the model is {model_format}, which {req.runtime} does not run; use runtime {other!r}")
    cores = os.cpu_count() or 1
    warnings = []
    if req.threads > MAX_THREADS_PER_CORE * cores:
        raise InvalidArgument(
            f"threads={req.threads} is far above this board's {cores} cores (at most "
            f"{MAX_THREADS_PER_CORE * cores}); use 0 for the runtime's default or the core count"
        )
    if req.threads > cores:
        warnings.append(
            f"threads={req.threads} is more than this board's {cores} cores: the threads compete for "
            "them, and the times show it"
        )
    for spec in req.inputs:
        if spec.dtype and spec.dtype not in DTYPES:
            raise InvalidArgument(f"unknown dtype {spec.dtype!r}; use one of: {', '.join(DTYPES)}")
        if any(d <= 0 or d > 1 << 20 for d in spec.shape):
            raise InvalidArgument(f"input shape {spec.shape} must have positive dimensions of sane size")
    if (
        not (math.isfinite(req.time_limit_seconds) and math.isfinite(req.cooldown_celsius))
        or req.time_limit_seconds < 0
        or req.cooldown_celsius < 0
        or req.cooldown_celsius > 120
    ):
        raise InvalidArgument(
            "time_limit_seconds and cooldown_celsius must be finite and non-negative (cool-down at most 120 C)"
        )
    if req.runtime == runtimes.ONNXRUNTIME:  # from here on the request holds onnxruntime's names, in order
        asked = providers.requested(req.execution_providers, req.execution_provider)
        req.execution_providers = providers.resolve(asked, info.execution_providers)
    elif req.execution_providers or req.execution_provider.upper() not in ("", "CPU"):
        raise InvalidArgument(f"{req.runtime} runs on the CPU here; leave the execution providers out")
    req.timing.validate()
    return info, warnings
