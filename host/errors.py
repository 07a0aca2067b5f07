"""The host's errors. Each class says which exit code it ends a command with (see `netcut-host --help`).

Library modules raise these (or netcut.errors.NetcutError for bad input to the pure library); the CLI
turns them into one line and the exit code. Anything else is a bug: its traceback is kept (exit 1).
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_BUG = 1
EXIT_USAGE = 2  # bad input or configuration: fix the command, the file, the inventory
EXIT_INFEASIBLE = 3  # no candidate meets the deadline
EXIT_TARGET_FAILED = 4  # a target or board failed (unreachable, or failed midway: rows measured so far are kept)

EXIT_CODES_HELP = """\
exit codes:
  0  done
  1  a bug in netcut (the traceback is printed; --debug logs more)
  2  bad input or configuration (the message says what to fix)
  3  no candidate can meet the deadline (the message names the fastest one)
  4  a target or board failed: unreachable, or failed midway (everything measured so far is kept)
"""


class HostError(Exception):
    """Root of the host's errors. `option` names the input the error is about, for a command line to name its
    flag (the library's messages speak of what to do, not of flags)."""

    exit_code = EXIT_USAGE
    option: str | None = None


class ConfigError(HostError, ValueError):
    """Bad input or configuration the user can fix (a ValueError too, for callers that catch those)."""


class TargetError(HostError, ConnectionError):
    """A target, board or agent cannot be used: unreachable, gone midway, or failed."""

    exit_code = EXIT_TARGET_FAILED


class NoFeasibleCandidate(HostError):
    """No candidate can meet the deadline. `outcome`, where the search got that far, is what it found
    (every candidate's estimate, no pick), for the report."""

    exit_code = EXIT_INFEASIBLE

    def __init__(self, message: str, outcome: object = None):
        super().__init__(message)
        self.outcome = outcome
