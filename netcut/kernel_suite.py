"""The kernel suite: single-kernel ONNX models, built from the kernels of the networks to be estimated.

Each suite model is a cheap stem (a Relu on the input, so the input's layout kernels are charged to it,
not to the kernel) and one kernel exactly as a network contains it (kernel, stride, channels, spatial
size, fused activation, residual sum). Its layers-mode profile times the kernel alone on the board.
Which kernels: `select` covers the networks' kinds and shapes (farthest points in log MACs and bytes,
kinds by how common they are), weighted towards kinds the model gets most wrong, as nn-Meter's
adaptive sampler does.
"""

from __future__ import annotations

import math

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from .errors import NetcutError
from .kernels import Kernel, family_of, parse_spec
from .vocabulary import KERNEL_SUITE_PREFIX

OPSET = 17
KERNEL_BLOCK, STEM_BLOCK = "kernel", "stem"  # node names are scoped /stem/... and /kernel/... (see build)


def suite_name(spec: str) -> str:
    return KERNEL_SUITE_PREFIX + spec


def spec_of(name: str) -> str | None:
    return name[len(KERNEL_SUITE_PREFIX) :] if name.startswith(KERNEL_SUITE_PREFIX) else None


def build(spec_text: str, seed: int = 0) -> onnx.ModelProto:
    """The suite model of one kernel spec (see netcut.kernels.spec_text)."""
    spec = parse_spec(spec_text)
    rng = np.random.default_rng(seed)
    op = spec["op"]
    inits, nodes, inputs = [], [], []

    def tensor(name: str, shape: list[int]) -> None:
        inputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, shape))
        nodes.append(helper.make_node("Relu", [name], [name + "_s"], name=f"/{STEM_BLOCK}/Relu_{name}"))

    def init(name: str, values: np.ndarray) -> str:
        inits.append(numpy_helper.from_array(values.astype(np.float32), name))
        return name

    if op == "conv":
        cin, cout, h, w, k, s, g = (spec[x] for x in ("cin", "cout", "h", "w", "k", "s", "g"))
        if cin % g or cout % g:
            raise NetcutError(f"kernel spec {spec_text!r}: channels not divisible by the groups")
        tensor("x", [1, cin, h, w])
        weight = rng.normal(0, 1 / math.sqrt(cin // g * k * k), (cout, cin // g, k, k))
        pad = k // 2
        nodes.append(
            helper.make_node(
                "Conv",
                ["x_s", init("W", weight), init("B", rng.normal(0, 0.1, cout))],
                ["y0"],
                name=f"/{KERNEL_BLOCK}/{op}",
                kernel_shape=[k, k],
                strides=[s, s],
                pads=[pad] * 4,
                group=g,
            )
        )
        ho, wo = (h + 2 * pad - k) // s + 1, (w + 2 * pad - k) // s + 1
        last = "y0"
        if spec.get("add"):
            tensor("r", [1, cout, ho, wo])
            nodes.append(helper.make_node("Add", [last, "r_s"], ["y1"], name=f"/{KERNEL_BLOCK}/Add"))
            last = "y1"
        last = _activation(spec.get("act", ""), last, nodes, init)
        out_shape = [1, cout, ho, wo]
    elif op == "gemm":
        m, kdim, n = spec["m"], spec["k"], spec["n"]
        tensor("x", [m, kdim])
        weight = init("W", rng.normal(0, 1 / math.sqrt(kdim), (n, kdim)))
        bias = init("B", rng.normal(0, 0.1, n))
        nodes.append(helper.make_node("Gemm", ["x_s", weight, bias], ["y0"], name=f"/{KERNEL_BLOCK}/{op}", transB=1))
        last, out_shape = _activation(spec.get("act", ""), "y0", nodes, init), [m, n]
    elif op == "gap":
        tensor("x", [1, spec["cin"], spec["h"], spec["w"]])
        nodes.append(helper.make_node("GlobalAveragePool", ["x_s"], ["y0"], name=f"/{KERNEL_BLOCK}/{op}"))
        last, out_shape = "y0", [1, spec["cin"], 1, 1]
    elif op in ("maxpool", "avepool"):
        c, h, w, k, s = (spec[x] for x in ("cin", "h", "w", "k", "s"))
        tensor("x", [1, c, h, w])
        kind = "MaxPool" if op == "maxpool" else "AveragePool"
        pad = k // 2 if op == "maxpool" else 0
        nodes.append(
            helper.make_node(
                kind, ["x_s"], ["y0"], name=f"/{KERNEL_BLOCK}/{op}", kernel_shape=[k, k], strides=[s, s], pads=[pad] * 4
            )
        )
        last, out_shape = "y0", [1, c, (h + 2 * pad - k) // s + 1, (w + 2 * pad - k) // s + 1]
    elif op in ("add", "mul"):
        c, h, w = spec["cin"], spec["h"], spec["w"]
        tensor("x", [1, c, h, w])
        tensor("r", [1, c, 1, 1] if spec.get("gate") else [1, c, h, w])
        nodes.append(helper.make_node(op.capitalize(), ["x_s", "r_s"], ["y0"], name=f"/{KERNEL_BLOCK}/{op}"))
        last, out_shape = "y0", [1, c, h, w]
    else:
        raise NetcutError(f"the kernel suite cannot build {op!r} kernels (spec {spec_text!r})")
    graph = helper.make_graph(
        nodes, "kernel", inputs, [helper.make_tensor_value_info(last, TensorProto.FLOAT, out_shape)], inits
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8
    from .export import annotate_onnx  # the node table and blocks, as every export carries them

    annotate_onnx(model, {STEM_BLOCK: STEM_BLOCK, KERNEL_BLOCK: KERNEL_BLOCK}, {"netcut.model": suite_name(spec_text)})
    onnx.checker.check_model(model)
    return model


def _activation(act: str, last: str, nodes: list, init) -> str:  # noqa: ANN001 - init: the builder's closure
    if not act:
        return last
    out = last + "_a"
    if act == "relu":
        nodes.append(helper.make_node("Relu", [last], [out], name=f"/{KERNEL_BLOCK}/Act"))
    elif act == "relu6":
        low, high = init("lo", np.array(0.0)), init("hi", np.array(6.0))
        nodes.append(helper.make_node("Clip", [last, low, high], [out], name=f"/{KERNEL_BLOCK}/Act"))
    elif act == "hardswish":
        nodes.append(helper.make_node("HardSwish", [last], [out], name=f"/{KERNEL_BLOCK}/Act"))
    elif act == "hardsigmoid":
        nodes.append(helper.make_node("HardSigmoid", [last], [out], name=f"/{KERNEL_BLOCK}/Act", alpha=1 / 6))
    elif act == "silu":
        nodes.append(helper.make_node("Sigmoid", [last], [last + "_g"], name=f"/{KERNEL_BLOCK}/Sigmoid"))
        nodes.append(helper.make_node("Mul", [last, last + "_g"], [out], name=f"/{KERNEL_BLOCK}/Act"))
    else:
        raise NetcutError(f"the kernel suite cannot build the activation {act!r}")
    return out


def _point(k: Kernel) -> np.ndarray:
    return np.array([math.log1p(k.macs), math.log1p(k.bytes), math.log1p(k.act), math.log1p(k.weight_bytes)])


def family(k: Kernel) -> str:
    """The level kernels are balanced over: conv.dw, conv.pw, pool.global, eltwise.mul..., and apart the
    convolutions with an activation a runtime may run as a kernel of its own (conv.pw+silu)."""
    base = family_of(k.kind)
    act = next((p[4:] for p in k.spec.split(",") if p.startswith("act=")), "")
    return base + ("+" + act if act in ("silu", "hardswish", "hardsigmoid") else "")


def select(
    candidates: list[Kernel],
    measured: set[str],
    budget: int,
    errors: dict[str, float] | None = None,
) -> list[Kernel]:
    """Up to `budget` kernels to measure, not yet measured: each step takes the family with the fewest
    measured kernels for its weight (how common it is in the networks, times 1 + its error where the
    model has been fitted), and in it the kernel farthest from every measured one."""
    unique: dict[str, Kernel] = {}
    for k in candidates:
        if k.spec and k.spec not in unique:
            unique[k.spec] = k
    pool: dict[str, list[Kernel]] = {}
    have: dict[str, list[np.ndarray]] = {}
    for k in unique.values():
        target = have if k.spec in measured else pool
        target.setdefault(family(k), []).append(_point(k) if target is have else k)
    counts: dict[str, int] = {}
    for k in candidates:
        counts[family(k)] = counts.get(family(k), 0) + 1
    chosen: list[Kernel] = []
    while len(chosen) < budget and any(pool.values()):
        open_families = [f for f, ks in pool.items() if ks]
        weight = {f: math.sqrt(counts.get(f, 1)) * (1 + (errors or {}).get(f, 0.0)) for f in open_families}
        f = min(open_families, key=lambda f: (len(have.get(f, [])) / weight[f], f))
        points = have.get(f, [])
        best = max(
            pool[f],
            key=lambda k: min((float(np.linalg.norm(_point(k) - p)) for p in points), default=math.inf),
        )
        pool[f].remove(best)
        have.setdefault(f, []).append(_point(best))
        chosen.append(best)
    return chosen
