"""Execution providers as data, IOBinding timing and TensorRT caches: a real agent over gRPC on loopback
with real onnxruntime sessions. This machine has onnxruntime's CPU build, whose providers are the CPU and
Azure (which runs no ordinary node): enough to check that a provider that cannot run the model is refused,
never timed on the CPU. CUDA and TensorRT themselves have never run here (no GPU)."""

from __future__ import annotations

from pathlib import Path

import grpc
import numpy as np
import onnxruntime as ort
import pytest

from conftest import fast_timing, run_cli
from netcut_agent import providers
from netcut_agent.errors import FailedPrecondition, InvalidArgument
from netcut_agent.providers import ProviderRequest
from netcut_agent.sessions import OrtSession
from netcut_protos.agent.v1 import agent_pb2 as pb
from netcut_protos.providers import CPU, CUDA, TENSORRT, canonical
from test_agent import assert_healthy, bench, status_of

AZURE = "AzureExecutionProvider"


def eps(*names: str, **options) -> list[pb.ExecutionProvider]:
    return [pb.ExecutionProvider(name=n, options=options if i == 0 else {}) for i, n in enumerate(names)]


def test_this_onnxruntime_has_a_provider_that_runs_no_ordinary_node():
    # The refusal tests below rest on it; if a later onnxruntime drops Azure, they need another such provider.
    assert AZURE in ort.get_available_providers() and CUDA not in ort.get_available_providers()


def test_an_unavailable_gpu_provider_is_refused_and_the_agent_serves_on(client, tiny_onnx):
    model_id = client.upload(tiny_onnx)
    code, message = status_of(lambda: bench(client, model_id, execution_providers=eps("cuda")))
    assert code == grpc.StatusCode.FAILED_PRECONDITION
    assert "CUDAExecutionProvider is not available on this board" in message and "agent-gpu" in message
    code, message = status_of(lambda: bench(client, model_id, execution_providers=eps("tensorrt", "cuda", "cpu")))
    assert code == grpc.StatusCode.FAILED_PRECONDITION and "TensorrtExecutionProvider, CUDAExecutionProvider" in message
    assert_healthy(client, {model_id})
    assert bench(client, model_id).stats.n >= 5


def test_a_provider_that_cannot_run_the_model_is_refused_not_timed_on_the_cpu(client, tiny_onnx):
    model_id = client.upload(tiny_onnx)
    code, message = status_of(lambda: bench(client, model_id, execution_providers=eps("azure")))
    assert code == grpc.StatusCode.FAILED_PRECONDITION
    assert "cannot run every node" in message and "add cpu to the list" in message
    assert_healthy(client, {model_id})


def test_the_result_records_the_providers_the_session_really_has_and_where_kernels_ran(client, tiny_onnx):
    model_id = client.upload(tiny_onnx)
    result = bench(client, model_id, execution_providers=eps("azure", "CPUExecutionProvider"))
    assert list(result.session_providers) == [AZURE, CPU]
    placement = {p.provider: p.kernels for p in result.placement}
    assert set(placement) == {CPU} and placement[CPU] >= 3  # the tiny CNN's convolutions, pooling and head
    assert result.execution_provider == AZURE and result.timed_call == "run_with_iobinding"
    assert any(
        f"{placement[CPU]} of {placement[CPU]} kernels ran on the CPU behind azure" in w for w in result.warnings
    )
    plain = bench(client, model_id)  # no list: the CPU alone, as before provider lists
    assert list(plain.session_providers) == [CPU] and {p.provider for p in plain.placement} == {CPU}


def test_malformed_provider_lists_are_invalid_arguments(client, tiny_onnx):
    model_id = client.upload(tiny_onnx)
    for bad, words in (
        (eps("cpu", "CPUExecutionProvider"), "listed twice"),
        ([pb.ExecutionProvider(name="")], "without a name"),
        ([pb.ExecutionProvider(name="cpu", options={"bad key!": "1"})], "not a plain name=value option"),
    ):
        code, message = status_of(lambda: bench(client, model_id, execution_providers=bad))
        assert code == grpc.StatusCode.INVALID_ARGUMENT and words in message
    code, message = status_of(lambda: bench(client, model_id, runtime="litert", execution_providers=eps("cuda")))
    assert code in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.FAILED_PRECONDITION)
    assert_healthy(client, {model_id})


def test_iobinding_computes_what_plain_run_computes_and_reports_its_copies(tmp_path, tiny_onnx):
    session = OrtSession(tiny_onnx, 1, [ProviderRequest(CPU)], tmp_path)
    x = np.random.default_rng(0).standard_normal((1, 3, 16, 16)).astype(np.float32)
    session.prepare({session.inputs[0].name: x.copy()})
    session.run()
    session.keep_outputs()
    session.run()
    bound = session._io.get_outputs()[0].numpy()
    plain = ort.InferenceSession(str(tiny_onnx), providers=[CPU]).run(None, {session.inputs[0].name: x})[0]
    np.testing.assert_allclose(bound, plain, rtol=1e-5, atol=1e-6)
    copy_in, copy_out = session.copy_times(repeats=5)
    assert copy_in > 0 and copy_out > 0
    session.run()  # the copies rewrote the same input: the output is unchanged
    np.testing.assert_allclose(session._io.get_outputs()[0].numpy(), plain, rtol=1e-5, atol=1e-6)
    assert session.end_profiling()  # the profiler's events (first runs), ended before any timing


def test_benchmark_results_carry_the_copy_times_beside_compute(client, tiny_onnx):
    result = bench(client, client.upload(tiny_onnx))
    assert result.copy_in_ms > 0 and result.copy_out_ms > 0
    assert result.stats.median_ms > 0 and result.time_limit_seconds > 0


def test_verify_refuses_a_session_that_is_not_what_was_asked():
    asked = [ProviderRequest(CUDA), ProviderRequest(CPU)]
    with pytest.raises(FailedPrecondition, match="did not start CUDAExecutionProvider"):
        providers.verify(asked, [CPU], {CPU: 12})  # CUDA failed to start: onnxruntime left a CPU session
    with pytest.raises(FailedPrecondition, match="3 on cpu"):
        providers.verify([ProviderRequest(CUDA)], [CUDA, CPU], {CUDA: 9, CPU: 3})  # implicit CPU nodes
    providers.verify(asked, [CUDA, CPU], {CUDA: 9, CPU: 3})  # the CPU was asked for: fine


def test_per_layer_profiles_are_refused_where_node_times_are_not_device_times():
    assert providers.layer_profile_note({CPU: 30}) == ""
    assert "host-side" in providers.layer_profile_note({CUDA: 28, CPU: 2})
    assert "one fused engine" in providers.layer_profile_note({TENSORRT: 1, CUDA: 2})


def test_names_resolve_from_short_forms_and_devices_follow_the_first_provider():
    assert canonical("trt") == TENSORRT and canonical("Cuda") == CUDA and canonical("azure", [AZURE, CPU]) == AZURE
    assert providers.device_of([ProviderRequest(TENSORRT, {"device_id": "1"}), ProviderRequest(CUDA)]) == ("cuda", 1)
    assert providers.device_of([ProviderRequest(CPU)]) == ("cpu", 0)
    with pytest.raises(InvalidArgument, match="device_id"):
        providers.device_of([ProviderRequest(CUDA, {"device_id": "first"})])


def test_tensorrt_caches_are_keyed_by_model_version_and_gpu_and_the_first_build_gets_more_time(tmp_path):
    asked = [ProviderRequest(TENSORRT, {"trt_fp16_enable": "1"}), ProviderRequest(CUDA)]
    out, engines = providers.with_tensorrt_caches(asked, tmp_path, "ab" * 32, "Orin", "10.3.0")
    options = out[0].options
    assert options["trt_engine_cache_enable"] == "1" and options["trt_fp16_enable"] == "1"
    assert Path(options["trt_engine_cache_path"]) == engines and engines.is_relative_to(tmp_path)
    assert out[1].options == {}  # CUDA's options are its own
    others = {
        providers.with_tensorrt_caches(asked, tmp_path, model, gpu, version)[1]
        for model, gpu, version in (
            ("cd" * 32, "Orin", "10.3.0"),
            ("ab" * 32, "Xavier", "10.3.0"),
            ("ab" * 32, "Orin", "8.6"),
        )
    }
    assert engines not in others and len(others) == 3
    own = [ProviderRequest(TENSORRT, {"trt_engine_cache_path": "/mine"})]
    assert (
        providers.with_tensorrt_caches(own, tmp_path, "ab" * 32, "Orin")[0][0].options["trt_engine_cache_path"]
        == "/mine"
    )
    assert providers.with_tensorrt_caches([ProviderRequest(CPU)], tmp_path, "ab" * 32, "Orin")[1] is None
    # No engine yet: the request gets the build allowance; once one is cached, the agent's default alone.
    gpu = "Orin"
    _, engines = providers.with_tensorrt_caches([ProviderRequest(TENSORRT)], tmp_path, "ab" * 32, gpu)
    assert providers.build_allowance([ProviderRequest("tensorrt")], tmp_path, "ab" * 32, gpu) == (
        providers.TENSORRT_BUILD_ALLOWANCE_S
    )
    engines.mkdir(parents=True)
    (engines / "model.engine").write_bytes(b"x")
    assert providers.build_allowance([ProviderRequest("tensorrt")], tmp_path, "ab" * 32, gpu) == 0.0
    assert providers.build_allowance([ProviderRequest("cpu")], tmp_path, "ab" * 32, gpu) == 0.0


def test_host_bench_takes_a_provider_list_and_refuses_one_the_board_lacks(tiny_onnx, agent):
    done = run_cli("netcut-host", "bench", str(tiny_onnx), "--agent", agent.address, "--ep", "cuda,cpu")
    assert done.returncode != 0 and "has no CUDAExecutionProvider" in done.stderr and "Traceback" not in done.stderr
    done = run_cli(
        "netcut-host", "bench", str(tiny_onnx), "--agent", agent.address, "--ep", "azure,cpu",
        "--min-runs", "5", "--min-seconds", "0", "--warmup-seconds", "0",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "ran on cpu" in done.stdout and "AzureExecutionProvider, CPUExecutionProvider" in done.stdout
    assert "copies outside the timed run_with_iobinding" in done.stdout
    done = run_cli("netcut-host", "bench", str(tiny_onnx), "--agent", agent.address, "--ep-option", "device_id=0")
    assert done.returncode != 0 and "--ep-option needs --ep" in done.stderr


def test_a_provider_list_leaves_timing_and_threads_as_asked(client, tiny_onnx):
    # The provider list travels with the rest of the request: timing and threads are still honoured.
    result = bench(client, client.upload(tiny_onnx), timing=fast_timing(min_runs=7), execution_providers=eps("cpu"))
    assert result.stats.n >= 7 and result.threads == 1
