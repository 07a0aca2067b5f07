"""Errors a user can fix. Each message names the problem and what to do."""


class NetcutError(ValueError):
    """Bad input to the library (unknown model, cut, weights...). A ValueError, so callers can catch either.

    The message says what is wrong and what to do in the library's words; `option` names the input it is
    about (weights, device, data...), so that a command line can name its own flag for it."""

    def __init__(self, message: str, option: str | None = None):
        super().__init__(message)
        self.option = option


class TraceError(NetcutError):
    """A network cannot be traced into a graph, so its cut points cannot be found."""
