"""Errors a user can fix. Each message names the problem and what to do."""


class NetcutError(ValueError):
    """Bad input to the library (unknown model, cut, weights...). A ValueError, so callers can catch either."""


class TraceError(NetcutError):
    """A network cannot be traced into a graph, so its cut points cannot be found."""
