"""What each node of a network costs: multiply-adds, parameters, activation bytes.

MACs are counted by torch's own FlopCounterMode (FLOPs / 2) around every node, so
convolutions, linear layers and matrix products count as torchvision's published
figures do; element-wise ops, normalisation and pooling count zero.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import fx, nn
from torch.utils.flop_counter import FlopCounterMode

if TYPE_CHECKING:
    from .graph import TracedNetwork


@dataclass(frozen=True)
class NodeCost:
    name: str  # torchvision node name
    op: str  # fx op: call_module, call_function, call_method...
    target: str  # module type or function name
    block: str
    macs: int
    params: int
    output_shape: tuple[int, ...] | None  # None when the output is not a single tensor
    output_bytes: int
    kind: str = "other"  # conv, dwconv (grouped), linear, other: they run at different speeds
    extra_passes: float = 0.0  # unfusable activations inside a composite leaf: passes over the output (PASS_COST)
    kernel_area: int = 1  # convolutions: the kernel's spatial size (9 for 3x3)
    activations: tuple[str, ...] = ()  # a composite leaf's activation modules, lower-case type names
    pooled: bool = False  # a composite leaf that pools inside (squeeze-excitation): its activations act on the pool


def _target_name(gm: fx.GraphModule, node: fx.Node) -> str:
    if node.op == "call_module":
        return type(gm.get_submodule(node.target)).__name__
    if node.op == "call_function":
        return getattr(node.target, "__name__", str(node.target))
    return str(node.target)


class _CostInterpreter(fx.Interpreter):
    def __init__(self, gm: fx.GraphModule):
        super().__init__(gm)
        self.macs: dict[fx.Node, int] = {}
        self.outputs: dict[fx.Node, object] = {}

    def run_node(self, n: fx.Node):
        with FlopCounterMode(display=False) as counter:
            out = super().run_node(n)
        self.macs[n] = counter.get_total_flops() // 2
        self.outputs[n] = out
        return out


def node_costs(traced: TracedNetwork, input_shape: tuple[int, ...]) -> tuple[list[NodeCost], dict[fx.Node, NodeCost]]:
    """Run the graph once on a random input and cost every node, in execution order."""
    gm = traced.gm
    interp = _CostInterpreter(gm)
    with torch.no_grad():
        interp.run(torch.randn(*input_shape))
    seen: set[int] = set()
    costs: list[NodeCost] = []
    by_node: dict[fx.Node, NodeCost] = {}
    for node in gm.graph.nodes:
        params = 0
        tensors: list[torch.Tensor] = []
        if node.op == "call_module":
            tensors = list(gm.get_submodule(node.target).parameters())
        elif node.op == "get_attr":
            value = _safe_attr(gm, node.target)
            tensors = [value] if isinstance(value, nn.Parameter) else []
        for p in tensors:
            if id(p) not in seen:
                seen.add(id(p))
                params += p.numel()
        out = interp.outputs.get(node)
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else None
        nbytes = out.numel() * out.element_size() if isinstance(out, torch.Tensor) else 0
        cost = NodeCost(
            traced.names.get(node, node.name),
            node.op,
            _target_name(gm, node),
            traced.block_of(node),
            int(interp.macs.get(node, 0)),
            params,
            shape,
            nbytes,
            _kind(gm, node),
            _extra_passes(gm, node),
            _kernel_area(gm, node),
            *_inner_activations(gm, node),
        )
        costs.append(cost)
        by_node[node] = cost
    return costs, by_node


# Activations a runtime applies as a pass of their own over a convolution's output, by what such a pass
# costs against one of a transcendental activation (SiLU, sigmoid: an exponential per element). A clip
# (ReLU6) is two compares: onnxruntime's per-node profile on an EPYC core put it at ~15 us per MB of
# output against ~40 for SiLU and HardSwish. Counted as a whole pass, ReLU6 made the analytical model
# overestimate mobilenet_v2 by ~20%; uncounted (fused, like ReLU), underestimate it by ~11%.
# ReLU itself is folded into the convolution's kernel and costs nothing.
CLIP_PASS = 0.4
CLIPS = (nn.ReLU6, nn.Hardtanh)
PASS_COST = {
    nn.SiLU: 1.0,
    nn.Hardswish: 1.0,
    nn.Hardsigmoid: 1.0,
    nn.Sigmoid: 1.0,
    nn.GELU: 1.0,
    nn.Mish: 1.0,
    **{clip: CLIP_PASS for clip in CLIPS},
}


# int8, as onnxruntime runs a QDQ model (per-node profiles of mobilenet_v2, mobilenet_v3_small, efficientnet_b0
# and mnasnet1_0 at 224 px, 1 thread): a ReLU or a clip is the output's quantization range, folded into the
# QLinearConv, so no kernel at all; SiLU runs as QLinearSigmoid + QLinearMul, a sigmoid as QLinearSigmoid;
# Hardswish as DequantizeLinear + HardSigmoid in float + QuantizeLinear + QLinearMul (41% of
# mobilenet_v3_small's int8 time against 51% in its convolutions), Hardsigmoid the same without the Mul;
# GELU and Mish, with no int8 kernel, dequantize, run in float and quantize. Passes over the output, each
# about one QLinearAdd's worth; lower-case names cover both modules and functions.
INT8_PASSES = {"silu": 2.0, "sigmoid": 1.0, "hardswish": 4.0, "hardsigmoid": 3.0, "gelu": 3.0, "mish": 3.0}
_ACTIVATIONS = {m.__name__.lower() for m in PASS_COST} | set(INT8_PASSES)
_POOLS = (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d, nn.AvgPool2d)


def int8_passes(c: NodeCost) -> float:
    """Passes an int8 model makes over a node's output beyond writing it (see INT8_PASSES)."""
    if c.activations:  # a composite leaf; one that pools first applies them to the pooled vector: free
        return 0.0 if c.pooled else sum(INT8_PASSES.get(a, 0.0) for a in c.activations)
    return max(INT8_PASSES.get(c.target.lower(), 1.0) - 1.0, 0.0)  # a stand-alone one: its output is the first


def _inner_activations(gm: fx.GraphModule, node: fx.Node) -> tuple[tuple[str, ...], bool]:
    if node.op != "call_module":
        return (), False
    module = gm.get_submodule(node.target)
    inner = [m for m in module.modules() if m is not module]
    names = tuple(type(m).__name__.lower() for m in inner if type(m).__name__.lower() in _ACTIVATIONS)
    return names, any(isinstance(m, _POOLS) for m in inner)


def _extra_passes(gm: fx.GraphModule, node: fx.Node) -> float:
    if node.op != "call_module":
        return 0.0
    module = gm.get_submodule(node.target)
    return sum(PASS_COST.get(type(m), 0.0) for m in module.modules() if m is not module)


def _main_layer(gm: fx.GraphModule, node: fx.Node) -> nn.Module | None:
    """The first convolution or linear layer of a leaf module. Leaves can be composites
    (torchvision.ops.Conv2dNormActivation is conv + norm + activation): look inside."""
    if node.op == "call_module":
        for module in gm.get_submodule(node.target).modules():
            if isinstance(module, (nn.modules.conv._ConvNd, nn.Linear, nn.MultiheadAttention)):
                return module
    return None


def _kind(gm: fx.GraphModule, node: fx.Node) -> str:
    if node.op == "call_module":
        module = _main_layer(gm, node)
        if isinstance(module, nn.modules.conv._ConvNd):
            return "dwconv" if module.groups > 1 else "conv"
        if module is not None:
            return "linear"
    if node.op == "call_function":
        name = getattr(node.target, "__name__", "")
        if "conv" in name:
            return "conv"
        if name in ("linear", "matmul", "bmm", "addmm", "mm", "einsum", "scaled_dot_product_attention"):
            return "linear"
    return "other"


def _kernel_area(gm: fx.GraphModule, node: fx.Node) -> int:
    module = _main_layer(gm, node)
    return int(math.prod(module.kernel_size)) if isinstance(module, nn.modules.conv._ConvNd) else 1


def _safe_attr(gm: fx.GraphModule, target: str):
    obj = gm
    for part in target.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            return None
    return obj
