"""Pareto pruning (two objectives at each epoch) and the pruning bridge's handling of Ray retries.

Studies here are Optuna in-memory studies or the sweep's own journal; no trial trains.
"""

from __future__ import annotations

import random

import optuna
import pytest
from optuna.trial import TrialState
from ray.tune.experiment import Trial

from albsnn.errors import ConfigError
from albsnn.pareto import dominates
from albsnn.sweep import load_pipeline
from albsnn.sweep.pareto_pruner import ParetoPruner, report_objectives, step_key
from albsnn.sweep.pruners import make_pruner
from albsnn.sweep.scheduler import OptunaPrunerScheduler, open_journal

OBJECTIVES = {"val_accuracy": "max", "storage_bytes": "min"}
MODES = ("max", "min")


def _finished(study, curve: dict[int, tuple[float, float]]) -> None:
    """Add a COMPLETE trial whose (accuracy, storage) at each epoch is ``curve``."""
    last = curve[max(curve)]
    study.add_trial(
        optuna.trial.create_trial(
            value=last[0],
            intermediate_values={s: a for s, (a, _) in curve.items()},
            user_attrs={step_key("storage_bytes", s): b for s, (_, b) in curve.items()},
            params={},
            distributions={},
        )
    )


def _running(study, curve: dict[int, tuple[float, float]]):
    """A RUNNING trial that has reported ``curve`` (as the scheduler reports it)."""
    trial = study.ask()
    for step, (accuracy, storage) in curve.items():
        report_objectives(trial, {"storage_bytes": storage}, step)
        trial.report(accuracy, step)
    return trial


def test_dominance_respects_the_margin_and_ties():
    assert dominates((0.9, 100), (0.8, 100), MODES, (0.0, 0.0))  # same size, more accurate
    assert not dominates((0.8, 100), (0.8, 100), MODES, (0.0, 0.0))  # equal is not better
    assert not dominates((0.9, 101), (0.8, 100), MODES, (0.0, 0.0))  # larger: a trade-off
    assert not dominates((0.805, 90), (0.8, 100), MODES, (0.01, 0.0))  # within the accuracy margin
    assert dominates((0.82, 90), (0.8, 100), MODES, (0.01, 0.0))
    assert dominates((0.5, 90), (float("nan"), 100), MODES, (0.0, 0.0))  # a diverged trial


@pytest.mark.parametrize("k, margin", [(1, 0.0), (2, 0.0), (1, 0.02), (3, 0.01)])
def test_pareto_pruner_never_prunes_a_trial_non_dominated_at_its_epoch(k, margin):
    # Rule: pruned <=> at least k finished trials dominate it (by the margin) at its epoch; so a
    # trial on the front of its epoch always survives. Random curves, checked against brute force.
    rng = random.Random(k * 100 + int(margin * 1000))
    pruned = kept_on_front = 0
    for _ in range(20):
        pruner = ParetoPruner(OBJECTIVES, min_dominators=k, margin={"val_accuracy": margin}, n_warmup_steps=1)
        study = optuna.create_study(direction="maximize", pruner=pruner)
        curves = [
            {s: (rng.uniform(0.1, 0.95), rng.choice([2000.0, 5000.0, 9000.0, 20000.0])) for s in (1, 2, 3)}
            for _ in range(8)
        ]
        for curve in curves:
            _finished(study, curve)
        step = rng.choice([1, 2, 3])
        mine = (rng.uniform(0.1, 0.95), rng.choice([2000.0, 5000.0, 9000.0, 20000.0]))
        trial = _running(study, {step: mine})
        margins = (margin, 0.0)
        count = sum(dominates(c[step], mine, MODES, margins) for c in curves)
        front = not any(dominates(c[step], mine, MODES, (0.0, 0.0)) for c in curves)
        assert trial.should_prune() == (count >= k)
        if front:
            assert not trial.should_prune()
            kept_on_front += 1
        pruned += trial.should_prune()
    assert pruned and kept_on_front  # both sides of the rule were exercised


def test_low_storage_trial_survives_where_the_median_pruner_cuts_it():
    # The case: binarizing more layers learns more slowly, so the smallest configuration
    # is below the median at epoch 2 - yet nothing finished is as small, so it is on the front.
    large = [
        {1: (0.60 + d, 20000.0), 2: (0.80 + d, 20000.0), 3: (0.90 + d, 20000.0)} for d in (0, 0.02, 0.04)
    ]
    medium = [{1: (0.55, 9000.0), 2: (0.75, 9000.0), 3: (0.85, 9000.0)}]
    small = {1: (0.30, 2500.0), 2: (0.45, 2500.0)}
    weak_large = {1: (0.30, 20000.0), 2: (0.45, 20000.0)}  # as slow, but no smaller: dominated

    verdicts = {}
    for name, pruner in {
        "median": optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=2),
        "pareto": make_pruner("pareto", epochs=3, objectives=OBJECTIVES),
    }.items():
        study = optuna.create_study(direction="maximize", pruner=pruner)
        for curve in large + medium:
            _finished(study, curve)
        verdicts[name] = (_running(study, small).should_prune(), _running(study, weak_large).should_prune())
    assert verdicts["median"] == (True, True)
    assert verdicts["pareto"] == (False, True)


def test_pareto_pruner_waits_for_startup_trials_and_warmup_steps():
    pruner = ParetoPruner(OBJECTIVES, min_dominators=1, n_startup_trials=2, n_warmup_steps=2)
    study = optuna.create_study(direction="maximize", pruner=pruner)
    _finished(study, {1: (0.9, 100.0), 2: (0.9, 100.0)})
    assert not _running(study, {1: (0.1, 200.0), 2: (0.1, 200.0)}).should_prune()  # 1 < 2 finished
    _finished(study, {1: (0.9, 100.0), 2: (0.9, 100.0)})
    assert not _running(study, {1: (0.1, 200.0)}).should_prune()  # epoch 1 < n_warmup_steps
    assert _running(study, {1: (0.1, 200.0), 2: (0.1, 200.0)}).should_prune()


def test_pareto_is_the_default_pruner_of_multi_objective_search_pipelines(write_pipeline, tmp_path):
    # Rule: a front is kept by default; a single objective and an ablation grid keep theirs (none).
    both = load_pipeline(write_pipeline(tmp_path, "mo", pruner=None))
    assert both.pruner == {"kind": "pareto"}
    assert both.prune_objectives == OBJECTIVES
    single = load_pipeline(write_pipeline(tmp_path, "so", pruner=None, objectives={"val_accuracy": "max"}))
    assert single.pruner == {"kind": "none"}
    median = load_pipeline(write_pipeline(tmp_path, "med", pruner="median"))
    assert median.pruner == {"kind": "median"}


@pytest.mark.parametrize(
    "pruner, words",
    [
        ({"kind": "pareto", "min_dominators": 0}, "min_dominators must be >= 1"),
        ({"kind": "pareto", "margin": {"test_accuracy": 0.1}}, "not objectives"),
        ({"kind": "pareto", "objectives": {"val_loss": "min"}}, "objectives come from the pipeline"),
        ({"kind": "pareto", "patience": 2}, "patience"),
    ],
)
def test_bad_pareto_options_are_config_errors(write_pipeline, tmp_path, pruner, words):
    path = write_pipeline(tmp_path, "bad-pareto", pruner=pruner)
    with pytest.raises(ConfigError, match="pruner pareto") as info:
        load_pipeline(path)
    assert words in str(info.value) and str(path) in str(info.value)


class _RayTrial:
    def __init__(self, trial_id: str):
        self.trial_id = trial_id


def test_scheduler_records_storage_per_epoch_and_stops_dominated_trials(tmp_path):
    # Rule: the bridge reports every objective the pruner reads, per epoch, into the pruning study,
    # and a pruned trial is PRUNED there (the search study and MLflow follow is_pruned).
    pruner = make_pruner({"kind": "pareto", "min_dominators": 1}, epochs=3, objectives=OBJECTIVES)
    journal = tmp_path / "optuna.journal"
    sched = OptunaPrunerScheduler(pruner, journal, "s.pruning", max_step=3)
    assert sched.extra_metrics == ["storage_bytes"]
    for trial_id, accuracy, storage in (("big", 0.9, 9000.0), ("small", 0.6, 2000.0)):
        for epoch in (1, 2, 3):
            result = {"epoch": epoch, "val_accuracy": accuracy, "storage_bytes": storage}
            assert sched.on_trial_result(None, _RayTrial(trial_id), result) == sched.CONTINUE
        sched.on_trial_complete(None, _RayTrial(trial_id), result)
    slow_small = {"epoch": 1, "val_accuracy": 0.1, "storage_bytes": 1000.0}
    assert sched.on_trial_result(None, _RayTrial("slow-small"), slow_small) == sched.CONTINUE
    dominated = {"epoch": 1, "val_accuracy": 0.5, "storage_bytes": 9000.0}
    assert sched.on_trial_result(None, _RayTrial("dominated"), dominated) == sched.STOP
    assert sched.is_pruned("dominated") and not sched.is_pruned("slow-small")

    study = optuna.load_study(study_name="s.pruning", storage=open_journal(journal))
    by_id = {t.user_attrs["ray_trial_id"]: t for t in study.trials}
    assert by_id["big"].user_attrs[step_key("storage_bytes", 3)] == 9000.0
    assert by_id["big"].intermediate_values == {1: 0.9, 2: 0.9, 3: 0.9}
    assert by_id["dominated"].state == TrialState.PRUNED
    assert by_id["slow-small"].state == TrialState.RUNNING


def _ray_trial(status: str, failures: int, max_failures: int = 1) -> Trial:
    trial = Trial("__fake", stub=True, max_failures=max_failures)
    trial.status = status
    trial.run_metadata.num_failures = failures
    return trial


def test_a_retried_trial_stays_prunable_and_only_a_final_failure_is_fail(tmp_path):
    # Ray calls on_trial_error on a retry (trial already ERROR, should_recover) and on the final
    # failure (trial still RUNNING, retries used up); only the latter is FAIL in the pruning study.
    pruner = make_pruner({"kind": "deterministic", "trials": [0], "at_step": 2}, epochs=3)
    sched = OptunaPrunerScheduler(pruner, tmp_path / "optuna.journal", "r.pruning", max_step=3)
    retried = _ray_trial(Trial.ERROR, failures=1)
    sched.on_trial_result(None, retried, {"epoch": 1, "val_accuracy": 0.5})
    sched.on_trial_error(None, retried)  # Ray requeues it
    assert sched.study.trials[0].state == TrialState.RUNNING
    retried.status = Trial.RUNNING
    assert sched.on_trial_result(None, retried, {"epoch": 2, "val_accuracy": 0.5}) == sched.STOP
    assert sched.study.trials[0].state == TrialState.PRUNED

    final = _ray_trial(Trial.RUNNING, failures=2)
    sched.on_trial_result(None, final, {"epoch": 1, "val_accuracy": 0.5})
    sched.on_trial_error(None, final)
    assert sched.study.trials[1].state == TrialState.FAIL


def test_scheduler_survives_tuner_pickles_old_and_new(tmp_path):
    # Ray pickles the scheduler into tuner.pkl; a sweep started before extra metrics existed must
    # still resume (and a new one keeps them).
    import pickle

    pruner = make_pruner("pareto", epochs=3, objectives=OBJECTIVES)
    sched = OptunaPrunerScheduler(pruner, tmp_path / "optuna.journal", "p.pruning", max_step=3)
    assert pickle.loads(pickle.dumps(sched)).extra_metrics == ["storage_bytes"]
    old_state = {k: v for k, v in sched.__getstate__().items() if k != "extra_metrics"}
    old = OptunaPrunerScheduler.__new__(OptunaPrunerScheduler)
    old.__setstate__(old_state)
    assert old.on_trial_result(None, _RayTrial("t"), {"epoch": 1, "val_accuracy": 0.5}) == old.CONTINUE


def test_a_pareto_pruner_judges_trials_finished_after_its_last_judgement_and_pickles_without_them():
    # It remembers the vectors it has read; a trial that finished since must still count, and the
    # copy Ray pickles into its snapshots carries no remembered vectors but judges the same.
    import pickle

    pruner = ParetoPruner(OBJECTIVES, min_dominators=2)
    study = optuna.create_study(direction="maximize", pruner=pruner)
    _finished(study, {1: (0.9, 100.0)})
    weak = {1: (0.5, 200.0)}
    assert not _running(study, weak).should_prune()  # one dominator of two
    _finished(study, {1: (0.8, 150.0)})
    assert _running(study, weak).should_prune()  # the second, finished after the first judgement
    copy = pickle.loads(pickle.dumps(pruner))
    assert not copy._seen
    study.pruner = copy
    assert _running(study, weak).should_prune()
