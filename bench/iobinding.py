"""Plain `session.run` against the agent's IOBinding call, in one onnxruntime session, interleaved. Prints JSON.

    python bench/iobinding.py [--models resnet50:224,mobilenet_v3_small:224,resnet18:32] [--rounds 20] [--runs 20]

The agent times `run_with_iobinding` with inputs and outputs bound once (what a deployed pipeline does), and
reports the copies apart; a user's plain `session.run(None, {name: array})` wraps the input, allocates the
outputs and copies them into new numpy arrays inside the call. Both calls go to the *same* session here, in
alternating blocks of --runs calls over --rounds rounds, so the machine's drift and the session's own state
touch both alike. Per model it prints the medians of both, their ratio (the IOBinding-vs-plain check of the GPU
issue: within noise means a ratio near 1, with the rounds' spread as the noise), the agent's copy-in and
copy-out, and `split_ratio` = (IOBinding compute + copy-in + copy-out) / plain: how far the split adds up.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np

from netcut import models
from netcut.cuts import analyse
from netcut.export import export_onnx
from netcut.trn import build_trn
from netcut_agent.providers import ProviderRequest
from netcut_agent.sessions import OrtSession
from netcut_protos.providers import CPU


def block_ms(call, runs: int) -> list[float]:
    import time

    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        call()
        out.append((time.perf_counter() - t0) * 1000.0)
    return out


def compare(path: Path, rounds: int, runs: int, tmp: Path) -> dict:
    session = OrtSession(path, 1, [ProviderRequest(CPU)], tmp)
    spec = session.inputs[0]
    x = np.random.default_rng(0).standard_normal([d if isinstance(d, int) else 1 for d in spec.shape])
    x = x.astype(spec.dtype)
    session.prepare({spec.name: x.copy()})
    session.run()
    session.keep_outputs()
    session.end_profiling()  # as the agent does before timing
    ort_session, feeds = session.session, {spec.name: x}

    def plain():
        ort_session.run(None, feeds)

    for _ in range(max(3, runs // 2)):  # warm both paths
        plain()
        session.run()
    plain_medians, bound_medians = [], []
    for r in range(rounds):
        order = (("plain", plain), ("bound", session.run)) if r % 2 == 0 else (("bound", session.run), ("plain", plain))
        for label, call in order:
            m = statistics.median(block_ms(call, runs))
            (plain_medians if label == "plain" else bound_medians).append(m)
    copy_in, copy_out = session.copy_times(repeats=15)
    plain_ms, bound_ms = statistics.median(plain_medians), statistics.median(bound_medians)
    ratios = [b / p for b, p in zip(bound_medians, plain_medians)]
    return {
        "plain_run_ms": round(plain_ms, 4),
        "iobinding_ms": round(bound_ms, 4),
        "iobinding_over_plain": round(bound_ms / plain_ms, 4),
        "per_round_ratio_median": round(statistics.median(ratios), 4),
        "per_round_ratio_range": [round(min(ratios), 4), round(max(ratios), 4)],
        "copy_in_ms": round(copy_in, 4),
        "copy_out_ms": round(copy_out, 4),
        "split_ratio": round((bound_ms + copy_in + copy_out) / plain_ms, 4),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="resnet50:224,mobilenet_v3_small:224,resnet18:32")
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--runs", type=int, default=20, help="calls per block")
    args = parser.parse_args(argv)
    out = {"threads": 1, "rounds": args.rounds, "runs_per_block": args.runs, "models": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for spec in args.models.split(","):
            name, size = spec.split(":")
            a = analyse(models.build(name), name, int(size))
            path = Path(tmp) / f"{name}.onnx"
            export_onnx(build_trn(a, None), path, a.input_shape)
            out["models"][spec] = compare(path, args.rounds, args.runs, Path(tmp))
            print(json.dumps({spec: out["models"][spec]}), file=sys.stderr)
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
