"""Options several commands share, and turning them into the library's records. Light at import
(no torch, no grpc), so that `--help` answers at once; heavy modules load inside the functions."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, ContextManager

from ..choices import DEFAULT_ROUNDS, FORMATS, GRANULARITIES, LOCAL, PRECISIONS, QUANTILES, RUNTIMES
from ..errors import ConfigError
from ..records import DEFAULT_TIMING, Timing

if TYPE_CHECKING:
    from ..client import Credentials
    from ..fleet import SSHOptions
    from ..inventory import ConfiguredTarget
    from ..tables import LatencyDB, RowKey
    from ..targets import ConnectedTarget

TARGET_HELP = (
    "'local' starts an agent on this machine (default); a name with --agent reaches that agent; any "
    "other name is a target of the fleet inventory"
)
CLASSES_HELP = "classes of the new head"


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def parse_shape(text: str) -> list[int]:
    try:
        return [int(d) for d in text.lower().replace("x", ",").split(",") if d.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"cannot read shape {text!r}; write e.g. 1,3,224,224") from None


def names_list(text: str | None) -> list[str]:
    return [m.strip() for m in text.split(",") if m.strip()] if text else []


def add_json(p: argparse.ArgumentParser, what: str = "the same fields as JSON") -> None:
    p.add_argument("--json", action="store_true", help=f"print {what} instead of text for people")


def add_models(p: argparse.ArgumentParser, required: bool, help_text: str) -> None:
    """--models (and its alias --model): one spelling across commands."""
    p.add_argument("--models", "--model", dest="models", required=required, metavar="NAMES", help=help_text)


def add_quantile(p: argparse.ArgumentParser, default: str = "p99") -> None:
    p.add_argument(
        "--quantile",
        default=default,
        metavar="Q",
        help=f"latency quantile: {'|'.join(QUANTILES)} (default: %(default)s)",
    )


def add_runtime(p: argparse.ArgumentParser, default_text: str) -> None:
    p.add_argument(
        "--runtime", choices=RUNTIMES, help=f"the board's runtime: {' or '.join(RUNTIMES)} (default: {default_text})"
    )


def add_connection_args(p: argparse.ArgumentParser, required: bool = False) -> None:
    p.add_argument(
        "--agent",
        required=required,
        metavar="HOST:PORT",
        help="the agent's address" + ("" if required else " (default: none; see --target)"),
    )
    p.add_argument("--token-file", type=Path, help="the agent's token, if it was started with one (default: none)")
    p.add_argument("--ca-cert", type=Path, help="trust this CA and connect with TLS (default: plaintext)")
    p.add_argument("--client-cert", type=Path, help="client certificate for mutual TLS (default: none)")
    p.add_argument("--client-key", type=Path, help="client key for mutual TLS (default: none)")
    p.add_argument(
        "--connect-timeout", type=float, default=3.0, help="seconds to wait for the agent (default: %(default)s)"
    )


def add_fleet_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--fleet",
        type=Path,
        help="fleet inventory (TOML) for named targets (default: the user's config dir, fleet.toml)",
    )
    p.add_argument("--known-hosts", type=Path, help="SSH known_hosts file (default: ~/.ssh/known_hosts)")


def add_target(p: argparse.ArgumentParser, required: bool = False, measures: bool = True) -> None:
    """--target and how to reach it; `measures`: the command times models there (it takes --ep too)."""
    p.add_argument("--target", default=None if required else LOCAL, required=required, help=TARGET_HELP)
    add_connection_args(p)
    add_fleet_args(p)
    if measures:
        add_providers(p)


def add_providers(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--ep",
        metavar="LIST",
        help="onnxruntime execution providers in order of preference, e.g. tensorrt,cuda,cpu (short names or "
        "onnxruntime's). Fall-back is off: a provider that fails to start, or a node no listed provider runs, "
        "is refused, never timed on the CPU. Part of the target's identity (default: the inventory target's "
        "providers, else the CPU)",
    )
    p.add_argument(
        "--ep-option",
        action="append",
        default=[],
        metavar="[PROVIDER:]KEY=VALUE",
        help="a provider option (onnxruntime's provider_options), e.g. trt_fp16_enable=1 or cuda:device_id=1; "
        "without PROVIDER it goes to the first of --ep (repeat for more)",
    )


def providers_from_args(args: argparse.Namespace) -> tuple | None:
    """The --ep providers, or None to take the inventory target's."""
    from .. import providers

    if getattr(args, "ep", None) is None and not getattr(args, "ep_option", None):
        return None
    return providers.parse(names_list(args.ep), args.ep_option)  # options without --ep are refused there


def add_db(p: argparse.ArgumentParser) -> None:
    p.add_argument("--db", type=Path, help="latency table file (default: latency.sqlite in the user's data dir)")


def add_timing_args(p: argparse.ArgumentParser) -> None:
    d = DEFAULT_TIMING
    g = p.add_argument_group(
        f"timing on the board (the agent's defaults: {d['warmup_runs']} warm-up runs and "
        f"{d['warmup_seconds']:g} s, then at least {d['min_runs']} runs and "
        f"{d['min_seconds']:g} s, at most {d['max_seconds']:g} s)"
    )
    for flag, kind, text in (
        ("--warmup-runs", int, "warm-up runs"),
        ("--warmup-seconds", float, "warm-up seconds"),
        ("--min-runs", int, "timed runs at least"),
        ("--min-seconds", float, "timed seconds at least"),
        ("--max-seconds", float, "stop timing here even if --min-runs is not reached"),
    ):
        name = flag[2:].replace("-", "_")
        g.add_argument(flag, type=kind, help=f"{text} (default: {d[name]:g})")
    g.add_argument(
        "--rounds",
        type=positive_int,
        default=DEFAULT_ROUNDS,
        metavar="N",
        help="split each measurement into N windows taken in N passes over all measurements (every "
        "other pass in reverse), so a slow drift of the board (heat, neighbours) averages out "
        "instead of biasing whichever measurements it caught; the windows add up to the timing "
        "above (default: %(default)s)",
    )


def add_remeasure(p: argparse.ArgumentParser) -> None:
    """--remeasure, for the commands that store what they measure (profile, search)."""
    p.add_argument(
        "--remeasure",
        type=int,
        default=1,
        metavar="N",
        help="measure again, once, what the agent flags busy (other processes on the board), noisy or "
        "throttled, and keep the steadier run; 0 never does (default: %(default)s)",
    )


def timing_from_args(args: argparse.Namespace) -> Timing:
    return Timing(**{k: getattr(args, k) for k in DEFAULT_TIMING if getattr(args, k, None) is not None})


def add_row_args(p: argparse.ArgumentParser, classes_default: int = 10) -> None:
    """What identifies a table's rows (besides the target and the network)."""
    add_target(p)
    add_db(p)
    g = p.add_argument_group("what identifies a row")
    g.add_argument("--input-size", type=int, default=224, help="square input size in pixels (default: %(default)s)")
    g.add_argument("--batch", type=int, default=1, help="batch size (default: %(default)s)")
    g.add_argument("--threads", type=int, help="runtime threads on the board (default: the inventory target's, else 1)")
    g.add_argument("--format", choices=FORMATS, help="model format (default: the runtime's, else onnx)")
    g.add_argument(
        "--runtime",
        choices=RUNTIMES,
        help="default: the format's runtime, else the inventory target's, else onnxruntime",
    )
    g.add_argument("--classes", type=int, default=classes_default, help=f"{CLASSES_HELP} (default: %(default)s)")
    g.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="fp32",
        help="fp32; int8: the models measured are quantized (onnxruntime static QDQ, or ai-edge-quantizer "
        "for TFLite); fp16 (ONNX): converted to half precision, for GPU boards. Each precision's rows are kept "
        "apart (default: %(default)s)",
    )
    g.add_argument(
        "--granularity",
        choices=GRANULARITIES,
        default="block",
        help="block: cuts at the ends of top-level blocks; layer: every possible cut (default: %(default)s)",
    )


def credentials_from_args(args: argparse.Namespace) -> Credentials:
    from ..client import Credentials

    def read(path: Path | None) -> bytes | None:
        if path is None:
            return None
        try:
            return path.read_bytes()
        except OSError as exc:
            raise ConfigError(f"cannot read {path}: {exc.strerror}") from None

    token = read(args.token_file)
    return Credentials(
        token.decode().strip() if token else None, read(args.ca_cert), read(args.client_cert), read(args.client_key)
    )


def ssh_options(args: argparse.Namespace) -> SSHOptions:
    from ..fleet import SSHOptions

    return SSHOptions(getattr(args, "known_hosts", None), getattr(args, "accept_new", False))


def configured(args: argparse.Namespace) -> ConfiguredTarget | None:
    """The inventory's target the command names, or None (local, --agent)."""
    from ..targets import configured_target

    return configured_target(args.target, args.agent, args.fleet)


def row_key(args: argparse.Namespace) -> RowKey:
    from ..choices import FORMAT_OF, RUNTIME_OF
    from ..tables import RowKey

    ft = configured(args)
    fmt = args.format or FORMAT_OF[args.runtime or (ft.runtime if ft else "onnxruntime")]
    runtime = args.runtime or RUNTIME_OF[fmt]
    threads = args.threads if args.threads is not None else (ft.threads if ft else 1)
    if FORMAT_OF[runtime] != fmt:
        raise ConfigError(f"--runtime {runtime} does not run --format {fmt}")
    for name, value in (
        ("input_size", args.input_size),
        ("batch", args.batch),
        ("threads", threads),
        ("classes", args.classes),
    ):
        if value < (0 if name == "threads" else 1):
            raise ConfigError(f"--{name.replace('_', '-')} must be positive, got {value}")
    return RowKey(args.input_size, args.batch, fmt, runtime, threads, args.granularity, args.classes, args.precision)


def open_db(args: argparse.Namespace) -> LatencyDB:
    from ..paths import default_db
    from ..tables import LatencyDB

    return LatencyDB(args.db or default_db())


def connected(args: argparse.Namespace, runtime: str, threads: int) -> ContextManager[ConnectedTarget]:
    from ..targets import connect

    return connect(
        args.target,
        args.agent,
        runtime,
        threads,
        credentials_from_args(args),
        args.fleet,
        ssh_options(args),
        args.connect_timeout,
        providers_from_args(args),
    )
