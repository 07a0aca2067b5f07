"""netcut-agent: the on-board benchmarking service (no torch needed)."""

from netcut import __version__

PROTOCOL_VERSION = 2  # 2: execution provider lists, IOBinding copy times, GPU state

__all__ = ["__version__", "PROTOCOL_VERSION"]
