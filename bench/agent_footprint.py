"""The agent's resident memory idle and after a benchmark, and its time to SERVING. Prints JSON.

    python bench/agent_footprint.py [--starts 5]

The server process is measured apart from its benchmark worker (the child process that loads the
runtimes and the models), and whether the server itself loaded onnxruntime is reported.
Goals: the server under 50 MB idle, under 1 s from start to SERVING.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from netcut import models
from netcut.cuts import analyse
from netcut.export import export_onnx
from netcut.trn import build_trn
from netcut_host.client import AgentClient
from netcut_protos.agent.v1 import agent_pb2 as pb


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def children(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    out.append(int(entry.name))
            except (OSError, ValueError):
                continue
    return out


def loads_onnxruntime(pid: int) -> bool:
    return "onnxruntime" in Path(f"/proc/{pid}/maps").read_text()


def start(store: Path, port: int) -> tuple[subprocess.Popen, float]:
    """Spawn the agent and poll its health service; returns seconds from spawn to SERVING."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "netcut_agent", "serve", "--listen", f"127.0.0.1:{port}", "--store", str(store)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while True:
            try:
                if stub.Check(health_pb2.HealthCheckRequest(), timeout=0.2).status == 1:
                    return proc, time.perf_counter() - t0
            except grpc.RpcError:
                time.sleep(0.01)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--starts", type=int, default=5)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        a = analyse(models.build("mobilenet_v2"), "mobilenet_v2", 224)
        path = Path(tmp) / "mnv2.onnx"
        export_onnx(build_trn(a, None), path, a.input_shape)
        startup = []
        for i in range(args.starts):
            proc, seconds = start(Path(tmp) / "store", free_port())
            startup.append(seconds)
            if i < args.starts - 1:
                proc.terminate()
                proc.wait()
        port = proc.args[proc.args.index("--listen") + 1]
        with AgentClient(port) as c:
            c.info()
            time.sleep(1.0)
            idle = rss_mb(proc.pid)
            idle_children = sum(rss_mb(c) for c in children(proc.pid))
            server_ort = loads_onnxruntime(proc.pid)
            c.benchmark(
                pb.BenchmarkRequest(
                    model_id=c.upload(path), threads=1, profile_layers=True, timing=pb.TimingConfig(min_seconds=2)
                )
            )
            after = rss_mb(proc.pid)
            after_children = sum(rss_mb(c) for c in children(proc.pid))
        proc.terminate()
        proc.wait()
    out = {
        "idle_rss_mb": round(idle, 1),
        "after_benchmark_rss_mb": round(after, 1),
        "worker_idle_rss_mb": round(idle_children, 1),
        "worker_after_benchmark_rss_mb": round(after_children, 1),
        "server_loads_onnxruntime": server_ort,
        "benchmark_model": "mobilenet_v2 224 (with per-layer profile)",
        "start_to_serving_s": {
            "median": round(statistics.median(startup), 3),
            "max": round(max(startup), 3),
            "runs": [round(s, 3) for s in startup],
        },
        "goals": {"idle_rss_mb": 50, "start_to_serving_s": 1.0},
        "met": idle < 50 and statistics.median(startup) < 1.0,
    }
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
