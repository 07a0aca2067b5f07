"""netcut-agent: serve the benchmarking service on a board, or time a model locally."""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import logging
import math
import select
import signal
import socket
import sys
import threading
from pathlib import Path

from . import __version__

EXIT_USAGE = 2
DESCRIPTION = """\
The board side of NetCut. `serve` runs a small gRPC service that stores uploaded ONNX and
TFLite models and times them (end to end and per layer), reporting the board's state
(temperature, clocks, throttling) with every result. `bench` times one model file right
here without the service, and `info` prints what this board is and can run.
"""


def default_store() -> Path:
    import platformdirs

    return Path(platformdirs.user_data_dir("netcut-agent")) / "store"


def _timing_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("timing (defaults: 10 warm-up runs and 1 s, then at least 50 runs and 2 s, at most 60 s)")
    g.add_argument("--warmup-runs", type=int)
    g.add_argument("--warmup-seconds", type=float)
    g.add_argument("--min-runs", type=int)
    g.add_argument("--min-seconds", type=float)
    g.add_argument("--max-seconds", type=float)


def timing_from_args(args):
    from .measure import TimingConfig

    cfg = TimingConfig()
    for f in ("warmup_runs", "warmup_seconds", "min_runs", "min_seconds", "max_seconds"):
        if getattr(args, f, None) is not None:
            setattr(cfg, f, getattr(args, f))
    return cfg


def parse_shape(text: str) -> list[int]:
    try:
        return [int(d) for d in text.lower().replace("x", ",").split(",") if d.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"cannot read shape {text!r}; write e.g. 1,3,224,224") from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="netcut-agent", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--version", action="version", version=f"netcut-agent {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log more")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = sub.add_parser(
        "serve",
        help="run the benchmarking service",
        description="Run the gRPC benchmarking service until SIGTERM or Ctrl-C. It listens on "
        "loopback by default; reach it through an SSH tunnel, or expose it with a token or TLS.",
    )
    serve.add_argument(
        "--listen",
        default="127.0.0.1:50051",
        metavar="HOST:PORT",
        help="address to listen on (default: %(default)s; port 0 picks a free port)",
    )
    serve.add_argument("--store", type=Path, default=None, help="model store directory (default: the user's data dir)")
    serve.add_argument(
        "--max-model-mb", type=float, default=256, help="largest model accepted (default: %(default)s MB)"
    )
    serve.add_argument(
        "--store-cap-mb",
        type=float,
        default=4096,
        help="total store size; least recently used models are evicted (default: %(default)s MB)",
    )
    serve.add_argument("--token-file", type=Path, help="require this token (sent as call metadata) from clients")
    serve.add_argument("--tls-cert", type=Path, help="serve TLS with this certificate (PEM)")
    serve.add_argument("--tls-key", type=Path, help="the certificate's private key (PEM)")
    serve.add_argument("--client-ca", type=Path, help="require client certificates signed by this CA (mutual TLS)")
    serve.add_argument(
        "--insecure",
        action="store_true",
        help="allow listening beyond loopback without authentication (not recommended)",
    )
    serve.add_argument(
        "--cooldown-c",
        type=float,
        default=0.0,
        help="before each benchmark, wait until the board is below this temperature (C)",
    )
    serve.add_argument("--max-queue", type=int, default=16, help="benchmarks allowed to wait (default: %(default)s)")
    serve.add_argument(
        "--max-memory-mb",
        type=float,
        default=0,
        help="memory (address space) a benchmark may use; a model that needs more is refused with "
        "RESOURCE_EXHAUSTED (default: 0, no limit beyond the board's)",
    )
    serve.add_argument(
        "--upload-idle-seconds",
        type=float,
        default=30.0,
        help="abort an upload that sends nothing for this long (default: %(default)s)",
    )
    serve.add_argument(
        "--max-uploads", type=int, default=4, help="uploads at once; more are refused (default: %(default)s)"
    )
    serve.add_argument(
        "--max-request-seconds",
        type=float,
        default=900.0,
        help="time limit of one benchmark unless the request sets one (default: %(default)s)",
    )

    bench = sub.add_parser(
        "bench",
        help="time a model file here, without the service",
        description="Time one ONNX or TFLite file on this board with the same method as the service.",
    )
    bench.add_argument("model", type=Path, help="an .onnx or .tflite file")
    bench.add_argument("--runtime", choices=["onnxruntime", "litert"], help="default: from the file's extension")
    bench.add_argument("--threads", type=int, default=0, help="intra-op threads (default: the runtime's)")
    bench.add_argument("--shape", type=parse_shape, help="input shape for dynamic dimensions, e.g. 1,3,224,224")
    bench.add_argument("--profile", action="store_true", help="add per-layer times (onnxruntime)")
    bench.add_argument("--json", action="store_true", help="print the full result as JSON")
    _timing_args(bench)

    info = sub.add_parser(
        "info",
        help="print this board's description, state and runtimes",
        description="Print what this board is (CPU, board model, kernel, Python), its state "
        "right now (governor, clock, temperatures, throttling) and which runtimes the agent can "
        "use here, without starting the service. A runtime that is missing says how to install it.",
    )
    info.add_argument("--json", action="store_true", help="print JSON")
    return parser


def _fail(message: str) -> int:
    print(f"netcut-agent: error: {message}", file=sys.stderr)
    return EXIT_USAGE


def _wait_for(stop: threading.Event) -> None:
    """Sleep in the main thread until a signal handler sets `stop`.

    The kernel hands a process signal to any thread that does not block it, often one of grpc's: Python
    then runs the handler only when the main thread next runs bytecode, and a main thread asleep in
    `Event.wait` is not woken by it (the agent ignored one SIGTERM in ~100 under load). The wakeup fd is
    written by whichever thread takes the signal, so the main thread wakes and runs the handler at once.
    """
    readable, writable = socket.socketpair()
    readable.setblocking(False)
    writable.setblocking(False)
    previous = signal.set_wakeup_fd(writable.fileno(), warn_on_full_buffer=False)
    try:
        while not stop.is_set():
            select.select([readable], [], [], 60)
            try:
                readable.recv(512)
            except BlockingIOError:
                pass
    finally:
        signal.set_wakeup_fd(previous)
        readable.close()
        writable.close()


def cmd_serve(args) -> int:
    from .server import ConfigError, Security, read_token, start
    from .store import ModelStore, StoreInUse
    from .worker import WorkerLimits

    try:
        security = Security(insecure=args.insecure)
        if args.token_file:
            security.token = read_token(args.token_file)
        if bool(args.tls_cert) != bool(args.tls_key):
            raise ConfigError("--tls-cert and --tls-key go together")
        if args.client_ca and not args.tls_cert:
            raise ConfigError("--client-ca needs --tls-cert and --tls-key")
        for name in ("tls_cert", "tls_key", "client_ca"):
            path = getattr(args, name)
            if path:
                try:
                    setattr(security, name, path.read_bytes())
                except OSError as exc:
                    raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
        for name in ("max_request_seconds", "upload_idle_seconds", "max_memory_mb", "cooldown_c"):
            value = getattr(args, name)
            if not math.isfinite(value) or value < 0:
                raise ConfigError(f"--{name.replace('_', '-')} must be a finite number, 0 or more; got {value}")
        if args.max_uploads < 1:
            raise ConfigError(f"--max-uploads must be at least 1, got {args.max_uploads}")
        store = ModelStore(args.store or default_store(), int(args.max_model_mb * 1e6), int(args.store_cap_mb * 1e6))
        limits = WorkerLimits(int(args.max_memory_mb * 2**20))
        agent, warnings = start(
            args.listen,
            store,
            security,
            args.max_queue,
            args.max_request_seconds,
            args.cooldown_c,
            limits,
            args.upload_idle_seconds or float("inf"),
            args.max_uploads,
        )
    except (ConfigError, StoreInUse, OSError) as exc:
        return _fail(str(exc))
    for warning in warnings:
        print(f"netcut-agent: WARNING: {warning}", file=sys.stderr)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    print(f"listening on {agent.address}", flush=True)
    logging.getLogger(__name__).info("store %s, %d models", store.root, len(store.list()))
    _wait_for(stop)
    agent.stop()
    print("stopped", flush=True)
    return 0


def cmd_bench(args) -> int:
    from .benchmark import BenchmarkRequest, InputRequest, run_benchmark
    from .errors import AgentError

    path = args.model
    if not path.is_file():
        return _fail(f"no such model file: {path}")
    fmt = "tflite" if path.suffix.lower() == ".tflite" else "onnx"
    runtime = args.runtime or ("litert" if fmt == "tflite" else "onnxruntime")
    req = BenchmarkRequest(
        hashlib.sha256(path.read_bytes()).hexdigest(),
        runtime,
        args.threads,
        [InputRequest(shape=args.shape)] if args.shape else [],
        timing_from_args(args),
        args.profile,
    )
    try:
        result = run_benchmark(req, path, fmt, lambda e: None, threading.Event())
    except AgentError as exc:
        return _fail(str(exc))
    if args.json:
        print(json.dumps(dataclasses.asdict(result), indent=1))
    else:
        s = result.stats
        print(
            f"{path.name}: median {s.median_ms:.3f} ms, p99 {s.p99_ms:.3f} ms, cv {s.cv:.3f}, n {s.n} "
            f"({runtime} {result.runtime_version}, {args.threads or 'default'} threads)"
        )
        for w in result.warnings:
            print(f"warning: {w}")
    return 0


def cmd_info(args) -> int:
    from . import board, runtimes

    data = {
        "agent_version": __version__,
        "board": dataclasses.asdict(board.describe()),
        "state": dataclasses.asdict(board.sample_state()),
        "runtimes": [dataclasses.asdict(r) for r in runtimes.discover()],
    }
    if args.json:
        print(json.dumps(data, indent=1))
    else:
        b = data["board"]
        print(f"{b['board_model'] or b['cpu_model']} ({b['cpu_cores']} cores, {b['machine']}), {b['os']}")
        for r in data["runtimes"]:
            print(f"  {r['name']}: {r['version'] if r['available'] else 'not available: ' + r['unavailable_reason']}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    return {"serve": cmd_serve, "bench": cmd_bench, "info": cmd_info}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
