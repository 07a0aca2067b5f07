"""One benchmark at a time per board; the rest wait in line and can see their place."""

from __future__ import annotations

import contextlib
import threading
from typing import Callable, Iterator

from .errors import Cancelled, ResourceExhausted


class BenchmarkQueue:
    def __init__(self, max_waiting: int = 16):
        self.max_waiting = max_waiting
        self._cond = threading.Condition()
        self._line: list[object] = []  # the head holds the board

    @property
    def busy(self) -> bool:
        return bool(self._line)

    @property
    def waiting(self) -> int:
        return max(0, len(self._line) - 1)

    @contextlib.contextmanager
    def slot(self, cancelled: threading.Event, on_position: Callable[[int], None]) -> Iterator[None]:
        ticket = object()
        with self._cond:
            if len(self._line) > self.max_waiting:
                raise ResourceExhausted(
                    f"{self.max_waiting} benchmarks are already waiting on this board; "
                    "try again later (one board runs one benchmark at a time)"
                )
            self._line.append(ticket)
        try:
            last = -1
            while True:
                with self._cond:
                    position = self._line.index(ticket)
                    if position == 0:
                        break
                    if position != last:
                        on_position(position)
                        last = position
                    self._cond.wait(timeout=0.2)
                if cancelled.is_set():
                    raise Cancelled("the client left the queue")
            yield
        finally:
            with self._cond:
                self._line.remove(ticket)
                self._cond.notify_all()
