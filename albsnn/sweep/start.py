"""Start a new sweep: its folder, its parent run in MLflow, its record, and the Tuner of its search.

In order (:func:`albsnn.sweep.runner.run_sweep` calls them): :func:`new_sweep_dir` makes
``<storage>/<pipeline name>/<sweep id>/``; :func:`start_parent_run` copies the pipeline and search
space into it and creates the parent run, tagged with what the sweep is (:func:`parent_tags`);
:func:`new_record` is the ``sweep.json`` a resume reads; :func:`search_tuner` builds the Ray Tune
search (Optuna sampler and pruner, trial budget, MLflow and progress callbacks).
"""

from __future__ import annotations

import contextlib
import json
import shutil
import time
from pathlib import Path

from albsnn.errors import ConfigError
from albsnn.sweep._imports import require
from albsnn.sweep.experiment import trial_name
from albsnn.sweep.pipeline import Pipeline
from albsnn.sweep.record import JOURNAL_FILE, SWEEP_FILE, SweepRecord
from albsnn.sweep.tracking import layout as L
from albsnn.sweep.tracking.server_wait import WAIT_S, call_server

__all__ = ["new_sweep_dir", "start_parent_run", "parent_tags", "new_record", "search_tuner", "describe"]


def new_sweep_dir(pipe: Pipeline) -> Path:
    """A new, empty folder ``<storage>/<pipeline name>/<pipeline name>-<date>-<time>``."""
    sweep_id = f"{pipe.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    sweep_dir = pipe.storage / pipe.name / sweep_id
    while sweep_dir.exists():  # two sweeps started within a second
        sweep_id += "x"
        sweep_dir = pipe.storage / pipe.name / sweep_id
    sweep_dir.mkdir(parents=True)
    return sweep_dir


def start_parent_run(
    pipe: Pipeline, sweep_dir: Path, uri: str, command: str, wait_s: float = WAIT_S
) -> tuple[str, str]:
    """Copy the pipeline and its search space into ``sweep_dir`` and create the sweep's parent run,
    with the copies as artifacts; returns ``(experiment id, parent run id)``.

    A server that stops answering meanwhile is waited for up to ``wait_s`` seconds, said at once
    (:mod:`~albsnn.sweep.tracking.server_wait`); past that, a ConfigError, and the folder is removed.
    """
    from albsnn.sweep.tracking import runs

    copies = [sweep_dir / L.PIPELINE_FILE, sweep_dir / L.SEARCH_SPACE_FILE]
    shutil.copy2(pipe.path, copies[0])
    shutil.copy2(pipe.search_space.path, copies[1])
    tags = {**parent_tags(pipe, sweep_dir), **runs.provenance_tags(command=command)}

    def create(experiment_id: str) -> str:
        # sweep ids are unique: a run of this name was made by a try whose answer was lost
        found = runs.parent_named(uri, experiment_id, sweep_dir.name)
        return found or runs.create_parent_run(uri, experiment_id, sweep_dir.name, tags)

    parent = None
    try:
        experiment_id = call_server(
            uri,
            "creating the experiment",
            lambda: runs.ensure_experiment(uri, pipe.experiment),
            wait_s=wait_s,
        )
        parent = call_server(uri, "creating the parent run", lambda: create(experiment_id), wait_s=wait_s)
        upload = "uploading the pipeline to the parent run"
        call_server(uri, upload, lambda: runs.log_artifacts(uri, parent, copies), wait_s=wait_s)
    except ConfigError:
        shutil.rmtree(sweep_dir, ignore_errors=True)  # nothing of the sweep exists but its folder ...
        if parent is not None:  # ... and a parent run without its files, ended if the server lets us
            with contextlib.suppress(Exception):
                L.client(uri).set_terminated(parent, "FAILED")
        raise
    return experiment_id, parent


def parent_tags(pipe: Pipeline, sweep_dir: Path) -> dict[str, str]:
    """What the sweep is, as tags of its parent run (the report reads them back)."""
    tags = {
        L.PIPELINE: str(pipe.path),
        L.PIPELINE_NAME: pipe.name,
        L.DATASET: pipe.dataset,
        L.MODE: pipe.mode,
        L.OBJECTIVES: json.dumps(pipe.objectives),
        L.SEARCH_SPACE: str(pipe.search_space.path),
        L.SEARCH_SPACE_TYPES: json.dumps({**pipe.search_space.types(), "seed": "int"}),
        L.SWEEP_DIR: str(sweep_dir),
        L.PRUNER: json.dumps(pipe.pruner),
        L.PRUNE_METRIC: pipe.prune_on[0],
        L.NUM_SAMPLES: str(pipe.num_samples),
        L.BASE_CONFIG: json.dumps(pipe.base_config(), sort_keys=True),
    }
    if pipe.confirm:
        tags[L.CONFIRM_SEEDS] = json.dumps(pipe.confirm["seeds"])
    if pipe.mode == "search":
        tags[L.OPTUNA_STORAGE] = str(sweep_dir / JOURNAL_FILE)
        tags[L.OPTUNA_STUDY] = sweep_dir.name
        tags[L.SAMPLER] = json.dumps(pipe.sampler)
    return tags


def new_record(pipe: Pipeline, sweep_dir: Path, uri: str, experiment_id: str, parent: str) -> SweepRecord:
    """The record of a sweep just started (not yet saved)."""
    sweep_id = sweep_dir.name
    # A resume rebuilds the pipeline from the copies, so their paths and the storage must be kept.
    overrides = {"search_space": str(sweep_dir / L.SEARCH_SPACE_FILE), "storage": str(pipe.storage)}
    if pipe.ray_storage:
        overrides.update(storage=pipe.ray_storage, local_storage=str(pipe.storage))
    if pipe.train.get("data_dir"):
        overrides["data_dir"] = pipe.train["data_dir"]
    return SweepRecord(
        folder=sweep_dir,
        sweep_id=sweep_id,
        pipeline=str(pipe.path),
        overrides=overrides,
        num_samples=pipe.num_samples,
        experiment=pipe.experiment,
        experiment_id=experiment_id,
        parent_run_id=parent,
        tracking_uri=uri,
        optuna_storage=str(sweep_dir / JOURNAL_FILE),
        optuna_study=sweep_id if pipe.mode == "search" else None,
        pruning_study=f"{sweep_id}.pruning",
        created=time.strftime("%Y-%m-%dT%H:%M:%S"),
    )


def search_tuner(pipe: Pipeline, record: SweepRecord, log, trainable, command: str, progress: bool):
    """The Ray Tune Tuner of the sweep's search (or ablation grid), recording into ``log``."""
    tune = require("ray.tune")
    from albsnn.sweep.scheduler import FifoQueue

    scheduler, searcher = _scheduler_and_searcher(pipe, record)
    trial_state = scheduler.trial_state if scheduler is not None else None
    trial_number = searcher.trial_number if searcher is not None else None
    callbacks = _callbacks(pipe, log, trial_state, trial_number, command, progress)
    return tune.Tuner(
        trainable,
        param_space=pipe.param_space(),
        tune_config=tune.TuneConfig(
            search_alg=_budgeted(searcher, pipe, record.folder),
            scheduler=scheduler or FifoQueue(),
            num_samples=pipe.num_samples,
            max_concurrent_trials=pipe.max_concurrent if searcher is None else None,
            # One worker process runs trial after trial: torch/sklearn imports and data loading
            # (several seconds on a small CPU) are paid once per worker, not once per trial.
            reuse_actors=True,
            trial_name_creator=trial_name,
            trial_dirname_creator=trial_name,
        ),
        run_config=tune.RunConfig(
            name=record.folder.name,
            storage_path=pipe.ray_storage_path(),
            failure_config=tune.FailureConfig(max_failures=pipe.max_failures),
            # Trials rotate their own checkpoints (trainable.py): Ray's num_to_keep would force an
            # experiment snapshot, whose cost grows with the trials, every num_to_keep checkpoints.
            checkpoint_config=tune.CheckpointConfig(num_to_keep=None),
            callbacks=callbacks,
            verbose=0,
        ),
    )


def _callbacks(pipe: Pipeline, log, trial_state, trial_number, command: str, progress: bool) -> list:
    from albsnn.sweep.tracking import runs
    from albsnn.sweep.tracking.callback import MlflowTrialCallback

    names = [*pipe.search_space.names, "seed"]
    callbacks = [
        MlflowTrialCallback(
            log,
            param_names=names,
            trial_state=trial_state,
            trial_number=trial_number,
            source=runs.source_tags(command),
        ),
    ]
    if progress:
        from albsnn.sweep.plan import trial_count
        from albsnn.sweep.progress import ProgressPrinter

        callbacks.append(ProgressPrinter(trial_count(pipe), names, trial_state))
    return callbacks


def _scheduler_and_searcher(pipe: Pipeline, record: SweepRecord):
    from albsnn.sweep.journal import open_journal
    from albsnn.sweep.pruners import make_pruner
    from albsnn.sweep.samplers import make_sampler
    from albsnn.sweep.scheduler import OptunaPrunerScheduler
    from albsnn.sweep.search import StudySearch

    journal = record.journal
    scheduler = None
    if pipe.pruner["kind"] != "none":
        metric, mode = pipe.prune_on
        scheduler = OptunaPrunerScheduler(
            make_pruner(pipe.pruner, pipe.epochs, objectives=pipe.prune_objectives),
            journal,
            record.pruning_study,
            metric=metric,
            mode=mode,
            max_step=pipe.epochs,
        )
    searcher = None
    if pipe.mode == "search":
        single = len(pipe.objectives) == 1
        searcher = StudySearch(
            space=pipe.search_space.suggest,  # define-by-run: conditional parameters
            metric=pipe.metrics[0] if single else pipe.metrics,
            mode=pipe.modes[0] if single else pipe.modes,
            sampler=make_sampler(pipe.sampler, pipe.seeds[0]),
            study_name=record.optuna_study,
            storage=open_journal(journal, shared=True),
            is_pruned=scheduler.is_pruned if scheduler is not None else None,
        )
    return scheduler, searcher


def _budgeted(searcher, pipe: Pipeline, sweep_dir: Path):
    """The searcher, concurrency-limited, under a budget that ``--resume --num-samples`` can raise."""
    if searcher is None:
        return None
    from ray.tune.search import ConcurrencyLimiter

    from albsnn.sweep.budget import TrialBudget

    if pipe.max_concurrent:
        searcher = ConcurrencyLimiter(searcher, max_concurrent=pipe.max_concurrent)
    return TrialBudget(searcher, sweep_dir / SWEEP_FILE)


def describe(pipe: Pipeline) -> str:
    """One line: dataset, epochs, mode and size, pruner, objectives."""
    from albsnn.sweep.plan import trial_count

    objectives = ", ".join(f"{k} {v}" for k, v in pipe.objectives.items())
    if pipe.mode == "search":
        how = f"search, {pipe.num_samples} trials, sampler {pipe.sampler['kind']}"
    else:
        how = f"ablation, {trial_count(pipe)} trials"
    return (
        f"{pipe.dataset}, {pipe.epochs} epochs, {how}, pruner {pipe.pruner['kind']}, objectives {objectives}"
    )
