"""The timing protocol: warm up, then repeat until enough runs and enough time.

Only the inference call is inside the timed region; inputs are prepared in advance.
Very short models are timed in batches of `runs_per_sample` calls so the clock's
resolution and the loop's own overhead do not dominate a sample.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass
from typing import Callable

from .errors import Cancelled, DeadlineExceeded, InvalidArgument

# A sample should last at least this long; shorter runs are batched.
MIN_SAMPLE_SECONDS = 100e-6
PROGRESS_EVERY_S = 0.25


@dataclass
class TimingConfig:
    warmup_runs: int = 10
    warmup_seconds: float = 1.0
    min_runs: int = 50
    min_seconds: float = 2.0
    max_seconds: float = 60.0
    runs_per_sample: int = 0  # 0 = automatic

    def validate(self) -> "TimingConfig":
        numbers = vars(self)
        for name, value in numbers.items():
            if isinstance(value, float) and not math.isfinite(value):
                raise InvalidArgument(f"timing.{name} must be a finite number, got {value}")
            if value < 0:
                raise InvalidArgument(f"timing.{name} must not be negative, got {value}")
        limits = {
            "warmup_runs": 100_000,
            "warmup_seconds": 600,
            "min_runs": 1_000_000,
            "min_seconds": 3600,
            "max_seconds": 3600,
            "runs_per_sample": 100_000,
        }
        for name, limit in limits.items():
            if numbers[name] > limit:
                raise InvalidArgument(f"timing.{name}={numbers[name]} is beyond the limit of {limit}")
        if self.min_runs < 1:
            raise InvalidArgument("timing.min_runs must be at least 1 (leave it unset for the default, 50)")
        if self.max_seconds <= 0:
            raise InvalidArgument("timing.max_seconds must be positive (leave it unset for the default, 60 s)")
        if self.min_seconds > self.max_seconds:
            raise InvalidArgument(
                f"timing.min_seconds ({self.min_seconds}) exceeds timing.max_seconds "
                f"({self.max_seconds}); raise max_seconds or lower min_seconds"
            )
        return self


@dataclass
class Statistics:
    n: int
    median_ms: float
    mean_ms: float
    p90_ms: float
    p95_ms: float
    p99_ms: float
    min_ms: float
    max_ms: float
    std_ms: float
    cv: float


def statistics(samples_ms: list[float]) -> Statistics:
    import numpy as np  # here, not at import: the server process never computes statistics

    a = np.asarray(samples_ms, dtype=np.float64)
    if a.size == 0:
        raise ValueError("no samples")
    p50, p90, p95, p99 = np.percentile(a, [50, 90, 95, 99])
    std = float(a.std(ddof=1)) if a.size > 1 else 0.0
    mean = float(a.mean())
    return Statistics(
        int(a.size),
        float(p50),
        mean,
        float(p90),
        float(p95),
        float(p99),
        float(a.min()),
        float(a.max()),
        std,
        std / mean if mean > 0 else 0.0,
    )


class Clock:
    """Cancellation and the request's time limit, checked between runs."""

    def __init__(self, cancelled: threading.Event, deadline: float):
        self.cancelled = cancelled
        self.deadline = deadline

    def check(self) -> None:
        if self.cancelled.is_set():
            raise Cancelled("the benchmark was cancelled")
        if time.monotonic() > self.deadline:
            raise DeadlineExceeded(
                "the benchmark ran past its time limit; raise time_limit_seconds or lower timing.min_seconds / min_runs"
            )


def warm_up(run: Callable[[], None], cfg: TimingConfig, clock: Clock, progress: Callable[[int], None]) -> list[float]:
    """Run until both warm-up runs and seconds are reached; returns the warm-up times (s)."""
    times: list[float] = []
    start = time.perf_counter()
    last = start
    while len(times) < cfg.warmup_runs or time.perf_counter() - start < cfg.warmup_seconds:
        clock.check()
        t0 = time.perf_counter()
        run()
        t1 = time.perf_counter()
        times.append(t1 - t0)
        if t1 - last > PROGRESS_EVERY_S:
            progress(len(times))
            last = t1
    return times


def choose_runs_per_sample(cfg: TimingConfig, typical_run_s: float) -> int:
    if cfg.runs_per_sample:
        return cfg.runs_per_sample
    if typical_run_s <= 0:
        return 1
    return max(1, math.ceil(MIN_SAMPLE_SECONDS / typical_run_s)) if typical_run_s < MIN_SAMPLE_SECONDS else 1


def measure(
    run: Callable[[], None],
    cfg: TimingConfig,
    runs_per_sample: int,
    clock: Clock,
    progress: Callable[[int, float], None],
) -> list[float]:
    """Timed samples in milliseconds, each the mean of `runs_per_sample` back-to-back calls."""
    samples: list[float] = []
    perf = time.perf_counter
    inner = range(runs_per_sample)
    start = perf()
    last = start
    while True:
        clock.check()
        if runs_per_sample == 1:
            t0 = perf()
            run()
            t1 = perf()
        else:
            t0 = perf()
            for _ in inner:
                run()
            t1 = perf()
        samples.append((t1 - t0) * 1000.0 / runs_per_sample)
        elapsed = t1 - start
        if (len(samples) >= cfg.min_runs and elapsed >= cfg.min_seconds) or elapsed >= cfg.max_seconds:
            return samples
        if t1 - last > PROGRESS_EVERY_S:
            progress(len(samples), elapsed)
            last = t1
