"""The confirmation stage of a sweep: re-run the search's Pareto candidates on more seeds, on Ray Tune.

Which candidates, and which of them survive, is :mod:`albsnn.sweep.confirm` (no Ray, no MLflow).
This module runs them: the plan (candidates x seeds) is chosen once, when the search has ended, and
kept in the sweep's record (:class:`~albsnn.sweep.record.ConfirmPlan`), so ``--resume`` continues
the same confirmation (``Tuner.restore`` of its experiment ``confirm/``) instead of choosing again.
"""

from __future__ import annotations

import json
from pathlib import Path

from albsnn.sweep._imports import require
from albsnn.sweep.confirm import (
    CONFIRM_DIR,
    ConfirmedPoint,
    config_key,
    judge,
    one_per_config,
    select_candidates,
)
from albsnn.sweep.experiment import ray_trial_configs, trial_name
from albsnn.sweep.pipeline import Pipeline
from albsnn.sweep.record import ConfirmPlan, ConfirmRun, SweepRecord
from albsnn.sweep.result import SweepResult
from albsnn.sweep.run import lost_configs
from albsnn.sweep.tracking import layout as L
from albsnn.sweep.trainable_cache import cached_trainables

__all__ = ["confirm_front"]


def _confirm_path(pipe: Pipeline, sweep_id: str) -> str:
    """The confirmation's Ray Tune experiment: ``confirm/`` inside the sweep's experiment folder."""
    from albsnn.sweep.storage_uri import join_uri

    base = pipe.experiment_path(sweep_id)
    return join_uri(base, CONFIRM_DIR) if pipe.ray_storage else str(Path(base) / CONFIRM_DIR)


def confirm_front(
    result: SweepResult, pipe: Pipeline, record: SweepRecord, log, known: set, trainable, progress: bool
) -> dict[str, float]:
    """Re-run the search's Pareto candidates on ``confirm.seeds`` (a second Tune experiment).

    Sets the result's confirmation counts and points (and ``interrupted`` when the confirmation did
    not end); returns the parent run's confirmation metrics.
    """
    from albsnn.metrics import SWEEP_CONFIRM_COUNT_PREFIX, SWEEP_CONFIRM_SURVIVORS

    tune = require("ray.tune")
    plan = record.confirm or _plan_confirmation(pipe, record, log, known)
    path = _confirm_path(pipe, record.folder.name)
    if plan.runs:
        if tune.Tuner.can_restore(path):
            if progress:
                print(f"resuming the confirmation of {len(plan.points)} Pareto point(s)")
            tuner = tune.Tuner.restore(path, trainable, resume_unfinished=True, resume_errored=False)
        else:
            tuner = _confirm_tuner(pipe, record.folder.name, plan, trainable, log, progress)
        with cached_trainables():
            tuner.fit()
    trials = ray_trial_configs(path)
    result.interrupted = len(trials) < len(plan.runs) or any(
        status not in ("TERMINATED", "ERROR") for status, _ in trials.values()
    )
    if result.interrupted:
        log.kill_unfinished("interrupted")
    result.confirm_counts = log.counts(trials)
    result.confirm_points = _judge(pipe, plan, log, trials)
    counts = {L.FINISHED: 0, L.PRUNED: 0, L.FAILED: 0, L.RUNNING: 0, **result.confirm_counts}
    # every state, zeros included: a resumed sweep's final values replace the interrupted ones
    metrics = {f"{SWEEP_CONFIRM_COUNT_PREFIX}{s.lower()}": float(n) for s, n in counts.items()}
    metrics[SWEEP_CONFIRM_SURVIVORS] = float(sum(p.survives for p in result.confirm_points))
    return metrics


def _plan_confirmation(pipe: Pipeline, record: SweepRecord, log, known: set) -> ConfirmPlan:
    """Choose the candidates (on the validation objectives) and write them into the sweep's record."""
    finished = {t: log.last.get(t, {}) for t in known if log.states.get(t) == L.FINISHED}
    search = ray_trial_configs(pipe.experiment_path(record.folder.name))
    configs = {t: config for t, (_, config) in search.items()}
    configs.update(lost_configs(pipe, record, set(finished) - set(configs)))
    unique = one_per_config({t: configs[t] for t in finished if t in configs})
    points = select_candidates({t: finished[t] for t in unique}, pipe.objectives, pipe.confirm["max_points"])
    runs = [
        ConfirmRun(trial=trial, point=number, seed=seed, config={**configs[trial], "seed": seed})
        for number, trial in enumerate(points, 1)
        for seed in pipe.confirm["seeds"]
    ]
    record.confirm = ConfirmPlan(seeds=list(pipe.confirm["seeds"]), points=points, runs=runs)
    record.save()
    return record.confirm


def _confirm_tuner(pipe: Pipeline, sweep_id: str, plan: ConfirmPlan, trainable, log, progress: bool):
    """A Tuner that runs exactly the planned configs, once each, unpruned, like the search's trials."""
    from ray.tune.search import BasicVariantGenerator

    from albsnn.sweep.tracking import runs
    from albsnn.sweep.tracking.callback import MlflowTrialCallback

    tune = require("ray.tune")
    configs = [r.config for r in plan.runs]
    names = [*pipe.search_space.names, "seed"]
    lookup = {config_key(r.config): (r.trial, r.point) for r in plan.runs}
    callbacks = [MlflowTrialCallback(log, param_names=names, source=runs.source_tags(), confirm=lookup)]
    if progress:
        from albsnn.sweep.progress import ProgressPrinter

        print(f"confirming {len(plan.points)} Pareto point(s) on seeds {plan.seeds}: {len(configs)} runs")
        callbacks.append(ProgressPrinter(len(configs), names))
    return tune.Tuner(
        trainable,
        param_space=_points_space(configs),
        tune_config=tune.TuneConfig(
            search_alg=BasicVariantGenerator(
                points_to_evaluate=configs, max_concurrent=pipe.max_concurrent or 0
            ),
            num_samples=len(configs),
            reuse_actors=True,
            trial_name_creator=trial_name,
            trial_dirname_creator=trial_name,
        ),
        run_config=tune.RunConfig(
            name=CONFIRM_DIR,
            storage_path=pipe.experiment_path(sweep_id),
            failure_config=tune.FailureConfig(max_failures=pipe.max_failures),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=None),
            callbacks=callbacks,
            verbose=0,
        ),
    )


def _points_space(configs: list[dict]) -> dict:
    """A ``param_space`` that holds every key of ``configs``: shared values fixed, the rest a choice.

    Tune's ``points_to_evaluate`` may only set keys its space has; the points then set every value.
    """
    tune = require("ray.tune")
    space = {}
    for key in dict.fromkeys(k for c in configs for k in c):
        values = list({json.dumps(c.get(key), sort_keys=True): c.get(key) for c in configs}.values())
        space[key] = values[0] if len(values) == 1 else tune.choice(values)
    return space


def _judge(pipe: Pipeline, plan: ConfirmPlan, log, trials: dict) -> list[ConfirmedPoint]:
    """Each candidate's finished seeds and whether it survives (:func:`albsnn.sweep.confirm.judge`)."""
    from albsnn.metrics import TEST_ACCURACY

    run_of = {config_key(config): t for t, (_, config) in trials.items()}
    groups = []
    for number, trial in enumerate(plan.points, 1):
        ids = {pipe.seeds[0]: trial}
        ids.update({r.seed: run_of.get(config_key(r.config)) for r in plan.runs if r.trial == trial})
        seeds = {s: log.last.get(t, {}) for s, t in ids.items() if t and log.states.get(t) == L.FINISHED}
        groups.append((trial, number, seeds))
    return judge(groups, pipe.objectives, 1 + len(plan.seeds), reported=(TEST_ACCURACY,))
