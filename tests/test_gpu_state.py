"""The GPU state readers against sysfs trees laid out as a Jetson AGX Orin's (JetPack 5, L4T R35) and NVML
answers of a discrete GPU. The trees are written from NVIDIA's documented layout (devfreq, nvpmodel's status
and configuration, INA3221 hwmon rails), not captured from a board: these readers have never run on a real
Jetson or a real NVML."""

from __future__ import annotations

import threading
from pathlib import Path
from types import SimpleNamespace

import pytest

from netcut_agent import board, gpu_state
from netcut_agent.benchmark import run_benchmark
from netcut_agent.measure import TimingConfig
from netcut_agent.requests import BenchmarkRequest

GPU = "sys/class/devfreq/17000000.ga10b"
RAILS = "sys/bus/i2c/drivers/ina3221/1-0040/hwmon/hwmon3"
NVPMODEL_CONF = """< PARAM TYPE=FILE NAME=CPU_ONLINE >
< POWER_MODEL ID=0 NAME=MAXN >
CPU_ONLINE CORE_0 1
< POWER_MODEL ID=1 NAME=MODE_15W >
CPU_ONLINE CORE_0 1
< POWER_MODEL ID=2 NAME=MODE_30W >
< PM_CONFIG DEFAULT=2 >
"""
ORIN = {
    "etc/nv_tegra_release": "# R35 (release), REVISION: 4.1, GCID: 33958178, BOARD: t186ref, EABI: aarch64, "
    "DATE: Tue Aug  1 19:57:35 UTC 2023\n",
    "proc/device-tree/model": "NVIDIA Jetson AGX Orin Developer Kit\x00",
    "proc/device-tree/compatible": "nvidia,p3737-0000+p3701-0005\x00nvidia,p3701-0005\x00nvidia,tegra234\x00",
    "etc/nvpmodel.conf": NVPMODEL_CONF,
    f"{GPU}/available_frequencies": "306000000 408000000 510000000 612000000 714000000 816000000 918000000 "
    "1020000000 1122000000 1224000000 1300500000\n",
    "sys/class/thermal/thermal_zone0/type": "cpu-thermal\n",
    "sys/class/thermal/thermal_zone0/temp": "47250\n",
    "sys/class/thermal/thermal_zone1/type": "gpu-thermal\n",
    "sys/class/thermal/thermal_zone1/temp": "45500\n",
    f"{RAILS}/in1_label": "VDD_GPU_SOC\n",
    f"{RAILS}/in1_input": "5088\n",
    f"{RAILS}/curr1_input": "2264\n",
    f"{RAILS}/in2_label": "VDD_CPU_CV\n",
    f"{RAILS}/in2_input": "5096\n",
    f"{RAILS}/curr2_input": "792\n",
    f"{RAILS}/in3_label": "VIN_SYS_5V0\n",
    f"{RAILS}/in3_input": "5048\n",
    f"{RAILS}/curr3_input": "1568\n",
    "sys/kernel/debug/bpmp/debug/clk/emc/rate": "3199000000\n",
}
# MAXN with jetson_clocks: the GPU's devfreq floor raised to its ceiling.
MAXN_CLOCKS_ON = {
    **ORIN,
    "var/lib/nvpmodel/status": "pmode:0000 fmode:quiet\n",
    f"{GPU}/cur_freq": "1300500000\n",
    f"{GPU}/min_freq": "1300500000\n",
    f"{GPU}/max_freq": "1300500000\n",
}
MAXN_CLOCKS_OFF = {**MAXN_CLOCKS_ON, f"{GPU}/cur_freq": "306000000\n", f"{GPU}/min_freq": "306000000\n"}
MODE_15W = {
    **MAXN_CLOCKS_OFF,
    "var/lib/nvpmodel/status": "pmode:0001 fmode:quiet\n",
    f"{GPU}/max_freq": "612000000\n",
}


def tree(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_a_jetson_is_read_from_its_sysfs_nvpmodel_files_and_rails(tmp_path):
    root = tree(tmp_path, MAXN_CLOCKS_ON)
    assert gpu_state.is_jetson(root)
    s = gpu_state.read_jetson(root, nvpmodel_q=None)
    assert s.kind == "jetson" and s.name == "NVIDIA Jetson AGX Orin Developer Kit" and s.release == "R35.4.1"
    assert (s.power_mode, s.power_mode_id) == ("MAXN", 0)
    assert (s.gpu_mhz, s.gpu_min_mhz, s.gpu_max_mhz) == pytest.approx((1300.5, 1300.5, 1300.5))
    assert s.memory_mhz == pytest.approx(3199.0) and s.celsius == pytest.approx(45.5)
    assert [r.name for r in s.rails] == ["VDD_GPU_SOC", "VDD_CPU_CV", "VIN_SYS_5V0"]
    assert s.rails[0].watts == pytest.approx(5.088 * 2.264) and s.power_watts == pytest.approx(5.048 * 1.568)


def test_jetson_clocks_off_and_on_are_told_apart(tmp_path):
    on = gpu_state.read_jetson(tree(tmp_path / "on", MAXN_CLOCKS_ON), None)
    off = gpu_state.read_jetson(tree(tmp_path / "off", MAXN_CLOCKS_OFF), None)
    assert (on.jetson_clocks, off.jetson_clocks) == ("on", "off")
    assert off.gpu_mhz == pytest.approx(306.0) and off.gpu_max_mhz == pytest.approx(1300.5)
    assert gpu_state.changes(off, on) == ["jetson_clocks went on"]


def test_nvpmodel_q_output_is_preferred_to_its_status_file(tmp_path):
    root = tree(tmp_path, MAXN_CLOCKS_ON)
    s = gpu_state.read_jetson(root, nvpmodel_q=lambda: "NV Power Mode: MODE_30W\n2\n")
    assert (s.power_mode, s.power_mode_id) == ("MODE_30W", 2)


def test_a_board_without_a_gpu_reads_as_none(tmp_path):
    assert not gpu_state.is_jetson(tree(tmp_path, {"proc/device-tree/model": "Raspberry Pi 4 Model B Rev 1.4\x00"}))
    gpu_state._nvml.cache_clear()
    s = gpu_state.read()  # this machine: no Jetson; nvidia-ml-py installed (the dev extra) but no driver
    assert s.kind == "" and "NVML is not usable here" in s.unavailable_reason


def test_the_nvml_reader_calls_what_nvidia_ml_py_has_with_its_reason_bits():
    import pynvml

    for name in ("nvmlDeviceGetHandleByIndex", "nvmlDeviceGetName", "nvmlSystemGetDriverVersion",
                 "nvmlDeviceGetClockInfo", "nvmlDeviceGetMaxClockInfo", "nvmlDeviceGetTemperature",
                 "nvmlDeviceGetPowerUsage", "nvmlDeviceGetCurrentClocksEventReasons"):  # fmt: skip
        assert callable(getattr(pynvml, name))
    assert (pynvml.NVML_CLOCK_SM, pynvml.NVML_CLOCK_MEM, pynvml.NVML_TEMPERATURE_GPU) == (1, 2, 0)
    for bit, name in gpu_state.NVML_REASONS.items():
        camel = "".join(w.capitalize() for w in name.split("_"))
        assert getattr(pynvml, f"nvmlClocksThrottleReason{camel}") == bit, name
    quiet = pynvml.nvmlClocksThrottleReasonGpuIdle | pynvml.nvmlClocksThrottleReasonApplicationsClocksSetting
    assert gpu_state.NVML_QUIET == quiet | pynvml.nvmlClocksThrottleReasonDisplayClockSetting


def nvml_of(readings: list[dict]) -> SimpleNamespace:
    """NVML's calls answering recorded readings in turn (pynvml's names and constants)."""
    it = iter(readings)
    now: dict = {}

    def handle(index):
        now.clear()
        now.update(next(it))
        return index

    return SimpleNamespace(
        NVML_CLOCK_SM=1,
        NVML_CLOCK_MEM=2,
        NVML_TEMPERATURE_GPU=0,
        nvmlDeviceGetHandleByIndex=handle,
        nvmlDeviceGetName=lambda h: b"NVIDIA H200",
        nvmlSystemGetDriverVersion=lambda: "570.124.06",
        nvmlDeviceGetClockInfo=lambda h, kind: now["sm"] if kind == 1 else now["mem"],
        nvmlDeviceGetMaxClockInfo=lambda h, kind: 1980,
        nvmlDeviceGetTemperature=lambda h, kind: now["celsius"],
        nvmlDeviceGetPowerUsage=lambda h: now["mw"],
        nvmlDeviceGetCurrentClocksEventReasons=lambda h: now["reasons"],
    )


def test_nvml_reports_clocks_power_and_only_the_throttle_reasons_that_slow_the_gpu():
    nvml = nvml_of(
        [
            {"sm": 1980, "mem": 3201, "celsius": 36, "mw": 121500, "reasons": 0x1},  # idle
            {"sm": 1410, "mem": 3201, "celsius": 84, "mw": 699000, "reasons": 0x4 | 0x20},
        ]
    )
    idle = gpu_state.read_nvml(nvml)
    assert (idle.kind, idle.name, idle.release) == ("nvml", "NVIDIA H200", "570.124.06")
    assert (idle.gpu_mhz, idle.gpu_max_mhz, idle.memory_mhz) == (1980, 1980, 3201)
    assert idle.power_watts == pytest.approx(121.5) and idle.throttle_reasons == []
    hot = gpu_state.read_nvml(nvml)
    assert hot.throttle_reasons == ["sw_power_cap", "sw_thermal_slowdown"] and hot.celsius == 84


def test_the_sampler_flags_a_gpu_clock_drop_and_a_power_mode_change(tmp_path, monkeypatch):
    on, low = tree(tmp_path / "on", MAXN_CLOCKS_ON), tree(tmp_path / "low", MODE_15W)
    monkeypatch.setattr(gpu_state, "ROOT", on)
    sampler = board.StateSampler(interval=60)
    with sampler:
        monkeypatch.setattr(gpu_state, "ROOT", low)  # nvpmodel -m 1 while the model runs
    assert sampler.start_state.gpu.power_mode == "MAXN" and sampler.end_state.gpu.power_mode == "MODE_15W"
    assert sampler.clock_dropped  # 1300 MHz to 306 MHz
    assert sampler.gpu_changes == ["the power mode changed from MAXN to MODE_15W", "jetson_clocks went off"]


def test_a_power_mode_change_between_two_benchmarks_is_flagged_on_the_second(tmp_path, monkeypatch, tiny_onnx):
    store = tmp_path / "store" / "models"
    store.mkdir(parents=True)
    model = store / "tiny.onnx"
    model.write_bytes(tiny_onnx.read_bytes())
    req = BenchmarkRequest("0" * 64, threads=1, timing=TimingConfig(2, 0.0, 5, 0.0, 5.0))
    monkeypatch.setattr(gpu_state, "ROOT", tree(tmp_path / "maxn", MAXN_CLOCKS_OFF))
    monkeypatch.setattr("netcut_agent.benchmark._previous_gpu", None)
    first = run_benchmark(req, model, "onnx", lambda e: None, threading.Event())
    assert not any(w.startswith("power mode:") for w in first.warnings)
    assert first.state_end.gpu.power_mode == "MAXN"
    monkeypatch.setattr(gpu_state, "ROOT", tree(tmp_path / "15w", MODE_15W))
    second = run_benchmark(req, model, "onnx", lambda e: None, threading.Event())
    flagged = [w for w in second.warnings if w.startswith("power mode:")]
    assert flagged and "from MAXN to MODE_15W" in flagged[0] and "not comparable" in flagged[0]
