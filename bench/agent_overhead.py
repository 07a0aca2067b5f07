"""The agent's measured median vs a plain in-process onnxruntime loop, interleaved. Prints JSON.

    python bench/agent_overhead.py [--rounds 5] [--threads 1] [--seconds 2]

Same model, same thread count, same session options; rounds alternate agent and
in-process so the machine's drift hits both. The agent times inside its benchmark worker process;
the goal is a ratio within 1.02.

The agent times through IOBinding (inputs and outputs bound once; copies timed apart), the in-process loop
with plain `session.run` (numpy in, new numpy arrays out, inside the timed call): `split_ratio` compares the
agent's compute plus its copy-in and copy-out with the plain call, the check that the split adds up.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

from netcut import models
from netcut.cuts import analyse
from netcut.export import export_onnx
from netcut.trn import build_trn
from netcut_host.client import AgentClient
from netcut_host.local_agent import local_agent
from netcut_protos.agent.v1 import agent_pb2 as pb

MODELS = {"small": ("mobilenet_v3_small", 224), "large": ("resnet50", 224)}


def in_process_median(path: Path, threads: int, seconds: float, warmup: float = 1.0) -> float:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    feed = {"input": np.random.default_rng(0).standard_normal(session.get_inputs()[0].shape).astype(np.float32)}
    end = time.perf_counter() + warmup
    while time.perf_counter() < end:
        session.run(None, feed)
    samples = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end or len(samples) < 50:
        t0 = time.perf_counter()
        session.run(None, feed)
        samples.append((time.perf_counter() - t0) * 1000)
    return statistics.median(samples)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=2.0)
    args = parser.parse_args(argv)
    out = {"threads": args.threads, "rounds": args.rounds, "models": {}}
    with tempfile.TemporaryDirectory() as tmp, local_agent(Path(tmp) / "store") as address, AgentClient(address) as c:
        for label, (name, size) in MODELS.items():
            a = analyse(models.build(name), name, size)
            path = Path(tmp) / f"{name}.onnx"
            export_onnx(build_trn(a, None), path, a.input_shape)
            model_id = c.upload(path)
            agent_ms, local_ms, copies_ms = [], [], []
            for _ in range(args.rounds):
                timing = pb.TimingConfig(warmup_seconds=1.0, min_runs=50, min_seconds=args.seconds, max_seconds=60)
                result = c.benchmark(pb.BenchmarkRequest(model_id=model_id, threads=args.threads, timing=timing))
                agent_ms.append(result.stats.median_ms)
                copies_ms.append(result.copy_in_ms + result.copy_out_ms)
                local_ms.append(in_process_median(path, args.threads, args.seconds))
            ratio = statistics.median(agent_ms) / statistics.median(local_ms)
            out["models"][label] = {
                "model": name,
                "input_size": size,
                "agent_median_ms": round(statistics.median(agent_ms), 4),
                "in_process_median_ms": round(statistics.median(local_ms), 4),
                "ratio": round(ratio, 4),
                "per_round_ratios": [round(x / y, 4) for x, y in zip(agent_ms, local_ms)],
                # Each round's pair runs back to back: the median of their ratios is the least hit by drift.
                "median_per_round_ratio": round(statistics.median(x / y for x, y in zip(agent_ms, local_ms)), 4),
                "goal": "ratio <= 1.02",
                "met": ratio <= 1.02,
                "agent_copies_ms": round(statistics.median(copies_ms), 4),
                "split_ratio": round(
                    (statistics.median(agent_ms) + statistics.median(copies_ms)) / statistics.median(local_ms), 4
                ),
            }
            print(json.dumps(out["models"][label]), file=sys.stderr)
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
