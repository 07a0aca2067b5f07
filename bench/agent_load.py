"""A bounded load on one agent on loopback: many clients on health and Info, a queue of benchmarks, and a
storm of benchmarks cancelled midway. Prints JSON: calls served, refused by status, health latency, peak RSS.

    python bench/agent_load.py [--clients 200] [--seconds 15]

Every loop stops by itself after --seconds; all traffic goes to 127.0.0.1. Goals: every health check
answered (none refused, none timed out) with p99 under 1 s, and the agent alive and idle at the end.
"""

from __future__ import annotations

import argparse
import collections
import json
import random
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from netcut import models
from netcut.cuts import analyse
from netcut.export import export_onnx
from netcut.trn import build_trn
from netcut_host.client import AgentClient
from netcut_host.local_agent import local_agent
from netcut_protos.agent.v1 import agent_pb2 as pb
from netcut_protos.agent.v1 import agent_pb2_grpc as pb_grpc


def rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def agent_pids(store: str) -> list[int]:
    """The agent serving this store, and its children (the benchmark worker)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmd = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"netcut_agent" in b" ".join(cmd) and store.encode() in cmd:
                pids.append(int(entry.name))
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) in pids:
                    pids.append(int(entry.name))
            except (OSError, ValueError):
                continue
    return pids


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--benchmarkers", type=int, default=6)
    parser.add_argument("--cancellers", type=int, default=6)
    args = parser.parse_args(argv)
    calls: collections.Counter = collections.Counter()
    health_ms: list[float] = []
    lock = threading.Lock()

    def count(kind: str, code: str) -> None:
        with lock:
            calls[f"{kind} {code}"] += 1

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "tiny.onnx"
        a = analyse(models.build("mobilenet_v3_small"), "mobilenet_v3_small", 32)
        export_onnx(build_trn(a, None), path, a.input_shape)
        with local_agent(Path(tmp) / "store") as address, AgentClient(address) as client:
            model_id = client.upload(path)
            client.info()
            store = str(Path(tmp) / "store")
            pids = agent_pids(store)
            end = time.monotonic() + args.seconds
            peak = [0.0]

            def sample() -> None:
                while time.monotonic() < end + 1:
                    peak[0] = max(peak[0], sum(rss_mb(p) for p in agent_pids(store)))
                    time.sleep(0.2)

            def prober(i: int) -> None:
                with grpc.insecure_channel(address) as channel:
                    health = health_pb2_grpc.HealthStub(channel)
                    agent = pb_grpc.AgentStub(channel)
                    while time.monotonic() < end:
                        t0 = time.perf_counter()
                        try:
                            if i % 2:
                                health.Check(health_pb2.HealthCheckRequest(), timeout=5)
                                with lock:
                                    health_ms.append((time.perf_counter() - t0) * 1000)
                                count("health", "OK")
                            else:
                                agent.Info(pb.InfoRequest(), timeout=5)
                                count("info", "OK")
                        except grpc.RpcError as exc:
                            count("health" if i % 2 else "info", exc.code().name)

            timing = pb.TimingConfig(warmup_runs=2, warmup_seconds=0, min_runs=20, min_seconds=0.2)

            def benchmarker() -> None:
                with grpc.insecure_channel(address) as channel:
                    agent = pb_grpc.AgentStub(channel)
                    while time.monotonic() < end:
                        try:
                            for _ in agent.Benchmark(
                                pb.BenchmarkRequest(model_id=model_id, threads=1, timing=timing), timeout=60
                            ):
                                pass
                            count("benchmark", "OK")
                        except grpc.RpcError as exc:
                            count("benchmark", exc.code().name)

            def canceller(seed: int) -> None:
                rng = random.Random(seed)
                with grpc.insecure_channel(address) as channel:
                    agent = pb_grpc.AgentStub(channel)
                    while time.monotonic() < end:
                        stream = agent.Benchmark(
                            pb.BenchmarkRequest(model_id=model_id, threads=1, timing=timing), timeout=60
                        )
                        time.sleep(rng.uniform(0.0, 0.3))
                        stream.cancel()
                        count("cancelled benchmark", "sent")

            threads = [threading.Thread(target=sample)]
            threads += [threading.Thread(target=prober, args=(i,)) for i in range(args.clients)]
            threads += [threading.Thread(target=benchmarker) for _ in range(args.benchmarkers)]
            threads += [threading.Thread(target=canceller, args=(i,)) for i in range(args.cancellers)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(timeout=args.seconds + 120)
            time.sleep(1.0)
            info = client.info()
            alive = all(Path(f"/proc/{p}").exists() for p in pids[:1])
    ordered = sorted(health_ms)
    p99 = ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))] if ordered else None
    out = {
        "clients": args.clients,
        "seconds": args.seconds,
        "benchmarkers": args.benchmarkers,
        "cancellers": args.cancellers,
        "calls": dict(sorted(calls.items())),
        "health_latency_ms": {
            "median": round(statistics.median(ordered), 2) if ordered else None,
            "p99": round(p99, 2) if p99 is not None else None,
            "n": len(ordered),
        },
        "peak_rss_mb_agent_and_worker": round(peak[0], 1),
        "agent_alive": alive,
        "idle_at_end": not info.busy and info.queue_length == 0,
    }
    refused_health = sum(v for k, v in calls.items() if k.startswith("health ") and not k.endswith(" OK"))
    out["met"] = bool(refused_health == 0 and p99 is not None and p99 < 1000 and alive and out["idle_at_end"])
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
