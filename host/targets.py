"""Targets: a class of identical boards sharing one latency table.

`local` starts an agent on this machine for the duration of the command; any other name
needs `--agent HOST:PORT` (fleet inventories add named targets with several boards).
"""
from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from typing import Iterator

from netcut_protos.agent.v1 import agent_pb2 as pb

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


@contextlib.contextmanager
def connect(name: str, agent: str | None, runtime: str, threads: int,
            credentials: Credentials | None = None) -> Iterator[ConnectedTarget]:
    if not name or not name.replace("-", "").replace("_", "").replace(".", "").isalnum():
        raise ValueError(f"target name {name!r} must be letters, digits, '-', '_' or '.'")
    if name == LOCAL and agent:
        raise ValueError("--target local starts its own agent; leave out --agent, or name the target")
    if name != LOCAL and not agent:
        raise ValueError(f"target {name!r} needs --agent HOST:PORT (or use --target local)")
    with contextlib.ExitStack() as stack:
        address = stack.enter_context(local_agent()) if name == LOCAL else agent
        client = stack.enter_context(AgentClient(address, credentials))
        info = client.info()
        target = Target(name, identity_description(info, runtime, threads))
        yield ConnectedTarget(target, client, info, runtime, threads)
