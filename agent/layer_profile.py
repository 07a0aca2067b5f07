"""Per-layer times from onnxruntime's profiler, mapped back to the model's own nodes.

onnxruntime optimises the graph before running it: it fuses nodes (Conv+Relu), changes
layouts (names ending `_nchwc`) and inserts reorder kernels. Its profile therefore names
kernels, not nodes. We map each kernel back to an original node by name, by the name of
an output tensor, or by prefix; kernels that map to nothing (layout reorders) join the
node that ran just before them, or the first mapped node when none ran before (an int8 model's
input quantization). The node table (name, block, outputs) travels inside the
model as metadata `netcut.nodes`, written by `netcut.export`.
"""

from __future__ import annotations

import bisect
import json
import re
import statistics
from dataclasses import dataclass

NODES_METADATA_KEY = "netcut.nodes"
_SUFFIXES = re.compile(r"(_nchwc|_token_\d+|_kernel_time|_output_\d+|_fused\w*|_\d+)$")


@dataclass
class LayerTime:
    node: str
    op_type: str
    block: str
    time_ms: float
    raw_ms: float
    kernel: str


@dataclass
class NodeEntry:
    name: str
    block: str
    outputs: list[str]


def node_table(metadata: dict[str, str]) -> list[NodeEntry]:
    raw = metadata.get(NODES_METADATA_KEY)
    if not raw:
        return []
    try:
        return [NodeEntry(n, b, list(o)) for n, b, o in json.loads(raw)]
    except (ValueError, TypeError):
        return []


class KernelMapper:
    def __init__(self, nodes: list[NodeEntry]):
        self.by_name = {n.name: n for n in nodes}
        self.by_output = {o: n for n in nodes for o in n.outputs}

    def find(self, kernel: str) -> NodeEntry | None:
        name = kernel
        for _ in range(4):
            hit = self.by_name.get(name) or self.by_output.get(name)
            if hit:
                return hit
            stripped = _SUFFIXES.sub("", name)
            if stripped == name:
                break
            name = stripped
        # Longest original name that the kernel's name starts with.
        best = None
        for candidate in self.by_name:
            if kernel.startswith(candidate) and (best is None or len(candidate) > len(best)):
                best = candidate
        return self.by_name.get(best) if best else None


def parse_ort_profile(events: list[dict], skip_runs: int = 1) -> tuple[list[tuple[str, str, float]], int]:
    """Kernel times per run from a profile: ([(kernel, op_type, median ms per run)], runs used).

    Kernel events are assigned to the `model_run` that contains them; the first `skip_runs`
    runs are dropped (they still pay for lazy allocations). Each kernel's time is its median
    over the runs, like every other figure here: a burst of memory contention from a
    neighbour inflates a mean, and it hits the memory-bound early layers hardest.
    """
    runs = sorted(
        (e["ts"], e["ts"] + e["dur"]) for e in events if e.get("cat") == "Session" and e.get("name") == "model_run"
    )
    kernels = [e for e in events if e.get("cat") == "Node" and e.get("name", "").endswith("_kernel_time")]
    used = runs[skip_runs:] if len(runs) > skip_runs else runs
    if not used:
        return [], 0
    starts = [start for start, _ in used]
    order: list[str] = []
    per_run: dict[str, list[float]] = {}
    ops: dict[str, str] = {}
    for e in kernels:
        i = bisect.bisect_right(starts, e["ts"]) - 1
        if i < 0 or e["ts"] > used[i][1]:
            continue  # a warm-up run's kernel, or one outside every run
        name = e["name"][: -len("_kernel_time")]
        if name not in per_run:
            order.append(name)
            per_run[name] = [0.0] * len(used)
            ops[name] = e.get("args", {}).get("op_name", "")
        per_run[name][i] += e["dur"] / 1000.0
    return [(k, ops[k], statistics.median(per_run[k])) for k in order], len(used)


def placement(events: list[dict]) -> dict[str, int]:
    """How many kernels each execution provider ran in the profile's first run (its `provider` argument)."""
    runs = [e for e in events if e.get("cat") == "Session" and e.get("name") == "model_run"]
    first = min(runs, key=lambda e: e["ts"]) if runs else None
    counts: dict[str, int] = {}
    for e in events:
        if e.get("cat") != "Node" or not e.get("name", "").endswith("_kernel_time"):
            continue
        if first is not None and not first["ts"] <= e["ts"] <= first["ts"] + first["dur"]:
            continue
        provider = e.get("args", {}).get("provider", "")
        if provider:
            counts[provider] = counts.get(provider, 0) + 1
    return counts


def layer_times(
    kernels: list[tuple[str, str, float]], nodes: list[NodeEntry], clean_median_ms: float
) -> list[LayerTime]:
    """Map kernels to nodes and scale so the layers add up to the clean median."""
    mapper = KernelMapper(nodes)
    total = sum(ms for _, _, ms in kernels)
    scale = clean_median_ms / total if total > 0 else 1.0
    out: list[LayerTime] = []
    previous: NodeEntry | None = None
    leading: list[int] = []  # kernels before the first mapped one (an int8 input's quantize and layout)
    for kernel, op, ms in kernels:
        node = mapper.find(kernel) if nodes else None
        if node is None and nodes and previous is not None:
            node = previous  # a reorder or other inserted kernel: charge it to what ran before
        if node is not None and previous is None:
            for i in leading:  # they prepare the first node's input: its block's cost, not nobody's
                out[i].node, out[i].block = node.name, node.block
        if node is not None:
            previous = node
        elif nodes:
            leading.append(len(out))
        out.append(LayerTime(node.name if node else kernel, op, node.block if node else "", ms * scale, ms, kernel))
    return out
