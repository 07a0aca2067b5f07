"""Fill latency tables through an agent: export, upload what it lacks, benchmark, store.

Jobs are ordered so that cuts interleave (both ends of a network alternate, and networks
take turns), so a slow drift of the board does not bias one end of the table. Each
measurement is committed on its own: an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import math
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from queue import Queue
from typing import Callable

import grpc
import torch

from netcut import models
from netcut.cuts import NetworkAnalysis, analyse, candidate_cuts
from netcut.errors import NetcutError
from netcut.estimate import ANCHOR
from netcut.export import export
from netcut.quantize import realistic_statistics
from netcut.trn import GlobalPoolLinear, build_trn, head_input_features
from netcut.vocabulary import FP32, cut_label, parse_cut_label

from . import providers, wire
from .choices import MODES
from .client import AgentCallError, AgentClient, AgentUnavailable
from .errors import ConfigError, TargetError
from .fleet import AGREEMENT_TOLERANCE, disagreeing
from .records import DOUBT, AgentResult, Provider, Timing
from .ssh import BoardError
from .tables import LatencyDB, Row, RowExists, RowKey
from .targets import ConnectedTarget, state_changed

log = logging.getLogger(__name__)

SEED = 0


@dataclass(frozen=True)
class Job:
    model: str
    cut: str | None  # None: the full network
    mode: str  # e2e; layers (full network, per-layer profile), head (the head alone) and anchor
    # (a TRN end to end) for layers mode
    round: int = 0  # measurements taken in rounds: which window (0 = the first)

    def label(self) -> str:
        what = "full network" if self.cut is None else f"cut {self.cut}"
        return f"{self.model} {what} ({self.mode}{f', round {self.round + 1}' if self.round else ''})"


class ProfileFailed(TargetError):
    """A measurement failed in a way that is neither the board's nor the model's (rows so far are kept)."""


@dataclass
class ProfileReport:
    measured: list[int] = field(default_factory=list)  # row ids
    skipped: int = 0
    measured_elsewhere: int = 0  # measured here too, but another run stored them first
    failed: list[tuple[Job, str]] = field(default_factory=list)
    seconds: float = 0.0
    inference_seconds: float = 0.0  # time spent inside timed inference calls
    by_mode: dict[str, dict[str, float]] = field(default_factory=dict)  # job mode -> wall_s, inference_s
    boards: dict[str, int] = field(default_factory=dict)  # rows measured per board
    board_errors: dict[str, str] = field(default_factory=dict)
    reference_ms: dict[str, float] = field(default_factory=dict)  # fleets: each board's reference median
    # Measurements the agent put in doubt (busy, noisy, throttled) and measured again: the other run's warnings.
    remeasured: list[tuple[Job, tuple[str, ...]]] = field(default_factory=list)
    # Rows stored with the agent's doubts still on them (after any re-measurement): job, cv, p99, warnings.
    doubtful: list[tuple[Job, float, float, tuple[str, ...]]] = field(default_factory=list)
    other_warnings: set[str] = field(default_factory=set)  # the agent's other warnings (threads > cores...)

    def doubts(self, limit: int = 3) -> list[str]:
        """The agent's warnings for people: how many rows, and the worst (by coefficient of variation)."""
        lines = []
        if self.remeasured:
            lines.append(
                f"{len(self.remeasured)} measurement{'s were' if len(self.remeasured) > 1 else ' was'} "
                "measured again: the agent flagged the first run busy, noisy or throttled"
            )
        lines += sorted(self.other_warnings)
        if self.doubtful:
            worst = sorted(self.doubtful, key=lambda d: -d[1])[:limit]
            lines.append(
                f"{len(self.doubtful)} stored row{'s' if len(self.doubtful) > 1 else ''} still carry the agent's "
                "warnings; the worst: "
                + "; ".join(f"{job.label()} (cv {cv:.2f}, p99 {p99:.3f} ms): {ws[-1]}" for job, cv, p99, ws in worst)
            )
        return lines


def interleave(items: list) -> list:
    """0, n-1, 1, n-2, ...: neighbours in the list are measured far apart in time."""
    out, lo, hi = [], 0, len(items) - 1
    while lo <= hi:
        out.append(items[lo])
        if lo != hi:
            out.append(items[hi])
        lo, hi = lo + 1, hi - 1
    return out


def analyses_for(names: list[str], key: RowKey) -> dict[str, NetworkAnalysis]:
    """The networks as tables measure them: random weights (latency does not depend on them) with the
    varied BatchNorm statistics training leaves (an int8 model quantizes to what a trained one would)."""
    out = {}
    for name in names:
        torch.manual_seed(SEED)
        model = realistic_statistics(models.build(name), SEED)
        out[name] = analyse(model, name, key.input_size, key.granularity, key.batch)
    return out


def plan(analyses: dict[str, NetworkAnalysis], cuts: str, mode: str) -> list[Job]:
    """Every job the options ask for, interleaved across cuts and networks."""
    if mode not in MODES:
        raise ConfigError(f"unknown mode {mode!r}; use one of: {', '.join(MODES)}")
    per_model = []
    for name, a in analyses.items():
        if cuts == "all":
            chosen = candidate_cuts(a)
        else:
            chosen = [parse_cut_label(c.strip()) for c in cuts.split(",")]
            chosen = [None if c is None else a.cut(c).name for c in chosen]
        jobs = []
        if mode in ("e2e", "both"):
            jobs += [Job(name, c, "e2e") for c in interleave(chosen)]
        if mode in ("layers", "both"):
            jobs += [Job(name, None, "layers")] + [Job(name, c, "head") for c in interleave(chosen) if c is not None]
        if mode == "layers":  # a few TRNs end to end calibrate the profile's prefix sums
            jobs += [Job(name, c, ANCHOR) for c in anchor_cuts([c for c in chosen if c is not None])]
        per_model.append(jobs)
    return round_robin(per_model)


def mode_for(mode: str, target: ConnectedTarget, say: Callable[[str], None]) -> str:
    """The mode a target can give: per-layer profiles need onnxruntime's per-node times to be device times
    (the CPU's); a GPU target's layers (or both) becomes e2e, said once."""
    if mode == "e2e" or providers.gives_layer_profile(target.providers):
        return mode
    say(
        f"{target.name} runs on {providers.words(target.providers)}: onnxruntime has no per-layer device times "
        f"there, so every candidate is measured end to end (--mode e2e instead of {mode})"
    )
    return "e2e"


def anchor_cuts(cuts: list[str]) -> list[str]:
    """The TRNs a layers profile also measures end to end, to correct its prefix sums: the first three cuts,
    then doubling the spacing (cuts 4, 8, 16...) up to three quarters of the way; the full network closes
    the curve. Dense at the start, where the correction moves fastest: a head on an early, large map costs
    other than it does alone once the map is in cache. Measured on six networks at 224 px (an Intel Xeon, 1
    thread, every TRN timed too): the cuts between anchors were estimated within 1.9% at p95 (worst 3.5%)
    this way, 16.4% (worst 28.5%) with four anchors spread evenly, at 5 anchors a network instead of 4."""
    last = 3 * (len(cuts) - 1) / 4
    picked = [i for i in (0, 1, 2) if i < len(cuts)]
    i = 4
    while i <= last:
        picked.append(i)
        i *= 2
    return [cuts[i] for i in picked]


def round_robin(lists: list[list]) -> list:
    """The first item of each list, then the second of each, ...: networks take turns."""
    return [items[i] for i in range(max(map(len, lists), default=0)) for items in lists if i < len(items)]


class ModelFiles:
    """Exports models for jobs into a cache folder (same job, same file, so uploads are skipped)."""

    def __init__(self, cache: Path, key: RowKey, analyses: dict[str, NetworkAnalysis]):
        self.cache, self.key, self.analyses = Path(cache), key, analyses
        self.cache.mkdir(parents=True, exist_ok=True)

    def path(self, job: Job) -> Path:
        k = self.key
        name = (
            f"{job.model.replace(':', '_')}-{k.input_size}-b{k.batch}-{k.granularity}-{cut_label(job.cut)}-"
            f"{job.mode}-k{k.classes}{'' if k.precision == FP32 else '-' + k.precision}.{k.format}"
        )
        return self.cache / name

    def get(self, job: Job) -> Path:
        path = self.path(job)
        if path.is_file():
            return path
        a = self.analyses[job.model]
        torch.manual_seed(SEED)
        if job.mode == "head":
            shape = a.cut(job.cut).output_shape
            module = GlobalPoolLinear(head_input_features(shape), self.key.classes).eval()
        else:
            module = build_trn(a, job.cut, self.key.classes)
            shape = a.input_shape
        metadata = {"netcut.model": job.model, "netcut.cut": cut_label(job.cut), "netcut.mode": job.mode}
        return export_whole(
            module, path, shape, self.key.format, metadata if self.key.format == "onnx" else None, self.key.precision
        )


def export_whole(
    module: torch.nn.Module,
    path: Path,
    shape: tuple[int, ...],
    fmt: str,
    metadata: dict | None = None,
    precision: str = FP32,
) -> Path:
    """Export through a temporary name of this process and thread, so the cache never holds half a file
    and two exports of the same file (two profiles at once) never write into each other. int8: quantized
    on seeded synthetic images and checked to be really quantized (its accuracy is not what is measured)."""
    tmp = path.with_name(f"{path.stem}.{os.getpid()}-{threading.get_ident()}.part{path.suffix}")
    try:
        export(module, tmp, shape, fmt, metadata, precision=precision, verify_outputs=False)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def round_timing(timing: Timing, rounds: int = 1, head: bool = False) -> Timing:
    """One round's share of a measurement: the windows of its rounds add up to `timing` (the agent's
    defaults where unset). Heads run in microseconds: half a second of samples is plenty."""
    warmup_seconds, min_seconds = timing.value("warmup_seconds"), timing.value("min_seconds")
    if head:
        warmup_seconds, min_seconds = min(warmup_seconds, 0.2), min(min_seconds, 0.5)
    out = timing
    if head or rounds > 1:
        out = dataclasses.replace(out, warmup_seconds=warmup_seconds / rounds, min_seconds=min_seconds / rounds)
    if rounds > 1:
        # Each round runs after other models: a few warm-up runs refill the caches.
        out = dataclasses.replace(
            out,
            warmup_runs=max(3, math.ceil(timing.value("warmup_runs") / rounds)),
            min_runs=max(1, math.ceil(timing.value("min_runs") / rounds)),
        )
    return out


def store_result(
    db: LatencyDB,
    target: ConnectedTarget,
    key: RowKey,
    job: Job,
    result: AgentResult,
    replace: bool = False,
    board: str | None = None,
    rounds: int | None = None,
    superseded: AgentResult | None = None,
) -> int:
    """One benchmark result (one round of a measurement) as one committed row of the target's table;
    returns the row id. replace: drop the old row of this round (and rounds beyond `rounds`). superseded:
    the run this one was measured again after; its figures and warnings are kept in the row."""
    blocks = result.blocks() if job.mode == "layers" else {}
    row = Row(
        target.name,
        target.identity.key,
        job.model,
        key,
        job.cut,
        job.mode,
        result,
        blocks,
        round=job.round,
        board=board,
        superseded=None if superseded is None else superseded_summary(superseded),
    )
    return db.add(row, replace=replace, rounds=rounds)


def superseded_summary(result: AgentResult) -> dict:
    return {
        "median_ms": result.stats.median_ms,
        "p99_ms": result.stats.p99_ms,
        "cv": result.stats.cv,
        "n": result.stats.n,
        "warnings": list(result.warnings),
    }


@dataclass
class Worker:
    """One board measuring jobs: its name and its agent client."""

    name: str
    client: AgentClient
    providers: tuple[Provider, ...] = ()


# Statuses that say the board (not the model) is the problem: its job goes to another board.
BOARD_FAILURES = (
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.CANCELLED,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.UNAUTHENTICATED,
    grpc.StatusCode.PERMISSION_DENIED,
)


class _JobQueue:
    """Jobs handed to boards one at a time; a job a board could not finish goes back for another board."""

    def __init__(self, jobs: list[Job]):
        self.pending = collections.deque(jobs)
        self.in_flight = 0
        self.cond = threading.Condition()

    def take(self) -> Job | None:
        with self.cond:
            while not self.pending and self.in_flight:
                self.cond.wait()  # a job in flight elsewhere may come back
            if not self.pending:
                return None
            self.in_flight += 1
            return self.pending.popleft()

    def drop_pending(self) -> None:
        """No more jobs for anyone: boards finish the one in flight and stop."""
        with self.cond:
            self.pending.clear()
            self.cond.notify_all()

    def finish(self, job: Job, failed_board: bool = False) -> None:
        with self.cond:
            self.in_flight -= 1
            if failed_board:
                self.pending.appendleft(job)
            self.cond.notify_all()


def _measure(worker: Worker, job: Job, path: Path, key: RowKey, timing: Timing, rounds: int = 1) -> AgentResult:
    model_id = worker.client.upload(path, label=job.label())
    return wire.benchmark(
        worker.client,
        model_id,
        key.runtime,
        key.threads,
        round_timing(timing, rounds, head=job.mode == "head"),
        profile_layers=job.mode == "layers",
        providers=worker.providers,
    )


def workers_of(target: ConnectedTarget) -> list[Worker]:
    if target.links:
        return [Worker(link.board.name, link.client, target.providers) for link in target.links]
    return [Worker(target.name, target.client, target.providers)]


REFERENCE = Job("mobilenet_v3_small", None, "reference")
REFERENCE_TIMING = Timing(warmup_seconds=0.3, min_seconds=1.0)


def reference_file(files: ModelFiles) -> Path:
    """A fixed small network (seeded mobilenet_v3_small, 64 px) that every board of a target measures."""
    path = files.cache / f"reference-64.{files.key.format}"
    if not path.is_file():
        torch.manual_seed(SEED)
        export_whole(models.build(REFERENCE.model).eval(), path, (1, 3, 64, 64), files.key.format)
    return path


def agreeing(target: ConnectedTarget, files: ModelFiles, tolerance: float) -> tuple[list[Worker], dict[str, float]]:
    """Measure the reference network on each board in turn; boards off the median by more than tolerance
    are left out of this run (their rows would not be comparable) until they agree again."""
    path = reference_file(files)
    medians, workers = {}, workers_of(target)
    for worker in workers:
        try:
            medians[worker.name] = _measure(worker, REFERENCE, path, files.key, REFERENCE_TIMING).stats.median_ms
        except (AgentUnavailable, BoardError, AgentCallError) as exc:
            log.warning("board %s: reference measurement failed: %s", worker.name, exc)
    flagged = disagreeing(medians, tolerance)
    for name, ratio in flagged.items():
        log.warning(
            "board %s disagrees with the other boards of %s: reference network %.3f ms, %.2fx their "
            "median (tolerance %.0f%%; overheating? wrong clock?); it measures nothing this run",
            name,
            target.name,
            medians[name],
            ratio,
            tolerance * 100,
        )
    return [w for w in workers if w.name in medians and w.name not in flagged], medians


def run(
    jobs: list[Job],
    target: ConnectedTarget,
    db: LatencyDB,
    key: RowKey,
    files: ModelFiles,
    timing: Timing,
    force: bool = False,
    progress: Callable[[int, int, Job | None], None] | None = None,
    agreement: float | None = None,
    rounds: int = 1,
    remeasure: int = 1,
) -> ProfileReport:
    """Measure jobs on the target's boards in parallel (one job per board at a time) and store each result.

    rounds > 1 splits each measurement's timing into that many windows, taken in as many passes over
    all jobs (every other pass in reverse order), so a drift of the board averages out instead of
    biasing whichever jobs it caught; each round is its own row and the estimators pool them.

    remeasure: a measurement the agent flags busy, noisy or throttled is measured once more (0: never),
    and the steadier of the two is stored; the report says which were, and which rows still carry doubts.

    A board that fails (unreachable, tunnel or agent gone) stops taking jobs and its job goes to
    another board; only this thread writes the database, so nothing is stored twice.
    """
    report = ProfileReport()
    db.add_target(target.identity)
    identity = target.identity.key
    if rounds < 1:
        raise ConfigError(f"rounds must be at least 1, got {rounds}")
    have = {j: set() if force else db.rounds(identity, j.model, key, j.cut, j.mode) for j in jobs}
    todo = []
    for r in range(rounds):
        todo_r = [dataclasses.replace(j, round=r) for j in jobs if r not in have[j]]
        todo += todo_r if r % 2 == 0 else todo_r[::-1]
    report.skipped = sum(1 for j in jobs if have[j] >= set(range(rounds)))
    started = time.monotonic()
    if len(target.links) > 1 and todo:
        workers, report.reference_ms = agreeing(target, files, agreement or AGREEMENT_TOLERANCE)
    else:
        workers = workers_of(target)
    queue, results = _JobQueue(todo), Queue()
    export_lock = threading.Lock()

    def work(worker: Worker) -> None:
        while (job := queue.take()) is not None:
            job_started = time.monotonic()
            try:
                with export_lock:
                    path = files.get(job)
            except NetcutError as exc:  # this model cannot be made (an int8 form that stays float): note it
                queue.finish(job)
                results.put(("failed", worker, job, str(exc)))
                continue
            except BaseException as exc:  # noqa: BLE001 - a bug or a missing library: end the run, never hang it
                queue.finish(job)
                results.put(("crashed", worker, job, exc))
                return
            try:
                result = _measure(worker, job, path, key, timing, rounds)
                first = None  # of two runs, the one not kept
                if result.doubtful and remeasure > 0:  # measured once more; the steadier run is kept
                    again = _measure(worker, job, path, key, timing, rounds)
                    keep_again = not again.doubtful or again.stats.cv <= result.stats.cv
                    result, first = (again, result) if keep_again else (result, again)
            except (AgentUnavailable, BoardError) as exc:
                queue.finish(job, failed_board=True)
                results.put(("board", worker, None, str(exc)))
                return
            except AgentCallError as exc:
                if exc.code in BOARD_FAILURES:
                    queue.finish(job, failed_board=True)
                    results.put(("board", worker, None, str(exc)))
                    return
                queue.finish(job)  # this model cannot run there: note it, carry on with the rest
                results.put(("failed", worker, job, str(exc)))
                continue
            except BaseException as exc:  # noqa: BLE001 - any other error ends the run, never hangs it
                queue.finish(job)
                results.put(("crashed", worker, job, exc))
                return
            changed = state_changed(target.identity.description, result)
            if changed:  # a Jetson's power mode or jetson_clocks moved: nothing more from this board this run
                queue.finish(job, failed_board=True)
                results.put(("board", worker, None, changed))
                return
            queue.finish(job)
            results.put(("done", worker, job, (result, time.monotonic() - job_started, first)))
        results.put(("exit", worker, None, None))

    threads = [threading.Thread(target=work, args=(w,), name=f"profile-{w.name}", daemon=True) for w in workers]
    for t in threads:
        t.start()
    running, done, board_errors, crash = len(threads), 0, {}, None
    if progress:
        progress(0, len(todo), todo[0] if todo else None)
    while running:
        kind, worker, job, payload = results.get()
        if kind in ("exit", "board", "crashed"):
            running -= 1
            if kind == "board":
                board_errors[worker.name] = payload
                log.warning("board %s failed and is left out: %s", worker.name, payload)
            if kind == "crashed":
                crash = crash or (job, payload)
                queue.drop_pending()
            continue
        done += 1
        if kind == "failed":
            report.failed.append((job, payload))
        else:
            payload, wall, first = payload
            if first is not None:
                report.remeasured.append((job, first.warnings))
            if payload.doubtful:
                report.doubtful.append((job, payload.stats.cv, payload.stats.p99_ms, payload.warnings))
            report.other_warnings |= {w for w in payload.warnings if not w.startswith(DOUBT)}
            if job.mode == "layers" and not payload.blocks():
                report.failed.append((job, payload.layer_profile_note or "the agent returned no per-layer profile"))
            else:
                try:
                    row = store_result(
                        db,
                        target,
                        key,
                        job,
                        payload,
                        replace=force,
                        board=worker.name if target.links else None,
                        rounds=rounds,
                        superseded=first,
                    )
                except RowExists:  # another run (a second profile of this table) stored it meanwhile: keep theirs
                    report.measured_elsewhere += 1
                    if progress:
                        progress(done, len(todo), job)
                    continue
                report.measured.append(row)
                report.boards[worker.name] = report.boards.get(worker.name, 0) + 1
                inference = payload.inference_seconds
                report.inference_seconds += inference
                spent = report.by_mode.setdefault(job.mode, {"wall_s": 0.0, "inference_s": 0.0})
                spent["wall_s"] += wall
                spent["inference_s"] += inference
        if progress:
            progress(done, len(todo), job)
    report.seconds = time.monotonic() - started
    if crash:
        job, exc = crash
        raise ProfileFailed(
            f"measuring {job.label()} failed: {type(exc).__name__}: {exc}; the "
            f"{len(report.measured)} rows measured are stored: rerun to continue"
        ) from exc
    left = len(queue.pending)
    if left:
        why = "; ".join(f"{name}: {error}" for name, error in board_errors.items())
        raise TargetError(
            f"every board of {target.name} failed with {left} measurements left ({why}); "
            f"the {len(report.measured)} measured are stored: rerun to continue"
        )
    report.board_errors = board_errors
    return report
