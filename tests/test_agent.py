"""netcut-agent over real gRPC on loopback with real onnxruntime and LiteRT sessions."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from pathlib import Path

import grpc
import pytest

from conftest import fast_timing, run_cli
from netcut_agent import board
from netcut_host.client import AgentCallError, AgentClient, Credentials, sha256_file
from netcut_protos.agent.v1 import agent_pb2 as pb
from netcut_protos.agent.v1 import agent_pb2_grpc as pb_grpc


def bench(client: AgentClient, model_id: str, events: list | None = None, **fields) -> pb.BenchmarkResult:
    fields.setdefault("timing", fast_timing())
    fields.setdefault("threads", 1)
    request = pb.BenchmarkRequest(model_id=model_id, **fields)
    return client.benchmark(request, on_event=(events.append if events is not None else None), timeout=120)


def status_of(call) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(AgentCallError) as info:
        call()
    return info.value.code, str(info.value)


def assert_healthy(client: AgentClient, expected_ids: set[str]) -> None:
    """The agent still serves and its store holds exactly what it held."""
    assert client.health() == "SERVING"
    assert {m.model_id for m in client.list_models().models} == expected_ids


def upload_raw(address: str, header: pb.UploadHeader, chunks: list[bytes]):
    with grpc.insecure_channel(address) as channel:
        stub = pb_grpc.AgentStub(channel)
        messages = [pb.UploadChunk(header=header)] + [pb.UploadChunk(data=c) for c in chunks]
        return stub.UploadModel(iter(messages), timeout=30)


# ---------------------------------------------------------------- store


def test_upload_is_content_addressed_listed_and_deletable(client, tiny_onnx):
    model_id = client.upload(tiny_onnx)
    assert model_id == hashlib.sha256(tiny_onnx.read_bytes()).hexdigest()
    assert client.has_model(model_id)
    listed = {m.model_id: m for m in client.list_models().models}
    assert listed[model_id].size_bytes == tiny_onnx.stat().st_size
    assert listed[model_id].format == pb.MODEL_FORMAT_ONNX
    assert client.upload(tiny_onnx) == model_id  # already there: nothing re-sent
    assert client.delete_model(model_id) is True
    assert not client.has_model(model_id)
    assert client.delete_model(model_id) is False


def test_store_survives_a_restart(agent_factory, tiny_onnx, tmp_path):
    store = tmp_path / "persistent"
    first = agent_factory(store=store)
    with AgentClient(first.address) as c:
        model_id = c.upload(tiny_onnx)
    assert first.stop() == 0
    second = agent_factory(store=store)
    with AgentClient(second.address) as c:
        assert c.has_model(model_id)
        result = bench(c, model_id)
    assert result.stats.n >= 5


def test_least_recently_used_models_are_evicted_at_the_cap(agent_factory, tiny_onnx, dynamic_onnx, tiny_tflite):
    sizes = [p.stat().st_size for p in (tiny_onnx, dynamic_onnx, tiny_tflite)]
    cap_mb = (sizes[0] + sizes[1] + sizes[2] - 1) / 1e6  # room for any two, not all three
    a = agent_factory("--store-cap-mb", f"{cap_mb:.6f}")
    with AgentClient(a.address) as c:
        first = c.upload(tiny_onnx)
        second = c.upload(dynamic_onnx)
        bench(c, first)  # the first is now the more recently used
        third = c.upload(tiny_tflite)
        assert c.has_model(first) and c.has_model(third)
        assert not c.has_model(second)


# ---------------------------------------------------------------- benchmarks


def test_onnxruntime_benchmark_reports_statistics_samples_and_board_state(client, tiny_onnx):
    events: list = []
    result = bench(
        client, client.upload(tiny_onnx), events, timing=fast_timing(min_runs=30, warmup_runs=3, runs_per_sample=1)
    )
    s = result.stats
    assert s.n == len(result.samples_ms) >= 30
    assert s.min_ms <= s.median_ms <= s.p90_ms <= s.p95_ms <= s.p99_ms <= s.max_ms
    assert s.min_ms == pytest.approx(min(result.samples_ms)) and s.max_ms == pytest.approx(max(result.samples_ms))
    assert s.mean_ms == pytest.approx(sum(result.samples_ms) / s.n)
    assert s.cv == pytest.approx(s.std_ms / s.mean_ms)
    assert result.session_create_ms > 0 and result.first_run_ms > 0
    assert result.runtime == "onnxruntime" and result.execution_provider == "CPUExecutionProvider"
    assert result.threads == 1 and result.timing.min_runs == 30 and result.timing.runs_per_sample == 1
    assert list(result.inputs[0].shape) == [1, 3, 16, 16]
    assert result.state_start.timestamp_unix <= result.state_end.timestamp_unix
    assert result.board.cpu_cores > 0
    assert result.board.l2_cache_bytes == board.cache_bytes(2)  # what the per-kernel model's warmth needs
    kinds = [e.WhichOneof("event") for e in events]
    assert "warming_up" in kinds and "measuring" in kinds
    assert kinds.index("warming_up") < kinds.index("measuring")


def test_very_short_models_are_timed_in_batches(client, tiny_onnx):
    result = bench(client, client.upload(tiny_onnx), timing=fast_timing(runs_per_sample=7))
    assert result.timing.runs_per_sample == 7


def test_per_layer_profile_maps_nodes_to_blocks_and_adds_up_to_the_median(client, tiny_onnx):
    result = bench(client, client.upload(tiny_onnx), profile_layers=True)
    assert result.layer_profile_available and result.layers
    assert sum(l.time_ms for l in result.layers) == pytest.approx(result.stats.median_ms, rel=1e-6)
    assert all(l.block for l in result.layers)
    assert {l.op_type for l in result.layers} & {"Conv", "FusedConv"}
    assert all(l.raw_ms > 0 for l in result.layers)


def test_litert_benchmark_and_plain_word_on_layer_profiles(client, tiny_tflite):
    model_id = client.upload(tiny_tflite)
    result = bench(client, model_id, runtime="litert", profile_layers=True)
    assert result.runtime == "litert" and result.stats.n >= 5 and result.runtime_version
    assert not result.layer_profile_available and not result.layers
    assert "unavailable" in result.layer_profile_note


def test_dynamic_dimensions_need_a_shape(client, dynamic_onnx):
    model_id = client.upload(dynamic_onnx)
    code, message = status_of(lambda: bench(client, model_id))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "dynamic dimension" in message
    request_input = pb.InputSpec(shape=[2, 3, 24, 24])
    result = bench(client, model_id, inputs=[request_input])
    assert list(result.inputs[0].shape) == [2, 3, 24, 24]


# ---------------------------------------------------------------- bad input


@pytest.fixture
def stored(client, tiny_onnx):
    model_id = client.upload(tiny_onnx)
    return {m.model_id for m in client.list_models().models}, model_id


def test_random_bytes_named_onnx_are_refused(client, stored, tmp_path):
    ids, _ = stored
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(bytes(range(256)) * 40)
    code, message = status_of(lambda: client.upload(junk))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "not a valid ONNX model" in message
    assert_healthy(client, ids)


def test_truncated_model_is_refused(client, stored, tiny_onnx, tmp_path):
    ids, _ = stored
    cut = tmp_path / "cut.onnx"
    cut.write_bytes(tiny_onnx.read_bytes()[: tiny_onnx.stat().st_size // 2])
    code, _ = status_of(lambda: client.upload(cut))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert_healthy(client, ids)


def test_hash_mismatch_is_refused(agent, client, stored, tiny_onnx):
    ids, _ = stored
    data = tiny_onnx.read_bytes()
    header = pb.UploadHeader(sha256="0" * 64, size_bytes=len(data), format=pb.MODEL_FORMAT_ONNX)
    with pytest.raises(grpc.RpcError) as info:
        upload_raw(agent.address, header, [data])
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "sha256" in info.value.details()
    assert_healthy(client, ids)


def test_a_store_removed_under_a_running_agent_is_recreated(agent_factory, tiny_onnx, tmp_path):
    import shutil

    a = agent_factory(store=tmp_path / "store")
    shutil.rmtree(tmp_path / "store")
    with AgentClient(a.address) as c:
        model_id = c.upload(tiny_onnx)
        assert c.has_model(model_id) and [m.model_id for m in c.list_models().models] == [model_id]
    assert a.alive


def test_upload_shorter_than_announced_is_refused(agent, client, stored, tiny_onnx):
    ids, _ = stored
    data = tiny_onnx.read_bytes()
    header = pb.UploadHeader(sha256=hashlib.sha256(data).hexdigest(), size_bytes=len(data), format=pb.MODEL_FORMAT_ONNX)
    with pytest.raises(grpc.RpcError) as info:
        upload_raw(agent.address, header, [data[:100]])
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "ended after 100" in info.value.details()
    assert_healthy(client, ids)


def test_upload_cut_off_midway_leaves_nothing(agent_factory, tiny_onnx):
    a = agent_factory()
    data = tiny_onnx.read_bytes()
    header = pb.UploadHeader(sha256=hashlib.sha256(data).hexdigest(), size_bytes=len(data), format=pb.MODEL_FORMAT_ONNX)
    release = threading.Event()

    def messages():
        yield pb.UploadChunk(header=header)
        yield pb.UploadChunk(data=data[:1000])
        release.wait(10)  # the client "dies" here

    with grpc.insecure_channel(a.address) as channel:
        future = pb_grpc.AgentStub(channel).UploadModel.future(messages(), timeout=30)
        time.sleep(0.5)
        future.cancel()
        release.set()
    deadline = time.monotonic() + 10
    while any((a.store / "tmp").iterdir()) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any((a.store / "tmp").iterdir())
    with AgentClient(a.address) as c:
        assert_healthy(c, set())


def test_upload_over_the_size_limit_is_refused(agent_factory, tiny_onnx):
    a = agent_factory("--max-model-mb", "0.001")
    with AgentClient(a.address) as c:
        code, message = status_of(lambda: c.upload(tiny_onnx))
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and "limit" in message
        assert_healthy(c, set())


def test_external_data_outside_the_store_is_refused(client, stored, tmp_path):
    import numpy as np
    import onnx
    from onnx import helper, numpy_helper

    ids, _ = stored
    weight = numpy_helper.from_array(np.ones((4, 4), np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 4])],
        [weight],
    )
    model = helper.make_model(graph)
    onnx.external_data_helper.set_external_data(model.graph.initializer[0], location="../../../etc/passwd")
    model.graph.initializer[0].data_location = onnx.TensorProto.EXTERNAL
    model.graph.initializer[0].ClearField("raw_data")
    path = tmp_path / "external.onnx"
    onnx.save_model(model, str(path))
    code, message = status_of(lambda: client.upload(path))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "outside the store" in message
    assert_healthy(client, ids)


def test_unknown_and_malformed_model_ids(client, stored):
    ids, _ = stored
    code, message = status_of(lambda: bench(client, "a" * 64))
    assert code == grpc.StatusCode.NOT_FOUND and "upload it first" in message
    code, _ = status_of(lambda: bench(client, "../../etc/passwd"))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    code, _ = status_of(lambda: client.has_model("ABC"))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert_healthy(client, ids)


def test_unknown_runtime_and_format_mismatch(client, stored, tiny_tflite):
    ids, model_id = stored
    code, message = status_of(lambda: bench(client, model_id, runtime="tensorrt-magic"))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "onnxruntime" in message
    tflite_id = client.upload(tiny_tflite)
    code, message = status_of(lambda: bench(client, tflite_id, runtime="onnxruntime"))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "litert" in message
    assert_healthy(client, ids | {tflite_id})


def test_runtime_not_installed_is_a_failed_precondition(agent_factory, tiny_tflite, tmp_path):
    blocker = tmp_path / "blocked"
    for package in ("ai_edge_litert", "tflite_runtime"):
        (blocker / package).mkdir(parents=True)
        (blocker / package / "__init__.py").write_text("raise ImportError('not installed on this board')\n")
    a = agent_factory(env={"PYTHONPATH": str(blocker)})
    with AgentClient(a.address) as c:
        litert = next(r for r in c.info().runtimes if r.name == "litert")
        assert not litert.available and "pip install" in litert.unavailable_reason
        model_id = c.upload(tiny_tflite)
        code, message = status_of(lambda: bench(c, model_id, runtime="litert"))
        assert code == grpc.StatusCode.FAILED_PRECONDITION and "not available" in message
        assert_healthy(c, {model_id})


def test_wrong_input_shape_is_refused(client, stored):
    ids, model_id = stored
    code, message = status_of(lambda: bench(client, model_id, inputs=[pb.InputSpec(shape=[1, 3, 32, 32])]))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "fixed at [1, 3, 16, 16]" in message
    code, _ = status_of(lambda: bench(client, model_id, inputs=[pb.InputSpec(shape=[1, 3, 16])]))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    code, message = status_of(lambda: bench(client, model_id, inputs=[pb.InputSpec(name="nope", shape=[1])]))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "no input 'nope'" in message
    assert_healthy(client, ids)


@pytest.mark.parametrize(
    "timing, words",
    [
        (dict(min_runs=0), "min_runs"),
        (dict(max_seconds=0.0), "max_seconds"),
        (dict(min_seconds=100.0, max_seconds=10.0), "exceeds"),
        (dict(warmup_seconds=float("nan")), "finite"),
        (dict(min_runs=10**9), "limit"),
        (dict(max_seconds=1e9), "limit"),
    ],
)
def test_zero_or_absurd_timing_is_refused(client, stored, timing, words):
    ids, model_id = stored
    code, message = status_of(lambda: bench(client, model_id, timing=pb.TimingConfig(**timing)))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and words in message
    assert_healthy(client, ids)


# ---------------------------------------------------------------- scheduling


def test_concurrent_benchmarks_queue_and_never_overlap(agent_factory, tiny_onnx):
    a = agent_factory()
    with AgentClient(a.address) as c:
        model_id = c.upload(tiny_onnx)
    results, events, errors = [], [], []

    def one():
        try:
            with AgentClient(a.address) as c:
                seen: list = []
                results.append(bench(c, model_id, seen, timing=fast_timing(min_seconds=0.7, max_seconds=5)))
                events.append(seen)
        except Exception as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=one) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors and len(results) == 4
    spans = sorted((r.started_unix, r.finished_unix) for r in results)
    assert all(prev_end <= next_start for (_, prev_end), (next_start, _) in zip(spans, spans[1:]))
    positions = [e.queued.position for seen in events for e in seen if e.WhichOneof("event") == "queued"]
    assert positions and max(positions) >= 2


def test_a_client_that_leaves_frees_the_board_at_once(agent_factory, tiny_onnx):
    a = agent_factory()
    with AgentClient(a.address) as c:
        model_id = c.upload(tiny_onnx)
    with grpc.insecure_channel(a.address) as channel:
        stream = pb_grpc.AgentStub(channel).Benchmark(
            pb.BenchmarkRequest(model_id=model_id, threads=1, timing=fast_timing(min_seconds=60, max_seconds=60)),
            timeout=120,
        )
        for event in stream:
            if event.WhichOneof("event") == "measuring":
                break
        stream.cancel()
    with AgentClient(a.address) as c:
        started = time.monotonic()
        result = c.benchmark(pb.BenchmarkRequest(model_id=model_id, threads=1, timing=fast_timing()), timeout=30)
        assert result.stats.n >= 5
        assert time.monotonic() - started < 30  # the abandoned 60 s run no longer holds the board
        assert not c.info().busy


def test_a_full_queue_is_resource_exhausted(agent_factory, tiny_onnx):
    a = agent_factory("--max-queue", "1")
    with AgentClient(a.address) as c:
        model_id = c.upload(tiny_onnx)
    long = pb.BenchmarkRequest(model_id=model_id, threads=1, timing=fast_timing(min_seconds=3, max_seconds=5))
    with grpc.insecure_channel(a.address) as channel:
        stub = pb_grpc.AgentStub(channel)
        running = stub.Benchmark(long, timeout=60)
        next(running)
        waiting = stub.Benchmark(long, timeout=60)
        first = next(waiting)
        assert first.WhichOneof("event") == "queued"
        with pytest.raises(grpc.RpcError) as info:
            list(stub.Benchmark(long, timeout=60))
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        running.cancel()
        waiting.cancel()


def test_time_limit_stops_a_benchmark(client, stored):
    ids, model_id = stored
    code, message = status_of(
        lambda: bench(client, model_id, time_limit_seconds=0.5, timing=fast_timing(min_seconds=30, max_seconds=30))
    )
    assert code == grpc.StatusCode.DEADLINE_EXCEEDED and "time limit" in message
    assert_healthy(client, ids)


# ---------------------------------------------------------------- security


def test_beyond_loopback_needs_authentication(tmp_path):
    out = run_cli("netcut-agent", "serve", "--listen", "0.0.0.0:0", "--store", str(tmp_path), timeout=60)
    assert out.returncode == 2 and "refusing to listen" in out.stderr and "--token-file" in out.stderr


def test_insecure_exposure_warns(agent_factory):
    a = agent_factory("--insecure", listen="0.0.0.0:0")
    port = a.address.rsplit(":", 1)[1]
    with AgentClient(f"127.0.0.1:{port}") as c:
        assert c.health() == "SERVING"
    a.stop()
    assert "WITHOUT authentication" in a.proc.stderr.read()


def test_token_is_required_and_checked(agent_factory, tmp_path, tiny_onnx):
    token_file = tmp_path / "token"
    token_file.write_text("s3cret-token-for-tests-0123456789\n")
    a = agent_factory("--token-file", str(token_file), listen="0.0.0.0:0")
    address = f"127.0.0.1:{a.address.rsplit(':', 1)[1]}"
    for token in (None, "wrong-token-wrong-token"):
        with AgentClient(address, Credentials(token=token)) as c:
            code, message = status_of(c.info)
            assert code == grpc.StatusCode.UNAUTHENTICATED and "token" in message
            code, _ = status_of(lambda: c.upload(tiny_onnx))
            assert code == grpc.StatusCode.UNAUTHENTICATED
    with AgentClient(address, Credentials(token="s3cret-token-for-tests-0123456789")) as c:
        assert c.info().protocol_version == 2
        assert bench(c, c.upload(tiny_onnx)).stats.n >= 5
    out = run_cli("netcut-host", "info", "--agent", address, timeout=60)
    assert out.returncode == 2 and "token" in out.stderr and "Traceback" not in out.stderr
    out = run_cli("netcut-host", "info", "--agent", address, "--token-file", str(token_file), timeout=60)
    assert out.returncode == 0, out.stderr


def _self_signed(tmp_path: Path) -> tuple[Path, Path]:
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


def test_tls_with_token(agent_factory, tmp_path):
    cert, key = _self_signed(tmp_path)
    token_file = tmp_path / "token"
    token_file.write_text("another-long-test-token-0123456789")
    a = agent_factory(
        "--tls-cert", str(cert), "--tls-key", str(key), "--token-file", str(token_file), listen="0.0.0.0:0"
    )
    address = f"localhost:{a.address.rsplit(':', 1)[1]}"
    out = run_cli(
        "netcut-host",
        "info",
        "--agent",
        address,
        "--ca-cert",
        str(cert),
        "--token-file",
        str(token_file),
        "--json",
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["protocol_version"] == 2
    with AgentClient(address, connect_timeout=2) as plain:  # plaintext cannot talk to a TLS agent
        with pytest.raises(Exception):
            plain.info()


# ---------------------------------------------------------------- CLIs


def test_host_bench_cli_prints_json_and_maps_errors(agent, tiny_onnx, tmp_path):
    out = run_cli(
        "netcut-host",
        "bench",
        str(tiny_onnx),
        "--agent",
        agent.address,
        "--threads",
        "1",
        "--profile",
        "--json",
        "--min-runs",
        "5",
        "--min-seconds",
        "0",
        "--warmup-seconds",
        "0",
    )
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert {"median_ms", "p99_ms", "cv", "n", "samples_ms", "throttled", "layers"} <= set(data)
    assert len(data["samples_ms"]) == data["n"] >= 5 and data["layers"][0]["block"]
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x00" * 1000)
    out = run_cli("netcut-host", "bench", str(junk), "--agent", agent.address)
    assert out.returncode == 2 and "INVALID_ARGUMENT" in out.stderr and "Traceback" not in out.stderr
    out = run_cli("netcut-host", "bench", str(tiny_onnx), "--agent", agent.address, "--min-runs", "0")
    assert out.returncode == 2 and "min_runs" in out.stderr


def test_agent_bench_runs_locally_without_grpc(tiny_onnx, tiny_tflite):
    for path in (tiny_onnx, tiny_tflite):
        out = run_cli(
            "netcut-agent",
            "bench",
            str(path),
            "--threads",
            "1",
            "--json",
            "--min-runs",
            "5",
            "--min-seconds",
            "0",
            "--warmup-seconds",
            "0",
        )
        assert out.returncode == 0, out.stderr
        data = json.loads(out.stdout)
        assert data["stats"]["n"] >= 5 and data["model_id"] == sha256_file(path)


def test_the_cache_sizes_are_read_from_sysfs_and_unknown_ones_are_zero(tmp_path):
    caches = [(1, "Data", "48K"), (1, "Instruction", "64K"), (2, "Unified", "2048K")]
    for index, (level, kind, size) in enumerate(caches):
        d = tmp_path / f"index{index}"
        d.mkdir()
        (d / "level").write_text(f"{level}\n")
        (d / "type").write_text(f"{kind}\n")
        (d / "size").write_text(f"{size}\n")
    assert board.cache_bytes(1, tmp_path) == 48 * 1024  # the data cache, not the instruction one
    assert board.cache_bytes(2, tmp_path) == 2 * 1024 * 1024
    assert board.cache_bytes(3, tmp_path) == 0  # no L3 said
    assert board.cache_bytes(2, tmp_path / "missing") == 0
    (tmp_path / "index2" / "size").write_text("lots\n")
    assert board.cache_bytes(2, tmp_path) == 0
