"""Trimmed networks (TRNs): the prefix of a network up to a cut, plus a new head.

The network is split at its cut points into segments, one small GraphModule each, run
one after the other. Cut points are articulation nodes, so each segment takes exactly
one tensor and returns one. Keeping segments as named submodules means every exported
operation can be traced back to the block it came from (see netcut.export).
"""

from __future__ import annotations

import copy
import re
from collections import OrderedDict

import torch
from torch import fx, nn

from .cuts import CutPoint, NetworkAnalysis
from .errors import NetcutError
from .graph import input_dependent

HEADS = ("gap-linear", "none")
HEAD_NAME = "head"


def segment_attr(label: str, index: int) -> str:
    """A submodule name for a segment, readable in ONNX node names (`/s03_features_3/...`)."""
    return f"s{index:02d}_" + re.sub(r"\W", "_", label)


def _extract(
    gm: fx.GraphModule, members: list[fx.Node], source: fx.Node, result: fx.Node, dependent: set[fx.Node]
) -> fx.GraphModule:
    """A GraphModule computing `result` from the tensor at `source` with the nodes in `members`."""
    graph = fx.Graph()
    env: dict[fx.Node, fx.Node] = {source: graph.placeholder("x")}

    def arg(node: fx.Node) -> fx.Node:
        if node not in env:
            if node in dependent:
                raise AssertionError(f"segment reads {node.name} across a cut")  # cut points forbid this
            env[node] = graph.node_copy(node, arg)  # a constant or parameter: copy it in
        return env[node]

    for node in members:
        env[node] = graph.node_copy(node, arg)
    graph.output(fx.node.map_arg(result, arg))
    graph.lint()
    return fx.GraphModule(gm, graph)


def global_pool(x: torch.Tensor) -> torch.Tensor:
    """What the head sees: spatial maps averaged, tokens averaged, vectors as they are."""
    if x.dim() == 4:
        return x.mean(dim=(2, 3))
    if x.dim() == 3:  # tokens: (batch, tokens, features)
        return x.mean(dim=1)
    return x.flatten(1)


class GlobalPoolLinear(nn.Module):
    """The default head: global average pooling over what is left, then a linear classifier."""

    def __init__(self, in_features: int, num_classes: int):
        super().__init__()
        self.fc = nn.Linear(in_features, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(global_pool(x))


def head_input_features(shape: tuple[int, ...]) -> int:
    return shape[-1] if len(shape) == 3 else shape[1]


class TrimmedNetwork(nn.Sequential):
    """Segments of the original network in order, then the head (if any)."""

    def __init__(
        self, parts: "OrderedDict[str, nn.Module]", labels: dict[str, str], model_name: str, cut: CutPoint | None
    ):
        super().__init__(parts)
        self.labels = labels  # submodule name -> block label
        self.model_name = model_name
        self.cut_point = cut


def _segments(a: NetworkAnalysis, upto: int | None):
    """(label, source node, member nodes, result) per segment, up to cut index `upto` (None: all)."""
    gm = a.traced.gm
    nodes = list(gm.graph.nodes)
    dependent = input_dependent(gm)
    position = {n: i for i, n in enumerate(nodes)}
    source = next(n for n in nodes if n.op == "placeholder")
    bounds = a.cut_nodes if upto is None else a.cut_nodes[: upto + 1]
    out = []
    for i, end in enumerate(bounds):
        members = [n for n in nodes if position[source] < position[n] <= position[end] and n in dependent]
        out.append((a.cuts[i].name, source, members, end))
        source = end
    if upto is None:
        output = next(n for n in nodes if n.op == "output")
        members = [n for n in nodes if position[source] < position[n] < position[output] and n in dependent]
        out.append(("classifier", source, members, output.args[0]))
    return out, dependent


def _replace_logits(segment: fx.GraphModule, a: NetworkAnalysis, num_classes: int) -> None:
    """Give the network's own classifier layer `num_classes` outputs (fresh weights)."""
    if a.logits_node is None:
        raise NetcutError(f"{a.model_name} has no Linear or Conv2d classifier layer to resize; use a cut instead")
    target = a.logits_node.target
    old = segment.get_submodule(target)
    if isinstance(old, nn.Linear):
        new = nn.Linear(old.in_features, num_classes, bias=old.bias is not None)
    else:
        new = nn.Conv2d(
            old.in_channels, num_classes, old.kernel_size, old.stride, old.padding, bias=old.bias is not None
        )
    parent, _, leaf = target.rpartition(".")
    setattr(segment.get_submodule(parent) if parent else segment, leaf, new)


def build_trn(
    a: NetworkAnalysis, cut: CutPoint | str | int | None, num_classes: int | None = None, head: str = "gap-linear"
) -> TrimmedNetwork:
    """The TRN for a cut (None: the full network), in eval mode.

    head "gap-linear": global average pooling + a linear layer to num_classes.
    head "none": the bare prefix; its output is the full network's activation at the cut.
    For the full network, num_classes resizes its own classifier layer; None keeps it.
    """
    if head not in HEADS:
        raise NetcutError(f"unknown head {head!r}; use one of: {', '.join(HEADS)}")
    if cut is not None and not isinstance(cut, CutPoint):
        cut = a.cut(cut)
    if cut is not None and head == "gap-linear" and not num_classes:
        raise NetcutError("a head needs the number of classes; give them, or export without a head", option="classes")
    if num_classes is not None and num_classes < 1:
        raise NetcutError(f"the number of classes must be at least 1, got {num_classes}")
    segments, dependent = _segments(a, None if cut is None else cut.index)
    parts: OrderedDict[str, nn.Module] = OrderedDict()
    labels: dict[str, str] = {}
    for i, (label, source, members, result) in enumerate(segments):
        name = segment_attr(label, i)
        # A copy: TRNs of one network must not share (and, when fine-tuned, change) each other's weights.
        parts[name] = copy.deepcopy(_extract(a.traced.gm, members, source, result, dependent))
        labels[name] = label
    if cut is None:
        if num_classes and head != "none":
            _replace_logits(parts[next(reversed(parts))], a, num_classes)
    elif head == "gap-linear":
        parts[HEAD_NAME] = GlobalPoolLinear(head_input_features(cut.output_shape), num_classes)
        labels[HEAD_NAME] = HEAD_NAME
    return TrimmedNetwork(parts, labels, a.model_name, cut).eval()
