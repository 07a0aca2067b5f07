"""`calibrate`: the kernel suite on a target, and a new target from a reference's kernel model.

- run_suite: measures up to `budget` single-kernel models (netcut.kernel_suite) drawn from the kernels
  of the requested networks: half to cover their kinds and shapes, the rest where the fitted model errs
  most. Rows are ordinary layers-mode rows, so an interrupted run resumes and a second one measures only
  what is new. Then fits and stores the target's kernel model.
- from_reference: rescales a reference target's stored kernel model from at most `budget` TRNs measured
  end to end on the new target, chosen so that together they exercise many kernel kinds in different
  mixes; those rows stay in the table for the empirical estimator too.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from netcut.cuts import NetworkAnalysis, candidate_cuts
from netcut.errors import NetcutError
from netcut.kernel_suite import family, select, spec_of, suite_name
from netcut.kernels import KernelModel, rescaled, warmth

from . import kernel_estimation as ke
from .profiling import Job, ModelFiles, ProfileReport, run
from .records import Timing
from .tables import LatencyDB, RowKey, fresh_measurements
from .targets import ConnectedTarget


@dataclass
class CalibrationReport:
    measured: int = 0  # new measurements on the target
    reused: int = 0  # already in the table
    failed: list[str] = field(default_factory=list)
    families: dict[str, int] = field(default_factory=dict)  # kernels measured per family (suite)
    seconds: float = 0.0
    model: KernelModel | None = None
    chosen: list[str] = field(default_factory=list)


@dataclass
class Board:
    """What a calibration measures on, and how."""

    db: LatencyDB
    target: ConnectedTarget
    key: RowKey
    analyses: dict[str, NetworkAnalysis]
    cache: Path
    timing: Timing
    progress: Callable | None = None

    def measure(self, jobs: list[Job], files: ModelFiles, remeasure: int, report: CalibrationReport) -> ProfileReport:
        result = run(
            jobs, self.target, self.db, self.key, files, self.timing, progress=self.progress, remeasure=remeasure
        )
        report.measured += len(result.measured) + result.measured_elsewhere
        report.reused += result.skipped
        report.failed += [f"{j.label()}: {e}" for j, e in result.failed]
        return result


def run_suite(board: Board, budget: int, remeasure: int = 1) -> CalibrationReport:
    db, target, key, analyses, cache = board.db, board.target, board.key, board.analyses, board.cache
    if key.format != "onnx":
        raise NetcutError(
            "the kernel suite runs ONNX models on onnxruntime; calibrate a LiteRT target from an onnxruntime "
            "one instead: netcut-host calibrate --target T --runtime litert --from REFERENCE --budget 10"
        )
    if key.precision != "fp32":  # its models are float32 graphs: their rows would be stored as the wrong kernels
        raise NetcutError(
            f"the kernel suite builds float32 kernels, not {key.precision} ones; the {key.precision} per-kernel "
            f"model is fitted on {key.precision} layers-mode profiles: netcut-host profile --precision "
            f"{key.precision} --mode layers (or start this board from another: calibrate --from REFERENCE)"
        )
    started, report = time.monotonic(), CalibrationReport()
    identity = target.identity.key
    db.add_target(target.identity)
    source = ke.KernelSource(cache, key, analyses)
    files = ke.SuiteFiles(cache, key, analyses)
    candidates = [k for name in analyses for k in source.of(name)]
    measured = {spec_of(n) for n in db.archs(identity, key, suite=True)}
    first = select(candidates, measured, math.ceil(budget / 2))
    jobs = [Job(suite_name(k.spec), None, "layers") for k in first]
    board.measure(jobs, files, remeasure, report)
    measured |= {k.spec for k in first}
    errors = {}
    try:  # where the model errs most: the median error of each family's kernels
        data = ke.training_data(db, identity, key, source)
        model, samples = ke.fit_from(data, identity), data[0]
        per: dict[str, list[float]] = {}
        for k, ms, run in (s for s in samples if s[1] > 0):  # a fused activation's zero is no error to chase
            predicted = model.predict(k) * model.network_scale * warmth(run, model.cache_bytes, model.warm_share)
            per.setdefault(family(k), []).append(abs(predicted / ms - 1))
        errors = {f: float(np.median(v)) for f, v in per.items()}
    except NetcutError:
        pass
    second = select(candidates, measured, budget - len(first), errors)
    jobs = [Job(suite_name(k.spec), None, "layers") for k in second]
    board.measure(jobs, files, remeasure, report)
    for k in first + second:
        report.families[family(k)] = report.families.get(family(k), 0) + 1
    report.chosen = [k.spec for k in first + second]
    report.model = ke.fit(db, identity, key, source)
    report.seconds = time.monotonic() - started
    return report


def reference_model(db: LatencyDB, name: str, key: RowKey, not_identity: str) -> KernelModel:
    """The newest kernel model stored for the target `name` at the same input size, batch, classes and
    precision (its runtime and threads may differ: that is the point)."""
    same = ("input_size", "batch", "classes", "precision", "granularity")
    for row in reversed(db.identities_of(name)):
        if row["identity"] == not_identity:
            continue
        for row_key, text in db.stored_models(row["identity"], ke.ESTIMATOR):
            if all(row_key.get(f) == getattr(key, f) for f in same):
                return KernelModel.from_json(text)
    if [r["identity"] for r in db.identities_of(name)] == [not_identity]:
        raise NetcutError(f"--from {name} is this target itself (same identity); name another board or thread count")
    raise NetcutError(
        f"no kernel model of {name} at {key.input_size} px, {key.precision}, {key.classes} classes in this table; "
        f"make one first: netcut-host calibrate --target {name} --input-size {key.input_size}"
    )


def informative_cuts(
    reference: KernelModel, source: ke.KernelSource, analyses: dict[str, NetworkAnalysis], budget: int, classes: int
) -> list[tuple[str, str | None]]:
    """Up to `budget` TRNs whose kernel mixes differ most: each is a vector of its predicted time per kind
    (as shares, with its log total), chosen greedily farthest from those already chosen."""
    options, shares, sizes = [], [], []
    for name, a in analyses.items():
        for cut in candidate_cuts(a):
            estimate = reference.estimate(source.trn(a, cut, classes))
            options.append((name, cut))
            shares.append({k: v[0] / max(estimate.ms, 1e-12) for k, v in estimate.by_kind.items()})
            sizes.append(math.log(max(estimate.ms, 1e-9)))
    if not options:
        return []
    kinds = sorted({k for s in shares for k in s})
    mixes = np.array([[s.get(k, 0.0) for k in kinds] for s in shares])
    points = np.column_stack([mixes, sizes])
    chosen = [int(np.argmax((mixes > 0).sum(axis=1)))]  # the one exercising most kinds
    while len(chosen) < min(budget, len(options)):
        distance = np.min(np.abs(points[:, None, :] - points[None, chosen, :]).sum(axis=2), axis=1)
        distance[chosen] = -1
        chosen.append(int(np.argmax(distance)))
    return [options[i] for i in chosen]


def from_reference(board: Board, reference_name: str, budget: int) -> CalibrationReport:
    db, target, key, analyses, cache = board.db, board.target, board.key, board.analyses, board.cache
    started, report = time.monotonic(), CalibrationReport()
    identity = target.identity.key
    db.add_target(target.identity)
    reference = reference_model(db, reference_name, key, identity)
    source = ke.KernelSource(cache, key, analyses)
    picks = informative_cuts(reference, source, analyses, budget, key.classes)
    jobs = [Job(name, cut, "e2e") for name, cut in picks]
    # Exactly the budget: a doubtful run is not measured again here (its row says so).
    board.measure(jobs, ModelFiles(cache, key, analyses), 0, report)
    measured = fresh_measurements(db, identity, key)  # these picks' rows, new or already in the table
    samples = [
        (source.trn(analyses[name], cut, key.classes), measured[(name, cut)].median_ms)
        for name, cut in picks
        if (name, cut) in measured
    ]
    model = rescaled(reference, samples, identity)
    db.save_cost_model(identity, key, model.to_json(), db.fitted_rows(identity, key), ke.ESTIMATOR)
    report.model, report.chosen = model, [f"{n}@{c or 'full'}" for n, c in picks]
    report.seconds = time.monotonic() - started
    return report


def summary(report: CalibrationReport) -> dict:
    m = report.model
    return {
        "measured": report.measured,
        "reused": report.reused,
        "failed": report.failed,
        "seconds": round(report.seconds, 2),
        "families": report.families,
        "chosen": report.chosen,
        "model": None
        if m is None
        else {
            "kinds": len(m.kinds),
            "kernels": m.kernels,
            "suite_kernels": m.suite,
            "networks": m.networks,
            "reference": m.reference or None,
            "measurements_used": m.measurements_used,
            "network_scale": round(m.network_scale, 4),
            "overhead_ms": round(m.overhead_ms, 5),
            "per_kernel_ms": round(m.per_kernel_ms, 6),
            "l2_cache_bytes": int(m.cache_bytes),
            "warm_share": m.warm_share,
            "peak_gmac_per_s": round(1000 / m.peak_ms_per_gmac, 1) if m.peak_ms_per_gmac > 0 else None,
            "channel_block": m.channel_block,
        },
    }
