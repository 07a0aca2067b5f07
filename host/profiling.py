"""Fill latency tables through an agent: export, upload what it lacks, benchmark, store.

Jobs are ordered so that cuts interleave (both ends of a network alternate, and networks
take turns), so a slow drift of the board does not bias one end of the table. Each
measurement is committed on its own: an interrupted run resumes where it stopped.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from netcut import models
from netcut.cuts import NetworkAnalysis, analyse
from netcut.export import export
from netcut.trn import GlobalPoolLinear, build_trn, head_input_features
from netcut_protos.agent.v1 import agent_pb2 as pb

from .client import AgentCallError
from .cmd_agent import result_dict
from .tables import LatencyDB, Row, RowKey
from .targets import ConnectedTarget

log = logging.getLogger(__name__)

MODES = ("e2e", "layers", "both")
SEED = 0


@dataclass(frozen=True)
class Job:
    model: str
    cut: str | None      # None: the full network
    mode: str            # e2e, layers (full network, per-layer profile), head (the head alone, for layers mode)

    def label(self) -> str:
        what = "full network" if self.cut is None else f"cut {self.cut}"
        return f"{self.model} {what} ({self.mode})"


@dataclass
class ProfileReport:
    measured: list[int] = field(default_factory=list)     # row ids
    skipped: int = 0
    failed: list[tuple[Job, str]] = field(default_factory=list)
    seconds: float = 0.0
    inference_seconds: float = 0.0                         # time spent inside timed inference calls


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
    out = {}
    for name in names:
        torch.manual_seed(SEED)
        out[name] = analyse(models.build(name), name, key.input_size, key.granularity, key.batch)
    return out


def plan(analyses: dict[str, NetworkAnalysis], cuts: str, mode: str) -> list[Job]:
    """Every job the options ask for, interleaved across cuts and networks."""
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; use one of: {', '.join(MODES)}")
    per_model = []
    for name, a in analyses.items():
        if cuts == "all":
            chosen: list[str | None] = [None] + [c.name for c in a.cuts]
        else:
            chosen = [None if c.strip() == "full" else a.cut(c.strip()).name for c in cuts.split(",")]
        jobs = []
        if mode in ("e2e", "both"):
            jobs += [Job(name, c, "e2e") for c in interleave(chosen)]
        if mode in ("layers", "both"):
            jobs += [Job(name, None, "layers")] + [Job(name, c, "head") for c in interleave(chosen) if c is not None]
        per_model.append(jobs)
    return round_robin(per_model)


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
        name = f"{job.model.replace(':', '_')}-{k.input_size}-b{k.batch}-{k.granularity}-{job.cut or 'full'}-" \
               f"{job.mode}-k{k.classes}.{k.format}"
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
        metadata = {"netcut.model": job.model, "netcut.cut": job.cut or "", "netcut.mode": job.mode}
        tmp = path.with_suffix(".part" + path.suffix)
        export(module, tmp, shape, self.key.format, metadata if self.key.format == "onnx" else None)
        tmp.replace(path)
        return path


def head_timing(timing: pb.TimingConfig) -> pb.TimingConfig:
    """Heads run in microseconds: half a second of samples is plenty."""
    short = pb.TimingConfig()
    short.CopyFrom(timing)
    short.warmup_seconds = min(timing.warmup_seconds if timing.HasField("warmup_seconds") else 1.0, 0.2)
    short.min_seconds = min(timing.min_seconds if timing.HasField("min_seconds") else 2.0, 0.5)
    return short


def blocks_of(result: pb.BenchmarkResult) -> dict[str, float]:
    blocks: dict[str, float] = {}
    for layer in result.layers:
        if layer.block:
            blocks[layer.block] = blocks.get(layer.block, 0.0) + layer.time_ms
    return blocks


def store_result(db: LatencyDB, target: ConnectedTarget, key: RowKey, job: Job, result: pb.BenchmarkResult,
                 blocks: dict[str, float] | None = None, replace: bool = False) -> int:
    """One benchmark result as one committed row of the target's table; returns the row id."""
    row = Row(target.name, target.target.identity, job.model, models.architecture_key(job.model), key, job.cut,
              job.mode, result.runtime_version, result_dict(result, job.model), blocks or {})
    return db.add(row, replace=replace)


def run(jobs: list[Job], target: ConnectedTarget, db: LatencyDB, key: RowKey, files: ModelFiles,
        timing: pb.TimingConfig, force: bool = False,
        progress: Callable[[int, int, Job], None] | None = None) -> ProfileReport:
    report = ProfileReport()
    db.add_target(target.target)
    identity = target.target.identity
    todo = [j for j in jobs if force or not db.has(identity, models.architecture_key(j.model), key, j.cut, j.mode)]
    report.skipped = len(jobs) - len(todo)
    started = time.monotonic()
    for i, job in enumerate(todo):
        if progress:
            progress(i, len(todo), job)
        path = files.get(job)
        try:
            model_id = target.client.upload(path, label=job.label())
            request = pb.BenchmarkRequest(model_id=model_id, runtime=key.runtime, threads=key.threads,
                                          timing=head_timing(timing) if job.mode == "head" else timing,
                                          profile_layers=job.mode == "layers")
            result = target.client.benchmark(request)
        except AgentCallError as exc:  # this model cannot run there: note it, carry on with the rest
            report.failed.append((job, f"{exc} ({exc.code.name})"))
            continue
        blocks = blocks_of(result) if job.mode == "layers" else {}
        if job.mode == "layers" and not blocks:
            report.failed.append((job, result.layer_profile_note or "the agent returned no per-layer profile"))
            continue
        report.measured.append(store_result(db, target, key, job, result, blocks, replace=force))
        report.inference_seconds += sum(result.samples_ms) * result.timing.runs_per_sample / 1000.0
    if progress:
        progress(len(todo), len(todo), None)
    report.seconds = time.monotonic() - started
    return report
