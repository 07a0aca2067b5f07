"""Where the host keeps its files by default (the user's data and cache directories)."""

from __future__ import annotations

from pathlib import Path


def data_dir() -> Path:
    import platformdirs

    return Path(platformdirs.user_data_dir("netcut"))


def default_db() -> Path:
    return data_dir() / "latency.sqlite"


def log_dir() -> Path:
    """Logs of the agents `--target local` starts (kept only when one failed)."""
    return data_dir() / "logs"


def export_cache() -> Path:
    import platformdirs

    return Path(platformdirs.user_cache_dir("netcut")) / "exports"
