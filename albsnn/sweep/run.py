"""Run a sweep's search to its end, then settle what Ray, Optuna and MLflow each know of its trials.

A driver killed at any moment leaves the three out of step: Ray restores its last experiment
snapshot, the Optuna journal and the MLflow spool are written as things happen. After the fit,
:func:`fit_search` makes them agree: Optuna trials still RUNNING with no Ray trial behind them
fail (:func:`close_orphans`); trials that a killed driver *finished* after Ray's last snapshot
(Ray lost them, the study and MLflow kept their results) stay, their MLflow runs ended as the
study ended them (:func:`lost_trials`); MLflow runs of trials nobody knows are forgotten.
"""

from __future__ import annotations

from albsnn.sweep._imports import require
from albsnn.sweep.actor_pool import warm_actor_pool
from albsnn.sweep.dashboard import RAY_TRIAL_ID
from albsnn.sweep.experiment import ray_trials
from albsnn.sweep.pipeline import Pipeline
from albsnn.sweep.record import SweepRecord
from albsnn.sweep.result import SweepResult
from albsnn.sweep.tracking import layout as L
from albsnn.sweep.trainable_cache import cached_trainables

__all__ = ["fit_search", "close_orphans", "lost_trials", "lost_configs"]


def fit_search(tuner, pipe: Pipeline, record: SweepRecord, uri: str, log) -> tuple[SweepResult, set[str]]:
    """Fit ``tuner`` (the search) and settle its trials; returns the result and the search's trial ids."""
    with cached_trainables(), warm_actor_pool(pipe.max_concurrent):
        grid = tuner.fit()
    trials = ray_trials(pipe.experiment_path(record.folder.name))
    interrupted = any(status not in ("TERMINATED", "ERROR") for status in trials.values())
    lost = lost_trials(record, set(trials)) if trials else {}
    if trials and not interrupted:  # an interrupted sweep's RUNNING trials are still wanted
        close_orphans(record, set(trials))
    if trials:
        _keep_lost(log, lost)
        log.forget_orphans(set(trials) | set(lost))
    if interrupted:  # reopened by --resume
        log.kill_unfinished("interrupted")
    known = (set(trials) | set(lost)) or set(log.states) - log.confirming  # the search's trials only
    result = SweepResult(
        sweep_id=record.sweep_id,
        sweep_dir=record.folder,
        experiment=record.experiment,
        experiment_id=record.experiment_id,
        parent_run_id=record.parent_run_id,
        tracking_uri=uri,
        counts=log.counts(known),
        ray_trials=len(trials) or len(grid),
        interrupted=interrupted,
        optuna_storage=record.journal if record.optuna_study else None,
        optuna_study=record.optuna_study,
    )
    return result, known


def _studies(record: SweepRecord, *names: str | None):
    """The sweep's Optuna studies of these ``names`` that exist in its journal."""
    optuna = require("optuna")
    from albsnn.sweep.journal import open_journal

    journal = record.journal
    if journal is None or not journal.exists():
        return
    storage = open_journal(journal, shared=True)
    found = {s.study_name for s in storage.get_all_studies()}
    for name in names:
        if name in found:
            yield optuna.load_study(study_name=name, storage=storage)


def close_orphans(record: SweepRecord, ray_trial_ids: set[str]) -> None:
    """Optuna trials still RUNNING with no Ray trial behind them (a driver killed mid-suggest): FAIL."""
    state = require("optuna.trial").TrialState
    for study in _studies(record, record.optuna_study, record.pruning_study):
        for t in study.get_trials(deepcopy=False, states=(state.RUNNING,)):
            if t.user_attrs.get(RAY_TRIAL_ID) not in ray_trial_ids:
                study.tell(t.number, state=state.FAIL, skip_if_finished=True)


def lost_trials(record: SweepRecord, ray_trial_ids: set[str]) -> dict[str, str]:
    """``{Ray trial id: PRUNED | FINISHED}`` of search trials a killed driver ended after Ray's last
    snapshot: Ray lost them (and ran others in their place, see ``StudySearch.lost_trials``), but
    their results are in the study and in MLflow, so they stay."""
    from albsnn.sweep.search import ended_unknown_to_ray

    pruned = require("optuna.trial").TrialState.PRUNED
    lost = {}
    for study in _studies(record, record.optuna_study):
        for trial_id, t in ended_unknown_to_ray(study, ray_trial_ids).items():
            lost[trial_id] = L.PRUNED if t.state == pruned else L.FINISHED
    return lost


def lost_configs(pipe: Pipeline, record: SweepRecord, trial_ids: set[str]) -> dict[str, dict]:
    """Ray configs of search trials Ray lost (:func:`lost_trials`), rebuilt as Ray built them:
    the pipeline's fixed values plus the study trial's sampled ones."""
    from albsnn.sweep.search import trials_by_ray_id

    if not trial_ids:
        return {}
    configs = {}
    for study in _studies(record, record.optuna_study):
        for trial_id, t in trials_by_ray_id(study).items():
            if trial_id in trial_ids:
                configs[trial_id] = {**pipe.param_space(), **t.params}
    return configs


def _keep_lost(log, lost: dict[str, str]) -> None:
    """End the MLflow runs of lost trials that the killed driver told Optuna about but not MLflow."""
    for trial_id, state in lost.items():
        if log.states.get(trial_id) == L.RUNNING:
            log.end_trial(trial_id, state, step=log.last_step.get(trial_id, 0))
