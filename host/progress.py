"""Progress on stderr for people: one rewritten line on a terminal, nothing when piped."""

from __future__ import annotations

import sys
import time
from typing import Callable, TextIO


class Progress:
    def __init__(self, enabled: bool | None = None, stream: TextIO | None = None):
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self._last = ""
        self._shown_at = 0.0

    def show(self, text: str, force: bool = False) -> None:
        if not self.enabled or text == self._last:
            return
        now = time.monotonic()
        if not force and now - self._shown_at < 0.1:
            return
        self.stream.write("\r\x1b[2K" + text)
        self.stream.flush()
        self._last, self._shown_at = text, now

    def done(self) -> None:
        if self.enabled and self._last:
            self.stream.write("\r\x1b[2K")
            self.stream.flush()
            self._last = ""


def job_progress(progress: Progress, started: float) -> Callable[[int, int, object], None]:
    """The progress callback of a profiling run: a bar and the job being measured."""

    def show(done: int, total: int, job: object) -> None:
        progress.show(f"{bar(done, total, started)}  {job.label() if job else 'done'}", force=True)

    return show


def bar(done: int, total: int, started: float, width: int = 24) -> str:
    """`[#####.....] 5/10, 12 s left` with a naive time-left estimate."""
    fraction = done / total if total else 1.0
    filled = int(width * fraction)
    elapsed = time.monotonic() - started
    left = f", {elapsed / done * (total - done):.0f} s left" if done else ""
    return f"[{'#' * filled}{'.' * (width - filled)}] {done}/{total}{left}"
