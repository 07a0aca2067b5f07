"""The GPU's state beside the CPU's: a Jetson's power mode, clocks, temperature and rails from sysfs and
nvpmodel, or a discrete GPU's clocks, temperature, power and throttle reasons from NVML.

Readers take a root path (and, for commands and NVML, the thing to call), so tests read recorded trees.
Like board.py, everything degrades to empty values: a missing file never stops a benchmark.
"""

from __future__ import annotations

import functools
import glob
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

JETSON = "jetson"
NVML = "nvml"
ROOT = Path("/")  # where sysfs, /proc and /etc are read from (tests point it at a recorded tree)
# Devfreq names of Jetson GPUs: Orin ga10b, Xavier gv11b, TX2 gp10b, Nano/TX1 gm20b (or a plain "gpu").
_GPU_DEVFREQ = re.compile(r"(ga10b|gv11b|gp10b|gm20b|gpu)$")
_INPUT_RAILS = ("VDD_IN", "POM_5V_IN", "VIN_SYS_5V0")
# NVML's clock-throttle ("clocks event") reason bits, as nvml.h defines them; idle and an application
# clock setting are not slowdowns.
NVML_REASONS = {
    0x4: "sw_power_cap",
    0x8: "hw_slowdown",
    0x10: "sync_boost",
    0x20: "sw_thermal_slowdown",
    0x40: "hw_thermal_slowdown",
    0x80: "hw_power_brake_slowdown",
    0x200: "board_limit",
    0x400: "reliability",
}
NVML_QUIET = 0x1 | 0x2 | 0x100  # gpu idle, applications clocks setting, display clock setting


@dataclass
class PowerRail:
    name: str
    watts: float


@dataclass
class GpuState:
    kind: str = ""
    name: str = ""
    power_mode: str = ""
    power_mode_id: int = -1
    jetson_clocks: str = ""
    gpu_mhz: float = 0.0
    gpu_max_mhz: float = 0.0
    gpu_min_mhz: float = 0.0
    memory_mhz: float = 0.0
    celsius: float = 0.0
    power_watts: float = 0.0
    rails: list[PowerRail] = field(default_factory=list)
    throttle_reasons: list[str] = field(default_factory=list)
    release: str = ""
    unavailable_reason: str = ""


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace").strip().rstrip("\x00")
    except OSError:
        return ""


def _number(path: Path) -> float | None:
    try:
        return float(_read(path).split()[0])
    except (ValueError, IndexError):
        return None


def is_jetson(root: Path = Path("/")) -> bool:
    return (root / "etc/nv_tegra_release").is_file() or "nvidia,tegra" in _read(root / "proc/device-tree/compatible")


def l4t_release(root: Path) -> str:
    """'R35.4.1' from /etc/nv_tegra_release's '# R35 (release), REVISION: 4.1, ...'."""
    m = re.search(r"R(\d+)\s*\(release\),\s*REVISION:\s*([\d.]+)", _read(root / "etc/nv_tegra_release"))
    return f"R{m.group(1)}.{m.group(2)}" if m else ""


def _run_nvpmodel() -> str:
    exe = shutil.which("nvpmodel")
    if not exe:
        return ""
    try:
        return subprocess.run([exe, "-q"], capture_output=True, text=True, timeout=5).stdout
    except (OSError, subprocess.SubprocessError):
        return ""


def power_mode(root: Path, nvpmodel_q: Callable[[], str] | None) -> tuple[str, int]:
    """(name, id) of the power mode: `nvpmodel -q` ('NV Power Mode: MAXN' then the id), else nvpmodel's status
    file and its configuration (/var/lib/nvpmodel/status 'pmode:0000', /etc/nvpmodel.conf)."""
    out = nvpmodel_q() if nvpmodel_q else ""
    m = re.search(r"NV Power Mode:\s*(\S+)\s*\n\s*(\d+)", out)
    if m:
        return m.group(1), int(m.group(2))
    m = re.search(r"pmode:(\d+)", _read(root / "var/lib/nvpmodel/status"))
    if not m:
        return "", -1
    mode = int(m.group(1))
    for name_id in re.finditer(r"<\s*POWER_MODEL\s+ID=(\d+)\s+NAME=(\S+?)\s*>", _read(root / "etc/nvpmodel.conf")):
        if int(name_id.group(1)) == mode:
            return name_id.group(2), mode
    return "", mode


def _gpu_devfreq(root: Path) -> Path | None:
    for path in sorted(glob.glob(str(root / "sys/class/devfreq/*"))):
        if _GPU_DEVFREQ.search(Path(path).name) or _GPU_DEVFREQ.search(_read(Path(path) / "device/of_node/name")):
            return Path(path)
    return None


def _rails(root: Path) -> list[PowerRail]:
    """INA3221 power monitors: hwmon (JetPack 5+: inN_label, inN_input mV, currN_input mA) or the older iio
    driver (rail_name_N, in_powerN_input mW)."""
    rails = []
    for label in sorted(glob.glob(str(root / "sys/bus/i2c/drivers/ina3221/*/hwmon/hwmon*/in*_label"))):
        path = Path(label)
        n = re.search(r"in(\d+)_label$", path.name).group(1)
        mv, ma = _number(path.parent / f"in{n}_input"), _number(path.parent / f"curr{n}_input")
        if mv is not None and ma is not None:
            rails.append(PowerRail(_read(path), mv * ma / 1e6))
    for name in sorted(glob.glob(str(root / "sys/bus/i2c/drivers/ina3221x/*/iio:device*/rail_name_*"))):
        path = Path(name)
        n = path.name.rsplit("_", 1)[1]
        mw = _number(path.parent / f"in_power{n}_input")
        if mw is not None:
            rails.append(PowerRail(_read(path), mw / 1000.0))
    return rails


def _gpu_celsius(root: Path) -> float:
    for zone in sorted(glob.glob(str(root / "sys/class/thermal/thermal_zone*"))):
        if "gpu" in _read(Path(zone) / "type").lower():
            milli = _number(Path(zone) / "temp")
            if milli is not None:
                return milli / 1000.0
    return 0.0


def _emc_mhz(root: Path) -> float:
    for rel in ("sys/kernel/debug/bpmp/debug/clk/emc/rate", "sys/kernel/debug/clk/emc/clk_rate"):
        hz = _number(root / rel)
        if hz:
            return hz / 1e6
    return 0.0


def read_jetson(root: Path = Path("/"), nvpmodel_q: Callable[[], str] | None = _run_nvpmodel) -> GpuState:
    """A Jetson's GPU state. jetson_clocks 'on' where the GPU's devfreq floor is pinned at its ceiling (what
    `jetson_clocks` does), 'off' where the floor is below it, '' where the GPU's devfreq is not readable."""
    state = GpuState(kind=JETSON, name=_read(root / "proc/device-tree/model"), release=l4t_release(root))
    state.power_mode, state.power_mode_id = power_mode(root, nvpmodel_q)
    devfreq = _gpu_devfreq(root)
    if devfreq is not None:
        cur, low, high = (_number(devfreq / f) for f in ("cur_freq", "min_freq", "max_freq"))
        state.gpu_mhz, state.gpu_min_mhz, state.gpu_max_mhz = ((v or 0.0) / 1e6 for v in (cur, low, high))
        if low is not None and high is not None:
            state.jetson_clocks = "on" if low >= high else "off"
    else:
        state.unavailable_reason = "no GPU devfreq node under /sys/class/devfreq"
    state.memory_mhz = _emc_mhz(root)
    state.celsius = _gpu_celsius(root)
    state.rails = _rails(root)
    state.power_watts = next((r.watts for r in state.rails if r.name in _INPUT_RAILS), 0.0)
    return state


def _nvml_call(fn: Callable, *args):  # noqa: ANN202 - whatever NVML returns
    try:
        return fn(*args)
    except Exception:  # noqa: BLE001 - pynvml's NVMLError_NotSupported and friends: a field left empty
        return None


def read_nvml(nvml, index: int = 0) -> GpuState:  # noqa: ANN001 - the pynvml module, or a recorded stand-in
    """A discrete GPU's state through NVML (nvidia-ml-py's pynvml), initialised by the caller."""
    handle = nvml.nvmlDeviceGetHandleByIndex(index)
    state = GpuState(kind=NVML)
    name = _nvml_call(nvml.nvmlDeviceGetName, handle)
    state.name = name.decode() if isinstance(name, bytes) else (name or "")
    driver = _nvml_call(nvml.nvmlSystemGetDriverVersion)
    state.release = driver.decode() if isinstance(driver, bytes) else (driver or "")
    state.gpu_mhz = float(_nvml_call(nvml.nvmlDeviceGetClockInfo, handle, nvml.NVML_CLOCK_SM) or 0)
    state.gpu_max_mhz = float(_nvml_call(nvml.nvmlDeviceGetMaxClockInfo, handle, nvml.NVML_CLOCK_SM) or 0)
    state.memory_mhz = float(_nvml_call(nvml.nvmlDeviceGetClockInfo, handle, nvml.NVML_CLOCK_MEM) or 0)
    state.celsius = float(_nvml_call(nvml.nvmlDeviceGetTemperature, handle, nvml.NVML_TEMPERATURE_GPU) or 0)
    state.power_watts = float(_nvml_call(nvml.nvmlDeviceGetPowerUsage, handle) or 0) / 1000.0
    reasons_fn = getattr(nvml, "nvmlDeviceGetCurrentClocksEventReasons", None) or getattr(
        nvml, "nvmlDeviceGetCurrentClocksThrottleReasons"
    )
    bits = int(_nvml_call(reasons_fn, handle) or 0) & ~NVML_QUIET
    state.throttle_reasons = [name for bit, name in NVML_REASONS.items() if bits & bit] + (
        [f"0x{bits & ~sum(NVML_REASONS):x}"] if bits & ~sum(NVML_REASONS) else []
    )
    return state


@functools.lru_cache(maxsize=1)
def _nvml():  # noqa: ANN202 - the initialised pynvml module, or the reason there is none
    try:
        import pynvml
    except ImportError:
        return None, "nvidia-ml-py is not installed (pip install 'netcut[agent-gpu]')"
    try:
        pynvml.nvmlInit()
        if pynvml.nvmlDeviceGetCount() < 1:
            return None, "NVML sees no GPU"
    except Exception as exc:  # noqa: BLE001 - NVMLError_LibraryNotFound, _DriverNotLoaded...
        return None, f"NVML is not usable here: {exc}"
    return pynvml, ""


def read(with_commands: bool = True) -> GpuState:
    """This board's GPU state: a Jetson's, else NVML's where it answers, else an empty state saying why.
    `with_commands`: run nvpmodel (a subprocess, and only on the real root; the sampler's loop reads files)."""
    if is_jetson(ROOT):
        return read_jetson(ROOT, _run_nvpmodel if with_commands and ROOT == Path("/") else None)
    nvml, why = _nvml()
    if nvml is None:
        return GpuState(unavailable_reason=why)
    try:
        return read_nvml(nvml)
    except Exception as exc:  # noqa: BLE001 - a GPU that went away: the benchmark goes on
        return GpuState(kind=NVML, unavailable_reason=f"NVML failed: {exc}")


@functools.lru_cache(maxsize=1)
def gpu_name() -> str:
    """What a TensorRT engine is valid for besides its version: the Jetson module or the GPU's name."""
    state = read(with_commands=False)
    return state.name or "no-gpu"


def changes(before: GpuState, after: GpuState) -> list[str]:
    """What changed between two states that changes a GPU's latency: the power mode, jetson_clocks."""
    out = []
    if before.power_mode_id != after.power_mode_id and -1 not in (before.power_mode_id, after.power_mode_id):
        out.append(
            f"the power mode changed from {before.power_mode or before.power_mode_id} to "
            f"{after.power_mode or after.power_mode_id}"
        )
    if before.jetson_clocks and after.jetson_clocks and before.jetson_clocks != after.jetson_clocks:
        out.append(f"jetson_clocks went {after.jetson_clocks}")
    return out
