"""The info record (what every renderer shows) against MLflow's numbers; curve helpers on constructed data.

Rule of evidence: the report selects (front, hypervolume, best run) on validation accuracy and
reports test accuracy; these tests hold it to that.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from albsnn.pareto import hypervolume_2d, selected_test_hypervolume
from albsnn.report.curves import band, band_by_step, compact_layers, layer_sort_key
from albsnn.report.source import TEST_ACCURACY as TEST
from albsnn.report.source import VAL_ACCURACY as VAL


@pytest.fixture(scope="module")
def info(logged_sweeps):
    from albsnn.report import build_info, load_runs

    data = load_runs(logged_sweeps.tracking_uri, experiment=logged_sweeps.experiment)
    try:
        yield build_info(data)
    finally:
        data.close()


def _finished(logged_sweeps, sweep=None):
    return {
        rid: c["result"]
        for rid, c in logged_sweeps.children.items()
        if c["state"] == "FINISHED" and (sweep is None or ("bwo" in c["params"]) == (sweep == "ablation"))
    }


def test_hypervolume_reference_is_chance_and_full_precision_size(info, logged_sweeps):
    # digits has 10 classes; full precision = the largest fp32_bytes of the finished runs
    results = _finished(logged_sweeps)
    ref = (0.1, max(r["fp32_bytes"] for r in results.values()))
    hv = info.hypervolume
    assert (hv.reference_accuracy, hv.reference_bytes) == (pytest.approx(0.1), ref[1])
    val, test = [r[VAL] for r in results.values()], [r[TEST] for r in results.values()]
    size = [r["storage_bytes"] for r in results.values()]
    # selected on validation; the same front's test accuracies reported beside it
    assert hv.hypervolume == pytest.approx(hypervolume_2d(val, size, ref))
    assert hv.normalized == pytest.approx(hv.hypervolume / (0.9 * ref[1]))
    assert hv.test_normalized == pytest.approx(
        selected_test_hypervolume(val, test, size, ref) / (0.9 * ref[1])
    )
    for s in hv.sweeps:  # each sweep against the same reference; its history ends at its value
        part = _finished(logged_sweeps, s.sweep)
        expected = hypervolume_2d([r[VAL] for r in part.values()],
                                  [r["storage_bytes"] for r in part.values()], ref)  # fmt: skip
        assert s.hypervolume == pytest.approx(expected)
        assert s.history[-1] == pytest.approx(s.normalized) and len(s.history) == len(part)


def test_front_points_show_the_val_and_test_accuracy_of_the_same_run(info, logged_sweeps):
    for p in info.pareto.points:
        result = logged_sweeps.children[p.run_id]["result"]
        assert (p.val_accuracy, p.test_accuracy) == (result[VAL], result[TEST])
    assert info.selected_on == VAL and info.reported == TEST
    assert info.selection.startswith("selected on validation accuracy (val_accuracy")


def test_noise_in_test_accuracy_changes_the_reported_numbers_but_selects_nothing(logged_sweeps):
    # selection reads val_accuracy only: replace every test accuracy by noise and the front, its
    # ranks, the hypervolume and the best run stay; only the test numbers shown beside them change
    from albsnn.report import build_info, load_runs
    from albsnn.report.tables import build_tables, pct

    data = load_runs(logged_sweeps.tracking_uri, experiment=logged_sweeps.experiment)
    try:
        before = build_info(data)
        noise = np.random.default_rng(0).uniform(0.1, 1.0, len(data.runs))
        data.runs[f"metrics.{TEST}"] = noise
        after = build_info(data)
    finally:
        data.close()
    front = [(p.run_id, p.rank) for p in before.pareto.points]
    assert [(p.run_id, p.rank) for p in after.pareto.points] == front
    hv, hv2 = before.hypervolume, after.hypervolume
    assert (hv2.hypervolume, hv2.normalized) == (hv.hypervolume, hv.normalized)
    assert [s.history for s in hv2.sweeps] == [s.history for s in hv.sweeps]
    assert after.pareto.best.run_id == before.pareto.best.run_id
    assert after.estimator.run_id == before.estimator.run_id
    # ... while what is reported is the noise of the same runs
    by_run = dict(zip(data.runs["run_id"], noise, strict=True))
    assert [p.test_accuracy for p in after.pareto.points] == [by_run[p.run_id] for p in after.pareto.points]
    shown = [row[2] for row in build_tables(after)["pareto"].cells]
    assert shown == [pct(by_run[p.run_id]) for p in after.pareto.front]
    assert shown != [row[2] for row in build_tables(before)["pareto"].cells]
    assert hv2.test_normalized != hv.test_normalized


def test_counts_and_compute_per_sweep(info):
    counts = {c.sweep: c for c in info.counts.sweeps}
    assert (counts["search"].finished, counts["search"].pruned, counts["search"].failed) == (4, 1, 1)
    assert (counts["ablation"].finished, info.counts.total.total) == (3, 9)
    assert info.counts.total.compute_seconds == pytest.approx(
        sum(c.compute_seconds for c in info.counts.sweeps)
    )


def test_front_points_carry_their_binarized_layers_and_settings(info, logged_sweeps):
    for p in info.pareto.front:
        child = logged_sweeps.children[p.run_id]
        assert list(p.binarized_layers) == sorted(child["result"]["binarized_layers"], key=layer_sort_key)
        for key, value in child["params"].items():
            if key in p.settings:
                assert p.settings[key] == value
    layer_map = info.layer_map
    assert layer_map.run_ids == tuple(p.run_id for p in info.pareto.front)
    for j, p in enumerate(info.pareto.front):
        assert [layer_map.binary[i][j] for i in range(len(layer_map.layers))] == [
            layer in p.binarized_layers for layer in layer_map.layers
        ]


def test_time_step_bands_equal_the_runs_they_group(info, logged_sweeps):
    assert info.time_steps.group_by == "estimator"
    bands = {b.label: b for b in info.time_steps.bands}
    taylor = [
        c["result"][TEST]
        for c in logged_sweeps.children.values()
        if c["state"] == "FINISHED" and c["params"].get("estimator") == "taylor"
    ]
    assert bands["estimator=taylor"].x == (1.0, 2.0)
    assert sorted(bands["estimator=taylor"].mean) == pytest.approx(sorted(taylor))
    # one taylor run per T: its own test accuracy is the best-on-validation run's
    assert sorted(bands["estimator=taylor"].best) == pytest.approx(sorted(taylor))


def test_estimator_history_is_the_best_runs_on_validation(info, logged_sweeps):
    best = max(
        (rid for rid, c in logged_sweeps.children.items() if c["state"] == "FINISHED"),
        key=lambda rid: (
            logged_sweeps.children[rid]["result"][VAL],
            -logged_sweeps.children[rid]["result"]["storage_bytes"],
        ),
    )
    assert info.estimator.run_id == best
    assert info.estimator.threshold == pytest.approx(
        logged_sweeps.children[best]["params"].get("threshold", 0.3)
    )


def test_estimator_check_pairs_every_checked_layer_and_ranks_them_as_constructed(info, logged_sweeps):
    # the fixture logs check_* metrics for the 4 finished search runs, 3 candidate layers each
    check = {e.estimator: e for e in info.estimator_check.estimators}
    assert set(check) == {"measured", "taylor", "weight-error"} and info.estimator_check.runs == 4
    for name, rho in logged_sweeps.check_rho.items():  # constructed: +1 and -1, pooled and in every run
        assert check[name].n == 12 and check[name].rho == pytest.approx(rho)
        assert len(check[name].per_run) == 4
        assert all(r == pytest.approx(rho) for r in check[name].per_run.values())
    # weight-error: scipy on the very numbers MLflow holds
    pairs = [
        (m[f"check_estimate.weight-error.{key[len('check_measured.') :]}"], m[key])
        for m in (c["result"] for c in logged_sweeps.children.values() if c["result"])
        for key in m
        if key.startswith("check_measured.")
    ]
    assert len(pairs) == 12
    expected = stats.spearmanr(*zip(*pairs, strict=True))
    assert check["weight-error"].rho == pytest.approx(expected.statistic)
    assert check["weight-error"].p_value == pytest.approx(expected.pvalue)


@pytest.mark.parametrize(
    "layers, expected",
    [
        ([], "none"),
        (["conv2"], "conv2"),
        (["conv3", "conv2", "conv4"], "conv2-4"),
        (["conv2", "conv4", "fc1", "classifier"], "conv2, conv4, fc1, classifier"),
        (["conv10", "conv9", "conv2"], "conv2, conv9-10"),
    ],
)
def test_compact_layers(layers, expected):
    assert compact_layers(layers) == expected


def test_band_is_mean_and_sample_std_per_x():
    b = band("g", {2: [0.5, 0.7, 0.6], 1: [0.4]})
    assert b.x == (1.0, 2.0) and b.n == (1, 3)
    assert b.mean == pytest.approx((0.4, 0.6)) and b.best is None
    assert b.std == pytest.approx((0.0, np.std([0.5, 0.7, 0.6], ddof=1)))


def test_band_best_is_the_value_of_the_run_the_selector_picks_not_the_highest_value():
    # test accuracies at x=2 are [0.5, 0.7, 0.6]; validation picks the third run, so best is 0.6
    b = band("g", {2: [0.5, 0.7, 0.6], 1: [0.4]}, select={2: [0.80, 0.81, 0.90], 1: [0.3]})
    assert b.best == pytest.approx((0.4, 0.6))


def test_band_by_step_aligns_histories_of_different_length():
    b = band_by_step("g", [[(1, 0.2), (2, 0.4)], [(1, 0.4)], [(1, float("nan"))]])
    assert b.x == (1.0, 2.0) and b.n == (2, 1) and b.mean == pytest.approx((0.3, 0.4))
