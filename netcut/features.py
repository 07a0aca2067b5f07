"""Cost features of network pieces, for the analytical latency model.

A piece is a segment between two cuts (what a per-layer profile times per block), a
head, or a whole TRN (segments up to a cut plus its head). Features are extensive:
the features of a TRN are the sum of its pieces' features.
"""

from __future__ import annotations

import numpy as np

from .cost import CLIP_PASS, CLIPS, NodeCost, int8_passes
from .cuts import NetworkAnalysis
from .trn import head_input_features
from .vocabulary import FP32, INT8

FEATURES = ("conv_gmacs", "dwconv_gmacs_as_3x3", "linear_gmacs", "act_mb", "param_mb", "ops", "runs")
CLASSIFIER_SEGMENT = "classifier"  # the label of the segment after the last cut (see netcut.trn)


def basis(precision: str) -> str:
    """What the features mean for a precision's models: a cost model fitted on another basis is fitted again.
    int8 counts activations by the kernels a QDQ model runs (netcut.cost.INT8_PASSES) and depthwise
    convolutions by their multiply-adds: onnxruntime's int8 depthwise kernels took 1.8-2.1 times as long per
    output for 5x5 as for 3x3 at the same channels (mnasnet1_0, 224 px), where float ones take about the same."""
    return "int8-1" if precision == INT8 else "float-1"


# Operations that inference runtimes fuse into the preceding convolution or elide: they move
# no activation through memory of their own, so they count as neither traffic nor an op.
# (onnxruntime fuses Conv+BatchNorm and Conv+Relu; a clip is a cheap pass (netcut.cost.PASS_COST); SiLU,
# Hardswish and gates are passes of their own.)
CLIP_TARGETS = {name for clip in CLIPS for name in (clip.__name__, clip.__name__.lower())}  # modules, functions
FUSED = {
    "BatchNorm1d",
    "BatchNorm2d",
    "ReLU",
    "Dropout",
    "Identity",
    "Flatten",
    "relu",
    "dropout",
    "flatten",
    "getattr",
    "getitem",
    "size",
    "view",
    "reshape",
    "contiguous",
    "x",
    "output",
}


def _piece(costs: list[NodeCost], precision: str = FP32) -> np.ndarray:
    v = np.zeros(len(FEATURES))
    int8 = precision == INT8
    for c in costs:
        if c.target in FUSED or c.target.startswith("<built-in"):
            continue
        if c.target in CLIP_TARGETS:
            v[3] += 0.0 if int8 else c.output_bytes * CLIP_PASS / 1e6
            continue
        if c.kind == "conv":
            v[0] += c.macs / 1e9
        elif c.kind == "dwconv":
            # Float depthwise convolutions are bound by memory, not arithmetic: a 5x5 one costs about what a 3x3
            # one on the same activation does, not 25/9 of it (mnasnet, efficientnet: LONO error 21 -> 16%).
            v[1] += c.macs * (1 if int8 else 9 / max(c.kernel_area, 1)) / 1e9
        elif c.kind == "linear":
            v[2] += c.macs / 1e9
        v[3] += c.output_bytes * (1 + (int8_passes(c) if int8 else c.extra_passes)) / 1e6
        v[4] += c.params * 4 / 1e6
        if c.op in ("call_module", "call_function", "call_method"):
            v[5] += 1
    return v


def segment_features(a: NetworkAnalysis, precision: str = FP32) -> dict[str, np.ndarray]:
    """Features per segment, keyed by the segment's block label (cut names, then 'classifier')."""
    nodes = a.traced.nodes
    position = {n: i for i, n in enumerate(nodes)}
    bounds = [position[n] for n in a.cut_nodes] + [len(nodes)]
    labels = [c.name for c in a.cuts] + [CLASSIFIER_SEGMENT]
    out, start = {}, 0
    for label, end in zip(labels, bounds):
        out[label] = _piece(a.costs[start : end + 1] if label != CLASSIFIER_SEGMENT else a.costs[start:end], precision)
        start = end + 1
    return out


def head_features(output_shape: tuple[int, ...], classes: int) -> np.ndarray:
    """Global average pooling over the activation, then a linear layer."""
    v = np.zeros(len(FEATURES))
    channels = head_input_features(output_shape)
    batch = output_shape[0]
    v[2] = batch * channels * classes / 1e9
    v[3] = (batch * channels + batch * classes) * 4 / 1e6
    v[4] = (channels * classes + classes) * 4 / 1e6
    v[5] = 2
    return v


def trn_features(a: NetworkAnalysis, cut: str | None, classes: int, precision: str = FP32) -> np.ndarray:
    """A whole runnable model: its segments up to the cut, its head, and one run's overhead."""
    segments = segment_features(a, precision)
    labels = [c.name for c in a.cuts]
    if cut is None:
        v = sum(segments.values())
    else:
        v = sum(segments[label] for label in labels[: labels.index(cut) + 1])
        v = v + head_features(a.cut(cut).output_shape, classes)
    v = v.copy()
    v[FEATURES.index("runs")] = 1.0
    return v
