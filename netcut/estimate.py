"""Latency estimators: how fast is a candidate on a target, without training (or running) it.

Both read measurements through `LatencyTable` (host adapts SQLite to it) and answer any
quantile, saying which evidence they used.

- EmpiricalEstimator: a measured end-to-end row of the TRN when there is one; otherwise
  the full network's per-layer profile summed up to the cut (already normalised to the
  clean median by the agent) plus the measured head. Uncertainty comes from the samples:
  the half-width of a 95% order-statistics confidence interval of the quantile.
- CostModel (analytical): latency as a non-negative linear function of cost features
  (netcut.features), calibrated on a target's measured rows, so it can estimate networks
  and cuts never measured there. It is stored as JSON, never pickled.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from typing import Iterable, Protocol

import numpy as np
from scipy.optimize import nnls

from .errors import NetcutError
from .features import FEATURES
from .vocabulary import QUANTILES

STAT_OF = {0.5: "median_ms", 0.9: "p90_ms", 0.95: "p95_ms", 0.99: "p99_ms"}
E2E, LAYERS, HEAD = "e2e", "layers", "head"
# A few TRNs measured end to end alongside a per-layer profile: they calibrate the profile's prefix sums
# (a block runs faster in a short TRN, whose weights stay cached, than inside the full network).
ANCHOR = "anchor"
MEASURED_TRN = (E2E, ANCHOR)


def quantile_level(name: str) -> float:
    try:
        return QUANTILES[name]
    except KeyError:
        raise NetcutError(f"unknown quantile {name!r}; use one of: {', '.join(QUANTILES)}") from None


@dataclass(frozen=True)
class Measurement:
    """One measured row as the estimators see it (the table holds more)."""

    id: int
    model: str
    cut: str | None  # None: the full network
    mode: str  # e2e, anchor (a TRN measured end to end in layers mode), layers, head
    n: int
    median_ms: float
    p90_ms: float
    p95_ms: float
    p99_ms: float
    samples_ms: tuple[float, ...] = ()
    blocks: dict[str, float] = field(default_factory=dict)  # layers mode: block -> ms, summing to the median
    row_ids: tuple[int, ...] = ()  # the rows pooled into this one (default: id)

    @property
    def ids(self) -> tuple[int, ...]:
        return self.row_ids or (self.id,)

    def rows_text(self) -> str:
        return f"row {self.id}" if len(self.ids) == 1 else f"rows {', '.join(map(str, self.ids))}"

    def at(self, q: float) -> float:
        if q in STAT_OF:
            return getattr(self, STAT_OF[q])
        return float(np.quantile(self.samples_ms, q))


def pooled(rows: list[Measurement]) -> Measurement:
    """Rows of one measurement taken in rounds (or of one TRN measured more than once) as one: samples
    pooled, statistics recomputed, per-block times averaged and scaled to sum to the pooled median."""
    if len(rows) == 1:
        return rows[0]
    samples = np.concatenate([np.asarray(r.samples_ms, dtype=float) for r in rows])
    stat = {f: float(np.quantile(samples, q)) for q, f in STAT_OF.items()}
    blocks = {}
    with_blocks = [r for r in rows if r.blocks]
    if with_blocks:
        scale = stat["median_ms"] / float(np.mean([r.median_ms for r in with_blocks]))
        names = dict.fromkeys(b for r in with_blocks for b in r.blocks)
        blocks = {b: float(np.mean([r.blocks.get(b, 0.0) for r in with_blocks])) * scale for b in names}
    last = max(rows, key=lambda r: r.id)
    return Measurement(
        last.id,
        last.model,
        last.cut,
        last.mode,
        sum(r.n for r in rows),
        stat["median_ms"],
        stat["p90_ms"],
        stat["p95_ms"],
        stat["p99_ms"],
        tuple(samples.tolist()),
        blocks,
        tuple(sorted(i for r in rows for i in r.ids)),
    )


def pool_rounds(rows: list[Measurement]) -> list[Measurement]:
    """One Measurement per (model, cut, mode), pooling the rounds; in the order of each group's last row."""
    groups: dict[tuple, list[Measurement]] = {}
    for r in rows:
        groups.setdefault((r.model, r.cut, r.mode), []).append(r)
    return sorted((pooled(g) for g in groups.values()), key=lambda m: m.id)


class LatencyTable(Protocol):
    """Rows of one target identity and one row key (input size, batch, format, runtime, threads)."""

    def measurements(self, model: str) -> list[Measurement]: ...


@dataclass
class Estimate:
    cut: str | None
    estimated_ms: float | None
    uncertainty_ms: float | None
    evidence: str
    rows: list[int] = field(default_factory=list)


def quantile_uncertainty(samples: Iterable[float], q: float) -> float:
    """Half-width of a 95% distribution-free confidence interval of the q-quantile."""
    x = np.sort(np.asarray(list(samples), dtype=float))
    n = x.size
    if n < 2:
        return float("nan")
    half = 1.96 * math.sqrt(n * q * (1 - q))
    lo = int(max(0, math.floor(n * q - half) - 1))
    hi = int(min(n - 1, math.ceil(n * q + half) - 1))
    return float(x[hi] - x[lo]) / 2.0


class EmpiricalEstimator:
    name = "empirical"

    def __init__(self, table: LatencyTable):
        self.table = table

    def estimate(self, model: str, cuts: list[str], cut: str | None, quantile: str = "p99") -> Estimate:
        """cuts: the model's cut names in execution order (the profile's block labels)."""
        q = quantile_level(quantile)
        rows = self.table.measurements(model)
        measured = [r for r in rows if r.mode in MEASURED_TRN and r.cut == cut]
        if measured:
            r = pooled(measured)
            return Estimate(
                cut,
                r.at(q),
                quantile_uncertainty(r.samples_ms, q),
                f"measured end to end ({r.rows_text()}, n={r.n})",
                list(r.ids),
            )
        layers = [r for r in rows if r.mode == LAYERS]
        if not layers:
            return Estimate(cut, None, None, "no measurement: profile this model on the target")
        full = max(layers, key=lambda r: r.id)
        if cut is None:
            return Estimate(
                cut,
                full.at(q),
                quantile_uncertainty(full.samples_ms, q),
                f"full network measured with its per-layer profile ({full.rows_text()}, n={full.n})",
                list(full.ids),
            )
        if cut not in cuts:
            raise NetcutError(f"{cut!r} is not a cut of {model}")
        missing = [b for b in cuts[: cuts.index(cut) + 1] if b not in full.blocks]
        if missing:
            return Estimate(
                cut,
                None,
                None,
                f"the per-layer profile ({full.rows_text()}) lacks blocks {missing[:3]}: "
                "profile again at the same granularity",
            )
        heads = {r.cut: r for r in sorted(rows, key=lambda r: r.id) if r.mode == HEAD}
        if cut not in heads:
            return Estimate(cut, None, None, f"no measured head for {cut}: profile this model in layers mode")
        head = heads[cut]
        value, fraction = self._from_profile(full, head, cuts, cut, q)
        u_prefix = quantile_uncertainty(full.samples_ms, q) * fraction
        u_head = quantile_uncertainty(head.samples_ms, q)
        evidence = (
            f"per-layer profile of the full network ({full.rows_text()}) summed to the cut + measured head "
            f"({head.rows_text()})"
        )
        ids = list(full.ids) + list(head.ids)
        # Measured TRNs of this network correct the profile: their measured/estimated ratios, interpolated
        # along the network (by the profile's cumulative time), with 1 at the full network's end.
        points = {}
        for r in sorted(rows, key=lambda r: r.id):
            if (
                r.mode in MEASURED_TRN
                and r.cut in heads
                and r.cut in cuts
                and r.cut != cut
                and all(b in full.blocks for b in cuts[: cuts.index(r.cut) + 1])
            ):
                est, frac = self._from_profile(full, heads[r.cut], cuts, r.cut, 0.5)
                points[frac] = (r.median_ms / est if est > 0 else 1.0, r)
        if points:
            fracs = sorted(points)
            ratio = float(np.interp(fraction, fracs + [1.0], [points[f][0] for f in fracs] + [1.0]))
            value *= ratio
            ids += [i for f in fracs for i in points[f][1].ids]
            evidence += (
                f", corrected x{ratio:.3f} by {len(fracs)} TRNs measured end to end "
                f"({'; '.join(points[f][1].rows_text() for f in fracs)})"
            )
        return Estimate(cut, value, math.hypot(u_prefix, u_head), evidence, ids)

    @staticmethod
    def _from_profile(full: Measurement, head: Measurement, cuts: list[str], cut: str, q: float) -> tuple[float, float]:
        """The profile's prefix to `cut` plus the head, at quantile q; and the prefix's share of the network."""
        prefix_median = sum(full.blocks[b] for b in cuts[: cuts.index(cut) + 1])
        # The profile is normalised to the clean median; tails scale like the full network's.
        scale = full.at(q) / full.median_ms if full.median_ms > 0 else 1.0
        fraction = prefix_median / full.median_ms if full.median_ms > 0 else 1.0
        return prefix_median * scale + head.at(q), fraction


# ------------------------------------------------------------------ analytical


@dataclass
class CostModel:
    """latency_median_ms = weights . features; other quantiles scale by measured tail ratios."""

    features: list[str]
    weights: list[float]
    quantile_ratios: dict[str, float]  # p90/p95/p99 over median, median over calibration rows
    relative_residual: float  # typical relative error on the calibration rows
    rows: int
    target: str = ""
    fitted_on: list[str] = field(default_factory=list)  # models
    basis: str = "float-1"  # what the features meant when it was fitted (netcut.features.basis)

    def predict_median(self, features: np.ndarray) -> float:
        return float(np.dot(self.weights, features))

    def estimate(self, features: np.ndarray, cut: str | None, quantile: str = "p99") -> Estimate:
        q = quantile_level(quantile)
        key = "median" if q == 0.5 else quantile
        value = self.predict_median(features) * self.quantile_ratios.get(key, 1.0)
        return Estimate(
            cut,
            value,
            value * self.relative_residual,
            f"analytical cost model fitted on {self.rows} rows of {len(self.fitted_on)} networks",
        )

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1)

    @classmethod
    def from_json(cls, text: str) -> "CostModel":
        data = json.loads(text)
        if data.get("features") != list(FEATURES):
            raise NetcutError(
                "this cost model was fitted with other features; fit it again (netcut-host estimate "
                "--estimator analytical refits from the table)"
            )
        return cls(**data)


@dataclass
class CalibrationPoint:
    model: str
    features: np.ndarray
    median_ms: float
    ratios: dict[str, float] = field(default_factory=dict)  # p90/p95/p99 over median (whole models only)


def fit_cost_model(points: list[CalibrationPoint], target: str = "", basis: str = "float-1") -> CostModel:
    """Fit weights minimising relative error (each point weighted by 1/its time)."""
    points = [p for p in points if p.median_ms > 0]
    if len(points) < len(FEATURES):
        raise NetcutError(
            f"the analytical estimator needs at least {len(FEATURES)} measured rows on this target, "
            f"found {len(points)}; profile a few networks on it first (in layers mode)"
        )
    x = np.stack([p.features / p.median_ms for p in points])
    y = np.ones(len(points))
    scale = np.maximum(np.abs(x).max(axis=0), 1e-12)  # condition the columns
    w = nnls(x / scale, y)[0] / scale  # Lawson-Hanson
    predicted = np.array([np.dot(w, p.features) for p in points])
    measured = np.array([p.median_ms for p in points])
    residual = float(np.median(np.abs(predicted - measured) / measured))
    ratios = {"median": 1.0}
    for key in ("p90", "p95", "p99"):
        values = [p.ratios[key] for p in points if key in p.ratios]
        ratios[key] = float(np.median(values)) if values else 1.0
    return CostModel(
        list(FEATURES),
        [float(v) for v in w],
        ratios,
        residual,
        len(points),
        target,
        sorted({p.model for p in points}),
        basis,
    )


def calibration_points(
    model: str,
    rows: list[Measurement],
    segments: dict[str, np.ndarray],
    whole: dict[str | None, np.ndarray],
    head: dict[str, np.ndarray],
) -> list[CalibrationPoint]:
    """Turn a model's rows into calibration points: each profiled block, each head, each whole model."""
    points = []
    runs = FEATURES.index("runs")
    for r in rows:
        ratios = (
            {"p90": r.p90_ms / r.median_ms, "p95": r.p95_ms / r.median_ms, "p99": r.p99_ms / r.median_ms}
            if r.median_ms > 0
            else {}
        )
        if r.mode == LAYERS:
            for label, ms in r.blocks.items():
                if label in segments and ms > 0:
                    points.append(CalibrationPoint(model, segments[label], ms))
            if None in whole:
                points.append(CalibrationPoint(model, whole[None], r.median_ms, ratios))
        elif r.mode == HEAD and r.cut in head:
            f = head[r.cut].copy()
            f[runs] = 1.0
            points.append(CalibrationPoint(model, f, r.median_ms, ratios))
        elif r.mode in MEASURED_TRN and r.cut in whole:
            points.append(CalibrationPoint(model, whole[r.cut], r.median_ms, ratios))
    return points
