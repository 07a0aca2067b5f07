"""Reaching the boards of an inventory target: SSH tunnels (or direct TLS/token), status, agreement.

Each board's agent listens on the board's loopback; `open_link` opens an SSH connection, a
port forward through it, and an AgentClient on the forwarded port. Boards are reached in
parallel, and one that cannot be reached is reported and left out while the others carry on.
"""

from __future__ import annotations

import contextlib
import logging
import statistics
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, TypeVar

from .client import AgentCallError, AgentClient, AgentUnavailable, Credentials
from .errors import HostError
from .inventory import Board
from .records import AgentInfo
from .ssh import BoardError, SSHBoard
from .wire import info as agent_info

log = logging.getLogger(__name__)

T = TypeVar("T")
AGREEMENT_TOLERANCE = 0.2  # a board more than 20% off its target's median reference time is flagged


@dataclass
class SSHOptions:
    known_hosts: Path | None = None
    accept_new: bool = False


@dataclass
class BoardLink:
    board: Board
    client: AgentClient
    info: AgentInfo


def direct_credentials(board: Board) -> Credentials:
    def read(path: str | None) -> bytes | None:
        if not path:
            return None
        try:
            return Path(path).expanduser().read_bytes()
        except OSError as exc:
            raise BoardError(f"board {board.name}: cannot read {path}: {exc.strerror}") from None

    token = read(board.token_file)
    return Credentials(token.decode().strip() if token else None, read(board.ca_cert))


@contextlib.contextmanager
def open_link(board: Board, ssh: SSHOptions) -> Iterator[BoardLink]:
    """SSH + tunnel + client to one board's agent (or a direct client); raises BoardError/AgentUnavailable."""
    with contextlib.ExitStack() as stack:
        if board.direct:
            address, credentials = board.agent, direct_credentials(board)
        else:
            conn = stack.enter_context(SSHBoard(board, ssh.known_hosts, ssh.accept_new))
            address = stack.enter_context(conn.tunnel(board.agent_port))
            credentials = None
        client = stack.enter_context(AgentClient(address, credentials, connect_timeout=5))
        try:
            info = agent_info(client)
        except AgentUnavailable:
            raise AgentUnavailable(
                f"board {board.name}: no agent answers on its port {board.agent_port}"
                f"{'' if board.direct else ' (through SSH)'}: run `netcut-host fleet provision "
                f"{board.name}` or `fleet start {board.name}`"
            ) from None
        yield BoardLink(board, client, info)


def each(boards: list[Board], work: Callable[[Board], T]) -> list[tuple[Board, T | None, str | None]]:
    """Run work on every board in parallel; (board, result, error message) per board, in order."""

    def one(board: Board):
        try:
            return board, work(board), None
        except AgentCallError as exc:
            return board, None, f"board {board.name}: {exc}"
        except (HostError, OSError) as exc:  # BoardError, AgentUnavailable included
            return board, None, str(exc)

    if not boards:
        return []
    with ThreadPoolExecutor(max_workers=min(8, len(boards))) as pool:
        return list(pool.map(one, boards))


@contextlib.contextmanager
def open_links(boards: list[Board], ssh: SSHOptions) -> Iterator[tuple[list[BoardLink], dict[str, str]]]:
    """Links to every reachable board, and {board: why} for the others."""
    with contextlib.ExitStack() as stack:

        def enter(board: Board) -> BoardLink:
            cm = open_link(board, ssh)
            link = cm.__enter__()
            stack.push(cm.__exit__)
            return link

        results = each(boards, enter)
        yield [r for _, r, e in results if e is None], {b.name: e for b, _, e in results if e is not None}


def status_of(link: BoardLink) -> dict:
    info = link.info
    return {
        "name": link.board.name,
        "target": link.board.target,
        "reachable": True,
        "agent_version": info.agent_version,
        "healthy": link.client.health() == "SERVING",
        "runtimes": [f"{r.name} {r.version}" for r in info.runtimes if r.available],
        "temperature_c": round(info.state.max_celsius, 1) if info.state.max_celsius else None,
        "throttled": info.state.throttled,
        "busy": info.busy,
        "queue_length": info.queue_length,
        "board": info.board.board_model or info.board.cpu_model,
        "machine": info.board.machine,
        "python": info.board.python_version,
        "error": None,
    }


def unreachable(board: Board, error: str) -> dict:
    return {
        "name": board.name,
        "target": board.target,
        "reachable": False,
        "agent_version": None,
        "healthy": False,
        "runtimes": [],
        "temperature_c": None,
        "throttled": None,
        "busy": None,
        "queue_length": None,
        "board": None,
        "machine": None,
        "python": None,
        "error": error,
    }


def disagreeing(medians: dict[str, float], tolerance: float = AGREEMENT_TOLERANCE) -> dict[str, float]:
    """Boards whose reference time is off the boards' median by more than tolerance: {board: ratio}."""
    if len(medians) < 2:
        return {}
    reference = statistics.median(medians.values())
    return {name: m / reference for name, m in medians.items() if abs(m / reference - 1.0) > tolerance}
