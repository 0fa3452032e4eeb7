"""Pareto dominance, fronts and hypervolume (albsnn.pareto) on constructed points, against brute-force
definitions: the pruner, the confirmation, tracking and the report all decide with these."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from albsnn import pareto
from albsnn.metrics import STORAGE_BYTES, VAL_ACCURACY
from albsnn.pareto import (
    ACCURACY_STORAGE,
    as_objectives,
    dominates,
    hypervolume_2d,
    hypervolume_history,
    nondominated,
    pareto_mask,
    selected_test_hypervolume,
)


def front_2d(acc, size) -> list[bool]:
    """The front of validation accuracy (max) and storage (min), the report's default objectives."""
    return pareto_mask({VAL_ACCURACY: acc, STORAGE_BYTES: size}, ACCURACY_STORAGE).tolist()


def brute_front(acc, size) -> list[bool]:
    # the definition: i is on the front unless some j is >= in accuracy, <= in bytes, and better in one
    return [
        not any(
            acc[j] >= acc[i] and size[j] <= size[i] and (acc[j] > acc[i] or size[j] < size[i])
            for j in range(len(acc))
        )
        for i in range(len(acc))
    ]


def brute_hypervolume(acc, size, ref) -> float:
    # cut the box at every coordinate and add each cell some point dominates (exact for 2-D)
    ra, rs = ref
    xs = sorted({s for s in size if s < rs} | {rs})
    ys = sorted({a for a in acc if a > ra} | {ra})
    area = 0.0
    for (x0, x1), (y0, y1) in itertools.product(itertools.pairwise(xs), itertools.pairwise(ys)):
        # cell [x0, x1] x [y0, y1] is dominated when a point is at most x0 bytes and at least y1 accurate
        if any(s <= x0 and a >= y1 for a, s in zip(acc, size, strict=True)):
            area += (x1 - x0) * (y1 - y0)
    return area


CASES = {
    # name: (accuracy, storage bytes, expected front)
    "single point": ([0.5], [100], [True]),
    "exact duplicates both stay": ([0.9, 0.9, 0.5], [10, 10, 5], [True, True, True]),
    "duplicate of a dominated point": ([0.9, 0.5, 0.5], [10, 20, 20], [True, False, False]),
    "tie in accuracy, larger loses": ([0.8, 0.8], [10, 20], [True, False]),
    "tie in bytes, less accurate loses": ([0.8, 0.7], [10, 10], [True, False]),
    "all identical": ([0.6] * 4, [7] * 4, [True] * 4),
    "staircase": ([0.1, 0.5, 0.9], [1, 5, 9], [True, True, True]),
    "one dominates all": ([0.99, 0.5, 0.6, 0.7], [1, 5, 6, 7], [True, False, False, False]),
}


@pytest.mark.parametrize("acc, size, expected", list(CASES.values()), ids=list(CASES))
def test_pareto_mask_matches_the_definition_on_constructed_points(acc, size, expected):
    assert front_2d(acc, size) == expected == brute_front(acc, size)


@pytest.mark.parametrize("seed", range(40))
def test_pareto_mask_matches_brute_force_on_random_points_with_many_ties(seed):
    # integers on a small grid: plenty of ties in each objective and exact duplicates
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 30))
    acc = rng.integers(0, 6, n) / 5
    size = rng.integers(1, 6, n) * 100.0
    assert front_2d(acc, size) == brute_front(acc, size)


HV_CASES = {
    "single point": ([0.6], [40.0], (0.1, 100.0), 0.5 * 60),
    "duplicates count once": ([0.6, 0.6], [40.0, 40.0], (0.1, 100.0), 0.5 * 60),
    "staircase": ([0.3, 0.6], [20.0, 60.0], (0.1, 100.0), 0.2 * 80 + 0.3 * 40),
    "dominated point adds nothing": ([0.6, 0.5], [40.0, 50.0], (0.1, 100.0), 0.5 * 60),
    "at chance adds nothing": ([0.1], [10.0], (0.1, 100.0), 0.0),
    "at full size adds nothing": ([0.9], [100.0], (0.1, 100.0), 0.0),
    "worse than reference adds nothing": ([0.05, 0.6], [10.0, 140.0], (0.1, 100.0), 0.0),
    "no points": ([], [], (0.1, 100.0), 0.0),
}


@pytest.mark.parametrize("acc, size, ref, expected", list(HV_CASES.values()), ids=list(HV_CASES))
def test_hypervolume_equals_the_hand_computed_area(acc, size, ref, expected):
    assert hypervolume_2d(acc, size, ref) == pytest.approx(expected)
    assert brute_hypervolume(acc, size, ref) == pytest.approx(expected)


@pytest.mark.parametrize("seed", range(30))
def test_hypervolume_matches_brute_force_and_optuna_on_random_points(seed):
    from optuna._hypervolume import compute_hypervolume  # optuna's exact WFG, as a second reference

    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 25))
    acc = np.round(rng.uniform(0.0, 1.0, n), 2)
    size = np.round(rng.uniform(0, 1200, n), -1)
    ref = (0.1, 1000.0)
    expected = brute_hypervolume(acc, size, ref)
    assert hypervolume_2d(acc, size, ref) == pytest.approx(expected, abs=1e-9)
    inside = (acc > ref[0]) & (size < ref[1])  # optuna requires every point to dominate the reference
    loss = np.stack([-acc[inside], size[inside]], axis=1)
    optuna_hv = compute_hypervolume(loss, np.array([-ref[0], ref[1]])) if inside.any() else 0.0
    assert expected == pytest.approx(optuna_hv, abs=1e-9)


def test_hypervolume_of_a_perfect_model_in_zero_bytes_fills_the_box():
    # the normalisation the report uses: hypervolume / ((1 - chance) * full-precision bytes)
    chance, full = 0.1, 16504.0
    assert hypervolume_2d([1.0], [0.0], (chance, full)) / ((1 - chance) * full) == pytest.approx(1.0)


def test_hypervolume_history_grows_and_ends_at_the_total():
    acc, size, ref = [0.3, 0.2, 0.6, 0.5], [50.0, 10.0, 80.0, 20.0], (0.1, 100.0)
    history = hypervolume_history(acc, size, ref)
    assert np.all(np.diff(history) >= 0)
    assert history[0] == pytest.approx(hypervolume_2d(acc[:1], size[:1], ref))
    assert history[-1] == pytest.approx(hypervolume_2d(acc, size, ref))


def test_non_finite_values_are_rejected():
    with pytest.raises(ValueError, match="finite"):
        front_2d([0.5, float("nan")], [1, 2])


# ---- any objectives: the mask agrees with pairwise dominance ----------------------------------------
def brute_mask(columns: dict, objectives: dict) -> list[bool]:
    # the definition, point by point: on the front unless another point dominates it
    points = {i: {m: columns[m][i] for m in objectives} for i in range(len(next(iter(columns.values()))))}
    on = set(nondominated(points, objectives))
    return [i in on for i in points]


@pytest.mark.parametrize("seed", range(30))
@pytest.mark.parametrize(
    "objectives",
    [
        {"a": "max", "b": "min", "c": "max"},
        {"a": "min", "b": "min", "c": "min"},
        {"c": "max", "a": "max"},
        {"b": "min"},
    ],
    ids=["three mixed", "three min", "two max", "one"],
)
def test_pareto_mask_matches_pairwise_dominance_for_any_objectives(seed, objectives):
    # a small grid: ties in every objective and exact duplicates
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 30))
    columns = {m: rng.integers(0, 4, n).astype(float) for m in "abc"}
    assert pareto_mask(columns, objectives).tolist() == brute_mask(columns, objectives)


def test_objectives_are_pairs_in_either_form_and_only_max_or_min():
    # a {metric: direction} mapping and a sequence of (metric, direction) pairs are the same objectives
    columns = {VAL_ACCURACY: [0.9, 0.8], STORAGE_BYTES: [20.0, 10.0]}
    assert pareto_mask(columns, dict(ACCURACY_STORAGE)).tolist() == [True, True]
    assert pareto_mask(columns, ACCURACY_STORAGE).tolist() == [True, True]
    assert pareto_mask(columns, [(VAL_ACCURACY, "max")]).tolist() == [True, False]
    assert pareto_mask(columns, [(STORAGE_BYTES, "min")]).tolist() == [False, True]
    for bad in ({}, {VAL_ACCURACY: "up"}):
        with pytest.raises(ValueError, match="max or min"):
            as_objectives(bad)


def test_a_third_objective_brings_dominated_points_back_to_the_front():
    # b is as accurate as a and larger (dominated on two objectives) but has fewer binarized layers
    acc, size, layers = [0.9, 0.9], [10.0, 20.0], [5.0, 1.0]
    columns = {VAL_ACCURACY: acc, STORAGE_BYTES: size, "num_binarized": layers}
    assert pareto_mask(columns, ACCURACY_STORAGE).tolist() == [True, False]
    assert pareto_mask(columns, [*ACCURACY_STORAGE, ("num_binarized", "min")]).tolist() == [True, True]


def test_nan_is_worse_than_any_number_in_pairwise_dominance():
    # a diverged trial (NaN accuracy) is dominated by any finished one no larger
    assert dominates((0.5, 90), (float("nan"), 100), ("max", "min"))
    assert nondominated({"ok": {"a": 0.5}, "nan": {"a": float("nan")}}, {"a": "max"}) == ["ok"]


def test_test_hypervolume_uses_the_front_it_is_given():
    # the front chosen on validation decides which test accuracies span the area; the default is 2-D
    val, test, size, ref = [0.9, 0.9], [0.5, 0.8], [10.0, 20.0], (0.0, 100.0)
    assert selected_test_hypervolume(val, test, size, ref) == pytest.approx(0.5 * 90)
    both = selected_test_hypervolume(val, test, size, ref, front=[True, True])
    assert both == pytest.approx(0.5 * 90 + 0.3 * 80)


def test_dominated_by_is_dominates_over_rows_nan_inf_ties_and_margins_included():
    rng = np.random.default_rng(0)
    pool = np.array([0.0, 0.5, 1.0, np.nan, np.inf, -np.inf])  # few values: many ties
    modes = ["max", "min", "max"]
    for _ in range(200):
        others, mine = rng.choice(pool, size=(30, 3)), rng.choice(pool, size=3)
        margins = rng.choice([0.0, 0.0, 0.5], size=3)
        want = [dominates(row, mine, modes, margins) for row in others]
        assert pareto.dominated_by(others, mine, modes, margins).tolist() == want


def test_nondominated_ranks_of_two_objectives_are_the_peeled_fronts():
    # The 2-objective path sorts; a third, constant objective changes no dominance and takes the
    # general path that peels one front after another: both must give every point the same rank.
    rng = np.random.default_rng(1)
    for n in (1, 2, 7, 60, 300):
        a = rng.choice([0.1, 0.2, 0.3, 0.4, 0.5], size=n)  # few values: ties and exact duplicates
        s = rng.integers(1, 6, size=n).astype(float)
        objectives = {"a": "max", "s": "min"}
        fast = pareto.nondominated_ranks({"a": a, "s": s}, objectives)
        peeled = pareto.nondominated_ranks({"a": a, "s": s, "c": np.ones(n)}, {**objectives, "c": "min"})
        assert fast.tolist() == peeled.tolist()
