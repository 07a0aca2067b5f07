"""Start a netcut-agent on this machine for the duration of a command (`--target local`)."""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

from .errors import TargetError

STARTUP_TIMEOUT_S = 30.0


class LocalAgentError(TargetError):
    """The agent this command starts on this machine did not come up."""


@contextlib.contextmanager
def local_agent(store: Path | None = None, extra_args: list[str] | None = None) -> Iterator[str]:
    """Run `netcut-agent serve` on a free loopback port in a child process; yields HOST:PORT.

    A separate process keeps the agent's timings clear of the host's own Python threads.
    """
    cmd = [sys.executable, "-m", "netcut_agent", "serve", "--listen", "127.0.0.1:0"]
    if store is not None:
        cmd += ["--store", str(store)]
    cmd += extra_args or []
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"}
    )
    try:
        address = _wait_for_address(proc)
        yield address
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream:
                stream.close()


def _wait_for_address(proc: subprocess.Popen) -> str:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], 0.2)
        if ready:
            line = proc.stdout.readline()
            if line.startswith("listening on "):
                return line.split("listening on ", 1)[1].strip()
        if proc.poll() is not None:
            err = proc.stderr.read().strip().splitlines()
            raise LocalAgentError(
                f"the local agent did not start: {err[-1] if err else 'exit code ' + str(proc.returncode)}"
            )
    raise LocalAgentError(f"the local agent did not start within {STARTUP_TIMEOUT_S:.0f} s")
