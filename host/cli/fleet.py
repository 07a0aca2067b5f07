"""netcut-host fleet: provision, check and control the agents on the boards of the inventory."""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import threading
from pathlib import Path

from ..errors import EXIT_TARGET_FAILED, ConfigError
from ..inventory import Board, default_path, load

FLEET_HELP = f"""\
Boards are listed in a TOML inventory (--fleet FILE, default {default_path()}); see the README,
"Add your boards". Commands act on every board, or on the targets and boards named. Each board is
reached over SSH with its host key checked against known_hosts: an unknown key is refused with its
fingerprint unless --accept-new. A board that fails is reported and the others carry on; the exit
code is 4 if any board failed (2 for a mistake in the command or the inventory).
"""
_print_lock = threading.Lock()


def say(line: str) -> None:
    with _print_lock:
        print(line, flush=True)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("names", nargs="*", metavar="TARGET|BOARD", help="targets or boards (default: all)")
    p.add_argument("--fleet", type=Path, help="the inventory (default: %s)" % default_path())
    p.add_argument("--known-hosts", type=Path, help="SSH known_hosts file (default: ~/.ssh/known_hosts)")
    p.add_argument(
        "--accept-new",
        action="store_true",
        help="record the host keys of boards never seen before (a changed key is always refused)",
    )


def add_commands(sub: argparse._SubParsersAction) -> None:
    fleet = sub.add_parser(
        "fleet",
        help="provision and control the agents on your boards",
        description=FLEET_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    fsub = fleet.add_subparsers(dest="fleet_command", required=True, metavar="ACTION")

    p = fsub.add_parser(
        "provision",
        help="install or upgrade the agent on boards and start it",
        description="Check each board (Python 3.9+, CPU, free disk), upload the project's wheel "
        "(built here) and, with --wheelhouse, every dependency, create a virtual environment, install "
        "netcut[agent], install and start the service (a systemd user unit, or a supervised process "
        "with a pid file where there is no systemd), then check the agent through the SSH tunnel. "
        "The same version already running is left alone; another version is upgraded.",
    )
    _common(p)
    p.add_argument("--wheel", type=Path, help="the netcut wheel to install (default: built from this checkout)")
    p.add_argument(
        "--wheelhouse",
        type=Path,
        help="install offline from this folder of wheels "
        "(see `fleet wheelhouse`); default: the board's pip fetches dependencies",
    )
    p.add_argument(
        "--extra-wheel",
        type=Path,
        action="append",
        default=[],
        metavar="FILE",
        help="a wheel installed after netcut, without its dependencies (repeat for more): NVIDIA's "
        "onnxruntime-gpu wheel for a Jetson's JetPack, which replaces onnxruntime",
    )
    p.add_argument("--dry-run", action="store_true", help="check the boards and say what would be done")
    p.set_defaults(func=cmd_provision)

    p = fsub.add_parser("status", help="one line per board: reachable, version, runtimes, temperature, throttled, busy")
    _common(p)
    p.add_argument(
        "--json",
        action="store_true",
        help="print a list of objects with name, target, reachable, agent_version, healthy, machine, "
        "python, runtimes, ... instead of a table",
    )
    p.set_defaults(func=cmd_status)

    for action, text in (
        ("start", "start the agent"),
        ("stop", "stop the agent"),
        ("restart", "restart the agent"),
        ("uninstall", "stop the agent and remove its install folder"),
    ):
        p = fsub.add_parser(action, help=text)
        _common(p)
        p.set_defaults(func=cmd_control, action=action)

    p = fsub.add_parser("logs", help="print the end of each agent's log")
    _common(p)
    p.add_argument("-n", "--lines", type=int, default=50, help="lines per board (default: %(default)s)")
    p.set_defaults(func=cmd_control, action="logs")

    p = fsub.add_parser(
        "wheelhouse",
        help="download the wheels a board needs, for installing without network",
        description="Download netcut[agent] and its dependencies as wheels for a board's platform "
        "into DIR (with the project's wheel), for `fleet provision --wheelhouse DIR`. For a "
        "Raspberry Pi 4/5 on 64-bit Raspberry Pi OS: --platform manylinux2014_aarch64 "
        "--python-version 3.11.",
    )
    p.add_argument("dir", type=Path, metavar="DIR")
    p.add_argument(
        "--platform", help="the board's wheel platform, e.g. manylinux2014_aarch64 (default: this machine's)"
    )
    p.add_argument(
        "--python-version",
        default=f"{sys.version_info[0]}.{sys.version_info[1]}",
        help="the board's Python (default: %(default)s)",
    )
    p.add_argument(
        "--glibc",
        default=None,
        help="the board's glibc, widening manylinux tags up to it "
        "(default: this machine's, or 2.36 with --platform: Debian 12 / Raspberry Pi OS bookworm)",
    )
    p.add_argument("--tflite", action="store_true", help="also the LiteRT runtime")
    p.add_argument("--wheel", type=Path, help="the netcut wheel (default: built from this checkout)")
    p.set_defaults(func=cmd_wheelhouse)


def _boards(args: argparse.Namespace) -> list[Board]:
    return load(args.fleet).select(args.names)


def _over_ssh(board: Board, args: argparse.Namespace):
    from ..ssh import BoardError, SSHBoard

    if board.direct:
        raise BoardError(f"board {board.name} is reached directly ({board.agent}); manage its agent on the board")
    return SSHBoard(board, args.known_hosts, args.accept_new)


def _finish(results: list) -> int:
    failed = 0
    for board, outcome, error in results:
        if error is not None:
            failed += 1
            say(f"{board.name}: FAILED: {error}")
        elif outcome:
            say(f"{board.name}: {outcome}")
    return EXIT_TARGET_FAILED if failed else 0


def cmd_provision(args: argparse.Namespace) -> int:
    from ..fleet import each
    from ..provision import Installation, default_wheels, wheel_version

    boards = _boards(args)
    for extra in args.extra_wheel:
        if not extra.is_file() or extra.suffix != ".whl":
            raise ConfigError(f"--extra-wheel {extra}: no such wheel file (a .whl)")
    with tempfile.TemporaryDirectory(prefix="netcut-wheel-") as tmp:
        wheel, files = default_wheels(args.wheel, args.wheelhouse, Path(tmp))
        say(
            f"agent {wheel_version(wheel)}: {len(files)} wheel(s) to upload "
            f"({sum(p.stat().st_size for p in files) / 1e6:.0f} MB){', offline' if args.wheelhouse else ''}"
        )

        def one(board: Board) -> str:
            with _over_ssh(board, args) as ssh:
                return Installation(ssh).provision(wheel, files, args.dry_run, say, tuple(args.extra_wheel))

        return _finish(each(boards, one))


def cmd_status(args: argparse.Namespace) -> int:
    from ..client import AgentUnavailable
    from ..fleet import each, open_link, status_of, unreachable
    from .options import ssh_options

    boards = _boards(args)

    def one(board: Board) -> dict:
        try:
            with open_link(board, ssh_options(args)) as link:
                return status_of(link)
        except AgentUnavailable as exc:  # the board answers, its agent does not
            return {**unreachable(board, str(exc)), "reachable": True}

    rows = [outcome if error is None else unreachable(board, error) for board, outcome, error in each(boards, one)]
    if args.json:
        print(json.dumps(rows, indent=1))
    else:
        print(
            f"{'board':<16} {'target':<10} {'reachable':<9} {'version':<8} {'runtimes':<34} {'temp':>6} "
            f"{'throttled':<9} busy"
        )
        for r in rows:
            if r["error"]:
                print(f"{r['name']:<16} {r['target']:<10} {'yes' if r['reachable'] else 'no':<9} {r['error']}")
                continue
            temp = f"{r['temperature_c']:.0f} C" if r["temperature_c"] else "-"
            busy = f"yes ({r['queue_length']} queued)" if r["busy"] else "no"
            print(
                f"{r['name']:<16} {r['target']:<10} {'yes':<9} {r['agent_version']:<8} "
                f"{', '.join(r['runtimes']):<34} {temp:>6} {'YES' if r['throttled'] else 'no':<9} {busy}"
            )
    return 0 if all(r["healthy"] for r in rows) else EXIT_TARGET_FAILED


def cmd_control(args: argparse.Namespace) -> int:
    from ..fleet import each
    from ..provision import Installation
    from ..ssh import BoardError

    boards = _boards(args)

    def one(board: Board) -> str:
        with _over_ssh(board, args) as ssh:
            inst = Installation(ssh)
            if inst.mode() is None:
                if args.action == "uninstall":
                    return "nothing installed"
                raise BoardError(
                    f"board {board.name}: the agent is not installed; run `netcut-host fleet provision {board.name}`"
                )
            if args.action == "logs":
                return "log:\n" + inst.logs(args.lines).rstrip()
            if args.action in ("stop", "restart", "uninstall"):
                inst.stop() if args.action != "uninstall" else inst.uninstall()
            if args.action in ("start", "restart"):
                inst.start()
                return f"running, version {inst.healthy()}"
            return {"stop": "stopped", "uninstall": f"uninstalled ({board.install_dir} removed)"}[args.action]

    return _finish(each(boards, one))


def cmd_wheelhouse(args: argparse.Namespace) -> int:
    from ..provision import default_wheels, wheelhouse

    glibc = args.glibc or ("2.36" if args.platform else (platform.libc_ver()[1] or "2.17"))
    with tempfile.TemporaryDirectory(prefix="netcut-wheel-") as tmp:
        wheel, _ = default_wheels(args.wheel, None, Path(tmp))
        files = wheelhouse(
            args.dir, wheel, args.platform, args.python_version, glibc, "agent,tflite" if args.tflite else "agent"
        )
    print(
        f"{args.dir}: {len(files)} wheels, {sum(p.stat().st_size for p in files) / 1e6:.0f} MB "
        f"(for {args.platform or 'this machine'}, Python {args.python_version}); install with "
        f"`netcut-host fleet provision --wheelhouse {args.dir}`"
    )
    return 0
