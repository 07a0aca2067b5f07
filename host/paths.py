"""Where the host keeps its files by default (the user's data and cache directories)."""

from __future__ import annotations

from pathlib import Path


def default_db() -> Path:
    import platformdirs

    return Path(platformdirs.user_data_dir("netcut")) / "latency.sqlite"


def export_cache() -> Path:
    import platformdirs

    return Path(platformdirs.user_cache_dir("netcut")) / "exports"
