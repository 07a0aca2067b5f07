"""Fused kernels of an ONNX graph and what each costs: the per-kernel analytical model.

A runtime does not run the graph's nodes one by one: onnxruntime folds BatchNorm into a convolution
and fuses the activation (and, with its NCHWc layout, a residual Add) after it. NetCut's unit of cost
is therefore a *kernel*: a compute node (convolution, matrix product, pooling, an element-wise op that
nothing absorbs, concatenation, resize...) with the nodes the runtime fuses after it. `kernels_of`
groups an exported graph so; a layers-mode profile's per-node times (already mapped to original nodes
by the agent) sum per kernel with `kernel_times`.

Each kernel kind has a roofline: time = fixed + max(compute coefficient x MACs, memory coefficient x
bytes, weight coefficient x weight bytes) + activation coefficient x elements through an activation pass
(a transcendental one, or a Clip applied after the kernel), all non-negative, fitted on relative error
with `scipy.optimize.least_squares`. Kinds are nested (conv > conv.dw > conv.dw.k3s2): a kernel is
predicted at the most specific kind with enough measured kernels behind it. The model is plain JSON;
`rescaled` adapts it to a new board with one scale factor per kind from a few measurements.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import asdict, dataclass, field

import numpy as np
import onnx
from onnx import shape_inference

from .errors import NetcutError
from .vocabulary import BLOCK_KEY

MIN_KERNELS = 6  # measured kernels a kind needs to be fitted on its own (else its parent kind answers)
INTERVAL = 0.90  # the estimates' interval: the central 90% of a kind's measured/predicted ratios
Z90 = 1.6449  # a normal's 95th percentile: the 90% interval's half-width in standard deviations
GUESS_SHARE = 0.1  # an estimate more than this much of which comes from kernels beyond every fit is a guess
REACH = 4.0  # a kind answers for kernels up to this many times the largest of each feature it was fitted on
# 2: kinds know their reach, models their spread over networks left out; 3: a Clip's pass counted; 4: the
# profiler's per-node cost taken off node times, a suite kernel's output reorder not charged to it, a kind's
# fixed cost pulled towards zero; 5: a model run's warmth (its footprint against the board's L2), a TRN head's
# layout reorder; 6: no convolution computes faster than the board's fastest kernels (peak_ms_per_gmac); 7:
# convolutions' MACs in the board's channel blocks (channel_block); 8: the measured families (families); 9: a
# network never measured gets the quantiles of the networks' errors (unseen_log_q); 10: those weighted by each
# network's share of models that were not guesses, and scaled for one network more (unseen_shrink); 11: that
# interval wider for an estimate of smaller kernels than the networks measured (small_ms, small_gain); 12: a
# TRN's head reorders after an activation the board fuses (head_kernels)
VERSION = 12
SMALL_QUANTILE = 0.1  # a kernel priced below this quantile of its kind's kernels measured in networks is small
SHRINK_MIN_NETWORKS = 4  # networks a model needs to scale its spreads for one more (fits of two fewer: 2 or more)
GLOBAL = "*"
FIXED_PULL = 0.1  # a kind's fixed cost as a residual of this weight, relative to its fastest kernel (_fit_kind)
PEAK_QUANTILE = 0.01  # the board's compute peak: this quantile of ms per GMAC over kernels of PEAK_MIN_MACS or more
PEAK_MIN_MACS = 1e6  # (a smaller kernel's time is mostly its fixed cost and the profiler's noise)
PEAK_FIXED_SHARE = 0.1  # nor a kernel whose kind's fixed cost is more than this share of its time
PEAK_SLACK = 2.0  # a compute kind fitted this many times faster than the peak is fitted again, floored at it
# The channel blocks a runtime may compute convolutions in (Kernel.macs_at): onnxruntime's NCHWc layout on x86
# uses 8 with AVX2 and 16 with AVX-512; 1, none (its ARM builds, LiteRT). Each target's fit chooses one
# (host.kernel_estimation.fit_from).
CHANNEL_BLOCKS = (1, 8, 16)
COMPUTE_KINDS = ("conv", "gemm")  # the kinds whose work is their MACs: their compute rate has that floor
# The share of a kernel's time a model run saves when its whole footprint fits the board's L2 (warmth). Chosen
# on this project's x86 tables (of 0, 0.1, 0.15, 0.2, 0.25: leave-one-network-out medians on four tables at
# 224 and 96 px, 0.1 best on three); see the README's per-kernel section.
WARM_SHARE = 0.1
# A blocked-layout runtime's reorder back to the plain layout (onnxruntime's NCHWc ReorderOutput on x86): where a
# TRN's cut output leaves a convolution or pooling in the blocked layout, its head (a ReduceMean) reads the plain
# one. Fitted on the kernel suite's own output reorders (~0.07 ms/MB at 224 px here); where a board shows none
# (ARM's onnxruntime, LiteRT), nothing is fitted and such a kernel costs nothing.
REORDER = "layout.reorder"
SKIPPED = "#skipped"  # kernel_times: the time of the runtime nodes it was told to leave out

# Nodes that move no data of their own in onnxruntime (views, shape arithmetic, no-ops).
FREE = {
    "Identity",
    "Dropout",
    "Flatten",
    "Reshape",
    "Squeeze",
    "Unsqueeze",
    "Shape",
    "Constant",
    "ConstantOfShape",
    "Gather",
    "Cast",
    "Range",
}
# Nodes a convolution or matrix product absorbs when they follow it (onnxruntime's Conv+BatchNorm, Conv
# +activation, NCHWc Conv+Sum fusions; the QDQ pair around an int8 one). Where a board's runtime does not
# fuse one, its kernel still maps to the node, so the group's measured time includes it.
FOLLOWERS = {
    "BatchNormalization",
    "Relu",
    "Clip",
    "LeakyRelu",
    "HardSigmoid",
    "Sigmoid",
    "Tanh",
    "HardSwish",
    "Add",
    "Mul",
    "QuantizeLinear",
    "DequantizeLinear",
}
TRANSCENDENTAL = {"Sigmoid", "Tanh", "HardSwish", "HardSigmoid", "Elu", "Erf", "Softmax", "Exp"}
# A clamp a runtime fuses into the convolution but applies as a pass over its output (onnxruntime's MLAS: a
# ReLU is folded into the kernel's stores, a Clip is not; mobilenet_v2's ReLU6 1x1 convolutions ran 1.1-1.8x
# as long as their MACs and bytes predicted from ReLU networks). Counted with the activations' elements in
# float graphs; an int8 graph folds it into the quantization range.
OUTPUT_PASS = {"Clip"}
# A compute kernel's activation that a runtime may run as a kernel of its own (onnxruntime on x86 runs a
# SiLU as QuickGelu, plus a layout reorder, after the NCHWc convolution: at 96 px as long as the 1x1
# convolution itself). It is modelled as a kernel of its own, ACT_SUFFIX after the compute kernel's name:
# where the board fuses it, its measured time is zero and so is its estimate.
SEPARABLE_ACTS = {"Sigmoid", "Tanh", "HardSwish", "HardSigmoid"}
ACT_SUFFIX = "#act"
# Runtime kernels that do a compute kernel's work, whichever node of its group they map to (a Conv fused
# with its HardSigmoid is named after the HardSigmoid's output).
COMPUTE_KERNEL_OPS = {
    "Conv",
    "FusedConv",
    "NhwcConv",
    "QLinearConv",
    "ConvInteger",
    "Gemm",
    "FusedGemm",
    "MatMul",
    "FusedMatMul",
    "QLinearMatMul",
    "MatMulInteger",
}
ELEMENT_BYTES = {"fp32": 4, "int8": 1}


@dataclass(frozen=True)
class Kernel:
    """One fused kernel: the node that anchors it, the nodes fused into it, its kind and its costs."""

    name: str  # the anchor node's name
    nodes: tuple[str, ...]  # every original node it covers (the anchor first)
    kind: str  # most specific kind, e.g. conv.dw.k3s2 (see kinds())
    macs: float
    bytes: float  # activations in and out, at the precision's element size
    act: float  # elements through an activation pass: transcendental (SiLU, HardSwish, sigmoid gates), a Clip
    block: str = ""
    # Weights, apart: a convolution on a 3x3 map (or a squeeze-excite one on 1x1) streams its weights and
    # uses each only a few times (efficientnet_b0's 1152->192 1x1 conv at 96 px ran at ~26 GB/s of weights).
    weight_bytes: float = 0.0
    spec: str = ""  # what the kernel suite builds to measure this kernel alone ("" when it cannot)
    # A convolution's output channels and input channels per output (weight.shape[1]), and its group count: a
    # runtime that computes channels in blocks (onnxruntime's NCHWc on x86) pads them to the block (macs_at).
    channels: tuple[int, int, int] = (0, 0, 1)

    def kinds(self) -> list[str]:
        """From the most specific kind to the least: conv.dw.k3s2, conv.dw, conv, *."""
        parts = self.kind.split(".")
        return [".".join(parts[:i]) for i in range(len(parts), 0, -1)] + [GLOBAL]

    def features(self, block: int = 1) -> tuple[float, float, float, float]:
        return self.macs_at(block), self.bytes, self.act, self.weight_bytes

    def macs_at(self, block: int) -> float:
        """The MACs a runtime computing channels in blocks of `block` does: output channels padded to the block,
        and a plain convolution's input channels where it has a block or more (a stem's 3 channels are read as
        they are). On this project's x86 machine (AVX-512: blocks of 16) mnasnet1_0's 24- and 40-channel layers
        and mobilenet_v2's 24-channel expansions did a third more than their MACs."""
        cout, cin, group = self.channels
        if block <= 1 or cout <= 0:
            return self.macs
        scale = -(-cout // block) * block / cout
        if group == 1 and cin >= block:
            scale *= -(-cin // block) * block / cin
        return self.macs * scale


def _shapes(model: onnx.ModelProto) -> dict[str, tuple[int, ...]]:
    try:  # onnxruntime's symbolic inference folds shape arithmetic (a channel shuffle's Shape -> Reshape)
        from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference

        inferred = SymbolicShapeInference.infer_shapes(model, auto_merge=True)
    except Exception:  # noqa: BLE001 - fall back on ONNX's own inference, then on what the graph says
        try:
            inferred = shape_inference.infer_shapes(model, data_prop=True)
        except Exception:  # noqa: BLE001
            inferred = model
    out = {}
    for vi in [*inferred.graph.input, *inferred.graph.output, *inferred.graph.value_info]:
        dims = vi.type.tensor_type.shape.dim
        if dims and all(d.HasField("dim_value") for d in dims):
            out[vi.name] = tuple(d.dim_value for d in dims)
    for init in model.graph.initializer:
        out[init.name] = tuple(init.dims)
    return out


def _attr(node: onnx.NodeProto, name: str, default: object) -> object:
    for a in node.attribute:
        if a.name == name:
            return onnx.helper.get_attribute_value(a)
    return default


def _numel(shape: tuple[int, ...] | None) -> float:
    return float(math.prod(shape)) if shape else 0.0


def _block(node: onnx.NodeProto) -> str:
    return next((p.value for p in node.metadata_props if p.key == BLOCK_KEY), "")


def _conv_kind(node: onnx.NodeProto, weight: tuple[int, ...]) -> str:
    k = "x".join(str(d) for d in weight[2:]) or "1"
    stride = max(_attr(node, "strides", [1]) or [1])
    group = int(_attr(node, "group", 1))
    cout = weight[0]
    if group > 1 and group == cout and weight[1] == 1:
        return f"conv.dw.k{k}s{stride}"
    if group > 1:
        return f"conv.grouped.k{k}s{stride}"
    if all(d == 1 for d in weight[2:]):
        return f"conv.pw.s{stride}"
    return f"conv.dense.k{k}s{stride}"


def kernels_of(model: onnx.ModelProto, precision: str = "fp32") -> list[Kernel]:
    """The fused kernels of a graph, in execution order, with their kinds and costs."""
    graph = model.graph
    shapes = _shapes(model)
    constants = {i.name for i in graph.initializer}
    element = ELEMENT_BYTES.get(precision, 4)
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    owner: dict[str, int] = {}  # tensor -> index of the group that produced it
    groups: list[dict] = []

    shape_values: set[str] = set()  # tensors of shape arithmetic (Shape -> Gather -> Div -> Reshape's shape)

    def activations(node: onnx.NodeProto) -> list[str]:
        return [i for i in node.input if i and i not in constants and i not in shape_values]

    def bytes_of(names: list[str]) -> float:
        return sum(_numel(shapes.get(n)) for n in names) * element

    for node in graph.node:
        inputs = activations(node)
        if not inputs:  # computed from constants only (a weight's DequantizeLinear, a shape): folded away
            constants.update(node.output if node.op_type != "Shape" else [])
            shape_values.update(node.output if node.op_type == "Shape" else [])
            continue
        if node.op_type == "Shape":
            shape_values.update(node.output)
            continue
        producers = {owner[i] for i in inputs if i in owner}
        op = node.op_type
        joins = None
        if op in FREE or (op in ("QuantizeLinear", "DequantizeLinear")):
            joins = min(producers) if producers else None
        elif op in FOLLOWERS and producers:
            # Fused only onto a compute kernel whose output feeds nothing else (or the sigmoid of a SiLU); of
            # two (a residual sum of two convolutions' outputs), onto the later one.
            hosts = [
                p
                for p in producers
                if groups[p]["fuses"]
                and any(
                    i in groups[p]["outputs"] and (len(consumers.get(i, [])) == 1 or _silu(consumers.get(i, [])))
                    for i in inputs
                )
            ]
            if op == "Mul":  # only a SiLU's x * sigmoid(x); a squeeze-excite gate's Mul is a kernel of its own
                hosts = hosts if len(producers) == 1 and all(i in owner for i in inputs) else []
            joins = max(hosts) if hosts else None
        if joins is not None:
            g = groups[joins]
            g["nodes"].append(node.name)
            g["outputs"] = set(node.output)
            if op == "Add":  # a residual sum: the other operand is read too
                g["bytes"] += bytes_of([i for i in inputs if owner.get(i) != joins])
            if op in TRANSCENDENTAL or (op in OUTPUT_PASS and precision != "int8"):
                g["act"] += _numel(shapes.get(node.output[0]))
            if op in SEPARABLE_ACTS or (op == "Mul" and "Sigmoid" in g["ops"]):
                g["act_nodes"].append(node.name)
            if g["spec"] and op not in FREE and op not in ("QuantizeLinear", "DequantizeLinear"):
                fused = {"Relu": "relu", "Clip": "relu6", "HardSwish": "hardswish", "HardSigmoid": "hardsigmoid"}
                if op == "Add":
                    g["spec"]["add"] = 1
                elif op in fused and "act" not in g["spec"]:
                    g["spec"]["act"] = fused[op]
                elif op == "Sigmoid" and "act" not in g["spec"]:
                    g["spec"]["act"] = "silu"
                elif op not in ("BatchNormalization", "Mul"):
                    g["spec"]["act"] = "?"  # a chain the suite does not build
            g["ops"].append(op)
            for o in node.output:
                owner[o] = joins
            continue
        out = shapes.get(node.output[0]) if node.output else None
        macs, weights, kind, fuses, spec, channels = 0.0, 0.0, "", False, {}, (0, 0, 1)
        x = shapes.get(inputs[0]) or ()
        if op in ("Conv", "ConvInteger", "QLinearConv", "ConvTranspose"):
            w_name = node.input[3] if op == "QLinearConv" else node.input[1]
            weight = shapes.get(w_name) or ()
            if len(weight) >= 3 and out:
                kind = _conv_kind(node, weight)
                macs = _numel(out) * _numel(weight[1:])
                weights = _numel(weight) * element
                if op == "Conv" and len(weight) == 4 and len(x) == 4 and weight[2] == weight[3]:
                    spec = {"op": "conv", "cin": x[1], "cout": weight[0], "h": x[2], "w": x[3], "k": weight[2]}
                    spec.update({"s": max(_attr(node, "strides", [1]) or [1]), "g": int(_attr(node, "group", 1))})
                if op != "ConvTranspose":  # whose weight is (in, out per group, ...): left unpadded
                    channels = (int(weight[0]), int(weight[1]), int(_attr(node, "group", 1)))
            else:
                kind = "conv.unknown"
            fuses = True
        elif op in ("Gemm", "MatMul", "QLinearMatMul", "MatMulInteger"):
            a = shapes.get(node.input[0]) or ()
            kdim = a[-1] if a else 0
            macs = _numel(out) * kdim
            w = node.input[1]
            weights = _numel(shapes.get(w)) * element if w in constants else 0.0
            kind, fuses = "gemm", True
            if op == "Gemm" and len(a) == 2 and w in constants and len(shapes.get(w) or ()) == 2 and out:
                spec = {"op": "gemm", "m": a[0], "k": a[1], "n": out[-1]}
        elif op in ("GlobalAveragePool", "GlobalMaxPool", "ReduceMean"):
            kind = "pool.global"
            if op == "GlobalAveragePool" and len(x) == 4:
                spec = {"op": "gap", "cin": x[1], "h": x[2], "w": x[3]}
        elif op in ("MaxPool", "AveragePool"):
            ks = _attr(node, "kernel_shape", [])
            s = max(_attr(node, "strides", [1]) or [1])
            kind = f"pool.{op[:3].lower()}.k{'x'.join(str(d) for d in ks)}s{s}"
            if len(x) == 4 and len(ks) == 2 and ks[0] == ks[1]:
                spec = {"op": op[:3].lower() + "pool", "cin": x[1], "h": x[2], "w": x[3], "k": ks[0], "s": s}
        elif op in ("Add", "Mul", "Sub", "Div", "Sum", "Max", "Min"):
            kind = f"eltwise.{op.lower()}"
            operands = [shapes.get(i) or () for i in inputs]
            if op in ("Add", "Mul") and len(operands) == 2 and all(len(o) == 4 for o in operands):
                big, small = sorted(operands, key=_numel, reverse=True)
                gate = int(small[2:] == (1, 1) and big[2:] != (1, 1))  # a squeeze-excite scale
                spec = {"op": op.lower(), "cin": big[1], "h": big[2], "w": big[3], "gate": gate}
        elif op in TRANSCENDENTAL or op in ("Relu", "Clip", "LeakyRelu"):
            kind = f"act.{op.lower()}"
        elif op in ("Concat", "Split", "Slice", "Transpose", "Pad"):
            kind = f"memory.{op.lower()}"
        elif op in ("Resize", "Upsample"):
            kind = "memory.resize"
        else:
            kind = f"other.{op.lower()}"
        groups.append(
            {
                "name": node.name,
                "nodes": [node.name],
                "ops": [op],
                "kind": kind,
                "macs": macs,
                "bytes": bytes_of(inputs) + _numel(out) * element,
                "weights": weights,
                "act": _numel(out) if op in TRANSCENDENTAL else 0.0,
                "block": _block(node),
                "outputs": set(node.output),
                "fuses": fuses,
                "spec": spec,
                "channels": channels,
                "act_nodes": [],
            }
        )
        for o in node.output:
            owner[o] = len(groups) - 1
    out = []
    for g in groups:
        acts = g["act_nodes"]
        out.append(
            Kernel(
                g["name"],
                tuple(n for n in g["nodes"] if n not in acts),
                g["kind"],
                g["macs"],
                g["bytes"],
                0.0 if acts else g["act"],
                g["block"],
                weight_bytes=g["weights"],
                spec=spec_text(g["spec"]) if g["spec"] and g["spec"].get("act") != "?" else "",
                channels=g["channels"],
            )
        )
        if acts:  # the activation, as the kernel a runtime may run apart
            name = "silu" if "Sigmoid" in g["ops"] and "Mul" in g["ops"][g["ops"].index("Sigmoid") :] else None
            kind = "act." + (name or next(o for o in g["ops"] if o in SEPARABLE_ACTS).lower())
            elements = g["act"]
            out.append(
                Kernel(g["name"] + ACT_SUFFIX, tuple(acts), kind, 0.0, 2 * elements * element, elements, g["block"])
            )
    return out


def spec_text(spec: dict) -> str:
    """A suite kernel's spec as the name its rows are stored under: op=conv,cin=16,... (keys sorted after op)."""
    return ",".join(f"{k}={spec[k]}" for k in ["op", *sorted(k for k in spec if k != "op")])


def parse_spec(text: str) -> dict:
    out = {}
    for part in text.split(","):
        key, _, value = part.partition("=")
        out[key] = int(value) if value.lstrip("-").isdigit() else value
    if "op" not in out:
        raise NetcutError(f"not a kernel spec: {text!r}")
    return out


def _silu(nodes: list[onnx.NodeProto]) -> bool:
    """x * sigmoid(x): the tensor feeds a Sigmoid and the Mul of that sigmoid with itself."""
    ops = sorted(n.op_type for n in nodes)
    return ops == ["Mul", "Sigmoid"]


def kernel_times(
    kernels: list[Kernel], layers: list[list], per_node_ms: float = 0.0, skip_ops: tuple[str, ...] = ()
) -> dict[str, float]:
    """A layers-mode profile's per-node times ([node, op, block, ms(, raw ms)]) summed per kernel.

    The agent scales the profiler's raw times in proportion so that they add up to the unprofiled run
    (entry[3]). The profiler's cost is not proportional, though: it adds about the same to every node
    (`per_node_overhead`), so that scaling charged small kernels too much and large ones too little
    (shufflenet_v2_x0_5 at 96 px: 0.82 ms of raw node times for a 0.36 ms run, every kernel scaled by
    0.44). With `per_node_ms`, that much is taken off each raw time first (never more than 80% of it),
    and the rest scaled to the same total. `skip_ops`: runtime nodes left out (a suite model's layout
    reorders, see host.kernel_estimation), their time summed under SKIPPED."""
    of_node = {n: k.name for k in kernels for n in k.nodes}
    out: dict[str, float] = {}
    if per_node_ms > 0 and layers and all(len(e) >= 5 for e in layers):
        total = sum(float(e[3]) for e in layers)
        adjusted = [max(float(e[4]) - per_node_ms, 0.2 * float(e[4])) for e in layers]
        scale = total / sum(adjusted) if sum(adjusted) > 0 else 1.0
        layers = [[*e[:3], a * scale] for e, a in zip(layers, adjusted)]
    for entry in layers:
        if entry[1] in skip_ops:
            out[SKIPPED] = out.get(SKIPPED, 0.0) + float(entry[3])
            continue
        name = of_node.get(entry[0])
        if name is not None and name.endswith(ACT_SUFFIX) and entry[1] in COMPUTE_KERNEL_OPS:
            name = name[: -len(ACT_SUFFIX)]  # the convolution fused with its activation: the convolution's time
        if name is not None:
            out[name] = out.get(name, 0.0) + float(entry[3])
    return out


def per_node_overhead(profiles: list[tuple[int, float, float]]) -> float:
    """What the profiler adds to each node's time on a target, in ms, from its layers-mode profiles (nodes
    timed, the sum of their raw times, the unprofiled run's median): raw sum - median = nodes x overhead -
    the run's own fixed cost, fitted over profiles of different node counts (a suite model's 2-6 nodes, a
    network's 25-220). 1.9 us per node at 224 px, 2.3 at 96 on this project's x86 machine. 0 where the
    profiles do not tell (too few, one node count, or no raw times)."""
    rows = [(n, raw - median, median) for n, raw, median in profiles if n > 0 and raw > 0 and median > 0]
    if len(rows) < 3 or len({n for n, _, _ in rows}) < 2:
        return 0.0
    # On relative error: a large network's run varies by more between its runs than all its nodes' overhead.
    a = np.array([[n / median, -1.0 / median] for n, _, median in rows])
    b = np.array([d / median for _, d, median in rows])
    overhead, _ = np.linalg.lstsq(a, b, rcond=None)[0]
    return max(0.0, float(overhead))


def blocked_output(k: Kernel) -> bool:
    """Whether a blocked-layout runtime leaves this kernel's output in its layout (a convolution with its fused
    activation, a max or average pooling; a SiLU's or hard-swish's separate activation runs on the plain one)."""
    return k.kind.startswith(("conv.", "pool.max", "pool.avg"))


def head_kernels(
    channels: int, spatial: int, classes: int, precision: str = "fp32", after: Kernel | None = None
) -> list[Kernel]:
    """The head NetCut puts on a cut: global average pooling (a ReduceMean), then a linear layer; first, where
    the cut's last kernel (`after`) leaves its output in a blocked layout, the reorder back (REORDER): at 224 px
    mobilenet_v2's first block's TRN spent 0.12 ms of 0.52 in it. Where the cut ends in a convolution's
    activation of its own (ACT_SUFFIX), the reorder depends on the board: one that fuses the activation into
    the convolution leaves the blocked layout, one that runs it apart does not (KernelModel.runs). At 96 px
    here mobilenet_v3_small's stem TRN (a convolution with its Hardswish fused) spent 7 us of 47 in it."""
    e = ELEMENT_BYTES.get(precision, 4)
    blocked = after is not None and blocked_output(after)
    reorder = [reorder_kernel("head.reorder", channels * spatial * e, "head")] if blocked else []
    if after is not None and after.name.endswith(ACT_SUFFIX):
        reorder = [reorder_kernel("head.reorder", channels * spatial * e, "head", if_fused=after.kind)]
    return reorder + [
        Kernel("head.pool", ("head.pool",), "pool.global", 0.0, (channels * spatial + channels) * e, 0.0, "head"),
        Kernel(
            "head.fc",
            ("head.fc",),
            "gemm",
            float(channels * classes),
            (channels + classes) * e,
            0.0,
            "head",
            weight_bytes=float((channels * classes + classes) * e),
        ),
    ]


def reorder_kernel(name: str, output_bytes: float, block: str, if_fused: str = "") -> Kernel:
    """A layout reorder of a tensor of that many bytes (read once, written once). `if_fused`: an activation
    kind; the reorder runs only on a board that fuses it into its convolution (KernelModel.runs)."""
    return Kernel(name, (if_fused,) if if_fused else (), REORDER, 0.0, 2.0 * output_bytes, 0.0, block)


# ------------------------------------------------------------------ the model


@dataclass
class KindFit:
    fixed_ms: float
    ms_per_gmac: float
    ms_per_mb: float
    ms_per_mact: float  # per million elements through an activation pass
    ms_per_weight_mb: float  # streaming the weights
    n: int  # measured kernels behind it
    ratio_low: float  # measured/predicted: the interval's ends on the kernels it was fitted on
    ratio_high: float
    median_ape_pct: float
    scale: float = 1.0  # refitted on a new board (rescaled)
    reach: list[float] = field(default_factory=list)  # the largest MACs, bytes, act, weight bytes it was fitted on

    @property
    def free(self) -> bool:
        """A kind measured at nothing (an activation the board fuses)."""
        return not any((self.fixed_ms, self.ms_per_gmac, self.ms_per_mb, self.ms_per_mact, self.ms_per_weight_mb))

    def covers(self, k: Kernel, block: int = 1) -> bool:
        return not self.reach or all(f <= REACH * m for f, m in zip(k.features(block), self.reach))

    def predict(self, macs: float, nbytes: float, act: float, weight_bytes: float = 0.0) -> float:
        compute = self.ms_per_gmac * macs / 1e9
        memory = self.ms_per_mb * nbytes / 1e6
        weights = self.ms_per_weight_mb * weight_bytes / 1e6
        return self.scale * (self.fixed_ms + max(compute, memory, weights) + self.ms_per_mact * act / 1e6)


@dataclass
class KernelEstimate:
    ms: float
    low_ms: float
    high_ms: float
    by_kind: dict[str, tuple[float, int, int]]  # kind used -> (ms, kernels of the TRN, measured kernels behind)
    # kind -> (kernels, ms) that no fit reaches, or of a family never measured (KernelModel.unmeasured)
    beyond: dict[str, tuple[int, float]] = field(default_factory=dict)
    small: float = 0.0  # the share of it from kernels smaller than the networks' (KernelModel.small)
    # More of it from such kernels than in any network the interval was learned from (KernelModel.small_max):
    # its interval is the wider of the networks' and the kinds' own, as a guess's.
    unlike: bool = False

    @property
    def beyond_ms(self) -> float:
        return sum(ms for _, ms in self.beyond.values())

    @property
    def guessed(self) -> bool:
        """More than GUESS_SHARE of it from kernels beyond what was measured here."""
        return self.beyond_ms > GUESS_SHARE * self.ms

    def dominant(self, limit: int = 3) -> list[str]:
        total = self.ms or 1.0
        ranked = sorted(self.by_kind.items(), key=lambda kv: -kv[1][0])[:limit]
        return [
            f"{'any kind' if kind == GLOBAL else kind} {ms / total:.0%} ({count} kernels; fitted on {n})"
            for kind, (ms, count, n) in ranked
        ]


@dataclass
class KernelModel:
    """Per kind, a roofline fitted on measured kernel times of one target identity and row key."""

    target: str
    kinds: dict[str, KindFit]
    kernels: int  # measured kernels fitted on
    networks: list[str] = field(default_factory=list)
    suite: int = 0  # of which from the kernel suite
    reference: str = ""  # rescaled from this target's model ("" when fitted on this target's own rows)
    measurements_used: int = 0  # rescaled: the measurements of this target it was refitted on
    # The network-level correction: a whole model's median = network_scale x its kernels' sum + overhead_ms
    # (one run's fixed cost, which a profile spreads over the kernels and a suite model charges to its own).
    network_scale: float = 1.0
    overhead_ms: float = 0.0
    # How much faster kernels run when the whole model fits the board's cache (`warmth`): the cache's size
    # as the board reports it, and the share of a kernel's time saved (fitted; 0: no such effect).
    cache_bytes: float = 0.0
    warm_share: float = 0.0
    # Rescaled: what each kernel costs on the new board beyond its kind's factor (a thread pool's hand-off at
    # every kernel: 2.7 us at 2 threads here, where mobilenet_v3_small's many small kernels came out 25% low).
    per_kernel_ms: float = 0.0
    quantile_ratios: dict[str, float] = field(default_factory=lambda: {"median": 1.0})  # p90.. over median
    # How far a whole model's time strays from the estimate, as the standard deviation of log(measured /
    # estimated), from leave-one-network-out fits (see network_spreads): for a network the model never saw
    # measured on the target (`unseen`), and for one whose own TRNs correct it (`within`). 0: not known
    # (fewer than two networks behind the model), the per-kind interval stands alone.
    unseen_log_sd: float = 0.0
    within_log_sd: float = 0.0
    # The 5th and 95th percentiles of those log ratios, each network weighted alike (network_quantiles): the
    # interval of a network never measured, where known ((0, 0): not known, the standard deviation's stands).
    unseen_log_q: tuple[float, float] = (0.0, 0.0)
    spread_networks: int = 0
    # The factor both unseen spreads were scaled by for the network the fit has over each left-out one's
    # (one_network_more; 1: not scaled, from fewer than SHRINK_MIN_NETWORKS networks).
    unseen_shrink: float = 1.0
    version: int = 1  # of what a fit writes (VERSION): a stored model of another is fitted again
    peak_ms_per_gmac: float = 0.0  # the board's compute peak, the floor of every compute kind's rate
    channel_block: int = 1  # the channel block its runtime computes in (Kernel.macs_at; fit_from chooses it)
    # Measured kernels per family (family_of: conv.pw, act.hardswish), fitted kinds or not: a family with fewer
    # than MIN_KERNELS is priced by its parent kind, but it was measured here.
    families: dict[str, int] = field(default_factory=dict)
    # Per kind, SMALL_QUANTILE of its kernels' times measured inside networks (not the suite's): an estimate's
    # share from kernels priced below it is how far it rests on kernels smaller than the networks' (`small`).
    # small_gain: how much the square of a left-out network's log error grows with that share, relative to its
    # value at none; small_mean: the share's mean over those left-out networks' models (the interval's own).
    small_ms: dict[str, float] = field(default_factory=dict)
    small_gain: float = 0.0
    small_mean: float = 0.0
    small_max: float = 0.0  # the largest share among them

    def kind_for(self, k: Kernel) -> str:
        """The most specific kind whose data reach this kernel (no feature beyond REACH times the largest it
        was fitted on); where none does, the most specific fitted kind. A slope fitted on small kernels only is
        not a slope: efficientnet_b0's SiLU activations at 224 px, priced by an activation kind fitted on
        squeeze-excite gates of at most 576 elements, came out at 12 times the whole network."""
        fitted = [kind for kind in k.kinds() if kind in self.kinds]
        return next((kind for kind in fitted if self.kinds[kind].covers(k, self.channel_block)), fitted[0])

    def predict(self, k: Kernel) -> float:
        if not self.runs(k):
            return 0.0
        return self.kinds[self.kind_for(k)].predict(*k.features(self.channel_block))

    def runs(self, k: Kernel) -> bool:
        """False for a layout reorder on a board where none was ever measured (REORDER), and for one after an
        activation (reorder_kernel's `if_fused`) this board does not fuse: measured at nothing in networks."""
        if k.kind != REORDER:
            return True
        if REORDER not in self.kinds:
            return False
        return not k.nodes or self.fused(k.nodes[0])

    def fused(self, act_kind: str) -> bool:
        """Whether this board fuses the activation into its convolution (its kind fitted at nothing)."""
        fit = self.kinds.get(act_kind)
        return fit is not None and fit.free

    def unmeasured(self, k: Kernel) -> bool:
        """Whether the kernel's family (conv.pw, act.hardswish: its kind's first two levels) has no fit of its
        own here, so that a broader kind prices it: without a network or suite kernel of mobilenet_v3_small's
        Hardswish (fused, free on this CPU), the activations' fit priced it at 19% of the network. A family with
        measured kernels is not, though too few for a kind of its own (a suite's 3 concatenations were flagged
        as never measured, and estimate asked the user for the calibrate run that had measured them)."""
        if self.families:  # a family measured too seldom for a kind of its own was still measured
            return family_of(k.kind) not in self.families
        depth = min(2, len(k.kind.split(".")))  # a model stored before families were: its fitted kinds
        return not any(kind in self.kinds for kind in k.kinds() if kind != GLOBAL and len(kind.split(".")) >= depth)

    def estimate(self, kernels: list[Kernel], corrected: bool = False) -> KernelEstimate:
        """The sum of the kernels, with a 90% interval. Where the model knows it, the networks': how far whole
        models of networks left out of the fit strayed, from 5% to 95% of their errors (network_quantiles;
        `corrected`: the network's own measured TRNs have corrected the estimate, so only the spread within a
        network remains, as a normal's). The interval always holds the estimate. Else, and for a guess (more
        than GUESS_SHARE of it from kernels beyond what was measured) the wider of that and the kinds' own: a
        kind's error shared by all its kernels, kinds independent of each other. That one is of single
        kernels' ratios, as if every kernel of a kind erred as its worst: with both, 98% of fresh
        measurements fell inside the 90% interval at 224 px (the networks' alone: 94%)."""
        by_kind: dict[str, list[float]] = {}
        beyond: dict[str, tuple[int, float]] = {}
        c = self.network_scale * self.warmth(kernels)
        small = 0.0  # of the kernels' sum, from kernels priced below their kind's small_ms (`small`)
        for k in kernels:
            if not self.runs(k):  # the board showed no such reorder: none
                continue
            kind = self.kind_for(k)
            ms = self.kinds[kind].predict(*k.features(self.channel_block))
            by_kind.setdefault(kind, []).append(ms)
            small += ms if ms < self.small_ms.get(kind, 0.0) else 0.0
            beyond_data = not self.kinds[kind].covers(k, self.channel_block) or self.unmeasured(k)
            if beyond_data:  # beyond what was measured here
                n, s = beyond.get(k.kind, (0, 0.0))
                beyond[k.kind] = (n + 1, s + ms * c)
        total = sum(sum(v) for v in by_kind.values())
        low = high = 0.0
        for kind, values in by_kind.items():
            s, fit = sum(values) * c, self.kinds[kind]
            low += (s * (1 - fit.ratio_low)) ** 2
            high += (s * (fit.ratio_high - 1)) ** 2
        ran = sum(len([v for v in values if v > 0]) for values in by_kind.values())
        ms = c * total + self.overhead_ms + self.per_kernel_ms * ran
        low_ms, high_ms = max(0.0, ms - math.sqrt(low)), ms + math.sqrt(high)
        sd = self.within_log_sd if corrected else math.hypot(self.unseen_log_sd, self.within_log_sd)
        out = KernelEstimate(
            ms,
            low_ms,
            high_ms,
            {kind: (c * sum(v), len(v), self.kinds[kind].n) for kind, v in by_kind.items()},
            beyond,
        )
        q_low, q_high = self.unseen_log_q if any(self.unseen_log_q) and not corrected else (-Z90 * sd, Z90 * sd)
        if not corrected:  # wider for smaller kernels than the networks', narrower for larger
            out.small = small / total if total > 0 else 0.0
            out.unlike = sd > 0 and out.small > self.small_max + GUESS_SHARE
            widen = self.widening(out.small)
            q_low, q_high = q_low * widen, q_high * widen
        if sd > 0 and not out.guessed and not out.unlike:  # the networks' spread is what a whole model's error is
            out.low_ms, out.high_ms = ms * math.exp(min(0.0, q_low)), ms * math.exp(max(0.0, q_high))
        elif sd > 0:  # a guess, or unlike them: its error is not the measured networks'; the wider of both
            out.low_ms = min(low_ms, ms * math.exp(min(0.0, q_low)))
            out.high_ms = max(high_ms, ms * math.exp(max(0.0, q_high)))
        return out

    def small(self, kernels: list[Kernel]) -> float:
        """The share of the kernels' estimate from kernels priced below their kind's SMALL_QUANTILE of kernels
        measured in networks (small_ms): where a runtime's per-kernel costs, which no kind's rates describe,
        weigh most. Fitted on resnet18, mobilenet_v2 and mnasnet1_0 (224 px), 0.87-0.94 of mobilenet_v3_small's
        and shufflenet_v2_x0_5's estimates, 13-33% off, against 0.00-0.02 of efficientnet_b0's and resnet50's,
        1-6% off. (Computed with the estimate: KernelEstimate.small.)"""
        return self.estimate(kernels).small

    def widening(self, share: float) -> float:
        """The factor on a network's interval for an estimate `share` of which is small kernels (`small`),
        against the left-out networks' mean share (small_gain); 1 where not known."""
        if self.small_gain <= 0:
            return 1.0
        return math.sqrt((1 + self.small_gain * share) / (1 + self.small_gain * self.small_mean))

    def warmth(self, kernels: list[Kernel]) -> float:
        """What the model run of these kernels costs relative to its kernels run cold (see `warmth`)."""
        return warmth(footprint(kernels), self.cache_bytes, self.warm_share)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "KernelModel":
        try:
            data = json.loads(text)
            data["kinds"] = {k: KindFit(**v) for k, v in data["kinds"].items()}
            data["unseen_log_q"] = tuple(data.get("unseen_log_q", (0.0, 0.0)))
            return cls(**data)
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise NetcutError(f"not a kernel model ({exc}); fit it again with netcut-host calibrate") from None


def family_of(kind: str) -> str:
    """A kind's first two levels (conv.pw.s1 -> conv.pw): what `KernelModel.unmeasured` asks was measured,
    and what the kernel suite balances its picks over (netcut.kernel_suite.family)."""
    return ".".join(kind.split(".")[:2])


def footprint(kernels: list[Kernel]) -> float:
    """The bytes one run of a model moves: its weights and every kernel's activations in and out."""
    return sum(k.bytes + k.weight_bytes for k in kernels)


def warmth(footprint_bytes: float, cache_bytes: float, share: float) -> float:
    """A model run's kernel times relative to the same kernels run cold: 1 - share x the part of the run's
    footprint the cache holds. A small model (a short TRN, a suite kernel) finds its weights and activations
    in the cache at every run; a large one streams them from memory. At 96 px on this project's x86 machine
    (2 MB of L2 per core) mobilenet_v3_small's TRNs of under 1.1 MB of weights ran at 0.77-0.87 of the sum
    of the same kernels' times inside the whole network, from 2.3 MB at 0.97-1.0."""
    if cache_bytes <= 0 or share <= 0 or footprint_bytes <= 0:
        return 1.0
    return 1.0 - share * min(1.0, cache_bytes / footprint_bytes)


def _fit_kind(x: np.ndarray, y: np.ndarray, min_ms_per_gmac: float = 0.0, near: KindFit | None = None) -> KindFit:
    """x: (n, 4) MACs, activation bytes, activation-pass elements, weight bytes; y: measured ms. Least
    relative error with a robust loss; each rate starts where it bounds most kernels from below. The compute
    rate is never below `min_ms_per_gmac` (the board's peak): a kind whose kernels are all bound by memory
    (the networks' stems, 3 input channels) says nothing of its compute rate, and the fit then left it near
    zero, so that the kind priced a large kernel by its bytes alone. `near`: a fit to start from (its other
    rates kept where the data allow)."""
    from scipy.optimize import least_squares

    f = x / np.array([1e9, 1e6, 1e6, 1e6])

    def predict(p: np.ndarray) -> np.ndarray:
        return p[0] + np.maximum.reduce([p[1] * f[:, 0], p[2] * f[:, 1], p[4] * f[:, 3]]) + p[3] * f[:, 2]

    def bound(column: int) -> float:
        used = f[:, column] > 0
        return float(np.quantile(y[used] / f[used, column], 0.2)) if np.any(used) else 0.0

    guess = [float(np.min(y)) * 0.5, bound(0), bound(1), 0.0, bound(3)]
    # The fixed cost, pulled towards zero: where the kernels' sizes do not tell it from the rates (resnet50's
    # three downsampling convolutions, all of 103 MMACs) it was fitted at 1.05 ms, and resnet18's of 6.4 MMACs
    # came out at 12 times their time. Where they do, n residuals outweigh this one.
    floor = float(np.min(y))

    def residuals(p: np.ndarray) -> np.ndarray:
        return np.append((predict(p) - y) / y, FIXED_PULL * p[0] / floor)

    low = np.array([0.0, min_ms_per_gmac, 0.0, 0.0, 0.0])
    if near is not None:
        guess = [near.fixed_ms, near.ms_per_gmac, near.ms_per_mb, near.ms_per_mact, near.ms_per_weight_mb]
    start = np.maximum(guess, low * (1 + 1e-6))  # strictly inside the bounds
    result = least_squares(residuals, start, bounds=(low, np.inf), loss="soft_l1", f_scale=0.1)
    p = result.x
    ratios = y / np.maximum(predict(p), 1e-9)
    tail = (1 - INTERVAL) / 2
    return KindFit(
        float(p[0]),
        float(p[1]),
        float(p[2]),
        float(p[3]),
        float(p[4]),
        len(y),
        float(np.quantile(ratios, tail)),
        float(np.quantile(ratios, 1 - tail)),
        float(np.median(np.abs(ratios - 1)) * 100),
        reach=[float(v) for v in x.max(axis=0)],
    )


def fit_kernel_model(
    samples: list[tuple[Kernel, float]],
    target: str = "",
    networks: list[str] | None = None,
    suite: int = 0,
    block: int = 1,
) -> KernelModel:
    """Fit every kind (at each level of the hierarchy) with at least MIN_KERNELS measured kernels, the
    convolutions' MACs counted in channel blocks of `block` (Kernel.macs_at)."""
    zeros: dict[str, int] = {}  # activations the board fused: measured at nothing
    for k, ms in samples:
        if ms <= 0 and k.kind.startswith("act."):
            zeros[k.kind] = zeros.get(k.kind, 0) + 1
    families = Counter(family_of(k.kind) for k, _ in samples)  # fused activations included: measured, at nothing
    samples = [(k, ms) for k, ms in samples if ms > 0]
    if len(samples) < MIN_KERNELS:
        raise NetcutError(
            f"the per-kernel model needs at least {MIN_KERNELS} measured kernels on this target, found "
            f"{len(samples)}; profile a network in layers mode or run netcut-host calibrate first"
        )
    by_kind: dict[str, list[tuple[Kernel, float]]] = {}
    for k, ms in samples:
        for kind in k.kinds():
            by_kind.setdefault(kind, []).append((k, ms))
    kinds = {
        kind: KindFit(0.0, 0.0, 0.0, 0.0, 0.0, n, 1.0, 1.0, 0.0)
        for kind, n in zeros.items()
        if n > len(by_kind.get(kind, []))  # fused more often than not on this board
    }
    arrays: dict[str, tuple[np.ndarray, np.ndarray]] = {}  # each fitted kind's features and times
    for kind, items in by_kind.items():
        if kind in kinds:
            continue
        if len(items) >= MIN_KERNELS or kind == GLOBAL:
            arrays[kind] = (
                np.array([k.features(block) for k, _ in items], dtype=float),
                np.array([ms for _, ms in items], dtype=float),
            )
            kinds[kind] = _fit_kind(*arrays[kind])
    # Then again, with the board's peak as the floor, every compute kind that came out more than PEAK_SLACK
    # times faster (a quantile is not the peak: a kind a little faster is the fit's own variation).
    peak = peak_ms_per_gmac(samples, kinds, block)
    for kind, fit in kinds.items():
        if kind in arrays and kind.startswith(COMPUTE_KINDS) and fit.ms_per_gmac * PEAK_SLACK < peak:
            kinds[kind] = _fit_kind(*arrays[kind], peak, fit)
    model = KernelModel(target, kinds, len(samples), sorted(networks or []), suite, version=VERSION)
    model.peak_ms_per_gmac, model.channel_block, model.families = peak, block, dict(sorted(families.items()))
    return model


def peak_ms_per_gmac(samples: list[tuple[Kernel, float]], kinds: dict[str, "KindFit"], block: int = 1) -> float:
    """The board's compute peak, in ms per GMAC: what its fastest measured kernels took (PEAK_QUANTILE over
    kernels of PEAK_MIN_MACS or more), less their kinds' fixed cost (where it is at most PEAK_FIXED_SHARE of
    their time: a GEMM's at 96 px, taken off, left 0.2 ms per GMAC); 0 with none. No convolution is priced
    faster. Fitted without both resnets, the dense 3x3 convolutions' kind had only the stems and three suite
    kernels behind it, and priced resnet18's TRNs at 1/4.8 of their time (224 px); with this floor, 5.8% off."""
    rates = []
    for k, ms in samples:
        fit = next((kinds[kind] for kind in k.kinds() if kind in kinds), None)
        macs = k.macs_at(block)
        if macs >= PEAK_MIN_MACS and fit is not None and fit.fixed_ms <= PEAK_FIXED_SHARE * ms:
            rates.append((ms - fit.fixed_ms) / (macs / 1e9))
    return float(np.quantile(rates, PEAK_QUANTILE)) if rates else 0.0


def with_correction(model: KernelModel, wholes: list[tuple[list[Kernel], float]], ratios: dict) -> KernelModel:
    """Fit the network-level correction on whole models measured on the target (kernels, median ms):
    least relative error, both terms non-negative; and the tails' ratios to the median."""
    from scipy.optimize import nnls

    points = [(sum(model.predict(k) for k in ks) * model.warmth(ks), ms) for ks, ms in wholes if ms > 0]
    if len(points) >= 2:
        a = np.array([[s / ms, 1 / ms] for s, ms in points])
        scale, overhead = nnls(a, np.ones(len(points)))[0]
        if scale > 0:
            model.network_scale, model.overhead_ms = float(scale), float(overhead)
    model.quantile_ratios = {"median": 1.0, **ratios}
    return model


def network_spreads(log_ratios: dict[str, list[float]]) -> tuple[float, float]:
    """(unseen, within): from each network's log(measured / estimated) over its whole models, each estimated
    by a model fitted without that network. A network's errors move together (its kernels share kinds and
    shapes), so the networks are the samples: `unseen` is the root mean square of their median log ratios
    (bias included), widened by sqrt(1 + 1/n) for predicting a new network from n; `within` the pooled spread
    of each network's ratios around its own median, what is left once its measured TRNs correct it."""
    medians = {n: float(np.median(v)) for n, v in log_ratios.items() if v}
    n = len(medians)
    if n < 2:
        return 0.0, 0.0
    unseen = math.sqrt(float(np.mean([m * m for m in medians.values()])) * (1 + 1 / n))
    deviations = [x - medians[name] for name, v in log_ratios.items() if v for x in v]
    dof = max(1, len(deviations) - n)
    within = math.sqrt(float(np.sum(np.square(deviations))) / dof)
    return unseen, within


def network_quantiles(
    log_ratios: dict[str, list[float]], tail: float = 0.05, totals: dict[str, int] | None = None
) -> tuple[float, float]:
    """The `tail` and 1 - `tail` quantiles of the networks' log(measured / estimated) (as network_spreads),
    each network weighing alike however many whole models it has; (0, 0) from fewer than two networks. A
    normal interval from their root mean square is as wide on both sides as the worst network makes it: at
    224 px here, with resnet18 left out, leaving resnet50 out too left no ResNet, and every network's upper
    and lower bound took that error (98.4% of fresh measurements inside at 224 and 96 px).

    `totals`: how many whole models each network has, guesses included, where `log_ratios` holds only those
    that were not (a guess gets an interval of its own): each whole model then weighs 1 / its network's total,
    so a network left with a few of its models weighs that share of a network. Else shufflenet's two stem
    TRNs, the only ones of its 75 that were not guesses (its concatenations and shuffles measured nowhere else),
    weighed as a whole network; they came out 18-48% high (their max pool measured in ResNets only), and set
    every other network's upper bound: 97.5% of fresh measurements inside at 224 px."""
    weights = {n: _model_weight(v, (totals or {}).get(n, 0)) for n, v in log_ratios.items() if v}
    if len(weights) < 2:
        return 0.0, 0.0
    pooled = sorted((x, weights[n]) for n, v in log_ratios.items() if v for x in v)
    values = np.array([x for x, _ in pooled])
    cumulative = np.cumsum([w for _, w in pooled]) / sum(w for _, w in pooled)
    at = [min(int(np.searchsorted(cumulative, q)), len(values) - 1) for q in (tail, 1 - tail)]
    return float(values[at[0]]), float(values[at[1]])


def _model_weight(ratios: list[float], total: int) -> float:
    """One whole model's weight among its network's `ratios`: 1 / the network's whole models, guesses included
    (`total`; a network then weighs the share of its models that were not guesses)."""
    return 1.0 / max(len(ratios), total)


def _mean_square(groups: list[tuple[list[float], int]]) -> float:
    """The mean square of log ratios, each group (a network's, with its count of whole models, guesses
    included) weighing as in network_quantiles; 0 without any."""
    num = den = 0.0
    for ratios, total in groups:
        if ratios:
            weight = _model_weight(ratios, total)
            num += weight * sum(x * x for x in ratios)
            den += weight * len(ratios)
    return num / den if den else 0.0


def small_variance(
    log_ratios: dict[str, list[float]], shares: dict[str, list[float]], totals: dict[str, int] | None = None
) -> tuple[float, float]:
    """(gain, mean) from left-out networks' whole models: their log errors and small shares (KernelModel.small),
    each model weighing as in network_quantiles. The squared error is fitted as a + b x share (weighted least
    squares, both non-negative), gain = b / a; mean: the weighted mean share. (0, mean) where the errors do not
    grow with the share; (0, 0) from fewer than two networks or shares that do not differ."""
    from scipy.optimize import nnls

    points = [
        (x, share, _model_weight(v, (totals or {}).get(n, 0)))
        for n, v in log_ratios.items()
        for x, share in zip(v, shares.get(n, []))
    ]
    if len({n for n, v in log_ratios.items() if v}) < 2 or len({round(p[1], 3) for p in points}) < 2:
        return 0.0, 0.0
    w = np.array([p[2] for p in points])
    a = np.array([[1.0, p[1]] for p in points]) * np.sqrt(w)[:, None]
    b = np.array([p[0] ** 2 for p in points]) * np.sqrt(w)
    (base, slope), _ = nnls(a, b)
    mean = float(np.average([p[1] for p in points], weights=w))
    return (float(slope / base) if base > 0 and slope > 0 else 0.0), mean


def one_network_more(one_out: list[tuple[list[float], int]], two_out: list[tuple[list[float], int]]) -> float:
    """How much one network more in a fit shrinks a left-out network's error: the root mean square of the
    networks' log ratios with one left out (one_out: each network's, from a fit without it) over the same
    with two left out (two_out: each network's, from a fit without it and one other), capped at 1; 1 where
    either is empty. The networks' quantiles come from fits with one network fewer than the model they
    speak for, which knows every network: at 224 px here, with seven networks, the intervals of the six-
    network models, from five-network fits, held 97.5% of fresh measurements (goal 85-95%); scaled by this
    factor one step down (0.73-0.99 per model), 93.4%; at 96 px 94.3% -> 92.6%."""
    wider = _mean_square(two_out)
    if wider <= 0 or not one_out:
        return 1.0
    return min(1.0, math.sqrt(_mean_square(one_out) / wider))


def rescaled(
    reference: KernelModel, samples: list[tuple[list[Kernel], float]], target: str, per_kernel: bool = True
) -> KernelModel:
    """The reference board's model on a new board: one scale factor per kind from a few measurements of
    whole models (each a list of kernels and its measured time), by non-negative least squares on relative
    error; a kind none of them exercises takes the median factor of the others. Plus a cost per kernel that
    runs: a factor scales a kernel's time, but a second thread (or a slower core's dispatch) adds about the
    same to every kernel, which the factors alone spread over the large ones (at 96 px, 1 to 2 threads, from
    10 random TRNs: median error 9.4% without it, 5.7% with it, over 20 draws; `per_kernel=False` leaves it
    out, for bench/new_target.py's comparison)."""
    from scipy.optimize import nnls

    if not samples:
        raise NetcutError("no measurement of the new target to rescale the reference model with")
    kinds = sorted({reference.kind_for(k) for ks, _ in samples for k in ks})
    c, r = reference.network_scale, reference.overhead_ms
    # A factor per kind, one for the run's fixed cost, and a cost per kernel that runs.
    a = np.zeros((len(samples), len(kinds) + 2))
    for i, (ks, ms) in enumerate(samples):
        w = reference.warmth(ks)
        predicted = [(k, reference.predict(k)) for k in ks]
        for k, p in predicted:
            a[i, kinds.index(reference.kind_for(k))] += c * w * p / ms
        a[i, len(kinds)] = r / ms
        a[i, -1] = sum(1 for _, p in predicted if p > 0) / ms if per_kernel else 0.0
    # Shrink toward one common factor: with 10 measurements and a dozen kinds the system is underdetermined.
    # That factor is the measurements' median over the reference's estimates, less the per-kernel cost once
    # it is known (a second pass), or it would carry that cost into every kind's factor.
    ridge, cost = 0.3, 0.0
    a_aug = np.vstack([a, ridge * np.eye(len(kinds) + 2)])
    for _ in range(2):
        common = float(np.median([(1 - cost * row[-1]) / max(row[:-1].sum(), 1e-12) for row in a]))
        b_aug = np.concatenate([np.ones(len(samples)), ridge * common * np.ones(len(kinds) + 1), [0.0]])
        solution = nnls(a_aug, b_aug)[0]
        cost = float(solution[-1])
    factors = dict(zip(kinds, solution[: len(kinds)]))
    out = {}
    for kind, fit in reference.kinds.items():
        factor = factors.get(kind, common)
        out[kind] = KindFit(**{**asdict(fit), "scale": fit.scale * (factor if factor > 0 else common)})
    model = KernelModel(
        target,
        out,
        reference.kernels,
        reference.networks,
        reference.suite,
        reference=reference.target,
        measurements_used=len(samples),
        network_scale=c,
        overhead_ms=r * float(solution[len(kinds)]),
        per_kernel_ms=cost,
        cache_bytes=reference.cache_bytes,  # the reference board's: the factors absorb a new board's difference
        warm_share=reference.warm_share,
        quantile_ratios=dict(reference.quantile_ratios),
        version=reference.version,
        peak_ms_per_gmac=reference.peak_ms_per_gmac,
        channel_block=reference.channel_block,  # its kinds' rates are per MAC counted in those blocks
        families=dict(reference.families),
        small_ms=dict(reference.small_ms),
        small_gain=reference.small_gain,
        small_mean=reference.small_mean,
        small_max=reference.small_max,
    )
    # The new board's interval: the reference's spreads and what the rescaled model still misses on the
    # measurements it was refitted on (in-sample, so a floor; the reference's part covers networks unseen).
    residual = [math.log(ms / max(model.estimate(ks).ms, 1e-12)) for ks, ms in samples if ms > 0]
    rms = math.sqrt(float(np.mean(np.square(residual)))) if residual else 0.0
    model.unseen_log_sd, model.unseen_shrink = reference.unseen_log_sd, reference.unseen_shrink
    model.within_log_sd = math.hypot(reference.within_log_sd, rms)
    model.spread_networks = reference.spread_networks
    return model
