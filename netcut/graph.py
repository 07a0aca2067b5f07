"""The traced graph of a network, with each node's module path and top-level block.

Tracing uses torchvision's NodePathTracer, so node names are exactly those that
`torchvision.models.feature_extraction.get_graph_node_names` prints.
"""

from __future__ import annotations

import inspect
import math
import traceback
from dataclasses import dataclass

import torchvision
from torch import fx, nn
from torchvision.models.feature_extraction import NodePathTracer

from .errors import TraceError
from .reparam import fusable, fusable_types

_CONTAINERS = (nn.Sequential, nn.ModuleList, nn.ModuleDict)


@dataclass
class TracedNetwork:
    model: nn.Module
    gm: fx.GraphModule
    names: dict[fx.Node, str]  # node -> torchvision node name (qualname)
    blocks: list[str]  # top-level blocks, in definition order
    containers: list[str]  # expanded containers (they own ops like DenseNet's final cat)

    @property
    def nodes(self) -> list[fx.Node]:
        return list(self.gm.graph.nodes)

    def block_of(self, node: fx.Node) -> str:
        """The block a node belongs to: the longest block (or container) prefix of its name."""
        name = self.names.get(node, node.name)
        best = ""
        for label in self.blocks + self.containers:
            if (name == label or name.startswith(label + ".")) and len(label) > len(best):
                best = label
        return best


def _is_container(module: nn.Module) -> bool:
    """Expand plain containers, and container subclasses whose children are blocks themselves.

    nn.Sequential of blocks (ResNet's layer1, MobileNet's features) is expanded; a
    Sequential subclass of leaf layers (Conv2dNormActivation) is itself a block.
    """
    if not isinstance(module, _CONTAINERS) or fusable(module):  # a block that fuses is one block
        return False
    if type(module) in _CONTAINERS:
        return True
    return any(any(True for _ in child.children()) for child in module.children())


def top_level_blocks(model: nn.Module) -> tuple[list[str], list[str]]:
    blocks: list[str] = []
    containers: list[str] = []

    def visit(prefix: str, module: nn.Module) -> None:
        for name, child in module.named_children():
            qual = f"{prefix}.{name}" if prefix else name
            if _is_container(child):
                containers.append(qual)
                visit(qual, child)
            else:
                blocks.append(qual)

    visit("", model)
    return blocks, containers


class _Tracer(NodePathTracer):
    """torchvision's tracer, remembering the deepest module it was in when tracing failed."""

    failed_in: tuple[str, str] | None = None

    def call_module(self, m: nn.Module, forward, args, kwargs):  # noqa: ANN001, ANN201 - fx.Tracer's signature
        try:
            return super().call_module(m, forward, args, kwargs)
        except Exception:
            if self.failed_in is None:
                self.failed_in = (self.path_of_module(m), type(m).__name__)
            raise


def _trace_failure(exc: Exception, module: tuple[str, str] | None) -> TraceError:
    """Name what stopped the tracer: the module it was in, and the deepest frame outside torch itself."""
    frames = [
        f
        for f in traceback.extract_tb(exc.__traceback__)
        if "/torch/" not in f.filename and "/netcut/" not in f.filename
    ]
    where = f" at {frames[-1].filename}:{frames[-1].lineno} `{(frames[-1].line or '').strip()}`" if frames else ""
    inside = f" in module {module[0]!r} ({module[1]})" if module and module[0] else ""
    return TraceError(
        f"the network cannot be traced{inside}{where}: {str(exc).splitlines()[0][:300]}. "
        "Data-dependent control flow stops the tracer; make that part a leaf module or rewrite it "
        "without Python branches on tensor values"
    )


def _uses_timm(model: nn.Module) -> bool:
    return any(type(m).__module__.startswith("timm.") for m in model.modules())


def _tracer(model: nn.Module) -> _Tracer:
    """The tracer as torchvision's feature extraction sets it up, so node names agree with it:
    torchvision.ops functions are wrapped and its modules (StochasticDepth...) are leaves. For timm's
    networks, also what timm's own FX feature extraction leaves untraced (its registered modules and
    functions), so node names agree with timm's too. Blocks that fuse for deployment are leaves."""
    leaves = [m for _, m in inspect.getmembers(torchvision.ops) if inspect.isclass(m) and issubclass(m, nn.Module)]
    functions: list = []
    if _uses_timm(model):
        from timm.layers import _fx as timm_fx

        leaves += list(timm_fx.get_notrace_modules())
        functions = list(timm_fx.get_notrace_functions())
    # Subclasses of torch's layers (timm's Linear) stay layers: a classifier must be one module to resize.
    layers = {type(m) for m in model.modules() if isinstance(m, (nn.Linear, nn.modules.conv._ConvNd))}
    leaves += sorted(fusable_types(model) | layers, key=lambda t: t.__qualname__)
    return _Tracer(autowrap_modules=(math, torchvision.ops), autowrap_functions=functions, leaf_modules=leaves)


def trace(model: nn.Module) -> TracedNetwork:
    model = model.eval()
    tracer = _tracer(model)
    try:
        graph = tracer.trace(model)
    except Exception as exc:  # the tracer raises many types (TraceError, TypeError, ...)
        raise _trace_failure(exc, tracer.failed_in) from None
    gm = fx.GraphModule(tracer.root, graph, model.__class__.__name__)
    # Nodes are copied into the GraphModule; keep names by node position.
    by_position = {i: tracer.node_to_qualname.get(n, n.name) for i, n in enumerate(graph.nodes)}
    names = {n: by_position[i] for i, n in enumerate(gm.graph.nodes)}
    blocks, containers = top_level_blocks(model)
    return TracedNetwork(model, gm, names, blocks, containers)


def input_dependent(gm: fx.GraphModule) -> set[fx.Node]:
    """Nodes whose value depends on the network's input (constants and parameters do not)."""
    dependent: set[fx.Node] = set()
    for node in gm.graph.nodes:
        if node.op == "placeholder" or any(a in dependent for a in node.all_input_nodes):
            dependent.add(node)
    return dependent


def articulation_nodes(gm: fx.GraphModule) -> list[fx.Node]:
    """Nodes through which every path from the input to the output passes.

    Walking the nodes in execution order, a node is such a point when no earlier
    input-dependent node is still needed after it: the furthest use of everything
    before it is the node itself.
    """
    nodes = list(gm.graph.nodes)
    position = {n: i for i, n in enumerate(nodes)}
    dependent = input_dependent(gm)
    furthest = -1
    points = []
    for i, node in enumerate(nodes):
        if node not in dependent or node.op in ("placeholder", "output"):
            if node in dependent:
                furthest = max(furthest, max((position[u] for u in node.users), default=i))
            continue
        if furthest <= i:
            points.append(node)
        furthest = max(furthest, max((position[u] for u in node.users), default=i))
    return points
