"""The words NetCut's options and files use, in a module light enough for a command line to import
(no torch, no numpy)."""

from __future__ import annotations

GRANULARITIES = ("block", "layer")
QUANTILES = {"p50": 0.5, "median": 0.5, "p90": 0.9, "p95": 0.95, "p99": 0.99}
# The full network (no cut) is None in Python; on disk and on the command line it is spelled FULL.
FULL = "full"
# The numeric precisions a candidate is exported in (netcut.quantize makes the int8 ones, netcut.half the fp16
# ones); a candidate in any but fp32 is its trained float TRN converted, never trained again.
FP32, INT8, FP16 = "fp32", "int8", "fp16"
PRECISIONS = (FP32, INT8, FP16)
# ONNX metadata netcut.export writes: the node table the agent maps profiled kernels with, and each
# node's block.
NODES_KEY, BLOCK_KEY = "netcut.nodes", "netcut.block"
# Rows of the kernel suite (netcut.kernel_suite) carry this prefix where a network's name would be.
KERNEL_SUITE_PREFIX = "kernel-suite:"
DEFAULT_CALIBRATION_IMAGES = 200  # int8: a fixed seeded subset of the training images this large calibrates


def parse_precisions(text: str) -> tuple[str, ...]:
    """'int8,fp32' -> ('fp32', 'int8'), in PRECISIONS' order, each once; unknown names are refused."""
    names = [p.strip().lower() for p in str(text).split(",") if p.strip()]
    bad = [p for p in names if p not in PRECISIONS]
    if bad or not names:
        what = ", ".join(bad) or repr(text)
        raise ValueError(f"unknown precision {what}; use {', '.join(PRECISIONS)}, or a list such as fp32,int8")
    return tuple(p for p in PRECISIONS if p in names)


def cut_label(cut: str | None) -> str:
    """A cut as written on disk and on the command line: its name, or FULL for the full network."""
    return FULL if cut is None else cut


def parse_cut_label(text: str) -> str | None:
    return None if text == FULL else text
