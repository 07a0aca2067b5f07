"""Shared fixtures: real agents in subprocesses on loopback port 0, tiny real models."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

DATA = Path(__file__).parent / "data"
sys.path.insert(0, str(DATA))

# Keep the user's data and cache folders (default stores, tables, export caches) out of tests.
_HOME = tempfile.mkdtemp(prefix="netcut-tests-")
os.environ["XDG_DATA_HOME"] = os.path.join(_HOME, "data")
os.environ["XDG_CACHE_HOME"] = os.path.join(_HOME, "cache")
os.environ["XDG_CONFIG_HOME"] = os.path.join(_HOME, "config")
os.environ["NETCUT_OFFLINE"] = "1"  # nothing may download weights while tests run
# CI runs two test files at once on two cores (-n 2). torch's OpenMP threads spin at barriers, and when the
# other file's processes take their core they wait on each other: a search's training took twice as long
# with two threads as with one beside two busy processes (15.0 s against 7.2). One thread each, then.
os.environ.setdefault("OMP_NUM_THREADS", "1")


@dataclass
class AgentProcess:
    proc: subprocess.Popen
    address: str
    store: Path

    def stop(self, timeout: float = 15) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None


def start_agent(store: Path, *args: str, env: dict | None = None, listen: str = "127.0.0.1:0") -> AgentProcess:
    cmd = [sys.executable, "-m", "netcut_agent", "serve", "--listen", listen, "--store", str(store), *args]
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
    )
    line = proc.stdout.readline()
    if not line.startswith("listening on "):
        proc.kill()
        raise RuntimeError(f"agent did not start: {line!r} {proc.stderr.read()}")
    return AgentProcess(proc, line.split("listening on ", 1)[1].strip(), store)


@pytest.fixture
def agent_factory(tmp_path):
    started: list[AgentProcess] = []

    def make(*args: str, store: Path | None = None, env: dict | None = None, listen: str = "127.0.0.1:0"):
        a = start_agent(store or tmp_path / f"store{len(started)}", *args, env=env, listen=listen)
        started.append(a)
        return a

    yield make
    for a in started:
        a.stop()


@pytest.fixture(scope="module")
def agent(tmp_path_factory):
    a = start_agent(tmp_path_factory.mktemp("agent-store"))
    yield a
    a.stop()


@pytest.fixture
def client(agent):
    from netcut_host.client import AgentClient

    with AgentClient(agent.address) as c:
        yield c


@pytest.fixture(scope="session")
def tiny_onnx(tmp_path_factory) -> Path:
    """A tiny real CNN (16x16 input) exported to ONNX with netcut's node table."""
    from make_fixtures import tiny_net

    from netcut.cuts import analyse
    from netcut.export import export_onnx
    from netcut.trn import build_trn

    a = analyse(tiny_net(), "tiny", 16)
    path = tmp_path_factory.mktemp("models") / "tiny.onnx"
    export_onnx(build_trn(a, None), path, (1, 3, 16, 16))
    return path


@pytest.fixture(scope="session")
def dynamic_onnx(tmp_path_factory) -> Path:
    """The tiny CNN with dynamic batch, height and width."""
    import torch
    from make_fixtures import tiny_net

    path = tmp_path_factory.mktemp("models") / "dynamic.onnx"
    torch.onnx.export(
        tiny_net(),
        (torch.randn(1, 3, 16, 16),),
        str(path),
        dynamo=False,
        opset_version=17,
        input_names=["input"],
        output_names=["output"],
        dynamic_axes={"input": {0: "batch", 2: "h", 3: "w"}},
    )
    return path


@pytest.fixture
def tiny_tflite() -> Path:
    return DATA / "tiny.tflite"


def fast_timing(**overrides):
    from netcut_protos.agent.v1 import agent_pb2 as pb

    values = dict(warmup_runs=2, warmup_seconds=0.0, min_runs=5, min_seconds=0.0, max_seconds=5.0)
    values.update(overrides)
    return pb.TimingConfig(**values)


BIN = Path(sys.executable).parent


def run_cli(*argv: str, timeout: float = 300, **kwargs) -> subprocess.CompletedProcess:
    """Run a console script (netcut-host, netcut-agent) of this environment."""
    return subprocess.run([str(BIN / argv[0]), *argv[1:]], capture_output=True, text=True, timeout=timeout, **kwargs)
