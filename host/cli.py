"""netcut-host: the workstation side of NetCut. Thin: parse arguments, call, print, exit."""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from . import __version__

DESCRIPTION = """\
NetCut finds, for an embedded board and a hard deadline, the most accurate network that
still meets it, by cutting pretrained networks after a block (trimmed networks, TRNs) and
measuring candidates on the real board through `netcut-agent`.

commands:
  search   the main job: the most accurate network that meets a deadline on a target
  info     print an agent's board, state and runtimes (starts a local agent without --agent)
  bench    upload a model file to an agent and time it
  cuts     list where a network can be cut, with cumulative cost
  export   build a trimmed network and export it as ONNX or TFLite
  profile  measure networks on a target (a local agent by default) into the latency table
  estimate estimate each cut's latency on a target (empirical or analytical)
  table    show, export or import latency tables
  validate measure held-out cuts afresh and score the estimators
  fleet    provision and control the agents on your boards over SSH (inventory in TOML)
"""


def _parse_shape(text: str) -> list[int]:
    from netcut_agent.cli import parse_shape

    return parse_shape(text)


def build_parser() -> argparse.ArgumentParser:
    from .cmd_agent import add_connection_args, cmd_bench, cmd_info

    parser = argparse.ArgumentParser(prog="netcut-host", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"netcut-host {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log more")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    info = sub.add_parser("info", help="print an agent's Info",
                          description="Print an agent's version, runtimes, board description and board state. "
                          "Without --agent, start a local agent on a free loopback port and ask it.")
    add_connection_args(info, required=False)
    info.add_argument("--json", action="store_true", help="print the same fields as JSON")
    info.set_defaults(func=cmd_info)

    bench = sub.add_parser("bench", help="time a model file on an agent",
                           description="Upload a model file to an agent (only if it lacks it), benchmark it "
                           "there, show progress and print the statistics.")
    bench.add_argument("model", type=Path, metavar="MODEL_FILE", help=".onnx or .tflite")
    add_connection_args(bench)
    bench.add_argument("--runtime", choices=["onnxruntime", "litert"], help="default: from the file's extension")
    bench.add_argument("--threads", type=int, default=0, help="intra-op threads (default: the runtime's)")
    bench.add_argument("--shape", type=_parse_shape, help="input shape for dynamic dimensions, e.g. 1,3,224,224")
    bench.add_argument("--profile", action="store_true", help="also measure per-layer times")
    bench.add_argument("--json", action="store_true", help="print JSON (median_ms, p99_ms, cv, n, samples_ms, ...)")
    from .cmd_tables import add_timing_args

    add_timing_args(bench)
    bench.set_defaults(func=cmd_bench)

    from .cmd_models import add_model_commands
    from .cmd_search import add_search_command
    from .cmd_tables import add_table_commands

    add_search_command(sub)
    add_model_commands(sub)
    add_table_commands(sub)
    from .cmd_fleet import add_fleet_command

    add_fleet_command(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s" if args.verbose else
                        "netcut-host: %(message)s")
    # paramiko logs a refused port forward (an agent not up yet) as an ERROR; netcut reports what matters.
    logging.getLogger("paramiko.transport").setLevel(logging.INFO if args.verbose else logging.CRITICAL)
    from .errors import report

    try:
        return args.func(args)
    except BrokenPipeError:  # output piped into `head` and friends
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        print("netcut-host: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        code = report(exc)
        if code is None:
            raise
        return code


if __name__ == "__main__":
    sys.exit(main())
