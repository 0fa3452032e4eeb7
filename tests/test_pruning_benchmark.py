"""benchmarks/pruning.py's replay and verdict on hand-made curves (no training, no Ray session)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from albsnn.sweep import load_pipeline

DEMO = Path(__file__).parents[1] / "pipelines" / "demo.yaml"


def _trial(accuracy: float, storage: float, epochs: int = 8) -> dict:
    step = {"val_accuracy": accuracy, "storage_bytes": storage, "fp32_bytes": 10_000.0}
    return {"config": {}, "epochs": [dict(step) for _ in range(epochs)]}


@pytest.fixture(scope="module")
def bench(load_benchmark):
    return load_benchmark("pruning")


def test_a_pruned_trial_costs_the_epochs_it_ran_and_leaves_the_front(bench):
    pipe = load_pipeline(DEMO)
    rows = [_trial(0.9, 1000.0), _trial(0.8, 500.0), _trial(0.5, 2000.0)]  # the third is dominated
    none = bench.replay(pipe, rows, {"kind": "none"}, concurrency=1)
    assert (none["trial_epochs"], none["pruned"], len(none["finished"])) == (24, 0, 3)
    # moasha, eta 2: at rung 1 the third trial has 2 of 3 trials ranked before it (>= 3/2): pruned
    # after its first epoch; the other two are kept at every rung (each ranks first or is an end).
    spec = {"kind": "moasha", "reduction_factor": 2, "min_resource": 1, "min_trials": 1}
    out = bench.replay(pipe, rows, spec, concurrency=1)
    assert (out["trial_epochs"], out["pruned"]) == (17, 1)
    assert [r["val_accuracy"] for r in out["finished"]] == [0.9, 0.8]


def test_the_target_needs_every_seed_within_one_percent_and_half_the_epochs(bench):
    def row(seed, arm, hv_ratio, share):
        return {"seed": seed, "arm": arm, "hv_ratio": hv_ratio, "epoch_share": share}

    rows = [
        row(10, "a", 0.995, 0.45),
        row(11, "a", 1.0, 0.50),
        row(10, "b", 0.989, 0.3),
        row(11, "b", 1, 0.3),
    ]
    rows += [row(10, "c", 1.0, 0.51), row(11, "c", 1.0, 0.3)]
    verdict = bench.summary(rows)
    assert [verdict[arm]["target_met"] for arm in "abc"] == [True, False, False]
    assert verdict["c"]["mean_epoch_share"] == pytest.approx(0.405)


def test_the_committed_result_replays_from_the_committed_curves(bench):
    # reports/pruning-cpu/pruning.json must follow from curves.json with today's pruners: a change to
    # a pruner or to the replay that moves a committed number fails here, not in a reader's hands.
    committed = json.loads((bench.CURVES.parent / "pruning.json").read_text())
    setup = committed["setup"]
    pipe = load_pipeline(DEMO)
    curves = bench.train_curves(pipe, setup["seeds"], setup["trials"], bench.CURVES, train=False)
    rows = bench.evaluate(pipe, curves, setup["concurrency"], setup["arms"])
    assert rows == committed["rows"]
