"""Does the estimator estimate? Spearman rho of estimate vs measured drop, on constructed pairs."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from albsnn.report.estimator_check import check_pairs, estimator_check, spearman

MEASURED = [0.2, 1.5, 0.7, 3.0, 2.2]  # pp, one per layer


def _run(estimates: dict[str, list[float]], measured=MEASURED) -> dict[str, float]:
    # one run's metrics as logged: check_measured.<layer>, check_estimate.<estimator>.<layer>
    layers = [f"conv{i + 1}" for i in range(len(measured))]
    out = {f"check_measured.{layer}": m for layer, m in zip(layers, measured, strict=True)}
    for name, values in estimates.items():
        out |= {f"check_estimate.{name}.{layer}": v for layer, v in zip(layers, values, strict=True)}
    return out


@pytest.mark.parametrize(
    "estimated, expected",
    [
        ([2 * m + 1 for m in MEASURED], 1.0),  # perfectly monotone: same order
        ([np.exp(m) for m in MEASURED], 1.0),  # monotone but not linear: ranks only
        ([-m for m in MEASURED], -1.0),  # reversed
        ([10 - m**2 for m in MEASURED], -1.0),
    ],
    ids=["linear", "monotone", "reversed", "reversed non-linear"],
)
def test_spearman_is_one_for_monotone_and_minus_one_for_reversed_estimates(estimated, expected):
    rho, p = spearman(estimated, MEASURED)
    assert rho == pytest.approx(expected) and p == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize(
    "estimated, measured",
    [
        ([1.0, 2.0], [1.0, 2.0]),  # fewer than 3 pairs
        ([1.0, 1.0, 1.0], [0.1, 0.5, 0.3]),  # constant estimate
        ([0.4, 0.1, 0.3], [2.0, 2.0, 2.0]),  # constant measured drop
    ],
    ids=["two pairs", "constant estimate", "constant measured"],
)
def test_spearman_is_none_when_rank_correlation_is_undefined(estimated, measured):
    assert spearman(estimated, measured) == (None, None)


def test_spearman_equals_scipy_on_random_pairs_with_ties():
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, 5, 20).astype(float), rng.integers(0, 5, 20).astype(float)
    expected = stats.spearmanr(a, b)
    assert spearman(a, b) == (pytest.approx(expected.statistic), pytest.approx(expected.pvalue))


def test_check_pairs_reads_hyphenated_estimators_and_skips_layers_without_a_measurement():
    metrics = _run({"weight-error": [1, 2, 3, 4, 5]}) | {
        "check_estimate.taylor.fc9": 1.0,
        "val_accuracy": 0.9,
    }
    pairs = check_pairs("r", metrics)
    assert set(pairs) == {"weight-error"}  # fc9 was never measured: no pair
    assert [(p.layer, p.estimated, p.measured) for p in pairs["weight-error"]] == [
        (f"conv{i + 1}", float(i + 1), m) for i, m in enumerate(MEASURED)
    ]


def test_pooled_and_per_run_rho_of_constructed_runs():
    # run a: 5 layers; run b: 5 layers on another scale; run c: 2 layers (too few for its own rho)
    measured_b = [m * 3 + 10 for m in MEASURED]
    runs = {
        "a": _run({"good": MEASURED, "bad": [-m for m in MEASURED]}),
        "b": _run({"good": measured_b, "bad": [-m for m in measured_b]}, measured=measured_b),
        "c": _run({"good": [0.0, 1.0], "bad": [0.0, -1.0]}, measured=[0.0, 1.0]),
    }
    info = estimator_check(runs)
    assert info.runs == 3 and [e.estimator for e in info.estimators] == ["bad", "good"]
    good, bad = info.estimators[1], info.estimators[0]
    assert good.n == bad.n == 12
    assert good.rho == pytest.approx(1.0) and bad.rho == pytest.approx(-1.0)
    assert good.per_run == {"a": pytest.approx(1.0), "b": pytest.approx(1.0), "c": None}
    assert bad.per_run == {"a": pytest.approx(-1.0), "b": pytest.approx(-1.0), "c": None}
    assert (good.median_per_run, good.runs_with_rho) == (pytest.approx(1.0), 2)
    assert good.scale == "estimate"  # an estimator the report does not know keeps a neutral scale


def test_no_check_metrics_means_no_section():
    assert estimator_check({"a": {"val_accuracy": 0.9, "estimate.conv1": 0.3}}) is None
    assert estimator_check({}) is None
