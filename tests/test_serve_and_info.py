"""The two CLIs over real gRPC: serve, Info, health, clean stop, unreachable agents."""

import json
import signal
import socket
import subprocess
import sys
import time

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from netcut_protos.agent.v1 import agent_pb2 as pb
from netcut_protos.agent.v1 import agent_pb2_grpc as pb_grpc
from conftest import run_cli


def test_serve_answers_info_and_health_then_stops_cleanly(agent_factory):
    a = agent_factory()
    host, port = a.address.rsplit(":", 1)
    assert host == "127.0.0.1" and int(port) > 0
    with grpc.insecure_channel(a.address) as channel:
        info = pb_grpc.AgentStub(channel).Info(pb.InfoRequest(), timeout=10)
        health = health_pb2_grpc.HealthStub(channel)
        overall = health.Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
        service = health.Check(health_pb2.HealthCheckRequest(service="netcut.agent.v1.Agent"), timeout=5)
    import netcut

    assert info.agent_version == netcut.__version__
    assert info.protocol_version == 2
    assert {r.name for r in info.runtimes} == {"onnxruntime", "litert"}
    ort = next(r for r in info.runtimes if r.name == "onnxruntime")
    assert ort.available and "CPUExecutionProvider" in ort.execution_providers and ort.version
    assert info.board.cpu_cores > 0 and info.board.kernel and info.board.python_version
    assert info.state.timestamp_unix > time.time() - 60
    assert overall.status == health_pb2.HealthCheckResponse.SERVING
    assert service.status == health_pb2.HealthCheckResponse.SERVING
    a.proc.send_signal(signal.SIGTERM)
    assert a.proc.wait(timeout=15) == 0
    assert "stopped" in a.proc.stdout.read()


def test_ctrl_c_stops_cleanly(agent_factory):
    a = agent_factory()
    a.proc.send_signal(signal.SIGINT)
    assert a.proc.wait(timeout=15) == 0


def test_host_info_prints_a_table_and_json(agent):
    table = run_cli("netcut-host", "info", "--agent", agent.address, timeout=60)
    assert table.returncode == 0, table.stderr
    assert "runtime onnxruntime" in table.stdout and "cpu" in table.stdout
    out = run_cli("netcut-host", "info", "--agent", agent.address, "--json", timeout=60)
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["protocol_version"] == 2
    assert {"agent_version", "runtimes", "board", "state", "store"} <= set(data)
    assert data["board"]["cpu_cores"] > 0


def test_host_info_without_agent_starts_a_local_one():
    out = run_cli("netcut-host", "info", "--json", timeout=120)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["protocol_version"] == 2


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_agent_exits_4_quickly_with_one_line():
    start = time.monotonic()
    out = run_cli("netcut-host", "info", "--agent", f"127.0.0.1:{_free_port()}", timeout=60)
    elapsed = time.monotonic() - start
    assert out.returncode == 4
    assert "cannot reach the agent" in out.stderr
    assert "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) == 1
    assert elapsed < 20  # generous: a hang would take forever; the connect timeout is 3 s


def test_serve_refuses_a_busy_port(agent, tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "netcut_agent", "serve", "--listen", agent.address, "--store", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2
    assert "cannot listen" in out.stderr and "Traceback" not in out.stderr


@pytest.mark.parametrize("listen", ["nonsense", "127.0.0.1:99999"])
def test_serve_rejects_bad_addresses(listen, tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "netcut_agent", "serve", "--listen", listen, "--store", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2 and "Traceback" not in out.stderr
