"""Which exceptions are the user's to fix (one line, exit 2) and which are bugs (traceback)."""
from __future__ import annotations

import logging
import sys

from .client import AgentCallError
from .local_agent import LocalAgentError

EXIT_USAGE = 2


def report(exc: BaseException) -> int | None:
    """Print a one-line error and return the exit code, or None for a bug (let it raise)."""
    # TableError and InventoryError are ValueErrors; BoardError (SSH) is a ConnectionError, as is AgentUnavailable.
    user_errors = (ValueError, FileNotFoundError, PermissionError, ConnectionError, AgentCallError, LocalAgentError)
    if not isinstance(exc, user_errors):
        return None
    message = str(exc)
    if isinstance(exc, AgentCallError):
        message = f"the agent refused: {message} ({exc.code.name})"
    print(f"netcut-host: error: {message}", file=sys.stderr)
    logging.getLogger(__name__).debug("details", exc_info=exc)
    return EXIT_USAGE
