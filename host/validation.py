"""Scoring the estimators on a target: measure held-out cuts afresh, end to end and interleaved, and
compare each estimator's answer with them (the analytical one leave-one-network-out)."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Callable

from netcut.errors import NetcutError
from netcut.estimate import EmpiricalEstimator, quantile_level

from .choices import DEFAULT_ROUNDS
from .estimation import analytical, fit
from .kernel_estimation import KernelSource, tail_ratio
from .kernel_estimation import fit as fit_kernels
from .profiling import Job, ModelFiles, analyses_for, anchor_cuts, interleave, round_robin, run
from .records import Timing
from .tables import LatencyDB, RowKey, TableView, fresh_measurements
from .targets import ConnectedTarget


def ape(estimate: float | None, measured: float) -> float | None:
    return None if estimate is None else abs(estimate - measured) / measured * 100.0


def summary(errors: list[float]) -> dict:
    if not errors:
        return {"n": 0}
    ordered = sorted(errors)
    p95 = ordered[min(len(ordered) - 1, int(round(0.95 * (len(ordered) - 1))))]
    return {
        "n": len(errors),
        "median_ape_pct": round(statistics.median(errors), 2),
        "p95_ape_pct": round(p95, 2),
        "worst_ape_pct": round(max(errors), 2),
    }


def validate(
    db: LatencyDB,
    target: ConnectedTarget,
    key: RowKey,
    names: list[str],
    per_model: int,
    quantile: str,
    timing: Timing,
    files_cache: Path,
    progress: Callable[[int, int, Job | None], None] | None = None,
    rounds: int = DEFAULT_ROUNDS,
    stage: Callable[[str], None] | None = None,
) -> dict:
    """Measure held-out cuts afresh (interleaved) and score both estimators against them. `stage`: told what
    the scoring does once the measuring is over (fitting each network's models without it: at 224 px with
    seven networks, some 20 s each)."""
    analyses = analyses_for(names, key)
    identity = target.identity.key
    jobs_per_model = []
    for name, a in analyses.items():
        anchors = set(anchor_cuts([c.name for c in a.cuts]))  # measured in layers mode: not held out
        cuts = [c.name for c in a.cuts if c.name not in anchors]
        step = max(1, len(cuts) // per_model)
        held = cuts[step // 2 :: step][:per_model] + [None]
        jobs_per_model.append([Job(name, c, "e2e") for c in interleave(held)])
    jobs = round_robin(jobs_per_model)
    files = ModelFiles(files_cache, key, analyses)
    report = run(jobs, target, db, key, files, timing, force=True, progress=progress, rounds=rounds)
    fresh = fresh_measurements(db, identity, key, report.measured)
    q = quantile_level(quantile)
    results = {"empirical": [], "analytical": [], "kernels": []}
    inside = []  # the kernel model's 90% intervals: did the fresh measurement fall in?
    source = KernelSource(files_cache, key, dict(analyses))
    per_network = {}
    # Empirical, from the per-layer profile only: the fresh e2e rows are what we score against.
    estimator = EmpiricalEstimator(TableView(db, identity, key, exclude_mode="e2e"))
    measured = db.archs(identity, key)
    fit_cache = dict(analyses)
    for i, (name, a) in enumerate(analyses.items()):
        if stage is not None:
            stage(f"scoring {i + 1}/{len(analyses)}: {name}, from estimators fitted without its rows")
        held = [j.cut for j in jobs if j.model == name and (name, j.cut) in fresh]
        names_cuts = [c.name for c in a.cuts]
        others = [m for m in measured if m != name]
        cost_model = fit(db, identity, key, exclude=name, analyses=fit_cache) if others else None
        net = {"empirical": [], "analytical": [], "kernels": []}
        try:  # the per-kernel model without this network's rows: from the others' profiles and the suite
            kernel_model = fit_kernels(db, identity, key, source, exclude=name)
        except NetcutError:
            kernel_model = None
        for cut in held:
            truth = fresh[(name, cut)].at(q)
            e = estimator.estimate(name, names_cuts, cut, quantile)
            if e.estimated_ms is not None:
                net["empirical"].append(ape(e.estimated_ms, truth))
            if cost_model is not None:
                net["analytical"].append(ape(analytical(cost_model, a, key, quantile, [cut])[0].estimated_ms, truth))
            if kernel_model is not None:
                tail = tail_ratio(kernel_model, quantile)
                k = kernel_model.estimate(source.trn(a, cut, key.classes))
                net["kernels"].append(ape(k.ms * tail, truth))
                inside.append(k.low_ms * tail <= truth <= k.high_ms * tail)
        for k in results:
            results[k] += net[k]
        per_network[name] = {k: summary(v) for k, v in net.items()}
    return {
        "target": target.name,
        "precision": key.precision,  # each precision has its own rows, cost model and errors
        "quantile": quantile,
        "held_out_measurements": len(report.measured),
        "empirical": summary(results["empirical"]),
        "analytical_leave_one_network_out": summary(results["analytical"]),
        "kernels_leave_one_network_out": summary(results["kernels"]),
        # Goal: 85-95% of fresh measurements inside the per-kernel model's 90% intervals.
        "kernels_interval_90_coverage": round(sum(inside) / len(inside), 3) if inside else None,
        "per_network": per_network,
        "failed": [j.label() for j, _ in report.failed],
    }
