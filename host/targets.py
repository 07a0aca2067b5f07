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
from typing import TYPE_CHECKING, Iterator

from . import inventory, providers
from .choices import LOCAL
from .client import CONNECT_TIMEOUT_S, AgentClient, Credentials
from .errors import ConfigError, TargetError
from .local_agent import local_agent
from .records import AgentInfo, AgentResult, GpuState, Provider, TargetIdentity
from .wire import info as agent_info

if TYPE_CHECKING:
    from .fleet import SSHOptions

log = logging.getLogger(__name__)


@dataclass
class ConnectedTarget:
    """A target reached for the length of a command: its identity, an agent client (the first board's) and,
    for a fleet target, a link per reachable board of that identity."""

    identity: TargetIdentity
    client: AgentClient
    info: AgentInfo
    runtime: str
    threads: int
    links: list = field(default_factory=list)  # fleet targets: a BoardLink per reachable board
    providers: tuple[Provider, ...] = ()  # onnxruntime's execution providers in order; () = the CPU

    @property
    def name(self) -> str:
        return self.identity.name


def identity_description(
    info: AgentInfo, runtime: str, threads: int, execution_providers: tuple[Provider, ...] = ()
) -> dict:
    """What changes latency: the board, its CPU, the runtime and its version, the threads; and where they
    are not the CPU's defaults, the execution providers with their options, the GPU, and a Jetson's power
    mode and jetson_clocks (each of which changes every latency on the board)."""
    return _described(info, runtime, threads, providers.resolve(execution_providers, info, runtime))


def _described(info: AgentInfo, runtime: str, threads: int, chosen: tuple[Provider, ...]) -> dict:
    """identity_description for providers already resolved against this agent."""
    rt = info.runtime(runtime)
    if rt is None or not rt.available:
        reason = rt.unavailable_reason if rt else "unknown runtime"
        raise ConfigError(f"the target cannot run {runtime}: {reason}")
    out = {
        "board_model": info.board.board_model,
        "cpu_model": info.board.cpu_model,
        "cpu_cores": info.board.cpu_cores,
        "machine": info.board.machine,
        "runtime": runtime,
        "runtime_version": rt.version,
        "threads": threads,
    }
    if runtime == "onnxruntime" and info.protocol_version >= 2:
        # Agents of protocol 2 time onnxruntime through IOBinding, 4-6% below a plain run() for resnet50 here:
        # their rows are not mixed with the older agents' (whose identity stays as it was).
        out["timed_call"] = "run_with_iobinding"
    if not providers.is_default(chosen):
        out["execution_providers"] = [p.to_dict() for p in chosen]
        if info.state.gpu.name and not providers.gives_layer_profile(chosen):
            out["gpu"] = info.state.gpu.name
    out.update(power_state(info.state.gpu))
    return out


def power_state(gpu: GpuState) -> dict:
    """A Jetson's power mode and jetson_clocks, as a target's identity holds them ({} elsewhere)."""
    if gpu.kind != "jetson":
        return {}
    return {"power_mode": gpu.power_mode or str(gpu.power_mode_id), "jetson_clocks": gpu.jetson_clocks}


def state_changed(description: dict, result: AgentResult) -> str:
    """Why a result was not measured in the state the target's rows are keyed by (a Jetson whose power mode or
    jetson_clocks changed since the command began), or ''."""
    if "power_mode" not in description:
        return ""
    for when, state in (("start", result.state_start), ("end", result.state_end)):
        now = power_state(state.gpu)
        if now and now != {k: description[k] for k in now}:
            return (
                f"the board's power state changed to {now} (at the {when} of a measurement) from "
                f"{ {k: description[k] for k in now} }, which this command's rows are keyed by; set it back "
                "(nvpmodel, jetson_clocks) or start the command again to fill that state's table"
            )
    return ""


def configured_target(name: str, agent: str | None, fleet: Path | None) -> inventory.ConfiguredTarget | None:
    """The inventory target a command names, or None for `local` and for --agent targets."""
    if name == LOCAL or agent:
        return None
    if fleet is None and not inventory.default_path().is_file():
        raise ConfigError(
            f"target {name!r} needs --agent HOST:PORT, or boards in a fleet inventory (--fleet FILE; "
            f"default {inventory.default_path()}), or use --target local"
        )
    inv = inventory.load(fleet)
    if name not in inv.targets:
        raise ConfigError(f"no target {name!r} in {inv.path} (it has: {', '.join(sorted(inv.targets))})")
    return inv.targets[name]


@contextlib.contextmanager
def connect(
    name: str,
    agent: str | None,
    runtime: str,
    threads: int,
    credentials: Credentials | None = None,
    fleet: Path | None = None,
    ssh: SSHOptions | None = None,
    connect_timeout: float = CONNECT_TIMEOUT_S,
    execution_providers: tuple[Provider, ...] | None = None,
) -> Iterator[ConnectedTarget]:
    """The target, reached. execution_providers: None takes the inventory target's (else the CPU)."""
    if not name or not name.replace("-", "").replace("_", "").replace(".", "").isalnum():
        raise ConfigError(f"target name {name!r} must be letters, digits, '-', '_' or '.'")
    if name == LOCAL and agent:
        raise ConfigError("--target local starts its own agent; leave out --agent, or name the target")
    ft = configured_target(name, agent, fleet)
    if ft is not None:
        chosen = ft.providers if execution_providers is None else execution_providers
        with _connect_fleet(ft, runtime, threads, ssh, chosen) as target:
            yield target
        return
    with contextlib.ExitStack() as stack:
        address = stack.enter_context(local_agent()) if name == LOCAL else agent
        client = stack.enter_context(AgentClient(address, credentials, connect_timeout))
        info = agent_info(client)
        chosen = providers.resolve(execution_providers or (), info, runtime)
        identity = TargetIdentity(name, _described(info, runtime, threads, chosen))
        yield ConnectedTarget(identity, client, info, runtime, threads, providers=chosen)


@contextlib.contextmanager
def agents_of(
    name: str,
    agent: str | None,
    credentials: Credentials | None = None,
    fleet: Path | None = None,
    ssh: SSHOptions | None = None,
    connect_timeout: float = CONNECT_TIMEOUT_S,
) -> Iterator[list[tuple[str, AgentClient, AgentInfo]]]:
    """Every reachable agent of a target, whatever it can run: (board or address, client, info) each.
    For commands that talk to agents (info, bench) rather than fill a table."""
    ft = configured_target(name, agent, fleet)
    if ft is None:
        with contextlib.ExitStack() as stack:
            address = stack.enter_context(local_agent()) if name == LOCAL and not agent else agent
            client = stack.enter_context(AgentClient(address, credentials, connect_timeout))
            yield [(address, client, agent_info(client))]
        return
    with _reachable_links(ft, ssh) as links:
        yield [(link.board.name, link.client, link.info) for link in links]


@contextlib.contextmanager
def _reachable_links(ft: inventory.ConfiguredTarget, ssh: SSHOptions | None) -> Iterator[list]:
    """A BoardLink per reachable board of the target (the others are named in a warning and left out)."""
    from .fleet import SSHOptions, open_links

    with open_links(ft.boards, ssh or SSHOptions()) as (links, errors):
        for board, why in errors.items():
            log.warning("board %s left out: %s", board, why)
        if not links:
            raise TargetError(
                f"no board of target {ft.name} can be reached; fix one and retry (netcut-host fleet status)"
            )
        yield links


@contextlib.contextmanager
def _connect_fleet(
    ft: inventory.ConfiguredTarget,
    runtime: str,
    threads: int,
    ssh: SSHOptions | None,
    execution_providers: tuple[Provider, ...],
) -> Iterator[ConnectedTarget]:
    with _reachable_links(ft, ssh) as links:
        identities, chosen = {}, {}
        for link in links:
            try:
                chosen[link.board.name] = providers.resolve(execution_providers, link.info, runtime)
                identities[link.board.name] = _described(link.info, runtime, threads, chosen[link.board.name])
            except ConfigError as exc:  # this board lacks the runtime: the others carry on
                log.warning("board %s left out: %s", link.board.name, exc)
        links = [l for l in links if l.board.name in identities]
        if not links:
            raise ConfigError(f"no board of target {ft.name} can run {runtime} (netcut-host fleet status)")
        first = links[0]
        described = identities[first.board.name]
        for link in links[1:]:
            if identities[link.board.name] != described:
                log.warning(
                    "board %s differs from %s (%s vs %s); it is left out",
                    link.board.name,
                    first.board.name,
                    identities[link.board.name],
                    described,
                )
        same = [l for l in links if identities[l.board.name] == described]
        yield ConnectedTarget(
            TargetIdentity(ft.name, described),
            first.client,
            first.info,
            runtime,
            threads,
            same,
            chosen[first.board.name],
        )
