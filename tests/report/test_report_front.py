"""The report's Pareto front follows the objectives the sweep declared (its pipeline's ``objectives``).

The runs are constructed in memory (no MLflow, no training) as :func:`~albsnn.report.source.load_runs`
lays them out: one row per run with its last metrics, under a parent run whose ``albsnn.objectives``
tag holds the pipeline's objectives as the sweep writes it.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest

from albsnn.pareto import ACCURACY_STORAGE
from albsnn.report.info import build_info
from albsnn.report.source import RunsData, Sweep

pd = pytest.importorskip("pandas")

START = datetime(2026, 1, 1, tzinfo=timezone.utc)

# name: (val_accuracy, test_accuracy, storage_bytes, fp32_bytes, num_binarized)
RUNS = {
    "small": (0.80, 0.79, 1000.0, 4000.0, 4),
    "large": (0.90, 0.88, 4000.0, 4000.0, 0),
    "mid-few-layers": (0.80, 0.81, 2000.0, 4000.0, 1),  # as accurate as small, larger: 2-D dominated
    "mid-big-fp32": (0.85, 0.84, 3000.0, 2000.0, 2),  # 2-D dominated by none (between small and large)
}


class _Runs(RunsData):
    """Runs held in memory: no artifacts, no metric histories."""

    def artifact_json(self, run_id, path):
        return None

    def metric_history(self, run_id, key):
        return []


def _runs_data(objectives: list[dict | None]) -> RunsData:
    """One sweep per entry of ``objectives`` (None: a parent run without the tag), each with RUNS."""
    sweeps, rows = [], []
    for k, declared in enumerate(objectives):
        tags = {"albsnn.dataset": "digits", "albsnn.mode": "search"}
        if declared is not None:
            tags["albsnn.objectives"] = json.dumps(declared)
        sweeps.append(Sweep(f"parent{k}", f"sweep{k}", tags, START, START + timedelta(hours=1)))
        for i, (name, (val, test, size, fp32, layers)) in enumerate(RUNS.items()):
            rows.append(
                {
                    "run_id": f"{name}@{k}",
                    "name": name,
                    "sweep_id": f"parent{k}",
                    "sweep": f"sweep{k}",
                    "state": "FINISHED",
                    "start_time": START + timedelta(minutes=i),
                    "end_time": START + timedelta(minutes=i + 1),
                    "seconds": 60.0,
                    "metrics.val_accuracy": val,
                    "metrics.test_accuracy": test,
                    "metrics.storage_bytes": size,
                    "metrics.fp32_bytes": fp32,
                    "metrics.storage_reduction": 1 - size / 4000.0,
                    "metrics.num_binarized": float(layers),
                }
            )
    return _Runs(
        tracking_uri="memory",
        experiment_id="0",
        experiment_name="front",
        title="front",
        sweeps=tuple(sweeps),
        runs=pd.DataFrame(rows),
        param_names=(),
        param_types={},
    )


def _front(info) -> set[str]:
    return {p.run_id.split("@")[0] for p in info.pareto.front}


DECLARED = {
    # objectives: the runs on the front
    "accuracy and storage (today's default)": (
        {"val_accuracy": "max", "storage_bytes": "min"},
        {"small", "mid-big-fp32", "large"},
    ),
    "a third objective keeps a run with fewer binary layers": (
        {"val_accuracy": "max", "storage_bytes": "min", "num_binarized": "min"},
        {"small", "mid-few-layers", "mid-big-fp32", "large"},
    ),
    "another storage metric changes the front": (
        {"val_accuracy": "max", "fp32_bytes": "min"},
        {"mid-big-fp32", "large"},
    ),
    "a single objective: the best run": ({"val_accuracy": "max"}, {"large"}),
}


@pytest.mark.parametrize("objectives, front", list(DECLARED.values()), ids=list(DECLARED))
def test_the_front_follows_the_pipelines_objectives(objectives, front):
    # Rule: a run is on the front when no other finished run is no worse on every declared
    # objective and better on one; the declared objectives, not a fixed pair, decide.
    info = build_info(_runs_data([objectives]))
    assert _front(info) == front
    assert info.pareto.objectives == objectives


def test_the_front_ranks_and_hypervolume_follow_the_front():
    # ranks count the front from the smallest model; the hypervolume stays the accuracy x storage area,
    # and its test twin is spanned by the front the objectives chose
    two = build_info(_runs_data([dict(ACCURACY_STORAGE)]))
    three = build_info(_runs_data([{**dict(ACCURACY_STORAGE), "num_binarized": "min"}]))
    assert [p.rank for p in three.pareto.front] == [1, 2, 3, 4]
    assert three.hypervolume.hypervolume == pytest.approx(two.hypervolume.hypervolume)
    # mid-few-layers is on the front of three objectives: its test accuracy 0.81 at 2000 bytes adds area
    box = (1 - 0.1) * 4000.0
    assert three.hypervolume.test_normalized - two.hypervolume.test_normalized == pytest.approx(
        (0.81 - 0.79) * (3000.0 - 2000.0) / box  # up to mid-big-fp32, whose 0.84 covers the rest
    )


@pytest.mark.parametrize("parent", [True, False], ids=["parent without the tag", "no parent run"])
def test_runs_without_declared_objectives_get_accuracy_and_storage(parent):
    data = _runs_data([None])
    if not parent:
        data.sweeps = ()
    info = build_info(data)
    assert info.pareto.objectives == dict(ACCURACY_STORAGE)
    assert _front(info) == DECLARED["accuracy and storage (today's default)"][1]


def test_sweeps_that_disagree_get_accuracy_and_storage_with_a_note():
    info = build_info(_runs_data([{"val_accuracy": "max"}, {"val_accuracy": "max", "fp32_bytes": "min"}]))
    assert info.pareto.objectives == dict(ACCURACY_STORAGE)
    assert any("different objectives" in n for n in info.notes)


def test_runs_without_a_declared_objective_are_left_out_with_a_note():
    data = _runs_data([{"val_accuracy": "max", "storage_bytes": "min", "num_binarized": "min"}])
    data.runs.loc[data.runs["name"] == "mid-few-layers", "metrics.num_binarized"] = np.nan
    info = build_info(data)
    assert "mid-few-layers" not in {p.run_id.split("@")[0] for p in info.pareto.points}
    assert any("without val_accuracy/storage_bytes/num_binarized" in n for n in info.notes)
