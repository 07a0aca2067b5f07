"""Targets: a class of identical boards sharing one latency table.

`local` starts an agent on this machine for the duration of the command; a name given with
`--agent HOST:PORT` reaches an agent already running; any other name is looked up in the
fleet inventory (`--fleet FILE`), whose boards are reached through SSH tunnels.
"""
from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from netcut_protos.agent.v1 import agent_pb2 as pb

from . import inventory
from .client import AgentClient, Credentials
from .local_agent import local_agent
from .tables import Target

log = logging.getLogger(__name__)

LOCAL = "local"


@dataclass
class ConnectedTarget:
    target: Target
    client: AgentClient
    info: pb.InfoResponse
    runtime: str
    threads: int
    links: list = field(default_factory=list)    # fleet targets: a BoardLink per reachable board

    @property
    def name(self) -> str:
        return self.target.name


def identity_description(info: pb.InfoResponse, runtime: str, threads: int) -> dict:
    """What changes latency: the board, its CPU, the runtime and its version, the threads."""
    rt = next((r for r in info.runtimes if r.name == runtime), None)
    if rt is None or not rt.available:
        reason = rt.unavailable_reason if rt else "unknown runtime"
        raise ValueError(f"the target cannot run {runtime}: {reason}")
    return {"board_model": info.board.board_model, "cpu_model": info.board.cpu_model,
            "cpu_cores": info.board.cpu_cores, "machine": info.board.machine, "runtime": runtime,
            "runtime_version": rt.version, "threads": threads}


def fleet_target(name: str, agent: str | None, fleet: Path | None) -> inventory.FleetTarget | None:
    """The inventory target a command names, or None for `local` and for --agent targets."""
    if name == LOCAL or agent:
        return None
    if fleet is None and not inventory.default_path().is_file():
        raise ValueError(f"target {name!r} needs --agent HOST:PORT, or boards in a fleet inventory (--fleet FILE; "
                         f"default {inventory.default_path()}), or use --target local")
    inv = inventory.load(fleet)
    if name not in inv.targets:
        raise ValueError(f"no target {name!r} in {inv.path} (it has: {', '.join(sorted(inv.targets))})")
    return inv.targets[name]


@contextlib.contextmanager
def connect(name: str, agent: str | None, runtime: str, threads: int, credentials: Credentials | None = None,
            fleet: Path | None = None, ssh=None) -> Iterator[ConnectedTarget]:
    if not name or not name.replace("-", "").replace("_", "").replace(".", "").isalnum():
        raise ValueError(f"target name {name!r} must be letters, digits, '-', '_' or '.'")
    if name == LOCAL and agent:
        raise ValueError("--target local starts its own agent; leave out --agent, or name the target")
    ft = fleet_target(name, agent, fleet)
    if ft is not None:
        with _connect_fleet(ft, runtime, threads, ssh) as target:
            yield target
        return
    with contextlib.ExitStack() as stack:
        address = stack.enter_context(local_agent()) if name == LOCAL else agent
        client = stack.enter_context(AgentClient(address, credentials))
        info = client.info()
        target = Target(name, identity_description(info, runtime, threads))
        yield ConnectedTarget(target, client, info, runtime, threads)


@contextlib.contextmanager
def _connect_fleet(ft: inventory.FleetTarget, runtime: str, threads: int, ssh) -> Iterator[ConnectedTarget]:
    from .fleet import SSHOptions, open_links

    with open_links(ft.boards, ssh or SSHOptions()) as (links, errors):
        for board, why in errors.items():
            log.warning("board %s left out: %s", board, why)
        if not links:
            raise ConnectionError(f"no board of target {ft.name} can be reached; fix one and retry "
                                  "(netcut-host fleet status)")
        identities = {}
        for link in links:
            try:
                identities[link.board.name] = identity_description(link.info, runtime, threads)
            except ValueError as exc:  # this board lacks the runtime: the others carry on
                log.warning("board %s left out: %s", link.board.name, exc)
        links = [l for l in links if l.board.name in identities]
        if not links:
            raise ValueError(f"no board of target {ft.name} can run {runtime} (netcut-host fleet status)")
        first = links[0]
        described = identities[first.board.name]
        for link in links[1:]:
            if identities[link.board.name] != described:
                log.warning("board %s differs from %s (%s vs %s); it is left out", link.board.name,
                            first.board.name, identities[link.board.name], described)
        same = [l for l in links if identities[l.board.name] == described]
        yield ConnectedTarget(Target(ft.name, described), first.client, first.info, runtime, threads, same)
