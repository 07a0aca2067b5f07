"""netcut-host: the workstation side of NetCut. The command line only: each module of this package
parses one group of commands, calls the library (netcut_host's other modules, netcut) and prints.
Nothing outside this package imports it."""

from __future__ import annotations

import argparse
import logging
import os
import re
import sys

from .. import __version__
from ..errors import EXIT_CODES_HELP, EXIT_USAGE, HostError

DESCRIPTION = """\
NetCut finds, for an embedded board and a hard deadline, the most accurate network that
still meets it, by cutting pretrained networks after a block (trimmed networks, TRNs) and
measuring candidates on the real board through `netcut-agent`. With no options, `search`
runs the built-in demo on this machine.
"""


def build_parser() -> argparse.ArgumentParser:
    from . import agent, calibrate, fleet, models, search, tables

    parser = argparse.ArgumentParser(
        prog="netcut-host",
        description=DESCRIPTION,
        epilog=EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"netcut-host {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log what the host does (default: warnings)")
    parser.add_argument("--debug", action="store_true", help="log everything, with the details of errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    search.add_commands(sub)
    agent.add_commands(sub)
    models.add_commands(sub)
    tables.add_commands(sub)
    calibrate.add_commands(sub)
    fleet.add_commands(sub)
    return parser


# Options whose value may be negative: argparse reads `--deadline -5ms` as an option named -5ms and says
# "expected one argument"; joined as --deadline=-5ms, the option's own check explains what is wrong.
_SIGNED_OPTIONS = ("--deadline", "--margin")


def _join_signed_values(argv: list[str]) -> list[str]:
    out: list[str] = []
    i = 0
    while i < len(argv):
        if argv[i] in _SIGNED_OPTIONS and i + 1 < len(argv) and re.match(r"-[0-9.]", argv[i + 1]):
            out.append(f"{argv[i]}={argv[i + 1]}")
            i += 2
        else:
            out.append(argv[i])
            i += 1
    return out


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(_join_signed_values(sys.argv[1:] if argv is None else argv))
    level = logging.DEBUG if args.debug else logging.INFO if args.verbose else logging.WARNING
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s"
        if args.verbose or args.debug
        else "netcut-host: %(message)s",
    )
    # paramiko logs a refused port forward (an agent not up yet) as an ERROR; netcut reports what matters.
    logging.getLogger("paramiko.transport").setLevel(logging.DEBUG if args.debug else logging.CRITICAL)
    from netcut.errors import NetcutError

    try:
        return args.func(args)
    except BrokenPipeError:  # output piped into `head` and friends
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        print("netcut-host: interrupted", file=sys.stderr)
        return 130
    except (HostError, NetcutError) as exc:
        option = getattr(exc, "option", None)
        flag = f"--{option.replace('_', '-')}: " if option and f"--{option}" not in str(exc) else ""
        print(f"netcut-host: error: {flag}{exc}", file=sys.stderr)
        logging.getLogger(__name__).debug("details", exc_info=exc)
        return exc.exit_code if isinstance(exc, HostError) else EXIT_USAGE
    except OSError as exc:
        if exc.filename is None:
            raise
        # A file or folder the user named cannot be read or written: theirs to fix.
        print(f"netcut-host: error: {exc.strerror}: {exc.filename}", file=sys.stderr)
        return EXIT_USAGE
