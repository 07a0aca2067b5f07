"""netcut-host info and bench: commands that talk to a target's agents directly."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..choices import RUNTIMES
from ..records import AgentInfo, GpuState
from .options import (
    add_json,
    add_target,
    add_timing_args,
    credentials_from_args,
    parse_shape,
    ssh_options,
    providers_from_args,
    timing_from_args,
)


def add_commands(sub: argparse._SubParsersAction) -> None:
    info = sub.add_parser(
        "info",
        help="print what a target's agents are and can run",
        description="Print each agent's version, runtimes, board description and board state: "
        "the local agent (started for the command), the one at --agent, or every reachable board "
        "of an inventory target.",
    )
    add_target(info, measures=False)
    add_json(info, "a list of each agent's fields as JSON")
    info.set_defaults(func=cmd_info)

    bench = sub.add_parser(
        "bench",
        help="time a model file on an agent",
        description="Upload a model file to a target's agent (only if it lacks it), benchmark it "
        "there, show progress and print the statistics. On an inventory target, the first "
        "reachable board measures it.",
    )
    bench.add_argument("model", type=Path, metavar="MODEL_FILE", help=".onnx or .tflite")
    add_target(bench)
    bench.add_argument("--runtime", choices=RUNTIMES, help="default: from the file's extension")
    bench.add_argument("--threads", type=int, default=0, help="intra-op threads (default: 0, the runtime's)")
    bench.add_argument(
        "--shape", type=parse_shape, help="input shape for dynamic dimensions, e.g. 1,3,224,224 (default: the model's)"
    )
    bench.add_argument("--profile", action="store_true", help="also measure per-layer times")
    add_json(bench, "JSON (median_ms, p99_ms, cv, n, samples_ms, ...)")
    add_timing_args(bench)
    bench.set_defaults(func=cmd_bench)


def _agents(args: argparse.Namespace):  # noqa: ANN202 - a context manager of the target's agents
    from ..targets import agents_of

    return agents_of(
        args.target, args.agent, credentials_from_args(args), args.fleet, ssh_options(args), args.connect_timeout
    )


def gpu_words(g: GpuState) -> str:
    """One line of a board's GPU state, as `info` prints it."""
    if not g.kind:
        return f"none readable ({g.unavailable_reason})" if g.unavailable_reason else "none readable"
    parts = [f"{g.name} ({g.kind}{', ' + g.release if g.release else ''})"]
    if g.kind == "jetson":
        parts.append(f"power mode {g.power_mode or g.power_mode_id}, jetson_clocks {g.jetson_clocks or 'unknown'}")
    parts.append(
        f"{g.gpu_mhz:.0f} MHz (max {g.gpu_max_mhz:.0f})" + (f", memory {g.memory_mhz:.0f} MHz" if g.memory_mhz else "")
    )
    if g.celsius:
        parts.append(f"{g.celsius:.1f} C")
    if g.power_watts:
        parts.append(f"{g.power_watts:.1f} W")
    if g.throttle_reasons:
        parts.append(f"throttled: {', '.join(g.throttle_reasons)}")
    return "; ".join(parts)


def print_info(info: AgentInfo, address: str) -> None:
    b, s = info.board, info.state
    rows = [
        ("agent", f"{address}  (netcut-agent {info.agent_version}, protocol v{info.protocol_version})"),
        ("board", b.board_model or "(no device-tree model)"),
        ("cpu", f"{b.cpu_model}, {b.cpu_cores} cores, {b.machine}"),
        ("system", f"{b.os}, kernel {b.kernel}, Python {b.python_version}"),
        ("memory", f"{b.memory_bytes / 2**30:.1f} GiB, {s.memory_available_bytes / 2**30:.1f} GiB available"),
        (
            "clock",
            f"{s.cpu_mhz:.0f} MHz (max {s.cpu_max_mhz:.0f}), governor {s.governor}"
            if s.cpu_mhz
            else "not readable (no cpufreq)",
        ),
        ("temperature", f"{s.max_celsius:.1f} C" if s.temperatures else "not readable (no thermal zones)"),
        (
            "throttled",
            ("YES" if s.throttled else "no")
            + (f" (flags 0x{s.throttle_flags:x}, {s.throttle_source})" if s.throttle_source else " (not observable)"),
        ),
        (
            "store",
            f"{info.store.models} models, {info.store.bytes_used / 1e6:.1f} of {info.store.bytes_cap / 1e6:.0f} MB",
        ),
        ("busy", f"{'yes' if info.busy else 'no'}, {info.queue_length} waiting"),
        ("gpu", gpu_words(s.gpu)),
    ]
    for rt in info.runtimes:
        detail = (
            f"{rt.version} [{', '.join(rt.execution_providers)}]" + (", per-layer profile" if rt.layer_profile else "")
            if rt.available
            else f"not available: {rt.unavailable_reason}"
        )
        rows.append((f"runtime {rt.name}", detail))
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")


def cmd_info(args: argparse.Namespace) -> int:
    with _agents(args) as agents:
        infos = [(where, info) for where, _, info in agents]
    if args.json:
        data = [{"agent": where, **info.to_dict()} for where, info in infos]
        print(json.dumps(data[0] if args.agent or args.target == "local" else data, indent=1))
        return 0
    for i, (where, info) in enumerate(infos):
        if i:
            print()
        print_info(info, where)
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from .. import providers, wire
    from ..errors import ConfigError
    from ..progress import Progress

    path: Path = args.model
    if not path.is_file():
        raise ConfigError(f"no such model file: {path}")
    runtime = args.runtime or ("litert" if path.suffix.lower() == ".tflite" else "onnxruntime")
    progress = Progress(enabled=None if not args.json else False)
    with _agents(args) as agents:
        where, client, info = agents[0]
        chosen = providers.resolve(providers_from_args(args) or (), info, runtime)
        progress.show(f"uploading {path.name}…", force=True)
        model_id = client.upload(path)
        result = wire.benchmark(
            client,
            model_id,
            runtime,
            args.threads,
            timing_from_args(args),
            args.profile,
            args.shape,
            on_progress=progress.show,
            providers=chosen,
        )
    progress.done()
    if args.json:
        print(json.dumps(result.to_dict(str(path)), indent=1))
        return 0
    s = result.stats
    print(
        f"{path.name} on {where} ({runtime} {result.runtime_version}, {result.execution_provider}, "
        f"{result.threads or 'default'} threads)"
    )
    print(
        f"  median {s.median_ms:.3f} ms   p90 {s.p90_ms:.3f}   p99 {s.p99_ms:.3f}   "
        f"min {s.min_ms:.3f}   max {s.max_ms:.3f}   cv {s.cv:.3f}   n {s.n}"
    )
    temperature = (
        f"{result.state_start.max_celsius:.0f}->{result.state_end.max_celsius:.0f} C"
        if result.state_start.temperatures
        else "n/a"
    )
    print(
        f"  session {result.session_create_ms:.1f} ms, first run {result.first_run_ms:.2f} ms, "
        f"temperature {temperature}, throttled {'YES' if result.throttled else 'no'}"
    )
    if result.placement:
        print(
            f"  ran on {', '.join(f'{providers.short(p)} {n} kernels' for p, n in result.placement)} "
            f"(session providers: {', '.join(result.session_providers)}); copies outside the timed "
            f"{result.timed_call}: in {result.copy_in_ms:.3f} ms, out {result.copy_out_ms:.3f} ms"
        )
    if args.profile:
        blocks: dict[str, float] = {}
        for layer in result.layers:
            blocks[layer.block or layer.node] = blocks.get(layer.block or layer.node, 0.0) + layer.time_ms
        if blocks:
            print("  per block (scaled to the median):")
            for block, ms in blocks.items():
                print(f"    {block:<40} {ms:8.3f} ms")
        if result.layer_profile_note:
            print(f"  note: {result.layer_profile_note}")
    for warning in result.warnings:
        print(f"  warning: {warning}")
    return 0
