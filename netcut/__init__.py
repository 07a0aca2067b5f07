"""NetCut: the most accurate network that meets a latency deadline on an embedded board.

This package is the pure library: cut points, trimmed networks, cost model, export and
estimators. It imports no grpc, paramiko or sqlite3; heavy modules (torch) load only
when the submodule that needs them is imported.
"""

__version__ = "0.1.0"
