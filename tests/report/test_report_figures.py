"""Figure layout, checked on positions and limits (not pixels): the zoomed Pareto axis, labels that
do not overlap, and the ablation figure drawn from paired differences."""

from __future__ import annotations

import itertools
from types import SimpleNamespace

import numpy as np
import pytest

pytest.importorskip("matplotlib")

from albsnn.report.ablation import ablation_rows  # noqa: E402
from albsnn.report.figures import (  # noqa: E402
    _accuracy_limits,
    _label_size,
    _spread_labels,
    plot_ablation,
    plot_contrasts,
    plot_pareto,
)
from albsnn.report.pareto import PUBLISHED, HypervolumeInfo, ParetoInfo, ParetoPoint  # noqa: E402

LABEL = _label_size("#10")  # (width, height) in points


def _overlap(a, b, size=LABEL) -> bool:
    (ax, ay), (bx, by), (w, h) = a, b, size
    return abs(ax - bx) < w and abs(ay - by) < h


def _point(rank, acc, size, on_front=True, test=None):
    return ParetoPoint(
        run_id=f"r{rank}-{acc}",
        sweep="s",
        val_accuracy=acc,
        test_accuracy=test,
        storage_bytes=size,
        fp32_bytes=1e6,
        storage_reduction=1 - size / 1e6,
        on_front=on_front,
        rank=rank if on_front else None,
        label=f"point {rank}",
        settings={},
        binarized_layers=None,
    )


def _pareto_info(points):
    hv = HypervolumeInfo(0.1, 1e6, 0.0, 0.0, (), 0.0)
    pareto = ParetoInfo("fashion-mnist", tuple(points), PUBLISHED["fashion-mnist"])
    return SimpleNamespace(pareto=pareto, hypervolume=hv, confirmation=None)


# three front points crowded together (sizes within 0.2 %, accuracies within 0.05 pp), one apart,
# and a dominated run at chance level that must not stretch the axis
CROWDED = [
    _point(1, 0.8810, 2.000e5, test=0.8790),
    _point(2, 0.8812, 2.002e5, test=0.8801),
    _point(3, 0.8815, 2.004e5, test=0.8805),
    _point(4, 0.9020, 6.0e5, test=0.8990),
    _point(0, 0.1000, 7.0e5, on_front=False),
]


@pytest.mark.parametrize(
    "anchors",
    [
        [(100.0, 100.0), (100.0, 100.0)],  # the same spot
        [(100.0, 100.0), (100.3, 100.1), (99.8, 100.4), (100.1, 99.9)],  # within a fraction of a point
        [(50.0, 200.0), (52.0, 201.0), (300.0, 200.0)],  # two close, one far
    ],
)
def test_labels_of_nearly_identical_points_are_at_least_a_label_height_apart(anchors):
    offsets = _spread_labels(anchors, [LABEL] * len(anchors))
    boxes = [(x + dx, y + dy) for (x, y), (dx, dy) in zip(anchors, offsets, strict=True)]
    for a, b in itertools.combinations(boxes, 2):
        assert not _overlap(a, b)


def test_a_label_with_room_keeps_its_place():
    anchors = [(10.0, 10.0), (200.0, 200.0)]
    assert _spread_labels(anchors, [LABEL] * 2) == [(5.0, 5.0), (5.0, 5.0)]


@pytest.mark.parametrize("values", [[88.1, 88.15, 90.2], [50.0, 99.0], [91.0]])
def test_accuracy_limits_are_the_data_range_plus_a_small_margin(values):
    low, high = _accuracy_limits(values)
    pad = max(0.08 * (max(values) - min(values)), 0.5)
    assert low == pytest.approx(min(values) - pad) and high == pytest.approx(max(values) + pad)


def test_the_pareto_accuracy_axis_zooms_to_the_front_not_to_chance_or_the_paper():
    ax = plot_pareto(_pareto_info(CROWDED)).axes[0]
    shown = [100 * p.val_accuracy for p in CROWDED[:4]] + [100 * p.test_accuracy for p in CROWDED[:4]]
    low, high = ax.get_ylim()
    pad = max(0.08 * (max(shown) - min(shown)), 0.5)
    assert min(shown) - pad <= low <= min(shown) and max(shown) <= high <= max(shown) + pad


def test_the_pareto_figure_places_crowded_rank_labels_apart():
    ax = plot_pareto(_pareto_info(CROWDED)).axes[0]
    labels = [t for t in ax.texts if t.get_text().startswith("#")]
    assert sorted(t.get_text() for t in labels) == ["#1", "#2", "#3", "#4"]
    to_points = 72.0 / ax.figure.dpi
    boxes = [
        tuple(to_points * np.asarray(ax.transData.transform(t.xy)) + np.asarray(t.xyann)) for t in labels
    ]
    for a, b in itertools.combinations(boxes, 2):
        assert not _overlap(a, b)


def test_the_staircase_runs_through_the_front_points_best_on_accuracy_and_storage():
    # With a third objective a front point can sit below another on accuracy and storage; the
    # staircase is the accuracy x storage envelope (what the hypervolume measures), so it skips it.
    front = [_point(1, 0.80, 1e5), _point(2, 0.80, 2e5), _point(3, 0.90, 4e5)]  # #2: kept by a 3rd objective
    ax = plot_pareto(_pareto_info(front)).axes[0]
    (stairs,) = [line for line in ax.lines if line.get_drawstyle() == "steps-post"]
    assert stairs.get_xdata().tolist() == [1e5, 4e5, 1e6]  # to the reference bytes
    assert stairs.get_ydata().tolist() == pytest.approx([80.0, 90.0, 90.0])


def test_the_ablation_figure_plots_paired_differences_with_their_intervals():
    seeds = (0, 1, 2, 3)
    accs = {"bwo=project": [0.91, 0.90, 0.92, 0.915], "bwo=off": [0.88, 0.875, 0.885, 0.889]}
    configs = [(label, {"bwo": label[4:]}) for label in accs]
    runs = [
        (label, s, "FINISHED", a, 0.2) for label, v in accs.items() for s, a in zip(seeds, v, strict=True)
    ]
    info = ablation_rows(configs, runs, baseline="bwo=project")
    ax = plot_ablation(SimpleNamespace(ablation=info)).axes[0]
    off = info.rows[1]
    (bars,) = [c for c in ax.containers]  # one row besides the baseline: one error bar
    y = bars.lines[0].get_ydata()[0]
    assert y == pytest.approx(100 * off.paired_delta)
    (segments,) = [s.get_segments() for s in bars.lines[2]]
    assert sorted(segments[0][:, 1]) == pytest.approx([100 * off.ci_low, 100 * off.ci_high])
    assert any(line.get_ydata()[0] == 0 for line in ax.lines)  # the zero line


def test_contrast_figure_draws_each_contrast_at_its_mean_with_its_interval():
    from albsnn.report.ablation import paired_contrasts

    values = {
        "a": {0: 90.0, 1: 91.0, 2: 90.5},
        "r": {0: 89.5, 1: 90.8, 2: 90.6},
        "d": {0: 90.2, 1: 91.4, 2: 90.3},
    }
    info = paired_contrasts(values, [("a", "r"), ("a", "d")])
    ax = plot_contrasts(info).axes[0]
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels[0].startswith("a − r\n") and info.contrasts[0].verdict in labels[0]
    bars = [c for c in ax.containers if hasattr(c, "lines")]
    means = sorted(float(b.lines[0].get_xdata()[0]) for b in bars)
    assert means == pytest.approx(sorted(c.mean for c in info.contrasts))


def test_contrast_figure_without_a_computable_contrast_is_none():
    from albsnn.report.ablation import paired_contrasts

    assert plot_contrasts(paired_contrasts({"a": {}, "r": {}}, [("a", "r")])) is None
