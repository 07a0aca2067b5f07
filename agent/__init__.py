"""netcut-agent: the on-board benchmarking service (no torch needed)."""

from netcut import __version__

PROTOCOL_VERSION = 1

__all__ = ["__version__", "PROTOCOL_VERSION"]
