"""Benchmarks in a worker process the server can kill.

The server never loads a model: it hands each benchmark to one long-lived child process (spawned,
so it shares no threads or locks with the server) and reads progress and the result back through a
pipe. Timing happens in the child, as before. The server holds a hard wall-clock limit over the
whole request (session creation, warm-up, runs, profiling): when it passes, when the client cancels
or leaves, or when the child dies (a native crash, its memory limit), the child is killed at once,
the board is free, and a fresh child is started for the next request. TVM measures candidates the
same way (tvm.contrib.popen_pool): a runtime call cannot be interrupted from a thread, a process can.
"""

from __future__ import annotations

import logging
import multiprocessing
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .errors import AgentError, Aborted, Cancelled, DeadlineExceeded, Internal, ResourceExhausted

log = logging.getLogger(__name__)

START_TIMEOUT_S = 60.0  # importing a runtime on a slow board
KILL_GRACE_S = 0.5  # after the limit, the child's own clean DeadlineExceeded may still arrive
CANCEL_GRACE_S = 0.5  # after a cancel, the child's own clean stop between runs may still arrive
POLL_S = 0.2  # how often a waiting server looks at the cancel flag and the clock (results wake it at once)


@dataclass(frozen=True)
class WorkerLimits:
    max_memory_bytes: int = 0  # address-space limit of the child (RLIMIT_AS); 0: none


def _child(conn, stop, limits: WorkerLimits) -> None:  # noqa: ANN001 - a multiprocessing Connection and Event
    """The worker's main loop: one benchmark request at a time, answered with events and one outcome."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the server decides when this process ends
    if limits.max_memory_bytes:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (limits.max_memory_bytes, limits.max_memory_bytes))
    from . import runtimes
    from .benchmark import run_benchmark

    conn.send(("ready", runtimes.discover()))
    while True:
        try:
            message = conn.recv()
        except EOFError:
            return
        try:
            req, path, fmt, time_limit = message
            # `stop` is the server's cancel, checked between runs like the time limit: the server kills this
            # process only when a run itself does not return in time.
            result = run_benchmark(
                req, Path(path), fmt, lambda e: conn.send(("event", e)), stop, default_time_limit=time_limit
            )
            conn.send(("result", result))
        except AgentError as exc:
            conn.send(("error", type(exc).__name__, str(exc)))
        except MemoryError:
            conn.send(("error", "ResourceExhausted", "the benchmark ran out of memory on the board"))
        except Exception as exc:  # noqa: BLE001 - reported as a status, the worker lives on
            text = str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
            kind = "ResourceExhausted" if "alloc" in text.lower() else "Aborted"
            conn.send(("error", kind, f"the runtime failed: {type(exc).__name__}: {text}"))


_ERRORS = {cls.__name__: cls for cls in (AgentError.__subclasses__())}


class Worker:
    """The one child process that runs this agent's benchmarks (one at a time: the queue sees to that)."""

    def __init__(self, limits: WorkerLimits | None = None):
        self.limits = limits or WorkerLimits()
        self._ctx = multiprocessing.get_context("spawn")
        self._lock = threading.Lock()
        self._proc = None
        self._conn = None
        self._runtimes = None
        self._ready = threading.Event()
        self._stop = None

    # ------------------------------------------------------------ life cycle

    def start(self) -> None:
        """Start the child in the background (the server answers meanwhile)."""
        with self._lock:
            if self._proc is not None and self._proc.is_alive():
                return
            parent, child = self._ctx.Pipe()
            self._stop = self._ctx.Event()
            self._proc = self._ctx.Process(
                target=_child, args=(child, self._stop, self.limits), name="netcut-benchmark", daemon=True
            )
            self._proc.start()
            child.close()
            self._conn = parent
            self._ready.clear()
        threading.Thread(target=self._await_ready, args=(parent,), daemon=True).start()

    def _await_ready(self, conn) -> None:  # noqa: ANN001
        try:
            if conn.poll(START_TIMEOUT_S):
                kind, infos = conn.recv()
                if kind == "ready":
                    self._runtimes = infos
        except (EOFError, OSError):
            pass
        self._ready.set()

    def kill(self) -> None:
        with self._lock:
            proc, conn = self._proc, self._conn
            self._proc = self._conn = None
        if proc is not None and proc.is_alive():
            proc.kill()
        if proc is not None:
            proc.join(timeout=5)
        if conn is not None:
            conn.close()

    @property
    def pid(self) -> int | None:
        proc = self._proc
        return proc.pid if proc is not None else None

    def runtimes(self, timeout: float = START_TIMEOUT_S) -> list:
        """The runtimes the child found (RuntimeInfo records), as it reported them when it started."""
        self.start()
        self._ready.wait(timeout)
        if self._runtimes is None:
            raise Internal("the benchmark worker did not start; see the agent's log")
        return self._runtimes

    # ------------------------------------------------------------ one benchmark

    def run(
        self,
        req,
        path: Path,
        fmt: str,
        emit: Callable[[object], None],
        cancelled: threading.Event,  # noqa: ANN001
        time_limit: float,
    ) -> object:
        """Run one benchmark in the child; its result, or the AgentError that ended it."""
        self.runtimes()  # started and ready
        conn, proc, stop = self._conn, self._proc, self._stop
        stop.clear()
        deadline = time.monotonic() + time_limit
        stopping_since = None
        try:
            conn.send((req, str(path), fmt, time_limit))
        except (OSError, ValueError):
            self.kill()
            raise Internal("the benchmark worker is gone; try again") from None
        while True:
            try:
                ready = conn.poll(POLL_S)
            except (OSError, EOFError):
                ready = False
            if ready:
                try:
                    message = conn.recv()
                except (EOFError, OSError):
                    message = None
                if message is not None:
                    kind = message[0]
                    if kind == "event":
                        if type(message[1]).__name__ == "CoolingDown":  # waiting for the board is not the run
                            deadline = time.monotonic() + time_limit
                        emit(message[1])
                        continue
                    if kind == "result":
                        return message[1]
                    raise _ERRORS.get(message[1], Internal)(message[2])
            if cancelled.is_set():
                # Ask first (the worker stops between runs and stays warm); kill if a run does not end soon.
                stop.set()
                stopping_since = stopping_since or time.monotonic()
                if time.monotonic() - stopping_since > CANCEL_GRACE_S:
                    self._end("cancelled, and a run did not end")
                    raise Cancelled("the benchmark was cancelled; the board is free")
            if time.monotonic() > deadline + KILL_GRACE_S:
                self._end("over its time limit")
                raise DeadlineExceeded(
                    f"the benchmark ran past its time limit of {time_limit:g} s and was stopped; "
                    "raise time_limit_seconds, or lower timing.min_seconds / min_runs"
                )
            if not proc.is_alive():
                code = proc.exitcode
                self._end("dead")
                if self.limits.max_memory_bytes:
                    raise ResourceExhausted(
                        f"the benchmark's process died (exit {code}), most likely at its memory limit of "
                        f"{self.limits.max_memory_bytes / 2**20:.0f} MB (--max-memory-mb); the model needs more "
                        "memory than this board allows it"
                    )
                how = f"signal {-code}" if code is not None and code < 0 else f"exit {code}"
                raise Aborted(f"the runtime crashed on this model ({how}); the agent is fine and serves on")

    def _end(self, why: str) -> None:
        log.warning("killing the benchmark worker (pid %s): %s", self.pid, why)
        self.kill()
        self.start()  # the next request finds a warm one
