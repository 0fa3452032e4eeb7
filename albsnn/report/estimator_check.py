"""Does the estimator estimate? Each estimator's per-layer estimate against the measured drop.

A run with ``estimator_check: true`` logs, at its final step and for each candidate layer *L*,
``check_measured.<L>``: the true validation accuracy drop (percentage points) of binarizing *L*
alone in the final model, the other layers as they are; and ``check_estimate.<E>.<L>``: what
estimator *E* estimated for *L* on that same model. Every (run, layer) with both numbers is one
**pair** of estimator *E*. The estimators' scales differ (measured: pp; weight-error: 100 x
relative weight distortion; taylor: 100 x relative loss change), so the agreement is a rank one:
**Spearman's rho** (``scipy.stats.spearmanr``) of estimate vs measured drop,

* pooled over every pair of the estimator (all runs together), with its two-sided p-value;
* per run, over that run's layers (None where a run has fewer than 3 pairs).

rho is None with fewer than 3 pairs or when either side is constant (rank correlation is then
undefined). rho = 1: the estimator orders the layers exactly as binarizing them does.

Example:
    >>> info = estimator_check({"run": {"check_measured.conv1": 0.5, "check_measured.conv2": 2.0,
    ...     "check_measured.fc1": 1.0, "check_estimate.taylor.conv1": 3.0,
    ...     "check_estimate.taylor.conv2": 9.0, "check_estimate.taylor.fc1": 4.0}})
    >>> info.estimators[0].estimator, info.estimators[0].rho
    ('taylor', 1.0)
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from albsnn.report.curves import layer_sort_key
from albsnn.report.source import CHECK_ESTIMATE_PREFIX, CHECK_MEASURED_PREFIX

__all__ = [
    "MIN_PAIRS",
    "SCALES",
    "CheckPair",
    "EstimatorCheck",
    "EstimatorCheckInfo",
    "spearman",
    "check_pairs",
    "estimator_check",
]

MIN_PAIRS = 3  # fewer pairs give no rank correlation worth a number
# What each estimator's number means (all on a percent scale); an unknown one is "estimate".
SCALES = {
    "measured": "accuracy drop, pp",
    "weight-error": "100 x relative weight distortion",
    "taylor": "100 x relative loss change",
}


@dataclass(frozen=True)
class CheckPair:
    """One layer of one run: the estimator's estimate and the measured accuracy drop (pp)."""

    run_id: str
    layer: str
    estimated: float
    measured: float


@dataclass(frozen=True)
class EstimatorCheck:
    """One estimator's pairs and how well their ranks agree."""

    estimator: str
    scale: str  # what the estimate means, in words
    pairs: tuple[CheckPair, ...]  # by run, then network order
    rho: float | None  # Spearman, pooled over every pair
    p_value: float | None  # two-sided, of the pooled rho
    per_run: dict[str, float | None]  # run_id -> Spearman over that run's layers

    @property
    def n(self) -> int:
        return len(self.pairs)

    @property
    def median_per_run(self) -> float | None:
        values = [r for r in self.per_run.values() if r is not None]
        return float(np.median(values)) if values else None

    @property
    def runs_with_rho(self) -> int:
        return sum(r is not None for r in self.per_run.values())


@dataclass(frozen=True)
class EstimatorCheckInfo:
    """Every estimator that some finished run checked, by name."""

    runs: int  # finished runs with check metrics
    estimators: tuple[EstimatorCheck, ...]


def spearman(estimated: Sequence[float], measured: Sequence[float]) -> tuple[float | None, float | None]:
    """``(rho, two-sided p)``; ``(None, None)`` with fewer than 3 pairs or a constant side."""
    from scipy import stats

    a, b = np.asarray(estimated, dtype=float), np.asarray(measured, dtype=float)
    if a.shape != b.shape:
        raise ValueError(f"estimated and measured differ in length: {a.shape=} vs {b.shape=}")
    if len(a) < MIN_PAIRS or np.ptp(a) == 0 or np.ptp(b) == 0:
        return None, None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scipy warns on near-constant input; the result stands
        result = stats.spearmanr(a, b)
    rho, p = float(result.statistic), float(result.pvalue)
    return (rho if math.isfinite(rho) else None), (p if math.isfinite(p) else None)


def check_pairs(run_id: str, metrics: Mapping[str, float]) -> dict[str, list[CheckPair]]:
    """``{estimator: [pairs]}`` of one run from its metrics (names as logged, without ``metrics.``)."""
    measured = {
        name[len(CHECK_MEASURED_PREFIX) :]: float(v)
        for name, v in metrics.items()
        if name.startswith(CHECK_MEASURED_PREFIX) and _finite(v)
    }
    out: dict[str, list[CheckPair]] = {}
    for name, v in metrics.items():
        if not name.startswith(CHECK_ESTIMATE_PREFIX) or not _finite(v):
            continue
        estimator, _, layer = name[len(CHECK_ESTIMATE_PREFIX) :].partition(".")
        if layer in measured:
            out.setdefault(estimator, []).append(CheckPair(run_id, layer, float(v), measured[layer]))
    for pairs in out.values():
        pairs.sort(key=lambda p: layer_sort_key(p.layer))
    return out


def estimator_check(runs: Mapping[str, Mapping[str, float]]) -> EstimatorCheckInfo | None:
    """The check of every estimator from ``{run_id: {metric name: value}}``; None when no run checked."""
    by_estimator: dict[str, dict[str, list[CheckPair]]] = {}
    for run_id, metrics in runs.items():
        for estimator, pairs in check_pairs(run_id, metrics).items():
            by_estimator.setdefault(estimator, {})[run_id] = pairs
    if not by_estimator:
        return None
    checks = tuple(_check(e, by_estimator[e]) for e in sorted(by_estimator))
    checked = {run_id for per_run in by_estimator.values() for run_id in per_run}
    return EstimatorCheckInfo(runs=len(checked), estimators=checks)


def _check(estimator: str, per_run: Mapping[str, list[CheckPair]]) -> EstimatorCheck:
    pairs = tuple(p for run_pairs in per_run.values() for p in run_pairs)
    rho, p = spearman([q.estimated for q in pairs], [q.measured for q in pairs])
    return EstimatorCheck(
        estimator=estimator,
        scale=SCALES.get(estimator, "estimate"),
        pairs=pairs,
        rho=rho,
        p_value=p,
        per_run={
            run_id: spearman([q.estimated for q in ps], [q.measured for q in ps])[0]
            for run_id, ps in per_run.items()
        },
    )


def _finite(x: object) -> bool:
    try:
        return x is not None and math.isfinite(float(x))
    except (TypeError, ValueError):
        return False
