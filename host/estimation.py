"""Glue between the SQLite tables and netcut's estimators (shared by estimate, validate, search)."""
from __future__ import annotations

import logging

from netcut import models
from netcut.cuts import NetworkAnalysis
from netcut.estimate import (CalibrationPoint, CostModel, EmpiricalEstimator, Estimate, calibration_points,
                             fit_cost_model)
from netcut.features import head_features, segment_features, trn_features

from .profiling import analyses_for
from .tables import LatencyDB, RowKey, TableView

log = logging.getLogger(__name__)
ESTIMATORS = ("empirical", "analytical")


def candidates(a: NetworkAnalysis) -> list[str | None]:
    """Every cut, then the full network (None)."""
    return [c.name for c in a.cuts] + [None]


def empirical(db: LatencyDB, identity: str, key: RowKey, a: NetworkAnalysis, quantile: str,
              only: list[str | None] | None = None) -> list[Estimate]:
    estimator = EmpiricalEstimator(TableView(db, identity, key))
    names = [c.name for c in a.cuts]
    return [estimator.estimate(models.architecture_key(a.model_name), names, cut, quantile)
            for cut in (only if only is not None else candidates(a))]


def points_for(db: LatencyDB, identity: str, key: RowKey, analyses: dict[str, NetworkAnalysis]) -> list[CalibrationPoint]:
    points = []
    for name, a in analyses.items():
        rows = TableView(db, identity, key).measurements(models.architecture_key(name))
        whole = {cut: trn_features(a, cut, key.classes) for cut in candidates(a)}
        heads = {c.name: head_features(c.output_shape, key.classes) for c in a.cuts}
        points += calibration_points(name, rows, segment_features(a), whole, heads)
    return points


def measured_models(db: LatencyDB, identity: str, key: RowKey) -> list[str]:
    return db.archs(identity, key)


def fit(db: LatencyDB, identity: str, key: RowKey, exclude: str | None = None,
        analyses: dict[str, NetworkAnalysis] | None = None) -> CostModel:
    """Calibrate the cost model on every network measured on this target (but `exclude`).

    `analyses` is a cache owned by the caller: networks missing from it are analysed and added, so
    leave-one-network-out folds and repeated fits trace each network once.
    """
    names = [m for m in measured_models(db, identity, key) if m != exclude]
    if analyses is None:
        analyses = {}
    analyses.update(analyses_for([n for n in names if n not in analyses], key))
    model = fit_cost_model(points_for(db, identity, key, {n: analyses[n] for n in names}), identity)
    if exclude is None:
        db.save_cost_model(identity, key, model.to_json())
    return model


def analytical(cost_model: CostModel, a: NetworkAnalysis, key: RowKey, quantile: str,
               only: list[str | None] | None = None) -> list[Estimate]:
    return [cost_model.estimate(trn_features(a, cut, key.classes), cut, quantile)
            for cut in (only if only is not None else candidates(a))]
