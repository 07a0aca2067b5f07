"""The host's records: one typed, frozen record per concept that crosses the wire (timing, a benchmark
result, an agent's Info). netcut_host.wire converts protobuf messages to these and back; nothing else
in the host reads message fields."""

from __future__ import annotations

from collections.abc import Iterable

import hashlib
import json
from dataclasses import asdict, dataclass, field, fields

# The agent's timing defaults as the protocol documents them (agent.proto, TimingConfig); a test checks
# that the agent agrees. The host uses them to split a measurement into rounds.
DEFAULT_TIMING = {"warmup_runs": 10, "warmup_seconds": 1.0, "min_runs": 50, "min_seconds": 2.0, "max_seconds": 60.0}


@dataclass(frozen=True)
class Timing:
    """How to time on the board; None leaves a field to the agent's default."""

    warmup_runs: int | None = None
    warmup_seconds: float | None = None
    min_runs: int | None = None
    min_seconds: float | None = None
    max_seconds: float | None = None
    runs_per_sample: int | None = None  # None: automatic for very short models

    def value(self, name: str) -> float:
        """This field, or the agent's default where unset."""
        own = getattr(self, name)
        return own if own is not None else DEFAULT_TIMING[name]

    def given(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}


@dataclass(frozen=True)
class Stats:
    n: int
    median_ms: float
    mean_ms: float
    p90_ms: float
    p95_ms: float
    p99_ms: float
    min_ms: float
    max_ms: float
    std_ms: float
    cv: float


@dataclass(frozen=True)
class Layer:
    node: str
    op_type: str
    block: str
    time_ms: float
    raw_ms: float
    kernel: str


@dataclass(frozen=True)
class Temperature:
    zone: str
    celsius: float


@dataclass(frozen=True)
class BoardDescription:
    cpu_model: str = ""
    cpu_cores: int = 0
    board_model: str = ""
    kernel: str = ""
    machine: str = ""
    python_version: str = ""
    hostname: str = ""
    os: str = ""
    memory_bytes: int = 0
    l2_cache_bytes: int = 0  # 0: unknown (an agent before 2026-12, or a board whose sysfs does not say)
    l3_cache_bytes: int = 0


@dataclass(frozen=True)
class GpuState:
    """A GPU's state as the agent read it (a Jetson's sysfs and nvpmodel, or NVML); see the proto."""

    kind: str = ""
    name: str = ""
    power_mode: str = ""
    power_mode_id: int = -1
    jetson_clocks: str = ""
    gpu_mhz: float = 0.0
    gpu_max_mhz: float = 0.0
    gpu_min_mhz: float = 0.0
    memory_mhz: float = 0.0
    celsius: float = 0.0
    power_watts: float = 0.0
    rails: tuple[tuple[str, float], ...] = ()
    throttle_reasons: tuple[str, ...] = ()
    release: str = ""
    unavailable_reason: str = ""


@dataclass(frozen=True)
class Provider:
    """One onnxruntime execution provider of a target, with its options (sorted name=value pairs)."""

    name: str
    options: tuple[tuple[str, str], ...] = ()

    def to_dict(self) -> dict:
        return {"name": self.name, "options": dict(self.options)}


@dataclass(frozen=True)
class BoardState:
    timestamp_unix: float = 0.0
    governor: str = ""
    cpu_mhz: float = 0.0
    cpu_max_mhz: float = 0.0
    temperatures: tuple[Temperature, ...] = ()
    max_celsius: float = 0.0
    throttled: bool = False
    throttle_flags: int = 0
    throttle_source: str = ""
    load_1m: float = 0.0
    memory_available_bytes: int = 0
    gpu: GpuState = GpuState()


@dataclass(frozen=True)
class RuntimeInfo:
    name: str
    available: bool
    version: str = ""
    execution_providers: tuple[str, ...] = ()
    unavailable_reason: str = ""
    layer_profile: bool = False
    package: str = ""


@dataclass(frozen=True)
class StoreInfo:
    models: int = 0
    bytes_used: int = 0
    bytes_cap: int = 0
    max_model_bytes: int = 0


@dataclass(frozen=True)
class AgentInfo:
    agent_version: str
    protocol_version: int
    runtimes: tuple[RuntimeInfo, ...]
    board: BoardDescription
    state: BoardState
    store: StoreInfo
    busy: bool
    queue_length: int

    def runtime(self, name: str) -> RuntimeInfo | None:
        return next((r for r in self.runtimes if r.name == name), None)

    def to_dict(self) -> dict:
        return asdict(self)


# The agent's warnings that put a measurement's figures in doubt (its words: agent/benchmark.py).
DOUBT = ("busy:", "noisy:", "the board throttled")
NOISE_MS = 0.05


def doubts(warnings: Iterable[str], median_ms: float, p99_ms: float) -> list[str]:
    """The agent's warnings that put a measurement in doubt, to measure it again before anyone signs it
    off: busy, throttled, or noisy by more than NOISE_MS between median and p99. (A 10-microsecond head is
    'noisy' by its coefficient of variation from timer jitter alone; a few microseconds change nothing.)"""
    return [
        w for w in warnings if w.startswith(DOUBT) and (not w.startswith("noisy:") or p99_ms - median_ms >= NOISE_MS)
    ]


@dataclass(frozen=True)
class Interference:
    """What else ran on the board during a measurement, as the agent measured it (see the proto)."""

    available: bool = False
    other_cpu_cores: float = 0.0
    steal_fraction: float = 0.0
    cpu_pressure_avg10: float = 0.0
    load_1m: float = 0.0
    busy: bool = False


@dataclass(frozen=True)
class AgentResult:
    """One benchmark as the agent reported it: statistics, samples, the timing it used, the board's state."""

    model_id: str
    agent_version: str
    runtime: str
    runtime_version: str
    execution_provider: str
    threads: int
    stats: Stats
    samples_ms: tuple[float, ...]
    session_create_ms: float
    first_run_ms: float
    throttled: bool
    clock_dropped: bool
    warnings: tuple[str, ...]
    timing: Timing  # the effective config, the agent's defaults filled in
    inputs: tuple[dict, ...]  # the effective input specs: name, shape, dtype
    board: BoardDescription
    state_start: BoardState
    state_end: BoardState
    layers: tuple[Layer, ...] = ()
    layer_profile_note: str = ""
    profiled: bool = field(default=False)  # per-layer times were asked for
    interference: Interference = Interference()
    session_providers: tuple[str, ...] = ()  # what the agent's session really had
    placement: tuple[tuple[str, int], ...] = ()  # (provider, kernels it ran)
    copy_in_ms: float = 0.0  # IOBinding: inputs onto the device, outside samples_ms
    copy_out_ms: float = 0.0  # and outputs back
    timed_call: str = ""
    time_limit_seconds: float = 0.0

    @property
    def busy(self) -> bool:
        return self.interference.busy

    @property
    def doubtful(self) -> bool:
        return bool(doubts(self.warnings, self.stats.median_ms, self.stats.p99_ms))

    def blocks(self) -> dict[str, float]:
        """Per-layer times summed per block (layers without a block are left out)."""
        out: dict[str, float] = {}
        for layer in self.layers:
            if layer.block:
                out[layer.block] = out.get(layer.block, 0.0) + layer.time_ms
        return out

    @property
    def inference_seconds(self) -> float:
        """Time spent inside the timed inference calls."""
        return sum(self.samples_ms) * (self.timing.runs_per_sample or 1) / 1000.0

    def to_dict(self, model: str) -> dict:
        """The flat JSON shape of `bench --json` (and the table's stored board state)."""
        out = {
            "model": model,
            "model_id": self.model_id,
            "agent_version": self.agent_version,
            "runtime": self.runtime,
            "runtime_version": self.runtime_version,
            "execution_provider": self.execution_provider,
            "threads": self.threads,
            **asdict(self.stats),
            "samples_ms": list(self.samples_ms),
            "session_create_ms": self.session_create_ms,
            "first_run_ms": self.first_run_ms,
            "throttled": self.throttled,
            "clock_dropped": self.clock_dropped,
            "warnings": list(self.warnings),
            "timing": self.timing.given(),
            "inputs": list(self.inputs),
            "board": asdict(self.board),
            "state_start": asdict(self.state_start),
            "state_end": asdict(self.state_end),
            "interference": asdict(self.interference),
            "session_providers": list(self.session_providers),
            "placement": dict(self.placement),
            "copy_in_ms": self.copy_in_ms,
            "copy_out_ms": self.copy_out_ms,
            "timed_call": self.timed_call,
            "time_limit_seconds": self.time_limit_seconds,
        }
        if self.profiled:
            out["layers"] = [asdict(layer) for layer in self.layers]
            out["layer_profile_note"] = self.layer_profile_note
        return out


@dataclass(frozen=True)
class TargetIdentity:
    """What a target's rows are keyed by: its name, what changes latency there (board, CPU, runtime and
    version, threads) and `key`, a hash of that description. Rows of one key are never mixed with others."""

    name: str
    description: dict
    key: str = ""

    def __post_init__(self):
        if not self.key:
            canonical = json.dumps(self.description, sort_keys=True)
            object.__setattr__(self, "key", hashlib.sha256(canonical.encode()).hexdigest()[:16])
