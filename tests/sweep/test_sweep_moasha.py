"""MOASHA pruning: non-dominated sorting of the trials that reached a rung, keep the top 1/eta.

Hand-made trials at a rung in Optuna in-memory studies (and once the sweep's journal through the
scheduler); no trial trains, no Ray runs.
"""

from __future__ import annotations

import math

import numpy as np
import optuna
import pytest
from optuna.trial import TrialState

from albsnn.errors import ConfigError
from albsnn.pareto import nondominated_ranks
from albsnn.sweep import load_pipeline
from albsnn.sweep.moasha_pruner import MOASHAPruner, crowding_distance
from albsnn.sweep.pareto_pruner import report_objectives, step_key
from albsnn.sweep.pruners import MOASHA, make_pruner
from albsnn.sweep.scheduler import OptunaPrunerScheduler

OBJECTIVES = {"val_accuracy": "max", "storage_bytes": "min"}


def _reached(study, step: int, values: tuple[float, float], state=TrialState.PRUNED) -> None:
    """Add a trial (PRUNED by default: it counts like any other) that reported ``values`` at ``step``."""
    accuracy, storage = values
    study.add_trial(
        optuna.trial.create_trial(
            state=state,
            value=accuracy if state == TrialState.COMPLETE else None,
            intermediate_values={step: accuracy},
            user_attrs={step_key("storage_bytes", step): storage},
            params={},
            distributions={},
        )
    )


def _verdict(pruner, others: list[tuple[float, float]], mine: tuple[float, float], step: int = 1) -> bool:
    """Whether ``pruner`` prunes a trial reporting ``mine`` at ``step`` after ``others`` got there."""
    study = optuna.create_study(direction="maximize", pruner=pruner)
    for values in others:
        _reached(study, step, values)
    trial = study.ask()
    report_objectives(trial, {"storage_bytes": mine[1]}, step)
    trial.report(mine[0], step)
    return trial.should_prune()


# A: best accuracy, B: smallest (the rung's front); C and D are dominated by A.
RUNG = [(0.9, 100.0), (0.8, 50.0), (0.7, 100.0), (0.6, 200.0)]


@pytest.mark.parametrize(
    "mine, eta, pruned",
    [
        ((0.95, 300.0), 2, False),  # on the front: better = 0
        ((0.5, 300.0), 2, True),  # dominated by all four: better = 4 >= 5/2
        ((0.85, 100.0), 2, False),  # second front, alone: better = 2 (A, B) < 5/2
        ((0.85, 100.0), 3, True),  # ... but 2 >= 5/3 with eta 3
        ((0.8, 50.0), 4, False),  # a duplicate of B: tied with it on the front, both ends
    ],
)
def test_a_trial_is_pruned_unless_its_rank_at_the_rung_is_in_the_top_1_over_eta(mine, eta, pruned):
    # Rule: pruned <=> (trials ranked strictly before it) >= n / eta, n = trials at the rung with it.
    assert _verdict(MOASHAPruner(OBJECTIVES, reduction_factor=eta), RUNG, mine) == pruned


def test_finished_running_and_pruned_trials_all_count_at_the_rung():
    # ASHA: every trial that reached the rung is a peer there, whatever became of it later. eta 2.
    pruner = MOASHAPruner(OBJECTIVES, reduction_factor=2)
    study = optuna.create_study(direction="maximize", pruner=pruner)
    _reached(study, 1, (0.9, 50.0), TrialState.COMPLETE)  # a: dominates every other
    _reached(study, 1, (0.5, 200.0), TrialState.PRUNED)  # c: dominated by every other
    x = study.ask()
    report_objectives(x, {"storage_bytes": 100.0}, 1)
    x.report(0.8, 1)  # fronts {a} {x} {c}: 1 better of 3 < 3/2 (without the pruned c: 1 >= 2/2)
    assert not x.should_prune()
    y = study.ask()
    report_objectives(y, {"storage_bytes": 150.0}, 1)
    y.report(0.7, 1)  # {a} {x} {y} {c}: 2 better of 4 (without the finished a or running x: 1 of 3)
    assert y.should_prune()


def test_crowding_breaks_ties_inside_a_front_larger_than_the_quota():
    # Five trials on one front, eta 2: the ends are kept, the most crowded middle point is pruned.
    front = [(0.5, 10.0), (0.6, 20.0), (0.62, 22.0), (0.9, 100.0)]
    pruner = MOASHAPruner(OBJECTIVES, reduction_factor=2)
    assert _verdict(pruner, front, (0.61, 21.0))  # crowding 0.07: 4 peers are less crowded
    assert not _verdict(pruner, front, (0.45, 5.0))  # the new smallest end
    assert not _verdict(pruner, front, (0.95, 150.0))  # the new most accurate end


@pytest.mark.parametrize(
    "mine, pruned",
    [(0.95, False), (0.86, False), (0.8, False), (0.75, True), (0.1, True)],
)
def test_one_objective_is_plain_successive_halving_and_ties_are_kept_together(mine, pruned):
    # One objective: fronts are the distinct values, so the rank is how many did strictly better.
    # Eight peers and this trial, eta 3: kept while fewer than 9/3 = 3 did better (0.8 ties with
    # two others: 2 better, kept).
    others = [0.9, 0.85, 0.8, 0.8, 0.7, 0.6, 0.5, 0.4]
    pruner = MOASHAPruner({"val_accuracy": "max"}, reduction_factor=3)
    study = optuna.create_study(direction="maximize", pruner=pruner)
    for value in others:
        study.add_trial(
            optuna.trial.create_trial(
                state=TrialState.PRUNED, intermediate_values={3: value}, params={}, distributions={}
            )
        )
    trial = study.ask()
    trial.report(mine, 3)
    assert trial.should_prune() == pruned


@pytest.mark.parametrize("step", [1, 3, 5, 6, 7])
def test_no_trial_is_pruned_off_the_rungs_or_before_the_first(step):
    # min_resource 2, eta 2: rungs 2, 4, 8. The worst trial survives every other epoch.
    pruner = MOASHAPruner(OBJECTIVES, reduction_factor=2, min_resource=2)
    assert not _verdict(pruner, RUNG, (0.1, 1000.0), step=step)
    assert _verdict(pruner, RUNG, (0.1, 1000.0), step=2)


@pytest.mark.parametrize(
    "eta, min_resource, rungs",
    [(3, 1, [1, 3, 9, 27]), (2, 1, [1, 2, 4, 8, 16]), (2, 3, [3, 6, 12, 24]), (4, 2, [2, 8])],
)
def test_rungs_are_min_resource_times_powers_of_eta(eta, min_resource, rungs):
    pruner = MOASHAPruner(OBJECTIVES, reduction_factor=eta, min_resource=min_resource)
    assert [s for s in range(1, 30) if pruner.is_rung(s)] == rungs


def test_no_trial_is_pruned_at_a_rung_before_min_trials_reached_it():
    pruner = MOASHAPruner(OBJECTIVES, reduction_factor=2, min_trials=6)
    assert not _verdict(pruner, RUNG, (0.1, 1000.0))  # 5 trials at the rung < 6
    assert _verdict(pruner, [*RUNG, (0.9, 100.0)], (0.1, 1000.0))


def test_the_first_trial_at_a_rung_is_kept():
    assert not _verdict(MOASHAPruner(OBJECTIVES, reduction_factor=4), [], (0.0, 1e9))


def test_a_diverged_trial_ranks_after_every_finite_one():
    assert _verdict(MOASHAPruner(OBJECTIVES, reduction_factor=2), RUNG, (math.nan, 10.0))
    ranks = nondominated_ranks({"a": [0.5, math.nan, 0.9], "s": [1.0, 1.0, 2.0]}, {"a": "max", "s": "min"})
    assert ranks.tolist() == [0, 1, 0]


def test_nondominated_ranks_peel_the_fronts():
    columns = {"val_accuracy": [0.9, 0.8, 0.85, 0.7, 0.8], "storage_bytes": [100, 50, 100, 200, 50]}
    # front 0: (0.9, 100), (0.8, 50) and its duplicate; front 1: (0.85, 100); front 2: (0.7, 200)
    assert nondominated_ranks(columns, OBJECTIVES).tolist() == [0, 0, 1, 2, 0]


def test_crowding_gives_ends_infinity_and_duplicates_one_distance():
    costs = np.array([[0.0, 4.0], [1.0, 3.0], [1.0, 3.0], [3.0, 1.0], [4.0, 0.0]])
    d = crowding_distance(costs)
    assert np.isinf(d[0]) and np.isinf(d[-1])
    assert d[1] == d[2] == pytest.approx((3 - 0) / 4 + (4 - 1) / 4)  # nearest distinct neighbours
    assert d[3] == pytest.approx((4 - 1) / 4 + (3 - 0) / 4)


@pytest.mark.parametrize(
    "options, words",
    [
        ({"reduction_factor": 1}, "reduction_factor must be an integer >= 2"),
        ({"min_resource": 0}, "min_resource must be an integer >= 1"),
        ({"min_trials": 1.5}, "min_trials must be an integer >= 1"),
        ({"eta": 3}, "eta"),
    ],
)
def test_bad_moasha_options_are_config_errors_naming_the_pipeline(write_pipeline, tmp_path, options, words):
    path = write_pipeline(tmp_path, "bad-moasha", pruner={"kind": MOASHA, **options})
    with pytest.raises(ConfigError, match=f"pruner {MOASHA}") as info:
        load_pipeline(path)
    assert words in str(info.value) and str(path) in str(info.value)


def test_a_pipeline_names_moasha_and_gets_the_measured_defaults(write_pipeline, tmp_path):
    pipe = load_pipeline(write_pipeline(tmp_path, "mo", pruner=MOASHA))
    pruner = make_pruner(pipe.pruner, pipe.epochs, objectives=pipe.prune_objectives)
    assert (pruner.reduction_factor, pruner.min_resource, pruner.min_trials) == (2, 1, 1)
    assert pruner.objectives == OBJECTIVES and pruner.extra_metrics == ["storage_bytes"]


class _RayTrial:
    def __init__(self, trial_id: str):
        self.trial_id = trial_id


def test_the_scheduler_stops_a_dominated_trial_at_the_rung_through_the_journal(tmp_path):
    # eta 2, rungs 2 and 4 (the last epoch, never pruned by the scheduler).
    pruner = make_pruner({"kind": MOASHA, "reduction_factor": 2, "min_resource": 2}, 4, objectives=OBJECTIVES)
    sched = OptunaPrunerScheduler(pruner, tmp_path / "optuna.journal", "s.pruning", max_step=4)
    assert sched.extra_metrics == ["storage_bytes"]

    def report(name: str, epoch: int, accuracy: float, storage: float) -> str:
        result = {"epoch": epoch, "val_accuracy": accuracy, "storage_bytes": storage}
        return sched.on_trial_result(None, _RayTrial(name), result)

    # epoch 1 is before the first rung: the worst trial goes on; at epoch 2, a, b and c are the
    # rung's front (c the most accurate, b the smallest) ...
    assert report("d", 1, 0.1, 300.0) == sched.CONTINUE
    for name, (accuracy, storage) in {"a": (0.9, 100.0), "b": (0.8, 50.0), "c": (0.95, 200.0)}.items():
        assert report(name, 1, 0.5, storage) == sched.CONTINUE
        assert report(name, 2, accuracy, storage) == sched.CONTINUE
    # ... and d, dominated by all three at the rung (3 >= 4/2), is stopped and recorded PRUNED.
    assert report("d", 2, 0.3, 300.0) == sched.STOP
    assert sched.trial_state("d") == "PRUNED"
