"""Where a network can be cut, and what the prefix up to each cut costs.

A cut point is a node after which a single tensor carries everything the rest of the
network needs. They are found from the traced graph (articulation nodes), not from a
table per family. At `block` granularity a cut is reported at the end of each top-level
block (`features.3`, `layer2.1`); `layer` granularity reports every such node.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import torch
from torch import fx, nn

from . import models
from .cost import NodeCost, node_costs
from .errors import NetcutError
from .graph import TracedNetwork, articulation_nodes, input_dependent, trace
from .vocabulary import GRANULARITIES

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CutPoint:
    index: int  # 0 = the shallowest cut
    name: str  # the block (or, at layer granularity, the node) it ends
    node: str  # the torchvision node name of the cut tensor
    output_shape: tuple[int, ...]
    macs: int  # cumulative, from the input up to and including the cut
    params: int  # cumulative
    activation_bytes: int  # size of the tensor at the cut


@dataclass
class NetworkAnalysis:
    """A traced network, its per-node costs and its cut points at one input size."""

    model_name: str
    input_shape: tuple[int, ...]
    granularity: str
    traced: TracedNetwork
    costs: list[NodeCost]
    cuts: list[CutPoint]
    full_macs: int
    full_params: int
    cut_nodes: list[fx.Node] = field(repr=False)
    logits_node: fx.Node | None = field(repr=False, default=None)

    def cut(self, key: str | int) -> CutPoint:
        """A cut by name or node name, or by index: an int, or `#N` in text. A bare number is a name
        (nn.Sequential's blocks are called 0, 1, 2...), never an index."""
        if isinstance(key, int):
            return self._by_index(key, str(key))
        key = key.strip()
        if key.startswith("#"):
            if not key[1:].lstrip("-").isdigit():
                raise NetcutError(f"{key!r} is not a cut index; write # and a number, e.g. #0")
            return self._by_index(int(key[1:]), key)
        for c in self.cuts:
            if key in (c.name, c.node):
                return c
        names = ", ".join(c.name for c in self.cuts)
        as_index = f"; for the cut at index {key}, write #{key}" if key.lstrip("-").isdigit() else ""
        raise NetcutError(
            f"{key!r} is not a cut point of {self.model_name} at {self.granularity} granularity; "
            f"valid cuts: {names} (or by index #0..#{len(self.cuts) - 1}){as_index}"
        )

    def _by_index(self, i: int, written: str) -> CutPoint:
        if not -len(self.cuts) <= i < len(self.cuts):
            raise NetcutError(
                f"cut index {written} is out of range: {self.model_name} has {len(self.cuts)} cuts "
                f"(#0..#{len(self.cuts) - 1}) at {self.granularity} granularity"
            )
        return self.cuts[i]

    def node_of(self, cut: CutPoint) -> fx.Node:
        return self.cut_nodes[cut.index]


def candidate_cuts(a: NetworkAnalysis) -> list[str | None]:
    """A network's candidates: every cut in execution order, then the full network (None)."""
    return [c.name for c in a.cuts] + [None]


def _logits_node(gm: fx.GraphModule) -> fx.Node | None:
    """The last Linear or Conv2d the network calls: its classifier layer."""
    last = None
    for node in gm.graph.nodes:
        if node.op == "call_module" and isinstance(gm.get_submodule(node.target), (nn.Linear, nn.Conv2d)):
            last = node
    return last


def check_input_size(input_size: int) -> None:
    if not 8 <= input_size <= 4096:
        raise NetcutError(f"input size {input_size} is out of range (8..4096 pixels)")


def analyse(
    model: nn.Module, model_name: str, input_size: int = 224, granularity: str = "block", batch: int = 1
) -> NetworkAnalysis:
    if granularity not in GRANULARITIES:
        raise NetcutError(f"unknown granularity {granularity!r}; use one of: {', '.join(GRANULARITIES)}")
    check_input_size(input_size)
    traced = trace(model)
    input_shape = (batch, 3, input_size, input_size)
    try:
        costs, by_node = node_costs(traced, input_shape)
    except RuntimeError as exc:
        raise NetcutError(
            f"{model_name} does not run at input size {input_size}: {str(exc).splitlines()[0][:200]}; "
            "try a larger --input-size"
        ) from None
    nodes = traced.nodes
    position = {n: i for i, n in enumerate(nodes)}
    dependent = input_dependent(traced.gm)
    logits = _logits_node(traced.gm)
    limit = position[logits] if logits is not None else len(nodes)

    # Cumulative cost along execution order.
    cum_macs, cum_params, total_m, total_p = {}, {}, 0, 0
    for node in nodes:
        total_m += by_node[node].macs
        total_p += by_node[node].params
        cum_macs[node], cum_params[node] = total_m, total_p

    candidates = [
        n
        for n in articulation_nodes(traced.gm)
        if position[n] < limit and by_node[n].output_shape is not None and isinstance(traced.gm, fx.GraphModule)
    ]
    if granularity == "block":
        later_dependent = {}
        following = None
        for node in reversed(nodes):
            later_dependent[node] = following
            if node in dependent and node.op != "output":
                following = node
        blocks = []
        for node in candidates:
            nxt = later_dependent[node]
            label = traced.block_of(node)
            if label and (nxt is None or traced.block_of(nxt) != label):
                blocks.append((label, node))
        picked = blocks
    else:
        picked = [(traced.names[n], n) for n in candidates]

    # Keep cuts that add computation; of cuts that add none, keep the later one (the
    # tensor the next layer would consume), so cumulative MACs strictly increase.
    kept: list[tuple[str, fx.Node]] = []
    for label, node in picked:
        if cum_macs[node] == 0:
            continue
        if kept and cum_macs[node] == cum_macs[kept[-1][1]]:
            kept[-1] = (label, node)
        else:
            kept.append((label, node))
    cuts = [
        CutPoint(
            i,
            label,
            traced.names[node],
            by_node[node].output_shape,
            cum_macs[node],
            cum_params[node],
            by_node[node].output_bytes,
        )
        for i, (label, node) in enumerate(kept)
    ]
    for a, b in zip(cuts, cuts[1:]):
        assert a.macs < b.macs and position[kept[a.index][1]] < position[kept[b.index][1]], "cuts out of order"
    return NetworkAnalysis(
        model_name, input_shape, granularity, traced, costs, cuts, total_m, total_p, [node for _, node in kept], logits
    )


def analyse_by_name(
    name: str, input_size: int | None = None, granularity: str = "block", weights: str = "none"
) -> NetworkAnalysis:
    model = models.build(name, weights)
    return analyse(model, name, input_size or models.default_input_size(name), granularity)


def activation_at(model: nn.Module, node_name: str, x: torch.Tensor) -> torch.Tensor:
    """The full network's intermediate activation at a node, by torchvision's own extractor."""
    from torchvision.models.feature_extraction import create_feature_extractor

    extractor = create_feature_extractor(model.eval(), return_nodes={node_name: "out"})
    with torch.no_grad():
        return extractor(x)["out"]
