"""What the board is and what state it is in: read from /proc and /sys, cheaply.

Everything here degrades to empty values where a file does not exist (containers, VMs,
non-Linux), because a missing thermal zone must never stop a benchmark.
"""

from __future__ import annotations

import glob
import os
import platform
import shutil
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from . import gpu_state

CPUFREQ = Path("/sys/devices/system/cpu/cpu0/cpufreq")
CPU0_CACHE = Path("/sys/devices/system/cpu/cpu0/cache")
SIZE_UNITS = {"K": 1024, "M": 1024**2, "G": 1024**3}  # sysfs cache sizes: "48K", "2048K"
# vcgencmd get_throttled bits that mean "limited right now" (0-3); 16-19 are "since boot".
THROTTLE_NOW_MASK = 0xF


@dataclass
class BoardDescription:
    cpu_model: str = ""
    cpu_cores: int = 0
    board_model: str = ""
    kernel: str = ""
    machine: str = ""
    python_version: str = ""
    hostname: str = ""
    os: str = ""
    memory_bytes: int = 0
    l2_cache_bytes: int = 0
    l3_cache_bytes: int = 0


@dataclass
class ThermalReading:
    zone: str
    celsius: float


@dataclass
class BoardState:
    timestamp_unix: float = 0.0
    governor: str = ""
    cpu_mhz: float = 0.0
    cpu_max_mhz: float = 0.0
    temperatures: list[ThermalReading] = field(default_factory=list)
    max_celsius: float = 0.0
    throttled: bool = False
    throttle_flags: int = 0
    throttle_source: str = ""
    load_1m: float = 0.0
    memory_available_bytes: int = 0
    gpu: gpu_state.GpuState = field(default_factory=gpu_state.GpuState)


def _read(path: str | Path) -> str:
    try:
        return Path(path).read_text(errors="replace").strip()
    except OSError:
        return ""


def _meminfo(key: str) -> int:
    for line in _read("/proc/meminfo").splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    return 0


def _cpu_model() -> str:
    info = _read("/proc/cpuinfo")
    for key in ("model name", "Model", "Hardware", "cpu model"):
        for line in info.splitlines():
            if line.split(":")[0].strip() == key:
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def _os_name() -> str:
    for line in _read("/etc/os-release").splitlines():
        if line.startswith("PRETTY_NAME="):
            return line.split("=", 1)[1].strip('"')
    return platform.platform()


def cache_bytes(level: int, root: Path = CPU0_CACHE) -> int:
    """cpu0's data (or unified) cache of that level, in bytes, from sysfs ("2048K"); 0 where not said. The
    host's per-kernel model uses the L2's size: a model whose weights and activations fit it runs faster
    per kernel than one that streams them (netcut.kernels.warmth)."""
    for index in sorted(root.glob("index*")):
        if _read(index / "level") != str(level) or _read(index / "type") not in ("Data", "Unified"):
            continue
        size = _read(index / "size").upper()
        try:
            return int(size[:-1]) * SIZE_UNITS[size[-1]] if size[-1:] in SIZE_UNITS else int(size)
        except ValueError:
            return 0
    return 0


def describe() -> BoardDescription:
    return BoardDescription(
        cpu_model=_cpu_model(),
        cpu_cores=os.cpu_count() or 0,
        board_model=_read("/proc/device-tree/model").rstrip("\x00"),
        kernel=platform.release(),
        machine=platform.machine(),
        python_version=platform.python_version(),
        hostname=socket.gethostname(),
        os=_os_name(),
        memory_bytes=_meminfo("MemTotal"),
        l2_cache_bytes=cache_bytes(2),
        l3_cache_bytes=cache_bytes(3),
    )


def _thermal() -> list[ThermalReading]:
    readings = []
    for zone in sorted(glob.glob("/sys/class/thermal/thermal_zone*")):
        raw = _read(f"{zone}/temp")
        try:
            celsius = int(raw) / 1000.0
        except ValueError:
            continue
        kind = _read(f"{zone}/type")
        readings.append(
            ThermalReading(f"{os.path.basename(zone)} ({kind})" if kind else os.path.basename(zone), celsius)
        )
    return readings


def _vcgencmd_throttled() -> int | None:
    """The Raspberry Pi firmware's throttling bits, or None where there is no vcgencmd."""
    exe = shutil.which("vcgencmd")
    if not exe:
        return None
    try:
        out = subprocess.run([exe, "get_throttled"], capture_output=True, text=True, timeout=2).stdout
        return int(out.strip().split("=")[1], 16)
    except (OSError, subprocess.SubprocessError, IndexError, ValueError):
        return None


def _mhz(path: Path) -> float:
    raw = _read(path)
    return int(raw) / 1000.0 if raw.isdigit() else 0.0


def sample_state(with_vcgencmd: bool = True) -> BoardState:
    temps = _thermal()
    flags = _vcgencmd_throttled() if with_vcgencmd else None
    try:
        load = os.getloadavg()[0]
    except OSError:
        load = 0.0
    state = BoardState(
        timestamp_unix=time.time(),
        governor=_read(CPUFREQ / "scaling_governor"),
        cpu_mhz=_mhz(CPUFREQ / "scaling_cur_freq"),
        cpu_max_mhz=_mhz(CPUFREQ / "cpuinfo_max_freq"),
        temperatures=temps,
        max_celsius=max((t.celsius for t in temps), default=0.0),
        load_1m=load,
        memory_available_bytes=_meminfo("MemAvailable"),
        gpu=gpu_state.read(with_commands=with_vcgencmd),
    )
    if flags is not None:
        state.throttle_flags = flags
        state.throttled = bool(flags & THROTTLE_NOW_MASK)
        state.throttle_source = "vcgencmd"
    elif temps:
        state.throttle_source = "thermal"
    return state


class StateSampler:
    """Samples the board in a background thread during a run (every `interval` seconds).

    Reading a few sysfs files takes microseconds, so the sampler does not disturb the
    timings; vcgencmd (a subprocess) is only called at the start and the end.
    """

    def __init__(self, interval: float = 0.5):
        self.interval = interval
        self.start_state: BoardState | None = None
        self.end_state: BoardState | None = None
        self._mhz: list[float] = []
        self._gpu_mhz: list[float] = []
        self._max_celsius = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="board-sampler", daemon=True)

    def __enter__(self) -> "StateSampler":
        self.start_state = sample_state()
        self._note(self.start_state)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.end_state = sample_state()
        self._note(self.end_state)

    def _note(self, state: BoardState) -> None:
        if state.cpu_mhz:
            self._mhz.append(state.cpu_mhz)
        if state.gpu.gpu_mhz:
            self._gpu_mhz.append(state.gpu.gpu_mhz)
        self._max_celsius = max(self._max_celsius, state.max_celsius, state.gpu.celsius)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self._note(sample_state(with_vcgencmd=False))

    @property
    def max_celsius(self) -> float:
        return self._max_celsius

    @property
    def throttled(self) -> bool:
        states = [s for s in (self.start_state, self.end_state) if s is not None]
        return any(s.throttled or bool(s.gpu.throttle_reasons) for s in states)

    @property
    def clock_dropped(self) -> bool:
        """The CPU's or the GPU's clock fell below 90% of the highest seen in this run, or the GPU's power mode
        or jetson_clocks changed during it."""
        return any(bool(mhz) and min(mhz) < 0.9 * max(mhz) for mhz in (self._mhz, self._gpu_mhz)) or bool(
            self.gpu_changes
        )

    @property
    def gpu_changes(self) -> list[str]:
        if self.start_state is None or self.end_state is None:
            return []
        return gpu_state.changes(self.start_state.gpu, self.end_state.gpu)


# Other processes' CPU use during a run past which its figures are flagged as measured on a busy board:
# a fifth of a core on average, or a twentieth of all CPU time stolen by a hypervisor.
BUSY_OTHER_CORES = 0.2
BUSY_STEAL = 0.05


@dataclass
class Interference:
    """What else ran on the board while a measurement ran (Linux: /proc/stat, /proc/pressure/cpu)."""

    available: bool = False  # the kernel's CPU accounting was readable
    other_cpu_cores: float = 0.0  # CPU time of every other process per second of the run, in cores
    steal_fraction: float = 0.0  # of all CPU time in the run, taken by the hypervisor
    cpu_pressure_avg10: float = 0.0  # PSI "some" avg10 (%) at the end; 0 where the kernel has no PSI
    load_1m: float = 0.0  # at the end of the run
    busy: bool = False

    def words(self) -> str:
        return (
            f"busy: other processes used {self.other_cpu_cores:.2f} cores on average during the run "
            f"(steal {self.steal_fraction:.0%}, CPU pressure {self.cpu_pressure_avg10:.0f}%, load {self.load_1m:.1f}); "
            "its times are those of a shared board"
        )


def _cpu_ticks() -> tuple[int, int, int] | None:
    """All CPUs' (busy, steal, total) clock ticks since boot, from /proc/stat's first line."""
    fields = _read("/proc/stat").splitlines()[:1]
    if not fields or not fields[0].startswith("cpu "):
        return None
    values = [int(v) for v in fields[0].split()[1:9]]  # user nice system idle iowait irq softirq steal
    values += [0] * (8 - len(values))
    idle, steal, total = values[3] + values[4], values[7], sum(values)
    return total - idle - steal, steal, total


def _cpu_pressure() -> float:
    for line in _read("/proc/pressure/cpu").splitlines():
        if line.startswith("some "):
            for part in line.split()[1:]:
                if part.startswith("avg10="):
                    return float(part.split("=", 1)[1])
    return 0.0


class InterferenceMeter:
    """Measures, around a run, the CPU time every other process took: the board's busy time minus this
    process's own (all its threads: the runtime's included)."""

    def __enter__(self) -> "InterferenceMeter":
        self._start = (time.monotonic(), _cpu_ticks(), os.times())
        self.result = Interference()
        return self

    def __exit__(self, *exc) -> None:
        t0, ticks0, own0 = self._start
        ticks1, own1, elapsed = _cpu_ticks(), os.times(), time.monotonic() - t0
        if ticks0 is None or ticks1 is None or elapsed <= 0:
            return
        hz = os.sysconf("SC_CLK_TCK")
        busy, steal, total = (b - a for a, b in zip(ticks0, ticks1))
        own = (own1.user - own0.user) + (own1.system - own0.system)
        other = max(0.0, busy / hz - own) / elapsed
        try:
            load = os.getloadavg()[0]
        except OSError:
            load = 0.0
        steal_fraction = steal / total if total > 0 else 0.0
        self.result = Interference(
            available=True,
            other_cpu_cores=other,
            steal_fraction=steal_fraction,
            cpu_pressure_avg10=_cpu_pressure(),
            load_1m=load,
            busy=other >= BUSY_OTHER_CORES or steal_fraction >= BUSY_STEAL,
        )


def wait_until_cool(target_celsius: float, on_wait, cancelled: threading.Event, timeout: float = 600.0) -> None:
    """Block until the hottest thermal zone is below target (no-op where none is readable)."""
    deadline = time.monotonic() + timeout
    while not cancelled.is_set():
        state = sample_state(with_vcgencmd=False)
        if not state.temperatures or state.max_celsius < target_celsius:
            return
        if time.monotonic() > deadline:
            from .errors import DeadlineExceeded

            raise DeadlineExceeded(
                f"the board stayed above {target_celsius:.0f} C for {timeout:.0f} s "
                f"(now {state.max_celsius:.1f} C); improve its cooling or raise the cool-down target"
            )
        on_wait(state.max_celsius)
        cancelled.wait(2.0)
