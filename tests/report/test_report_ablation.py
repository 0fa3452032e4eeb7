"""Ablation statistics on constructed seeds, against scipy; missing and failed seeds are flagged."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from albsnn.report.ablation import ablation_rows, holm, paired_test

SEEDS = (0, 1, 2, 3, 4)
# configuration -> accuracy per seed (constructed: "off" is clearly worse, "scale" is within noise)
VALUES = {
    "bwo=project": [0.912, 0.905, 0.918, 0.909, 0.915],
    "bwo=off": [0.880, 0.871, 0.889, 0.875, 0.884],
    "bwo=scale": [0.910, 0.911, 0.914, 0.904, 0.917],
}
CONFIGS = [(label, {"bwo": label.split("=")[1]}) for label in VALUES]


def _runs(values=VALUES, drop=(), fail=()):
    return [
        (label, seed, "FAILED" if (label, seed) in fail else "FINISHED", acc, 0.2)
        for label, accs in values.items()
        for seed, acc in zip(SEEDS, accs, strict=True)
        if (label, seed) not in drop
    ]


def brute_holm(p):
    # the definition, spelled out: sort, multiply by (m - rank), running maximum, cap at 1
    order = sorted(range(len(p)), key=lambda i: p[i])
    adjusted, running = [0.0] * len(p), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(p) - rank) * p[i]))
        adjusted[i] = running
    return adjusted


@pytest.mark.parametrize("test, scipy_fn", [("t", stats.ttest_rel), ("wilcoxon", stats.wilcoxon)])
def test_paired_test_equals_scipy(test, scipy_fn):
    a, b = VALUES["bwo=off"], VALUES["bwo=project"]
    assert paired_test(a, b, test) == pytest.approx(scipy_fn(a, b).pvalue)


@pytest.mark.parametrize(
    "a, b, expected",
    [
        ([0.5], [0.4], None),  # one pair: no test
        ([0.5, 0.6, 0.7], [0.5, 0.6, 0.7], 1.0),  # identical: no evidence of a difference
    ],
)
def test_paired_test_edge_cases(a, b, expected):
    assert paired_test(a, b) == expected


@pytest.mark.parametrize(
    "p",
    [[0.01, 0.04, 0.03, 0.005], [0.5], [0.2, 0.2, 0.2], [0.001, 0.9, 0.04, 0.03, 0.5], [0.6, 0.7]],
)
def test_holm_matches_the_definition(p):
    assert holm(p) == pytest.approx(brute_holm(p))


def test_holm_known_values_and_none_entries_are_left_out_of_the_family():
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.01, None, 0.04]) == pytest.approx([0.02, None, 0.04])


@pytest.mark.parametrize("test, scipy_fn", [("t", stats.ttest_rel), ("wilcoxon", stats.wilcoxon)])
def test_ablation_rows_equal_numpy_and_scipy(test, scipy_fn):
    info = ablation_rows(CONFIGS, _runs(), baseline="bwo=project", test=test, factors=["bwo"])
    rows = {r.label: r for r in info.rows}
    base = np.array(VALUES["bwo=project"])
    assert info.rows[0].baseline and info.rows[0].label == "bwo=project"
    assert info.seeds == SEEDS
    raw = {}
    for label, accs in VALUES.items():
        r, a = rows[label], np.array(accs)
        assert (r.n, r.expected, r.flagged) == (5, 5, False)
        assert r.mean == pytest.approx(a.mean())
        assert r.std == pytest.approx(a.std(ddof=1))
        assert r.delta == pytest.approx(a.mean() - base.mean())
        if label != "bwo=project":
            raw[label] = scipy_fn(a, base).pvalue
            assert r.p_value == pytest.approx(raw[label])
    expected_holm = brute_holm(list(raw.values()))
    for (label, _), adj in zip(raw.items(), expected_holm, strict=True):
        assert rows[label].p_holm == pytest.approx(adj)
    assert rows["bwo=project"].p_value is None and rows["bwo=project"].p_holm is None


def test_a_missing_seed_is_flagged_and_not_silently_averaged():
    info = ablation_rows(CONFIGS, _runs(drop={("bwo=off", 3)}), baseline="bwo=project")
    off = next(r for r in info.rows if r.label == "bwo=off")
    kept = [v for s, v in zip(SEEDS, VALUES["bwo=off"], strict=True) if s != 3]
    assert off.flagged and off.missing_seeds == (3,) and off.failed_seeds == ()
    assert "missing seed(s) 3" in off.flag
    assert (off.n, off.expected, off.n_pairs) == (4, 5, 4)
    assert off.mean == pytest.approx(np.mean(kept))
    # the paired test uses only the seeds both rows finished
    base = [v for s, v in zip(SEEDS, VALUES["bwo=project"], strict=True) if s != 3]
    assert off.p_value == pytest.approx(stats.ttest_rel(kept, base).pvalue)
    assert not any(r.flagged for r in info.rows if r.label != "bwo=off")


def test_a_failed_seed_is_flagged_as_failed():
    info = ablation_rows(CONFIGS, _runs(fail={("bwo=scale", 0)}), baseline="bwo=project")
    scale = next(r for r in info.rows if r.label == "bwo=scale")
    assert scale.flagged and scale.failed_seeds == (0,) and scale.missing_seeds == ()
    assert scale.n == 4 and 0 not in scale.values


def test_a_missing_baseline_seed_flags_the_baseline_and_shrinks_every_pairing():
    info = ablation_rows(CONFIGS, _runs(drop={("bwo=project", 0)}), baseline="bwo=project")
    assert info.baseline.flagged and info.baseline.missing_seeds == (0,)
    assert all(r.n_pairs == 4 for r in info.rows if not r.baseline)


def test_unknown_baseline_or_test_is_rejected():
    with pytest.raises(ValueError, match="baseline"):
        ablation_rows(CONFIGS, _runs(), baseline="bwo=both")
    with pytest.raises(ValueError, match="test="):
        ablation_rows(CONFIGS, _runs(), baseline="bwo=project", test="anova")


# binarize grid of the ablation search space: random (matched storage) is one more level
BINARIZE = {
    "binarize=adaptive": [0.912, 0.905, 0.918, 0.909, 0.915],
    "binarize=random": [0.893, 0.880, 0.899, 0.884, 0.896],
    "binarize=all": [0.861, 0.850, 0.872, 0.858, 0.866],
    "binarize=none": [0.921, 0.917, 0.925, 0.919, 0.923],
}
VAL_SHIFT = 0.01  # constructed validation accuracy = test accuracy + 0.01


def test_the_binarize_grid_has_a_random_cell_with_its_paired_p_value_and_val_mean():
    configs = [(label, {"binarize": label.split("=")[1]}) for label in BINARIZE]
    runs = [
        (label, seed, "FINISHED", acc, 0.3, acc + VAL_SHIFT)
        for label, accs in BINARIZE.items()
        for seed, acc in zip(SEEDS, accs, strict=True)
    ]
    info = ablation_rows(configs, runs, baseline="binarize=adaptive", factors=["binarize"])
    rows = {r.label: r for r in info.rows}
    assert list(rows) == list(BINARIZE) and info.metric == "test_accuracy"
    random, base = rows["binarize=random"], BINARIZE["binarize=adaptive"]
    # the compared value is each seed's test accuracy; validation rides along as a mean
    assert random.values == dict(zip(SEEDS, BINARIZE["binarize=random"], strict=True))
    assert random.p_value == pytest.approx(stats.ttest_rel(BINARIZE["binarize=random"], base).pvalue)
    raw = [stats.ttest_rel(BINARIZE[label], base).pvalue for label in list(BINARIZE)[1:]]
    assert random.p_holm == pytest.approx(brute_holm(raw)[0])
    assert random.val_mean == pytest.approx(np.mean(BINARIZE["binarize=random"]) + VAL_SHIFT)
    assert random.mean == pytest.approx(np.mean(BINARIZE["binarize=random"]))


def test_runs_without_a_validation_accuracy_leave_the_val_mean_empty():
    info = ablation_rows(CONFIGS, _runs(), baseline="bwo=project")
    assert all(r.val_mean is None for r in info.rows)


def test_each_row_carries_the_paired_difference_interval_of_scipy_and_its_mde():
    from albsnn.report.ablation import paired_contrasts

    info = ablation_rows(CONFIGS, _runs(), baseline="bwo=project")
    base = VALUES["bwo=project"]
    for r in info.rows[1:]:
        res = stats.ttest_rel(VALUES[r.label], base)
        ci = res.confidence_interval(0.95)
        assert (r.ci_low, r.ci_high) == pytest.approx((ci.low, ci.high))
        assert r.paired_delta == pytest.approx(np.mean(np.subtract(VALUES[r.label], base)))
        values = {
            "row": dict(zip(SEEDS, VALUES[r.label], strict=True)),
            "base": dict(zip(SEEDS, base, strict=True)),
        }
        assert r.mde == pytest.approx(paired_contrasts(values, [("row", "base")]).contrasts[0].mde)
    assert (info.baseline.ci_low, info.baseline.mde) == (None, None)


# a replicated grid: random draws its layers twice per seed (draw 0, 1); the others have no draw
DRAWS = {
    ("adaptive", None): [0.912, 0.905, 0.918, 0.909, 0.915],
    ("random", 0): [0.893, 0.880, 0.899, 0.884, 0.896],
    ("random", 1): [0.887, 0.889, 0.891, 0.890, 0.878],
}


def _draw_grid(drop=()):
    configs = [(f"binarize={b}, draw={d}", {"binarize": b, "draw": d}) for b, d in DRAWS]
    runs = [
        (f"binarize={b}, draw={d}", seed, "FINISHED", acc, 0.3)
        for (b, d), accs in DRAWS.items()
        for seed, acc in zip(SEEDS, accs, strict=True)
        if ((b, d), seed) not in drop
    ]
    return configs, runs


def test_replicates_are_averaged_per_seed_before_pairing_with_the_baseline():
    configs, runs = _draw_grid()
    info = ablation_rows(
        configs, runs, baseline="binarize=adaptive, draw=None", factors=["binarize", "draw"], replicate="draw"
    )
    assert [r.label for r in info.rows] == ["binarize=adaptive", "binarize=random"]
    random = info.rows[1]
    mean_of_draws = np.mean([DRAWS[("random", 0)], DRAWS[("random", 1)]], axis=0)
    adaptive = np.array(DRAWS[("adaptive", None)])
    # the contrast is, seed by seed, adaptive minus the mean of the draws
    assert list(random.values.values()) == pytest.approx(mean_of_draws)
    assert random.paired_delta == pytest.approx(np.mean(mean_of_draws - adaptive))
    assert random.p_value == pytest.approx(stats.ttest_rel(mean_of_draws, adaptive).pvalue)
    ci = stats.ttest_rel(mean_of_draws, adaptive).confidence_interval()
    assert (random.ci_low, random.ci_high) == pytest.approx((ci.low, ci.high))
    assert (random.n, random.replicates, random.levels) == (5, 2, {"binarize": "random"})
    assert info.factors == ("binarize",) and info.replicate == "draw"


def test_a_seed_missing_one_replicate_is_flagged_and_averages_the_draws_it_has():
    configs, runs = _draw_grid(drop={(("random", 1), 3)})
    info = ablation_rows(configs, runs, baseline="binarize=adaptive, draw=None", replicate="draw")
    random = info.rows[1]
    assert random.partial_seeds == (3,) and "seed(s) 3 missing some replicates" in random.flag
    assert random.values[3] == pytest.approx(DRAWS[("random", 0)][3])
    assert random.missing_seeds == () and random.n == 5


def test_without_a_replicate_factor_every_draw_is_its_own_row():
    configs, runs = _draw_grid()
    info = ablation_rows(configs, runs, baseline="binarize=adaptive, draw=None")
    assert len(info.rows) == 3 and all(r.replicates == 1 for r in info.rows)
