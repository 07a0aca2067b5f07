"""The agent against a hostile or broken client, on loopback with real processes: each test is one of the
defects found by probing it (stalled streams, runaway models, external data, memory, shared stores, signals)."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import grpc
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from conftest import DATA, fast_timing, run_cli
from netcut_host.client import AgentCallError, AgentClient, sha256_file
from netcut_protos.agent.v1 import agent_pb2 as pb
from netcut_protos.agent.v1 import agent_pb2_grpc as pb_grpc


def status_of(call) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(AgentCallError) as info:
        call()
    return info.value.code, str(info.value)


def bench(client: AgentClient, model_id: str, **fields) -> pb.BenchmarkResult:
    fields.setdefault("timing", fast_timing())
    fields.setdefault("threads", 1)
    return client.benchmark(pb.BenchmarkRequest(model_id=model_id, **fields), timeout=120)


def save(model: onnx.ModelProto, path: Path) -> Path:
    onnx.save_model(model, str(path))
    return path


def runaway_model(path: Path) -> Path:
    """An ONNX Loop of 2**62 iterations: one runtime call that never returns."""
    body = helper.make_graph(
        [helper.make_node("Identity", ["cond_in"], ["cond_out"]), helper.make_node("Add", ["v_in", "one"], ["v_out"])],
        "body",
        [
            helper.make_tensor_value_info("i", TensorProto.INT64, []),
            helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
            helper.make_tensor_value_info("v_in", TensorProto.FLOAT, [1]),
        ],
        [
            helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
            helper.make_tensor_value_info("v_out", TensorProto.FLOAT, [1]),
        ],
        [numpy_helper.from_array(np.ones(1, np.float32), "one")],
    )
    graph = helper.make_graph(
        [helper.make_node("Loop", ["trips", "cond", "x"], ["y"], body=body)],
        "runaway",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
        [numpy_helper.from_array(np.array(2**62, np.int64), "trips"), numpy_helper.from_array(np.array(True), "cond")],
    )
    return save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)


def children_of(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                out.append(int(entry.name))
    return out


def test_stalled_uploads_neither_lock_out_health_nor_outgrow_the_store(agent_factory, tiny_onnx):
    a = agent_factory("--upload-idle-seconds", "2", "--store-cap-mb", "20")
    release = threading.Event()
    outcomes: list[grpc.StatusCode] = []

    def stalled(size: int) -> None:
        def chunks():
            yield pb.UploadChunk(header=pb.UploadHeader(sha256="a" * 64, size_bytes=size, format=pb.MODEL_FORMAT_ONNX))
            yield pb.UploadChunk(data=b"x" * 1024)
            release.wait(30)  # then nothing: a client that stalls with the stream open

        with grpc.insecure_channel(a.address) as channel:
            try:
                pb_grpc.AgentStub(channel).UploadModel(chunks(), timeout=30)
            except grpc.RpcError as exc:
                outcomes.append(exc.code())

    threads = [threading.Thread(target=stalled, args=(15_000_000 if i == 0 else 1_000_000,)) for i in range(22)]
    for t in threads:
        t.start()
        time.sleep(0.02)
    time.sleep(0.5)
    with AgentClient(a.address) as client:
        for _ in range(5):  # health and Info answer at once while the streams hang
            start = time.monotonic()
            assert client.health() == "SERVING"
            assert client.info().protocol_version == 2
            assert time.monotonic() - start < 1.0
        # The stalled 15 MB upload holds its bytes against the 20 MB cap: a 10 MB model finds no room.
        big = np.random.default_rng(0).standard_normal(2_500_000).astype(np.float32)
        model = helper.make_model(
            helper.make_graph(
                [helper.make_node("Add", ["x", "w"], ["y"])],
                "big",
                [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2_500_000])],
                [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2_500_000])],
                [numpy_helper.from_array(big, "w")],
            )
        )
        path = save(model, Path(a.store) / ".." / "big.onnx")
        code, message = status_of(lambda: client.upload(path))
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and "in flight" in message
        for t in threads:
            t.join(timeout=20)
        # More than 4 uploads at once were refused at once; the 4 that stalled were aborted after 2 s.
        assert outcomes.count(grpc.StatusCode.RESOURCE_EXHAUSTED) == 18
        assert outcomes.count(grpc.StatusCode.DEADLINE_EXCEEDED) == 4
        assert list((Path(a.store) / "tmp").iterdir()) == []
        assert client.upload(tiny_onnx) == sha256_file(tiny_onnx)  # and the agent serves on
    release.set()


def test_a_runaway_model_and_an_absurd_repeat_are_stopped_at_their_limit(agent_factory, tiny_onnx, tmp_path):
    a = agent_factory()
    with AgentClient(a.address) as client:
        runaway = client.upload(runaway_model(tmp_path / "runaway.onnx"))
        tiny = client.upload(tiny_onnx)
        client.info()  # the worker is up
        for model_id, timing in ((runaway, fast_timing()), (tiny, fast_timing(runs_per_sample=100000, min_runs=5))):
            start = time.monotonic()
            code, message = status_of(lambda: bench(client, model_id, timing=timing, time_limit_seconds=2))
            elapsed = time.monotonic() - start
            assert code == grpc.StatusCode.DEADLINE_EXCEEDED and "time limit" in message
            assert elapsed < 2 + 2, elapsed
            start = time.monotonic()
            assert bench(client, tiny).stats.n >= 5  # the board is free: the next one is served
            assert time.monotonic() - start < 30
        assert a.alive


def test_external_data_anywhere_in_the_model_is_refused_and_never_read(client, tiny_onnx, tmp_path):
    secret_id = client.upload(tiny_onnx)  # another model in the store, whose bytes must not leak

    def external(tensor: onnx.TensorProto) -> onnx.TensorProto:
        onnx.external_data_helper.set_external_data(tensor, location=f"{secret_id}.onnx", offset=0, length=32)
        tensor.ClearField("raw_data")
        tensor.data_location = TensorProto.EXTERNAL
        return tensor

    values = external(numpy_helper.from_array(np.ones(8, np.float32), "values"))
    indices = numpy_helper.from_array(np.arange(8, dtype=np.int64), "indices")
    sparse = helper.make_sparse_tensor(values, indices, [8])
    sparse_constant = helper.make_graph(
        [helper.make_node("Constant", [], ["c"], sparse_value=sparse), helper.make_node("Gather", ["c", "i"], ["y"])],
        "sparse",
        [helper.make_tensor_value_info("i", TensorProto.INT64, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    function = helper.make_function(
        "netcut.test",
        "Leak",
        ["x"],
        ["y"],
        [
            helper.make_node(
                "Constant", [], ["c"], value=external(numpy_helper.from_array(np.ones(8, np.float32), "f"))
            ),
            helper.make_node("Add", ["x", "c"], ["y"]),
        ],
        [helper.make_opsetid("", 17)],
    )
    in_function = helper.make_model(
        helper.make_graph(
            [helper.make_node("Leak", ["x"], ["y"], domain="netcut.test")],
            "fn",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, [8])],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, [8])],
        ),
        functions=[function],
        opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("netcut.test", 1)],
    )
    for name, model in (
        ("sparse", helper.make_model(sparse_constant, opset_imports=[helper.make_opsetid("", 17)])),
        ("function", in_function),
    ):
        path = save(model, tmp_path / f"{name}.onnx")
        code, message = status_of(lambda: client.upload(path))
        assert code == grpc.StatusCode.INVALID_ARGUMENT and "external file" in message, name
        assert tiny_onnx.read_bytes()[:32].hex() not in message.encode().hex()
    assert client.health() == "SERVING"


def test_a_model_over_the_memory_limit_is_refused_and_the_agent_serves_on(agent_factory, tiny_onnx, tmp_path):
    a = agent_factory("--max-memory-mb", "1024")
    graph = helper.make_graph(
        [
            helper.make_node(
                "ConstantOfShape", ["shape"], ["big"], value=numpy_helper.from_array(np.ones(1, np.float32))
            ),
            helper.make_node("ReduceSum", ["big"], ["s"], keepdims=0),
            helper.make_node("Add", ["x", "s"], ["y"]),
        ],
        "huge",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
        [numpy_helper.from_array(np.array([2**29], np.int64), "shape")],
    )  # 2 GiB of float32
    path = save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), tmp_path / "huge.onnx")
    assert path.stat().st_size < 1000
    with AgentClient(a.address) as client:
        code, message = status_of(lambda: bench(client, client.upload(path), time_limit_seconds=60))
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and "memory" in message
        assert bench(client, client.upload(tiny_onnx)).stats.n >= 5
        # An input spec far larger than an input may be is refused before anything is allocated.
        code, message = status_of(
            lambda: bench(
                client, client.upload(tiny_onnx), inputs=[pb.InputSpec(shape=[256, 1024, 1024], dtype=pb.DTYPE_INT8)]
            )
        )
        assert code == grpc.StatusCode.INVALID_ARGUMENT and "float32 in the model" in message


def test_a_second_agent_on_the_same_store_is_refused(agent_factory, tmp_path):
    a = agent_factory(store=tmp_path / "shared")
    out = subprocess.run(
        [sys.executable, "-m", "netcut_agent", "serve", "--listen", "127.0.0.1:0", "--store", str(tmp_path / "shared")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2 and f"in use by agent process {a.proc.pid}" in out.stderr
    assert "Traceback" not in out.stderr and a.alive


def test_sigterm_during_a_benchmark_stops_the_agent_and_its_worker_within_5_s(agent_factory, tmp_path):
    a = agent_factory()
    with AgentClient(a.address) as client:
        runaway = client.upload(runaway_model(tmp_path / "runaway.onnx"))
        client.info()
        workers = children_of(a.proc.pid)
        assert len(workers) >= 1
        ended: list = []

        def run_it():
            try:
                bench(client, runaway, time_limit_seconds=600)
            except Exception as exc:  # noqa: BLE001 - the test looks at what the caller got
                ended.append(exc)

        thread = threading.Thread(target=run_it)
        thread.start()
        while not client.info().busy:
            time.sleep(0.1)
        time.sleep(0.5)
        start = time.monotonic()
        a.proc.send_signal(signal.SIGTERM)
        a.proc.wait(timeout=5)
        assert time.monotonic() - start < 5
        thread.join(timeout=30)
    assert not thread.is_alive()
    # The call in flight ends with the agent gone (grace passed, calls cancelled), not hanging or a traceback.
    assert [type(e).__name__ for e in ended] == ["AgentUnavailable"], ended
    time.sleep(0.5)
    left = [
        (pid, Path(f"/proc/{pid}/cmdline").read_bytes())
        for pid in workers
        if Path(f"/proc/{pid}").exists() and "zombie" not in Path(f"/proc/{pid}/status").read_text().lower()
    ]
    assert left == []


# tgkill(2) numbers: a signal sent to one thread, as the kernel may deliver a process's SIGTERM.
TGKILL = {"x86_64": 234, "aarch64": 131}


def test_sigterm_taken_by_a_server_thread_still_stops_the_agent(agent_factory):
    import ctypes
    import platform

    if sys.platform != "linux" or platform.machine() not in TGKILL:
        pytest.skip("sending a signal to one thread needs Linux tgkill on x86_64 or aarch64")
    a = agent_factory()
    with AgentClient(a.address) as client:
        client.info()
    threads = [int(t.name) for t in Path(f"/proc/{a.proc.pid}/task").iterdir() if int(t.name) != a.proc.pid]
    assert threads, "the agent runs grpc's threads besides its main one"
    libc = ctypes.CDLL(None, use_errno=True)
    assert libc.syscall(TGKILL[platform.machine()], a.proc.pid, threads[0], signal.SIGTERM) == 0
    # Before the wakeup fd the main thread slept on in Event.wait and this waited out its 15 s.
    a.proc.wait(timeout=10)
    assert a.proc.returncode == 0
    assert "stopped" in a.proc.stdout.read()


def test_small_gaps_are_closed(agent_factory, client, tiny_onnx, tmp_path):
    model_id = client.upload(tiny_onnx)
    for fields in ({"time_limit_seconds": math.nan}, {"time_limit_seconds": math.inf}, {"cooldown_celsius": math.nan}):
        code, _ = status_of(lambda: bench(client, model_id, **fields))
        assert code == grpc.StatusCode.INVALID_ARGUMENT, fields
    code, _ = status_of(lambda: client.has_model(model_id + "\n"))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    cores = os.cpu_count()
    code, message = status_of(lambda: bench(client, model_id, threads=4 * cores + 1))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "cores" in message
    assert any("more than this board" in w for w in bench(client, model_id, threads=cores + 1).warnings)
    # A request that is not a protobuf message at all: INVALID_ARGUMENT, not INTERNAL.
    with grpc.insecure_channel(client.address) as channel:
        raw = channel.unary_unary("/netcut.agent.v1.Agent/Info")
        for _ in range(3):
            with pytest.raises(grpc.RpcError) as info:
                raw(b"\xff\xff\xff\xff", timeout=10)
            assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert client.health() == "SERVING"


def test_tls_beyond_loopback_needs_client_authentication(tmp_path):
    from test_agent import _self_signed

    cert, key = _self_signed(tmp_path)
    base = [
        sys.executable,
        "-m",
        "netcut_agent",
        "serve",
        "--listen",
        "0.0.0.0:0",
        "--store",
        str(tmp_path / "s"),
        "--tls-cert",
        str(cert),
        "--tls-key",
        str(key),
    ]
    out = subprocess.run(base, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "client authentication" in out.stderr and "--client-ca" in out.stderr


def test_a_profile_whose_export_fails_ends_instead_of_hanging(tmp_path):
    out = run_cli(
        "netcut-host",
        "profile",
        "--models",
        "custom_models:export_fails",
        "--mode",
        "e2e",
        "--input-size",
        "16",
        "--db",
        str(tmp_path / "t.sqlite"),
        "--min-seconds",
        "0.05",
        env={**os.environ, "PYTHONPATH": str(DATA)},
        timeout=300,
    )
    assert out.returncode == 4, out.stderr
    # The model that cannot be exported is a failed measurement, named with why; the others are measured.
    assert "failed: custom_models:export_fails full network (e2e): neither ONNX exporter can export" in out.stderr
    assert "measured 1," in out.stdout and "\x1b[" not in out.stderr  # no terminal colour codes from torch


def test_two_profiles_of_one_table_at_once_both_succeed_and_store_each_row_once(tmp_path):
    db = tmp_path / "t.sqlite"
    cmd = [
        str(Path(sys.executable).parent / "netcut-host"),
        "profile",
        "--models",
        "mobilenet_v3_small",
        "--mode",
        "e2e",
        "--input-size",
        "32",
        "--db",
        str(db),
        "--min-seconds",
        "0.05",
        "--warmup-seconds",
        "0",
        "--min-runs",
        "5",
        "--json",
    ]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [r[1][-500:] for r in results]
    import json
    import sqlite3

    summaries = [json.loads(r[0]) for r in results]
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT cut, mode, round FROM measurements").fetchall()
    assert len(rows) == len(set(rows)) > 0 and all(s["failed"] == [] for s in summaries)
    assert sum(s["measured"] for s in summaries) == len(rows)  # every row stored by exactly one of them


def test_a_record_that_cannot_be_written_leaves_no_model_behind(agent_factory, tiny_onnx):
    a = agent_factory()
    model_id = sha256_file(tiny_onnx)
    # Something in the way of the record's temporary file: the write fails as on a full disk.
    (Path(a.store) / "models" / f"{model_id}.json.tmp").mkdir(parents=True)
    with AgentClient(a.address) as client:
        with pytest.raises(AgentCallError):
            client.upload(tiny_onnx)
        assert not (Path(a.store) / "models" / f"{model_id}.onnx").exists()
        assert not client.has_model(model_id) and client.list_models().models == []
        assert client.health() == "SERVING"
    a.stop()
    # Files no record describes are removed when an agent opens the store.
    stray = Path(a.store) / "models" / ("b" * 64 + ".onnx")
    stray.write_bytes(b"left by a crash")
    b = agent_factory(store=Path(a.store))
    assert not stray.exists() and b.alive


def test_the_local_agent_logs_to_a_file_never_an_unread_pipe(tmp_path, monkeypatch):
    from netcut_host.local_agent import LocalAgentError, local_agent
    from netcut_host.paths import log_dir

    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    with local_agent() as address, AgentClient(address) as client:
        with grpc.insecure_channel(address) as channel:  # calls the agent logs about, as many as you like
            raw = channel.unary_unary("/netcut.agent.v1.Agent/Info")
            for _ in range(50):
                with pytest.raises(grpc.RpcError):
                    raw(b"\xff\xff", timeout=10)
        logs = list(log_dir().iterdir())
        assert len(logs) == 1 and "malformed request" in logs[0].read_text()
        assert client.health() == "SERVING"
    assert list(log_dir().iterdir()) == []  # a command that ended well leaves nothing
    with pytest.raises(LocalAgentError, match="its log: ") as failed:
        with local_agent(extra_args=["--max-uploads", "0"]):
            pass
    kept = Path(str(failed.value).rsplit("its log: ", 1)[1].rstrip(")"))
    assert kept.parent == log_dir() and "--max-uploads must be at least 1" in kept.read_text()


def test_a_runtime_crash_kills_the_worker_not_the_agent(agent_factory, tiny_onnx, tmp_path):
    a = agent_factory()
    with AgentClient(a.address) as client:
        runaway = client.upload(runaway_model(tmp_path / "runaway.onnx"))
        tiny = client.upload(tiny_onnx)
        client.info()
        errors: list = []
        thread = threading.Thread(target=lambda: errors.append(status_of(lambda: bench(client, runaway))))
        thread.start()
        while not client.info().busy:
            time.sleep(0.1)
        time.sleep(0.5)
        # A segfault in a native kernel, as the board would see it: the worker (not multiprocessing's own helper).
        workers = [
            p for p in children_of(a.proc.pid) if b"resource_tracker" not in Path(f"/proc/{p}/cmdline").read_bytes()
        ]
        assert len(workers) == 1
        os.kill(workers[0], signal.SIGSEGV)
        thread.join(timeout=30)
        code, message = errors[0]
        assert code == grpc.StatusCode.ABORTED and "crashed" in message and "signal 11" in message
        assert a.alive and client.health() == "SERVING"
        assert bench(client, tiny).stats.n >= 5  # a fresh worker serves the next one
