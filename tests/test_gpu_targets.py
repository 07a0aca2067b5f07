"""The host's side of GPU targets: provider lists from the command line and the inventory, a target's
identity (providers, GPU, a Jetson's power state), and a profile that cannot give per-layer device times
falling back to end-to-end rows, on a real local agent and a real SQLite table."""

from __future__ import annotations

import dataclasses
import json
import sqlite3
from pathlib import Path

import pytest

from conftest import run_cli
from netcut_host import inventory, providers
from netcut_host.errors import ConfigError
from netcut_host.records import (
    AgentInfo,
    AgentResult,
    BoardDescription,
    BoardState,
    GpuState,
    Provider,
    RuntimeInfo,
    Stats,
    StoreInfo,
    Timing,
)
from netcut_host.targets import identity_description, state_changed
from netcut_protos.providers import CPU, CUDA, TENSORRT

FAST = ["--min-seconds", "0.05", "--warmup-seconds", "0", "--warmup-runs", "2", "--min-runs", "10"]


NO_GPU = GpuState()


def agent_info(gpu: GpuState = NO_GPU, available=(TENSORRT, CUDA, CPU), protocol: int = 2) -> AgentInfo:
    return AgentInfo(
        "0.1.0",
        protocol,
        (RuntimeInfo("onnxruntime", True, "1.20.0", tuple(available)),),
        BoardDescription(cpu_model="ARMv8 Processor rev 1 (v8l)", cpu_cores=12, board_model="Jetson AGX Orin"),
        BoardState(gpu=gpu),
        StoreInfo(),
        False,
        0,
    )


ORIN_MAXN = GpuState(
    kind="jetson", name="NVIDIA Jetson AGX Orin", power_mode="MAXN", power_mode_id=0, jetson_clocks="on"
)


def test_provider_lists_parse_with_options_routed_to_their_provider():
    got = providers.parse(["tensorrt", "cuda", "cpu"], ["trt_fp16_enable=1", "cuda:device_id=1", "tensorrt:x=a:b"])
    assert got == (
        Provider(TENSORRT, (("trt_fp16_enable", "1"), ("x", "a:b"))),
        Provider(CUDA, (("device_id", "1"),)),
        Provider(CPU),
    )
    for names, options, words in (
        (["cuda", "CUDAExecutionProvider"], [], "twice"),
        (["cuda"], ["cpu:threads=1"], "which --ep does not list"),
        (["cuda"], ["no_value"], "KEY=VALUE"),
        ([], ["device_id=0"], "needs --ep"),
    ):
        with pytest.raises(ConfigError, match=words):
            providers.parse(names, options)


def test_identity_holds_providers_gpu_and_a_jetsons_power_state_and_plain_cpu_targets_keep_theirs():
    cpu_only = identity_description(agent_info(), "onnxruntime", 1)
    assert "execution_providers" not in cpu_only and "power_mode" not in cpu_only
    assert cpu_only["timed_call"] == "run_with_iobinding"  # not mixed with rows of agents timing plain run()
    old_agent = identity_description(agent_info(available=(CPU,), protocol=1), "onnxruntime", 1)
    assert "timed_call" not in old_agent  # an older agent's tables keep their identity
    assert identity_description(agent_info(), "onnxruntime", 1, (Provider("cpu"),)) == cpu_only
    gpu = identity_description(
        agent_info(ORIN_MAXN), "onnxruntime", 1, providers.parse(["trt", "cuda"], ["trt_fp16_enable=1"])
    )
    assert gpu["execution_providers"] == [
        {"name": TENSORRT, "options": {"trt_fp16_enable": "1"}},
        {"name": CUDA, "options": {}},
    ]
    assert gpu["gpu"] == "NVIDIA Jetson AGX Orin" and (gpu["power_mode"], gpu["jetson_clocks"]) == ("MAXN", "on")
    fp32 = identity_description(agent_info(ORIN_MAXN), "onnxruntime", 1, providers.parse(["trt", "cuda"], []))
    assert fp32 != gpu  # TensorRT's fp16 flag is another table
    with pytest.raises(ConfigError, match="has no TensorrtExecutionProvider"):
        identity_description(agent_info(available=(CPU,)), "onnxruntime", 1, (Provider("tensorrt"),))
    with pytest.raises(ConfigError, match="protocol 1"):
        identity_description(agent_info(protocol=1), "onnxruntime", 1, (Provider("cuda"),))


def result_in(gpu: GpuState) -> AgentResult:
    stats = Stats(10, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.0, 0.0)
    state = BoardState(gpu=gpu)
    return AgentResult("m", "0.1.0", "onnxruntime", "1.20", CUDA, 1, stats, (), 1.0, 1.0, False, False, (),
                       Timing(), (), BoardDescription(), state, state)  # fmt: skip


def test_a_result_measured_in_another_power_state_is_caught():
    description = identity_description(agent_info(ORIN_MAXN), "onnxruntime", 1, (Provider("cuda"),))
    assert state_changed(description, result_in(ORIN_MAXN)) == ""
    changed = state_changed(description, result_in(dataclasses.replace(ORIN_MAXN, power_mode="MODE_15W")))
    assert "MODE_15W" in changed and "set it back" in changed
    assert "jetson_clocks" in state_changed(description, result_in(dataclasses.replace(ORIN_MAXN, jetson_clocks="off")))
    assert state_changed(identity_description(agent_info(), "onnxruntime", 1), result_in(GpuState())) == ""


def test_the_inventory_carries_a_targets_providers_and_refuses_bad_ones(tmp_path):
    path = tmp_path / "fleet.toml"
    path.write_text(
        '[targets.orin]\nproviders = ["tensorrt", "cuda", "cpu"]\n'
        'provider_options = { "tensorrt:trt_fp16_enable" = "1", "cuda:device_id" = 0 }\n'
        '[[targets.orin.boards]]\nname = "orin-1"\nhost = "orin.lan"\n'
    )
    target = inventory.load(path).targets["orin"]
    assert target.providers == (
        Provider(TENSORRT, (("trt_fp16_enable", "1"),)),
        Provider(CUDA, (("device_id", "0"),)),
        Provider(CPU),
    )
    path.write_text(
        '[targets.orin]\nproviders = ["cuda"]\nprovider_options = { "tensorrt:trt_fp16_enable" = "1" }\n'
        '[[targets.orin.boards]]\nname = "orin-1"\nhost = "orin.lan"\n'
    )
    with pytest.raises(inventory.InventoryError, match=r"fleet.toml:2: .*which providers does not list"):
        inventory.load(path)


def test_a_profile_on_providers_without_per_layer_times_measures_end_to_end(tmp_path):
    db = tmp_path / "t.sqlite"
    argv = ["--model", "mobilenet_v3_small", "--cuts", "features.2", "--input-size", "32", *FAST, "--json"]
    out = run_cli("netcut-host", "profile", *argv, "--mode", "layers", "--ep", "azure,cpu", "--db", str(db))
    assert out.returncode == 0, out.stderr
    assert out.stderr.count("no per-layer device times there") == 1 and "--mode e2e instead of layers" in out.stderr
    report = json.loads(out.stdout)
    assert report["mode"] == "e2e" and report["measured"] == 1 and not report["failed"]
    plain = run_cli("netcut-host", "profile", *argv, "--mode", "e2e", "--db", str(db))
    assert plain.returncode == 0, plain.stderr
    assert json.loads(plain.stdout)["identity"] != report["identity"]  # the provider list is another table
    assert "another identity" not in plain.stderr  # that choice's table, not a stray
    with sqlite3.connect(db) as conn:
        described = dict(conn.execute("SELECT identity, description FROM targets").fetchall())
    assert json.loads(described[report["identity"]])["execution_providers"][0]["name"] == "AzureExecutionProvider"
    assert Path(db).is_file()


def test_info_prints_a_boards_gpu_state_in_one_line():
    from netcut_host.cli.agent import gpu_words

    line = gpu_words(
        dataclasses.replace(ORIN_MAXN, gpu_mhz=1300.5, gpu_max_mhz=1300.5, celsius=45.5, release="R35.4.1")
    )
    assert (
        line
        == "NVIDIA Jetson AGX Orin (jetson, R35.4.1); power mode MAXN, jetson_clocks on; 1300 MHz (max 1300); 45.5 C"
    )
    assert (
        gpu_words(GpuState(unavailable_reason="NVML is not usable here")) == "none readable (NVML is not usable here)"
    )


def test_a_model_that_cannot_be_made_for_a_reason_nobody_foresaw_ends_the_profile_instead_of_hanging(tmp_path):
    # A missing library (onnxconverter-common for fp16, say) raised inside a measuring thread once left
    # `profile` waiting forever; it must end the run with the rows so far kept and the cause named.
    from netcut_host.profiling import Job, ProfileFailed, run
    from netcut_host.records import Timing
    from netcut_host.tables import LatencyDB, RowKey
    from netcut_host.targets import connect

    class Broken:
        def get(self, job):
            raise ImportError("No module named 'onnxconverter_common'")

    with LatencyDB(tmp_path / "t.sqlite") as db, connect("local", None, "onnxruntime", 1) as target:
        with pytest.raises(ProfileFailed, match="ImportError: No module named 'onnxconverter_common'"):
            run([Job("resnet18", None, "e2e")], target, db, RowKey(input_size=32, precision="fp16"), Broken(), Timing())
