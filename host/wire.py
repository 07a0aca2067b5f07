"""Protobuf messages of the agent protocol to the host's records and back: the one module of the host
that knows the messages' field names (netcut_host.client only carries them)."""

from __future__ import annotations

from dataclasses import fields
from typing import Callable, TypeVar

from google.protobuf.message import Message

from netcut_protos.agent.v1 import agent_pb2 as pb

from .client import AgentClient
from .records import (
    AgentInfo,
    AgentResult,
    GpuState,
    Interference,
    Provider,
    BoardDescription,
    BoardState,
    Layer,
    RuntimeInfo,
    Stats,
    StoreInfo,
    Temperature,
    Timing,
)

_DTYPES = {v: k for k, v in pb.DType.items()}
T = TypeVar("T")


def timing_to_pb(timing: Timing) -> pb.TimingConfig:
    return pb.TimingConfig(**timing.given())


def timing_from_pb(msg: pb.TimingConfig) -> Timing:
    return Timing(**{f.name: getattr(msg, f.name) for f in fields(Timing) if msg.HasField(f.name)})


def _plain(record_type: type[T], msg: Message) -> T:
    return record_type(**{f.name: getattr(msg, f.name) for f in fields(record_type)})


def board_from_pb(msg: pb.BoardDescription) -> BoardDescription:
    return _plain(BoardDescription, msg)


def gpu_from_pb(msg: pb.GpuState) -> GpuState:
    values = {f.name: getattr(msg, f.name) for f in fields(GpuState) if f.name not in ("rails", "throttle_reasons")}
    if not msg.kind and not msg.unavailable_reason and not msg.power_mode_id:
        values["power_mode_id"] = -1  # an agent of protocol 1 sends no GPU state
    return GpuState(
        rails=tuple((r.name, r.watts) for r in msg.rails), throttle_reasons=tuple(msg.throttle_reasons), **values
    )


def state_from_pb(msg: pb.BoardState) -> BoardState:
    values = {f.name: getattr(msg, f.name) for f in fields(BoardState) if f.name not in ("temperatures", "gpu")}
    return BoardState(
        temperatures=tuple(Temperature(t.zone, t.celsius) for t in msg.temperatures),
        gpu=gpu_from_pb(msg.gpu),
        **values,
    )


def info_from_pb(msg: pb.InfoResponse) -> AgentInfo:
    runtimes = tuple(
        RuntimeInfo(
            r.name,
            r.available,
            r.version,
            tuple(r.execution_providers),
            r.unavailable_reason,
            r.layer_profile,
            r.package,
        )
        for r in msg.runtimes
    )
    return AgentInfo(
        msg.agent_version,
        msg.protocol_version,
        runtimes,
        board_from_pb(msg.board),
        state_from_pb(msg.state),
        _plain(StoreInfo, msg.store),
        msg.busy,
        msg.queue_length,
    )


def result_from_pb(msg: pb.BenchmarkResult) -> AgentResult:
    inputs = tuple(
        {"name": i.name, "shape": list(i.shape), "dtype": _DTYPES.get(i.dtype, str(i.dtype))} for i in msg.inputs
    )
    layers = tuple(Layer(x.node, x.op_type, x.block, x.time_ms, x.raw_ms, x.kernel) for x in msg.layers)
    return AgentResult(
        msg.model_id,
        msg.agent_version,
        msg.runtime,
        msg.runtime_version,
        msg.execution_provider,
        msg.threads,
        _plain(Stats, msg.stats),
        tuple(msg.samples_ms),
        msg.session_create_ms,
        msg.first_run_ms,
        msg.throttled,
        msg.clock_dropped,
        tuple(msg.warnings),
        timing_from_pb(msg.timing),
        inputs,
        board_from_pb(msg.board),
        state_from_pb(msg.state_start),
        state_from_pb(msg.state_end),
        layers,
        msg.layer_profile_note,
        profiled=bool(msg.layers or msg.layer_profile_note),
        interference=_plain(Interference, msg.interference),
        session_providers=tuple(msg.session_providers),
        placement=tuple((p.provider, p.kernels) for p in msg.placement),
        copy_in_ms=msg.copy_in_ms,
        copy_out_ms=msg.copy_out_ms,
        timed_call=msg.timed_call,
        time_limit_seconds=msg.time_limit_seconds,
    )


def describe_event(event: pb.BenchmarkEvent) -> str:
    """A progress event of a benchmark, for people."""
    kind = event.WhichOneof("event")
    if kind == "queued":
        return f"queued: position {event.queued.position}"
    if kind == "cooling_down":
        return (
            f"cooling down: {event.cooling_down.celsius:.1f} C, waiting for {event.cooling_down.target_celsius:.0f} C"
        )
    if kind == "warming_up":
        return f"warming up: {event.warming_up.runs} runs"
    if kind == "measuring":
        return f"measuring: {event.measuring.runs} runs, {event.measuring.elapsed_seconds:.1f} s"
    return "profiling per layer"


def info(client: AgentClient) -> AgentInfo:
    return info_from_pb(client.info())


def benchmark(
    client: AgentClient,
    model_id: str,
    runtime: str,
    threads: int,
    timing: Timing,
    profile_layers: bool = False,
    shape: list[int] | None = None,
    on_progress: Callable[[str], None] | None = None,
    providers: tuple[Provider, ...] = (),
) -> AgentResult:
    """Benchmark a model the agent holds; on_progress gets each progress event as text. `providers`: the
    target's onnxruntime execution providers in order (empty: the agent's CPU)."""
    request = pb.BenchmarkRequest(
        model_id=model_id, runtime=runtime, threads=threads, timing=timing_to_pb(timing), profile_layers=profile_layers
    )
    for p in providers:
        request.execution_providers.add(name=p.name, options=dict(p.options))
    if shape:
        request.inputs.add(shape=shape)
    result = client.benchmark(request, on_event=(lambda e: on_progress(describe_event(e))) if on_progress else None)
    return result_from_pb(result)
