"""One benchmark, start to finish, as a plain function (the servicer and the local CLI share it)."""

from __future__ import annotations

import logging
import math
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable

import numpy as np

from . import __version__, board, gpu_state, providers, sessions
from .errors import AgentError, InvalidArgument, ResourceExhausted
from .layer_profile import LayerTime, layer_times, node_table, parse_ort_profile
from .layer_profile import placement as layer_placement
from .measure import Clock, TimingConfig, choose_runs_per_sample, measure, statistics, warm_up
from .requests import (
    MAX_INPUT_BYTES,
    BenchmarkRequest,
    BenchmarkResult,
    CoolingDown,
    InputRequest,
    Measuring,
    Profiling,
    ProviderPlacement,
    WarmingUp,
    check_request,
)
from .runtimes import ONNXRUNTIME
from netcut_protos.providers import CPU, short

log = logging.getLogger(__name__)

_previous_gpu: gpu_state.GpuState | None = None  # the last benchmark's GPU state (this worker process)
PROFILE_RUNS = (10, 200)  # the profiled pass: at least / at most this many runs
PROFILE_SECONDS = 1.0


def _feeds(session: sessions.Session, req: BenchmarkRequest) -> tuple[dict[str, np.ndarray], list[InputRequest]]:
    by_name = {i.name: i for i in req.inputs if i.name}
    unnamed = [i for i in req.inputs if not i.name]
    known = {s.name for s in session.inputs}
    for name in by_name:
        if name not in known:
            raise InvalidArgument(f"the model has no input {name!r}; its inputs are: {', '.join(sorted(known))}")
    if len(unnamed) > len(session.inputs):
        raise InvalidArgument(f"the request gives {len(unnamed)} inputs; the model has {len(session.inputs)}")
    rng = np.random.default_rng(req.seed)
    feeds, effective = {}, []
    for k, spec in enumerate(session.inputs):
        asked = by_name.get(spec.name) or (unnamed[k] if k < len(unnamed) else None)
        if asked and asked.dtype:
            spec = sessions.TensorSpec(spec.name, spec.shape, np.dtype(asked.dtype))
        if asked and asked.dtype and session.inputs[k].dtype != np.dtype(asked.dtype):
            raise InvalidArgument(
                f"input {spec.name!r} is {session.inputs[k].dtype} in the model; the request asked "
                f"for {asked.dtype}: leave the dtype out, or give the model's"
            )
        shape = sessions.resolve_shape(spec, asked.shape if asked else None)
        size = math.prod(shape) * spec.dtype.itemsize
        if size > MAX_INPUT_BYTES:
            raise InvalidArgument(
                f"input {spec.name!r} of shape {shape} would take {size / 2**20:.0f} MiB, over the "
                f"{MAX_INPUT_BYTES / 2**20:.0f} MiB an input may take; give a smaller shape"
            )
        feeds[spec.name] = sessions.random_input(spec, shape, rng)
        effective.append(InputRequest(spec.name, shape, str(spec.dtype)))
    return feeds, effective


def _profiled_pass(session: sessions.OrtSession, clock: Clock) -> None:
    """Profiled runs for per-node times: at least PROFILE_RUNS[0] and PROFILE_SECONDS, at most PROFILE_RUNS[1]."""
    start = time.perf_counter()
    for n in range(PROFILE_RUNS[1]):
        if n >= PROFILE_RUNS[0] and time.perf_counter() - start >= PROFILE_SECONDS:
            return
        clock.check()
        session.run()


def _layers(session: sessions.OrtSession, events: list[dict], clean_median_ms: float) -> tuple[list[LayerTime], str]:
    """Per-layer times from the profiled pass (its first run, the cold one, left out), scaled to the clean median."""
    kernels, _ = parse_ort_profile(events, skip_runs=1)
    nodes = node_table(session.metadata)
    note = (
        ""
        if nodes
        else (
            "the model carries no node table (netcut.nodes metadata), so layers are "
            "onnxruntime's kernels without block labels; export with netcut-host export to get them"
        )
    )
    return layer_times(kernels, nodes, clean_median_ms), note


def run_benchmark(
    req: BenchmarkRequest,
    path: Path,
    model_format: str,
    emit: Callable[[object], None],
    cancelled: threading.Event,
    default_time_limit: float = 900.0,
) -> BenchmarkResult:
    global _previous_gpu
    info, request_warnings = check_request(req, model_format)
    asked: list[providers.ProviderRequest] = []
    engines = None
    if req.runtime == ONNXRUNTIME:  # check_request resolved the list
        asked, engines = providers.with_tensorrt_caches(
            req.execution_providers, path.parent.parent / "tensorrt", req.model_id, gpu_state.gpu_name()
        )
    first_build = engines is not None and not providers.engine_cached(engines)
    if req.cooldown_celsius:
        board.wait_until_cool(req.cooldown_celsius, lambda c: emit(CoolingDown(c, req.cooldown_celsius)), cancelled)
    limit = req.time_limit_seconds or default_time_limit
    clock = Clock(cancelled, time.monotonic() + limit)
    cfg = req.timing
    started = time.time()
    warnings: list[str] = list(request_warnings)
    placement: dict[str, int] = {}
    events: list[dict] = []
    copy_in_ms = copy_out_ms = 0.0
    with board.StateSampler() as sampler, tempfile.TemporaryDirectory(prefix="netcut-profile-") as tmp:
        t0 = time.perf_counter()
        session = sessions.open_session(req.runtime, path, req.threads, asked, Path(tmp))
        session_create_ms = (time.perf_counter() - t0) * 1000.0
        feeds, effective = _feeds(session, req)
        try:
            session.prepare(feeds)
            t0 = time.perf_counter()
            session.run()
            first_run_ms = (time.perf_counter() - t0) * 1000.0
            if isinstance(session, sessions.OrtSession):
                session.keep_outputs()
                if req.profile_layers:
                    emit(Profiling())
                    _profiled_pass(session, clock)
                events = session.end_profiling()
                placement = layer_placement(events)
                providers.verify(asked, session.session_providers, placement)
        except AgentError:
            raise
        except Exception as exc:
            if "alloc" in str(exc).lower():
                raise ResourceExhausted(
                    f"the model ran out of memory on the board: {str(exc).splitlines()[0][:300]}"
                ) from None
            shapes = ", ".join(f"{i.name}{list(i.shape)}" for i in effective)
            raise InvalidArgument(
                f"the model failed on inputs {shapes}: {str(exc).splitlines()[0][:300]}; "
                "check the input shapes (InputSpec / --shape)"
            ) from None
        emit(WarmingUp(0))
        warm = warm_up(session.run, cfg, clock, lambda n: emit(WarmingUp(n)))
        typical = float(np.median(warm[len(warm) // 2 :])) if warm else first_run_ms / 1000.0
        per_sample = choose_runs_per_sample(cfg, typical)
        emit(Measuring(0, 0.0))
        with board.InterferenceMeter() as meter:
            samples = measure(session.run, cfg, per_sample, clock, lambda n, s: emit(Measuring(n, s)))
        if isinstance(session, sessions.OrtSession):
            copy_in_ms, copy_out_ms = session.copy_times()
    stats = statistics(samples)
    if len(samples) < cfg.min_runs:
        warnings.append(f"stopped at max_seconds={cfg.max_seconds} after {len(samples)} of {cfg.min_runs} runs")
    if stats.cv > 0.1:
        warnings.append(
            f"noisy: the coefficient of variation is {stats.cv:.2f}; is something else running on the board?"
        )
    if sampler.throttled or sampler.clock_dropped:
        gpu_throttle = sorted({*sampler.start_state.gpu.throttle_reasons, *sampler.end_state.gpu.throttle_reasons})
        why = sampler.gpu_changes + ([f"GPU throttle reasons: {', '.join(gpu_throttle)}"] if gpu_throttle else [])
        warnings.append(
            "the board throttled or its clock dropped during the run"
            + (f" ({'; '.join(why)})" if why else "")
            + "; cool it and measure again"
        )
    since = gpu_state.changes(_previous_gpu, sampler.start_state.gpu) if _previous_gpu is not None else []
    if since:
        warnings.append(
            f"power mode: since the previous benchmark on this board {'; '.join(since)}: this result is not "
            "comparable with the earlier ones"
        )
    _previous_gpu = sampler.end_state.gpu
    if meter.result.busy:
        warnings.append(meter.result.words())
    on_cpu = placement.get(CPU, 0)
    if asked and asked[0].name != CPU and on_cpu:
        warnings.append(
            f"{on_cpu} of {sum(placement.values())} kernels ran on the CPU behind {short(asked[0].name)}: the copies "
            "between the two devices are in the time"
        )
    if first_build:
        warnings.append(
            f"TensorRT built this model's engine (session creation {session_create_ms / 1000:.0f} s, outside the "
            f"timed runs; cached for the next request); the request ran under a {limit:.0f} s limit"
        )
    layers: list[LayerTime] = []
    note = ""
    available = False
    if req.profile_layers:
        unavailable = providers.layer_profile_note(placement)
        if unavailable:
            note = unavailable
        elif info.layer_profile:
            layers, note = _layers(session, events, stats.median_ms)
            available = True
        else:
            note = (
                f"per-layer profiling is unavailable for {req.runtime}: its Python API has no op profiler; "
                "profile the ONNX export with onnxruntime instead"
            )
    cfg_used = TimingConfig(**vars(cfg))
    cfg_used.runs_per_sample = per_sample
    return BenchmarkResult(
        model_id=req.model_id,
        runtime=req.runtime,
        runtime_version=info.version,
        execution_provider=session.provider,
        threads=req.threads,
        timing=cfg_used,
        inputs=effective,
        stats=stats,
        samples_ms=samples,
        session_create_ms=session_create_ms,
        first_run_ms=first_run_ms,
        layers=layers,
        layer_profile_available=available,
        layer_profile_note=note,
        board=board.describe(),
        state_start=sampler.start_state,
        state_end=sampler.end_state,
        throttled=sampler.throttled,
        clock_dropped=sampler.clock_dropped,
        warnings=warnings,
        started_unix=started,
        finished_unix=time.time(),
        agent_version=__version__,
        max_celsius=sampler.max_celsius,
        runs_per_sample=per_sample,
        interference=meter.result,
        session_providers=list(session.session_providers),
        placement=[ProviderPlacement(k, n) for k, n in sorted(placement.items())],
        copy_in_ms=copy_in_ms,
        copy_out_ms=copy_out_ms,
        timed_call=session.timed_call,
        time_limit_seconds=limit,
    )
