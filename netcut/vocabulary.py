"""The words NetCut's options and files use, in a module light enough for a command line to import
(no torch, no numpy)."""

from __future__ import annotations

GRANULARITIES = ("block", "layer")
QUANTILES = {"p50": 0.5, "median": 0.5, "p90": 0.9, "p95": 0.95, "p99": 0.99}
# The full network (no cut) is None in Python; on disk and on the command line it is spelled FULL.
FULL = "full"


def cut_label(cut: str | None) -> str:
    """A cut as written on disk and on the command line: its name, or FULL for the full network."""
    return FULL if cut is None else cut


def parse_cut_label(text: str) -> str | None:
    return None if text == FULL else text
