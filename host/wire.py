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
    Interference,
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


def state_from_pb(msg: pb.BoardState) -> BoardState:
    values = {f.name: getattr(msg, f.name) for f in fields(BoardState) if f.name != "temperatures"}
    return BoardState(temperatures=tuple(Temperature(t.zone, t.celsius) for t in msg.temperatures), **values)


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
) -> AgentResult:
    """Benchmark a model the agent holds; on_progress gets each progress event as text."""
    request = pb.BenchmarkRequest(
        model_id=model_id, runtime=runtime, threads=threads, timing=timing_to_pb(timing), profile_layers=profile_layers
    )
    if shape:
        request.inputs.add(shape=shape)
    result = client.benchmark(request, on_event=(lambda e: on_progress(describe_event(e))) if on_progress else None)
    return result_from_pb(result)
