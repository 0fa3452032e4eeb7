"""The info record (what every renderer shows) against MLflow's numbers; curve helpers on constructed data."""

from __future__ import annotations

import numpy as np
import pytest

from albsnn.report.curves import band, band_by_step, compact_layers, layer_sort_key
from albsnn.report.pareto import hypervolume_2d


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
    acc = [r["test_accuracy"] for r in results.values()]
    size = [r["storage_bytes"] for r in results.values()]
    assert hv.hypervolume == pytest.approx(hypervolume_2d(acc, size, ref))
    assert hv.normalized == pytest.approx(hv.hypervolume / (0.9 * ref[1]))
    for s in hv.sweeps:  # each sweep against the same reference; its history ends at its value
        part = _finished(logged_sweeps, s.sweep)
        expected = hypervolume_2d([r["test_accuracy"] for r in part.values()],
                                  [r["storage_bytes"] for r in part.values()], ref)  # fmt: skip
        assert s.hypervolume == pytest.approx(expected)
        assert s.history[-1] == pytest.approx(s.normalized) and len(s.history) == len(part)


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
        c["result"]["test_accuracy"]
        for c in logged_sweeps.children.values()
        if c["state"] == "FINISHED" and c["params"].get("estimator") == "taylor"
    ]
    assert bands["estimator=taylor"].x == (1.0, 2.0)
    assert sorted(bands["estimator=taylor"].mean) == pytest.approx(sorted(taylor))


def test_estimator_history_is_the_best_runs(info, logged_sweeps):
    best = max(
        (rid for rid, c in logged_sweeps.children.items() if c["state"] == "FINISHED"),
        key=lambda rid: (
            logged_sweeps.children[rid]["result"]["test_accuracy"],
            -logged_sweeps.children[rid]["result"]["storage_bytes"],
        ),
    )
    assert info.estimator.run_id == best
    assert info.estimator.threshold == pytest.approx(
        logged_sweeps.children[best]["params"].get("threshold", 0.3)
    )


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
    assert b.mean == pytest.approx((0.4, 0.6)) and b.best == pytest.approx((0.4, 0.7))
    assert b.std == pytest.approx((0.0, np.std([0.5, 0.7, 0.6], ddof=1)))


def test_band_by_step_aligns_histories_of_different_length():
    b = band_by_step("g", [[(1, 0.2), (2, 0.4)], [(1, 0.4)], [(1, float("nan"))]])
    assert b.x == (1.0, 2.0) and b.n == (2, 1) and b.mean == pytest.approx((0.3, 0.4))
