"""Upload throughput of a 100 MB model to a local agent over loopback gRPC. Prints JSON.

    python bench/upload_throughput.py [--mb 100] [--repeats 3]

Each repeat uploads a different 100 MB ONNX model (so nothing is deduplicated), then
times the second, skipped upload of the same file (HasModel answers, nothing is sent).
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
import onnx
from onnx import helper, numpy_helper

from netcut_host.client import AgentClient, sha256_file
from netcut_host.local_agent import local_agent


def big_model(path: Path, mb: float, seed: int) -> None:
    n = int((mb * 1e6 / 4) ** 0.5)
    weight = numpy_helper.from_array(np.random.default_rng(seed).standard_normal((n, n)).astype(np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        "big",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, n])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, n])],
        [weight],
    )
    onnx.save_model(helper.make_model(graph), str(path))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mb", type=float, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    rates, skipped, hashing = [], [], []
    with tempfile.TemporaryDirectory() as tmp, local_agent(Path(tmp) / "store") as address, AgentClient(address) as c:
        c.info()
        for i in range(args.repeats):
            path = Path(tmp) / f"big{i}.onnx"
            big_model(path, args.mb, i)
            size = path.stat().st_size
            t0 = time.perf_counter()
            model_id = sha256_file(path)
            hashing.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            c.upload(path, model_id=model_id)
            rates.append(size / 1e6 / (time.perf_counter() - t0))
            t0 = time.perf_counter()
            c.upload(path, model_id=model_id)
            skipped.append(time.perf_counter() - t0)
            path.unlink()
    out = {
        "model_mb": round(size / 1e6, 1),
        "upload_mb_per_s": {"median": round(statistics.median(rates), 1), "runs": [round(r, 1) for r in rates]},
        "upload_includes": "transfer, sha256 check, ONNX validation, fsync, atomic rename",
        "client_sha256_s": round(statistics.median(hashing), 3),
        "second_upload_skipped_s": round(statistics.median(skipped), 4),
    }
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
