"""The fleet inventory: a TOML file naming targets and their boards.

    [targets.pi4]
    runtime = "onnxruntime"          # or "litert"
    threads = 4

    [targets.orin]                   # a Jetson: onnxruntime on its GPU
    providers = ["tensorrt", "cuda", "cpu"]
    provider_options = { "tensorrt:trt_fp16_enable" = "1" }

    [[targets.pi4.boards]]
    name = "pi4-lab-1"
    host = "192.168.1.20"            # or an alias from ~/.ssh/config

Omitted board keys take the defaults below, or what ~/.ssh/config says for the host (port,
user, key) at connection time. Mistakes are reported with the file, the line and the fix.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Callable

from . import providers
from .choices import RUNTIMES
from .errors import ConfigError
from .records import Provider

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on older Pythons only
    import tomli as tomllib

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


class InventoryError(ConfigError):
    """The inventory cannot be used as written; the message names the file and line."""


@dataclass(frozen=True)
class Board:
    name: str
    target: str
    host: str
    port: int | None = None  # None: ~/.ssh/config, else 22
    user: str | None = None  # None: ~/.ssh/config, else the local user
    key: str | None = None  # None: ~/.ssh/config, else the SSH agent and default keys
    agent_port: int = 50051
    python: str = "python3"
    install_dir: str = "~/.local/share/netcut-agent"
    tflite: bool = False  # also install the LiteRT runtime
    gpu: bool = False  # install the agent-gpu extra (onnxruntime-gpu, NVML) instead of agent
    agent: str | None = None  # direct mode: HOST:PORT of an agent exposed with TLS or a token
    token_file: str | None = None  # direct mode
    ca_cert: str | None = None  # direct mode

    @property
    def direct(self) -> bool:
        return self.agent is not None


@dataclass
class ConfiguredTarget:
    """A target as the inventory configures it: its runtime, threads and boards (not yet reached)."""

    name: str
    runtime: str = "onnxruntime"
    threads: int = 1
    boards: list[Board] = field(default_factory=list)
    providers: tuple[Provider, ...] = ()  # onnxruntime's execution providers in order; () = the CPU


@dataclass
class Inventory:
    path: Path
    targets: dict[str, ConfiguredTarget]

    def select(self, names: list[str]) -> list[Board]:
        """Boards named directly or through their target; all boards when names is empty."""
        boards = [b for t in self.targets.values() for b in t.boards]
        if not names:
            return boards
        chosen: list[Board] = []
        for name in names:
            if name in self.targets:
                found = self.targets[name].boards
            else:
                found = [b for b in boards if b.name == name]
            if not found:
                known = ", ".join(sorted(self.targets) + [b.name for b in boards])
                raise InventoryError(f"{self.path}: no target or board named {name!r} (known: {known})")
            chosen += [b for b in found if b not in chosen]
        return chosen


BOARD_KEYS = {f.name: f.type for f in fields(Board) if f.name != "target"}
TARGET_KEYS = {"runtime", "threads", "boards", "providers", "provider_options"}


def default_path() -> Path:
    import platformdirs

    return Path(platformdirs.user_config_dir("netcut")) / "fleet.toml"


def _line_of(text: str, pattern: str, start: int = 0) -> int:
    """1-based line of the first line at or after `start` (0-based) matching `pattern`."""
    lines = text.splitlines()
    for i in range(start, len(lines)):
        if re.search(pattern, lines[i]):
            return i + 1
    return start + 1


def load(path: Path | None) -> Inventory:
    path = Path(path) if path else default_path()
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise InventoryError(
            f'no fleet inventory at {path}: write one (see the README, "Add your boards") or pass --fleet FILE'
        ) from None
    except OSError as exc:
        raise InventoryError(f"cannot read the fleet inventory {path}: {exc.strerror}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InventoryError(f"{path}: {exc} (not valid TOML)") from None
    return parse(data, text, path)


def parse(data: dict, text: str, path: Path) -> Inventory:
    def fail(line: int, message: str) -> InventoryError:
        return InventoryError(f"{path}:{line}: {message}")

    unknown = set(data) - {"targets"}
    if unknown:
        key = sorted(unknown)[0]
        raise fail(
            _line_of(text, rf"^\s*\[?\[?\s*{re.escape(key)}\b"),
            f"unknown section {key!r}; the inventory holds [targets.NAME] tables",
        )
    targets: dict[str, ConfiguredTarget] = {}
    seen_boards: dict[str, str] = {}
    for tname, tdata in (data.get("targets") or {}).items():
        tline = _line_of(text, rf"^\s*\[\[?\s*targets\.{re.escape(tname)}[\].]")
        if not isinstance(tdata, dict):
            raise fail(tline, f"targets.{tname} must be a table")
        if not NAME.match(tname) or tname == "local":
            raise fail(tline, f"target name {tname!r}: use letters, digits, '.', '_' or '-' (and not 'local')")
        for key in tdata:
            if key not in TARGET_KEYS:
                raise fail(
                    _line_of(text, rf"^\s*{re.escape(key)}\s*=", tline - 1),
                    f"unknown key {key!r} in target {tname!r}; known: {', '.join(sorted(TARGET_KEYS))}",
                )
        runtime = tdata.get("runtime", "onnxruntime")
        if runtime not in RUNTIMES:
            raise fail(
                _line_of(text, r"^\s*runtime\s*=", tline - 1),
                f"runtime {runtime!r} of target {tname!r}: use one of {', '.join(RUNTIMES)}",
            )
        threads = tdata.get("threads", 1)
        if not isinstance(threads, int) or isinstance(threads, bool) or threads < 0:
            raise fail(
                _line_of(text, r"^\s*threads\s*=", tline - 1),
                f"threads of target {tname!r} must be a whole number >= 0, got {threads!r}",
            )
        target = ConfiguredTarget(tname, runtime, threads, providers=_providers(tdata, tname, text, tline, fail))
        boards = tdata.get("boards", [])
        if not isinstance(boards, list) or not boards:
            raise fail(tline, f"target {tname!r} has no boards: add [[targets.{tname}.boards]] tables")
        bline = tline - 1
        for bdata in boards:
            bline = _line_of(text, rf"^\s*\[\[\s*targets\.{re.escape(tname)}\.boards\s*\]\]", bline)
            target.boards.append(_board(bdata, tname, text, bline, fail, runtime))
            name = target.boards[-1].name
            if name in seen_boards:
                raise fail(bline, f"board name {name!r} is used twice (also in target {seen_boards[name]!r})")
            seen_boards[name] = tname
        targets[tname] = target
    if not targets:
        raise fail(1, "no targets: add a [targets.NAME] table with [[targets.NAME.boards]]")
    return Inventory(path, targets)


def _providers(
    tdata: dict, tname: str, text: str, line: int, fail: Callable[[int, str], InventoryError]
) -> tuple[Provider, ...]:
    names, options = tdata.get("providers", []), tdata.get("provider_options", {})
    where = _line_of(text, r"^\s*provider", line - 1)
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise fail(where, f'providers of target {tname!r} must be a list of names, e.g. ["tensorrt", "cuda", "cpu"]')
    if not isinstance(options, dict) or not all(isinstance(v, (str, int, bool)) for v in options.values()):
        raise fail(where, f'provider_options of target {tname!r} must be a table, e.g. {{ "device_id" = "0" }}')
    try:
        pairs = [f"{k}={str(v).lower() if isinstance(v, bool) else v}" for k, v in options.items()]
        return providers.parse(names, pairs)
    except ConfigError as exc:
        words = str(exc).replace("--ep-option", "provider_options").replace("--ep", "providers")
        raise fail(where, f"target {tname!r}: {words}") from None


def _board(
    bdata: object, tname: str, text: str, line: int, fail: Callable[[int, str], InventoryError], runtime: str
) -> Board:
    if not isinstance(bdata, dict):
        raise fail(line, f"boards of target {tname!r} must be tables ([[targets.{tname}.boards]])")
    for key, value in bdata.items():
        where = _line_of(text, rf"^\s*{re.escape(key)}\s*=", line - 1)
        if key not in BOARD_KEYS:
            raise fail(where, f"unknown board key {key!r}; known: {', '.join(sorted(BOARD_KEYS))}")
        want = BOARD_KEYS[key]
        if (
            ("int" in want and (not isinstance(value, int) or isinstance(value, bool)))
            or ("str" in want and not isinstance(value, str))
            or ("bool" in want and not isinstance(value, bool))
        ):
            kind = "a whole number" if "int" in want else "true or false" if "bool" in want else "a string"
            raise fail(where, f"board key {key!r} must be {kind}, got {value!r}")
    if "name" not in bdata:
        raise fail(line, 'a board needs a name (name = "pi4-lab-1")')
    if not NAME.match(bdata["name"]):
        raise fail(line, f"board name {bdata['name']!r}: use letters, digits, '.', '_' or '-'")
    if "host" not in bdata and "agent" not in bdata:
        raise fail(line, f"board {bdata['name']!r} needs host (SSH) or agent (direct HOST:PORT)")
    for key in ("port", "agent_port"):
        if key in bdata and not 0 < bdata[key] < 65536:
            raise fail(_line_of(text, rf"^\s*{key}\s*=", line - 1), f"{key} {bdata[key]} is not a TCP port")
    values = dict(bdata)
    values.setdefault("host", "")
    values.setdefault("tflite", runtime == "litert")
    return Board(target=tname, **values)
