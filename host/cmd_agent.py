"""Commands that talk to one agent: info, bench."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from google.protobuf import json_format

from netcut_protos.agent.v1 import agent_pb2 as pb

from .client import AgentClient, Credentials
from .progress import Progress


def add_connection_args(p: argparse.ArgumentParser, required: bool = True) -> None:
    p.add_argument("--agent", required=required, metavar="HOST:PORT", help="the agent's address")
    p.add_argument("--token-file", type=Path, help="the agent's token (if it was started with one)")
    p.add_argument("--ca-cert", type=Path, help="trust this CA and connect with TLS")
    p.add_argument("--client-cert", type=Path, help="client certificate for mutual TLS")
    p.add_argument("--client-key", type=Path, help="client key for mutual TLS")
    p.add_argument("--connect-timeout", type=float, default=3.0, help="seconds to wait for the agent (default: 3)")


def credentials_from_args(args) -> Credentials:
    def read(path: Path | None) -> bytes | None:
        if path is None:
            return None
        try:
            return path.read_bytes()
        except OSError as exc:
            raise ValueError(f"cannot read {path}: {exc.strerror}") from None

    token = read(args.token_file)
    return Credentials(token.decode().strip() if token else None, read(args.ca_cert), read(args.client_cert),
                       read(args.client_key))


def client_from_args(args, address: str | None = None) -> AgentClient:
    return AgentClient(address or args.agent, credentials_from_args(args), args.connect_timeout)


def message_dict(msg) -> dict:
    return json_format.MessageToDict(msg, preserving_proto_field_name=True,
                                     always_print_fields_with_no_presence=True)


def info_dict(info: pb.InfoResponse) -> dict:
    return message_dict(info)


def print_info(info: pb.InfoResponse, address: str) -> None:
    b, s = info.board, info.state
    rows = [
        ("agent", f"{address}  (netcut-agent {info.agent_version}, protocol v{info.protocol_version})"),
        ("board", b.board_model or "(no device-tree model)"),
        ("cpu", f"{b.cpu_model}, {b.cpu_cores} cores, {b.machine}"),
        ("system", f"{b.os}, kernel {b.kernel}, Python {b.python_version}"),
        ("memory", f"{b.memory_bytes / 2**30:.1f} GiB, {s.memory_available_bytes / 2**30:.1f} GiB available"),
        ("clock", f"{s.cpu_mhz:.0f} MHz (max {s.cpu_max_mhz:.0f}), governor {s.governor}" if s.cpu_mhz
         else "not readable (no cpufreq)"),
        ("temperature", f"{s.max_celsius:.1f} C" if s.temperatures else "not readable (no thermal zones)"),
        ("throttled", ("YES" if s.throttled else "no") + (f" (flags 0x{s.throttle_flags:x}, {s.throttle_source})"
                                                          if s.throttle_source else " (not observable)")),
        ("store", f"{info.store.models} models, {info.store.bytes_used / 1e6:.1f} of {info.store.bytes_cap / 1e6:.0f} MB"),
        ("busy", f"{'yes' if info.busy else 'no'}, {info.queue_length} waiting"),
    ]
    for rt in info.runtimes:
        detail = (f"{rt.version} [{', '.join(rt.execution_providers)}]" + (", per-layer profile" if rt.layer_profile else "")
                  if rt.available else f"not available: {rt.unavailable_reason}")
        rows.append((f"runtime {rt.name}", detail))
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")


def cmd_info(args) -> int:
    if args.agent:
        with client_from_args(args) as client:
            info = client.info()
        address = args.agent
    else:  # no agent given: start a local one for the duration of the command
        from .local_agent import local_agent

        with local_agent() as address, AgentClient(address) as client:
            info = client.info()
    if args.json:
        print(json.dumps(info_dict(info), indent=1))
    else:
        print_info(info, address)
    return 0


def _describe(event: pb.BenchmarkEvent) -> str:
    kind = event.WhichOneof("event")
    if kind == "queued":
        return f"queued: position {event.queued.position}"
    if kind == "cooling_down":
        return f"cooling down: {event.cooling_down.celsius:.1f} C, waiting for {event.cooling_down.target_celsius:.0f} C"
    if kind == "warming_up":
        return f"warming up: {event.warming_up.runs} runs"
    if kind == "measuring":
        return f"measuring: {event.measuring.runs} runs, {event.measuring.elapsed_seconds:.1f} s"
    return "profiling per layer"


def result_dict(result: pb.BenchmarkResult, model: str) -> dict:
    s = result.stats
    out = {"model": model, "model_id": result.model_id, "agent_version": result.agent_version, "runtime": result.runtime,
           "runtime_version": result.runtime_version, "execution_provider": result.execution_provider,
           "threads": result.threads, "n": s.n, "median_ms": s.median_ms, "mean_ms": s.mean_ms,
           "p90_ms": s.p90_ms, "p95_ms": s.p95_ms, "p99_ms": s.p99_ms, "min_ms": s.min_ms, "max_ms": s.max_ms,
           "std_ms": s.std_ms, "cv": s.cv, "samples_ms": list(result.samples_ms),
           "session_create_ms": result.session_create_ms, "first_run_ms": result.first_run_ms,
           "throttled": result.throttled, "clock_dropped": result.clock_dropped, "warnings": list(result.warnings),
           "timing": message_dict(result.timing), "inputs": [message_dict(i) for i in result.inputs],
           "board": message_dict(result.board), "state_start": message_dict(result.state_start),
           "state_end": message_dict(result.state_end)}
    if result.layers or result.layer_profile_note:
        out["layers"] = [{"node": l.node, "op_type": l.op_type, "block": l.block, "time_ms": l.time_ms,
                          "raw_ms": l.raw_ms, "kernel": l.kernel} for l in result.layers]
        out["layer_profile_note"] = result.layer_profile_note
    return out


def timing_pb(args) -> pb.TimingConfig:
    cfg = pb.TimingConfig()
    for name in ("warmup_runs", "warmup_seconds", "min_runs", "min_seconds", "max_seconds"):
        value = getattr(args, name, None)
        if value is not None:
            setattr(cfg, name, value)
    return cfg


def _temperature(result: pb.BenchmarkResult) -> str:
    if not result.state_start.temperatures:
        return "n/a"
    return f"{result.state_start.max_celsius:.0f}->{result.state_end.max_celsius:.0f} C"


def cmd_bench(args) -> int:
    path: Path = args.model
    if not path.is_file():
        raise ValueError(f"no such model file: {path}")
    runtime = args.runtime or ("litert" if path.suffix.lower() == ".tflite" else "onnxruntime")
    progress = Progress(enabled=None if not args.json else False)
    with client_from_args(args) as client:
        progress.show(f"uploading {path.name}…", force=True)
        model_id = client.upload(path)
        request = pb.BenchmarkRequest(model_id=model_id, runtime=runtime, threads=args.threads,
                                      timing=timing_pb(args), profile_layers=args.profile)
        if args.shape:
            request.inputs.add(shape=args.shape)
        result = client.benchmark(request, on_event=lambda e: progress.show(_describe(e)))
    progress.done()
    data = result_dict(result, str(path))
    if args.json:
        print(json.dumps(data, indent=1))
        return 0
    s = result.stats
    print(f"{path.name} on {args.agent} ({runtime} {result.runtime_version}, {result.execution_provider}, "
          f"{result.threads or 'default'} threads)")
    print(f"  median {s.median_ms:.3f} ms   p90 {s.p90_ms:.3f}   p99 {s.p99_ms:.3f}   "
          f"min {s.min_ms:.3f}   max {s.max_ms:.3f}   cv {s.cv:.3f}   n {s.n}")
    print(f"  session {result.session_create_ms:.1f} ms, first run {result.first_run_ms:.2f} ms, "
          f"temperature {_temperature(result)}, "
          f"throttled {'YES' if result.throttled else 'no'}")
    if args.profile:
        if result.layers:
            blocks: dict[str, float] = {}
            for layer in result.layers:
                blocks[layer.block or layer.node] = blocks.get(layer.block or layer.node, 0.0) + layer.time_ms
            print("  per block (scaled to the median):")
            for block, ms in blocks.items():
                print(f"    {block:<40} {ms:8.3f} ms")
        if result.layer_profile_note:
            print(f"  note: {result.layer_profile_note}")
    for warning in result.warnings:
        print(f"  warning: {warning}")
    return 0
