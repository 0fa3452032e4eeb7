"""Seed-confirmed Pareto fronts: candidates, survival, the pipeline's ``confirm`` block, the sweep.

The decision (:mod:`albsnn.sweep.confirm`) is tested on hand-made trial records; the slow test runs
a tiny search with confirmation on the session's Ray cluster and reads MLflow and the report back.
"""

from __future__ import annotations

import csv
import json
import math

import pytest
from mlflow import MlflowClient

from albsnn.cli import main
from albsnn.errors import ConfigError
from albsnn.sweep.confirm import judge, one_per_config, select_candidates
from albsnn.sweep.pipeline import load_pipeline
from albsnn.sweep.tracking import layout as L

OBJ = {"val_accuracy": "max", "storage_bytes": "min"}


def _t(acc: float, size: float) -> dict:
    return {"val_accuracy": acc, "storage_bytes": size, "test_accuracy": acc - 0.01}


# ---------------------------------------------------------------- candidates and survival


def test_candidates_are_the_validation_front_best_first_and_capped_evenly():
    trials = {
        "big": _t(0.90, 1000),
        "mid": _t(0.85, 500),
        "small": _t(0.70, 100),
        "tiny": _t(0.60, 50),
        "worse": _t(0.80, 600),  # dominated by mid
        "twin": _t(0.85, 500),  # an exact duplicate of a front point stays
        "no-storage": {"val_accuracy": 0.99},  # an objective missing: not a candidate
    }
    assert select_candidates(trials, OBJ) == ["big", "mid", "twin", "small", "tiny"]
    assert select_candidates(trials, OBJ, max_points=3) == ["big", "twin", "tiny"]
    assert select_candidates(trials, OBJ, max_points=1) == ["big"]
    # a test metric never selects: the front is the same whatever test_accuracy says
    flipped = {k: {**v, "test_accuracy": 1 - v.get("test_accuracy", 0)} for k, v in trials.items()}
    assert select_candidates(flipped, OBJ) == select_candidates(trials, OBJ)


def test_equal_results_in_another_seed_order_tie_and_both_survive():
    # 0.1 + 0.2 + 0.3 != 0.3 + 0.2 + 0.1 in floating point: a naive mean would let one "dominate".
    a = {0: _t(0.1, 100), 1: _t(0.2, 100), 2: _t(0.3, 100)}
    b = {2: _t(0.1, 100), 1: _t(0.2, 100), 0: _t(0.3, 100)}
    points = judge([("a", 1, a), ("b", 2, dict(reversed(list(b.items()))))], OBJ, expected=3)
    assert [p.survives for p in points] == [True, True]
    assert points[0].mean == points[1].mean


def test_a_configuration_drawn_twice_is_confirmed_once():
    configs = {
        "t2": {"lr": 0.01, "width": 0.5, "seed": 0},
        "t1": {"width": 0.5, "lr": 0.01, "seed": 0},  # the same config, keys in another order
        "t3": {"lr": 0.02, "width": 0.5, "seed": 0},
    }
    assert one_per_config(configs) == ["t1", "t3"]


def test_a_lucky_seed_point_is_dominated_after_seed_averaging_and_does_not_survive():
    groups = [
        # A: on the search front thanks to seed 0 (0.80); its other seeds are poor -> mean 0.70
        ("A", 1, {0: _t(0.80, 300), 1: _t(0.66, 300), 2: _t(0.64, 300)}),
        # B: smaller and steadier -> mean 0.75 at 200 bytes dominates A's mean
        ("B", 2, {0: _t(0.76, 200), 1: _t(0.75, 200), 2: _t(0.74, 200)}),
        # C: the smallest, less accurate: nobody dominates it
        ("C", 3, {0: _t(0.50, 50), 1: _t(0.52, 50), 2: _t(0.48, 50)}),
        # D: a confirmation run failed (seed 2 missing): incomplete, neither survives nor dominates
        ("D", 4, {0: _t(0.99, 10), 1: _t(0.99, 10)}),
    ]
    points = {p.trial_id: p for p in judge(groups, OBJ, expected=3, reported=("test_accuracy",))}
    assert {t for t, p in points.items() if p.survives} == {"B", "C"}
    a = points["A"]
    assert not a.survives and a.complete and a.seeds == (0, 1, 2)
    assert a.mean["val_accuracy"] == pytest.approx(0.70)
    assert a.std["val_accuracy"] == pytest.approx(math.sqrt((0.1**2 + 0.04**2 + 0.06**2) / 2))
    assert a.mean["test_accuracy"] == pytest.approx(0.69)  # reported beside, never deciding
    assert points["A"].std["storage_bytes"] == 0.0
    d = points["D"]
    assert not d.complete and not d.survives and d.seeds == (0, 1)


# ---------------------------------------------------------------- the pipeline's confirm block


@pytest.mark.parametrize(
    "overrides, words",
    [
        ({"objectives": {"val_accuracy": "max"}}, "confirm re-runs a Pareto front, but this pipeline is a "
         "single-objective search (val_accuracy); remove the confirm block"),
        ({"confirm": {"seeds": []}}, "confirm.seeds must be a non-empty list of integers"),
        ({"confirm": {"seeds": [0, 1]}}, "must be distinct and differ from the search seed 0"),
        ({"confirm": {"seeds": [1, 1]}}, "must be distinct"),
        ({"confirm": {"seeds": [1, -2]}}, "confirm.seeds: seed must be in [0, 4294967295]"),
        ({"confirm": {"seeds": [1], "max_points": 0}}, "confirm.max_points must be >= 1"),
        ({"confirm": {"seeds": [1], "front": False}}, "confirm.front: false selects nothing"),
        ({"confirm": {"seeds": [1], "top": 3}}, "unknown key(s) ['top'] under confirm"),
    ],
)  # fmt: skip
def test_bad_confirm_blocks_are_one_line_errors(write_pipeline, tmp_path, overrides, words):
    path = write_pipeline(tmp_path, "bad-confirm", **{"confirm": {"seeds": [1, 2]}, **overrides})
    with pytest.raises(ConfigError) as info:
        load_pipeline(path)
    assert words in str(info.value) and "\n" not in str(info.value)


def test_confirm_in_a_single_objective_pipeline_exits_2_with_one_line_and_records_nothing(
    write_pipeline, tmp_path, tracking_uri, capsys
):
    path = write_pipeline(
        tmp_path,
        "single-confirm",
        objectives={"val_accuracy": "max"},
        confirm={"seeds": [1, 2]},
        mlflow={"experiment": "never-created-confirm"},
    )
    assert main(["sweep", str(path), "--tracking-uri", tracking_uri]) == 2
    err = capsys.readouterr().err
    assert err.count("error:") == 1 and "Traceback" not in err
    assert "confirm re-runs a Pareto front" in err and "remove the confirm block" in err
    assert MlflowClient(tracking_uri).get_experiment_by_name("never-created-confirm") is None
    assert not (tmp_path / "sweeps").exists()  # no sweep folder, no run left RUNNING


def test_dry_run_says_how_many_confirmation_runs_at_most(write_pipeline, tmp_path, tracking_uri, capsys):
    path = write_pipeline(tmp_path, "dry-confirm", confirm={"seeds": [1, 2], "max_points": 4})
    assert main(["sweep", str(path), "--dry-run", "--tracking-uri", tracking_uri]) == 0
    out = capsys.readouterr().out
    assert "up to min(front size, 4) x 2 seeds [1, 2] runs (at most 8)" in out


# ---------------------------------------------------------------- end to end


@pytest.mark.slow
def test_confirmation_runs_are_children_with_the_right_seeds_and_the_report_shows_error_bars(
    ray_cluster, write_pipeline, tmp_path, tracking_uri
):
    from albsnn.cli.sweep import sweep_and_report
    from albsnn.sweep.runner import run_sweep

    out = tmp_path / "report"
    path = write_pipeline(
        tmp_path,
        "confirm-e2e",
        epochs=2,
        num_samples=2,
        confirm={"seeds": [3, 4], "max_points": 2},
        report={"enabled": True, "out_dir": str(out)},
    )
    result = sweep_and_report(path, tracking_uri=tracking_uri, progress=False)  # the report: `albsnn sweep`'s
    assert not result.interrupted and result.report_path == out
    client = MlflowClient(tracking_uri)
    children = L.search_all(client, [result.experiment_id], L.children_filter(result.parent_run_id))
    search = {r.data.tags[L.TRIAL_ID]: r for r in children if r.data.tags[L.ROLE] == L.TRIAL}
    confirm = [r for r in children if r.data.tags[L.ROLE] == L.CONFIRM]
    assert len(search) == 2
    points = {r.data.tags[L.CONFIRMS] for r in confirm}
    assert 1 <= len(points) <= 2 and len(confirm) == 2 * len(points)
    for run in confirm:
        original = search[run.data.tags[L.CONFIRMS]]
        seed = run.data.params["seed"]
        assert seed in ("3", "4") and original.data.params["seed"] == "0"
        # the original trial's full resolved config, only the seed changed
        assert {**run.data.params, "seed": "0"} == original.data.params
        assert run.info.run_name.endswith(f"s{seed} (confirm #{run.data.tags[L.CONFIRM_POINT]})")
        assert run.info.status == "FINISHED" and run.data.tags[L.TRIAL_STATE] == L.FINISHED
    for trial in points:  # candidates were chosen on the validation front of the search
        others = [r.data.metrics for t, r in search.items() if t != trial]
        mine = search[trial].data.metrics
        assert not any(
            o["val_accuracy"] >= mine["val_accuracy"]
            and o["storage_bytes"] <= mine["storage_bytes"]
            and (o["val_accuracy"] > mine["val_accuracy"] or o["storage_bytes"] < mine["storage_bytes"])
            for o in others
        )
    parent = client.get_run(result.parent_run_id)
    assert parent.data.metrics["trials_finished"] == 2  # the search's trials, confirmation apart
    assert parent.data.metrics["confirm_runs_finished"] == len(confirm)
    assert json.loads(parent.data.tags[L.CONFIRM_SEEDS]) == [3, 4]
    assert result.counts["FINISHED"] == 2 and result.confirm_counts["FINISHED"] == len(confirm)
    assert "Pareto point(s) x seeds [3, 4]" in result.summary()

    with open(out / "confirmation.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(points)
    for row in rows:
        assert row["seeds"] == "0 3 4" and row["complete"] == "True"
        assert math.isfinite(float(row["val_accuracy_std"])) and math.isfinite(
            float(row["test_accuracy_std"])
        )
        assert row["run_id"] in {search[t].info.run_id for t in points}
    md = (out / "report.md").read_text()
    assert "Seed-confirmed Pareto front" in md and " ± " in md
    assert f"{parent.data.metrics['confirm_survivors']:.0f} of {len(points)} candidates survive" in md
    report = json.loads((out / "report.json").read_text())
    assert len(report["confirmation"]["rows"]) == len(points)
    total = report["counts"]["total"]
    assert total["finished"] + total["pruned"] + total["failed"] + total["running"] == 2  # the search's

    # A search trial that a killed driver finished after Ray's last snapshot has no Ray config; the
    # confirmation rebuilds it from the study, and the rebuilt config is the one Ray ran.
    from albsnn.sweep.experiment import ray_trial_configs
    from albsnn.sweep.record import SweepRecord
    from albsnn.sweep.run import lost_configs

    record = SweepRecord.load(result.sweep_dir)
    ray_configs = ray_trial_configs(str(result.sweep_dir))
    rebuilt = lost_configs(load_pipeline(path), record, set(ray_configs))
    assert rebuilt == {t: config for t, (_, config) in ray_configs.items()}

    # --resume of the finished sweep continues the same confirmation: nothing runs twice
    again = run_sweep(path, tracking_uri=tracking_uri, resume=True, progress=False)
    after = L.search_all(client, [result.experiment_id], L.children_filter(result.parent_run_id))
    assert len([r for r in after if r.data.tags[L.ROLE] == L.CONFIRM]) == len(confirm)
    assert again.confirm_counts == result.confirm_counts and len(after) == len(children)
    # more search trials after the candidates were chosen would never be confirmed: refused
    with pytest.raises(ConfigError, match="already chosen the Pareto points it confirms"):
        run_sweep(path, tracking_uri=tracking_uri, resume=True, num_samples=3, progress=False)
    assert client.get_run(result.parent_run_id).info.status == "FINISHED"
