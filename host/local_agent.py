"""Start a netcut-agent on this machine for the duration of a command (`--target local`)."""

from __future__ import annotations

import contextlib
import logging
import os
import select
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterator

from .errors import TargetError
from .paths import log_dir

logger = logging.getLogger(__name__)

STARTUP_TIMEOUT_S = 30.0


class LocalAgentError(TargetError):
    """The agent this command starts on this machine did not come up."""


@contextlib.contextmanager
def local_agent(store: Path | None = None, extra_args: list[str] | None = None) -> Iterator[str]:
    """Run `netcut-agent serve` on a free loopback port in a child process; yields HOST:PORT.

    A separate process keeps the agent's timings clear of the host's own Python threads. Its log goes to a
    file under the user's data dir (never an unread pipe, which would stall the agent once full); the file
    is removed when the command ends well and kept, with its path in the error, when the agent failed.
    Without `store` the agent gets a store of its own for this command: an agent locks its store, so two
    commands at once must not share one (uploads to a local agent cost milliseconds).
    """
    with contextlib.ExitStack() as stack:
        if store is None:
            store = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="netcut-local-agent-")))
        folder = log_dir()
        folder.mkdir(parents=True, exist_ok=True)
        log_path = folder / f"local-agent-{os.getpid()}-{time.strftime('%Y%m%d-%H%M%S')}.log"
        log = stack.enter_context(open(log_path, "w"))
        cmd = [
            sys.executable,
            "-m",
            "netcut_agent",
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--store",
            str(store),
            *(extra_args or []),
        ]
        proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=log, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"}
        )
        failed = True
        try:
            address = _wait_for_address(proc, log_path)
            yield address
            failed = proc.poll() is not None  # it died under the command
        finally:
            if proc.poll() is not None and proc.returncode != 0:
                logger.warning("the local agent ended with exit code %s; its log: %s", proc.returncode, log_path)
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            if proc.stdout:
                proc.stdout.close()
            if not failed:
                log_path.unlink(missing_ok=True)


def _wait_for_address(proc: subprocess.Popen, log_path: Path) -> str:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], 0.2)
        if ready:
            line = proc.stdout.readline()
            if line.startswith("listening on "):
                return line.split("listening on ", 1)[1].strip()
        if proc.poll() is not None:
            err = log_path.read_text().strip().splitlines()
            raise LocalAgentError(
                f"the local agent did not start: {err[-1] if err else 'exit code ' + str(proc.returncode)}"
                f" (its log: {log_path})"
            )
    raise LocalAgentError(f"the local agent did not start within {STARTUP_TIMEOUT_S:.0f} s (its log: {log_path})")
