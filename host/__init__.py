"""netcut-host: the workstation side (CLI, agent client, tables, fleet)."""

from netcut import __version__

__all__ = ["__version__"]
