"""What every Ray Tune experiment of a sweep shares (its search, its confirmation): the trainable, the
trials' names, Tune's output settings, and the trials Tune's saved state lists.

    trainable = make_trainable(pipe, fail_once_at_epoch=None)
    quiet_tune()
    tune.Tuner(trainable, tune_config=tune.TuneConfig(trial_name_creator=trial_name, ...))
    statuses = ray_trials(pipe.experiment_path(sweep_id))     # {trial id: status}
"""

from __future__ import annotations

import logging
import os

from albsnn.sweep._imports import require
from albsnn.sweep.pipeline import Pipeline

__all__ = ["make_trainable", "quiet_tune", "trial_name", "ray_trials", "ray_trial_configs"]


def make_trainable(pipe: Pipeline, fail_once_at_epoch: int | None):
    """The Ray trainable of ``pipe``'s trials, with the resources each one holds."""
    tune = require("ray.tune")
    from albsnn.sweep.trainable import TrialOptions, run_trial

    options = TrialOptions(
        cpus=pipe.resources["cpus"],
        checkpoint_every=pipe.checkpoint_every,
        keep_checkpoints=pipe.keep_checkpoints,
        fail_once_at_epoch=fail_once_at_epoch,
    )
    resources = {"cpu": pipe.resources["cpus"], "gpu": pipe.resources["gpus"]}
    return tune.with_resources(tune.with_parameters(run_trial, options=options), resources)


def quiet_tune() -> None:
    # Experiment snapshots pickle every trial's state and the searcher, so their cost grows with the
    # sweep. Nothing forces them (no num_to_keep), so Ray's throttle holds: one every
    # max(10 s, 19 x its cost), or TUNE_GLOBAL_CHECKPOINT_S seconds when set. Ray's warnings stay on.
    # Our ProgressPrinter replaces Tune's tables; MLflow replaces Tune's JSON/CSV/TensorBoard result
    # files (which the driver would re-copy with every snapshot).
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    logging.getLogger("ray.tune.analysis.experiment_analysis").addFilter(_no_result_files_warning)
    require("optuna").logging.set_verbosity(logging.WARNING)


def _no_result_files_warning(record: logging.LogRecord) -> bool:
    # Without Tune's result files, every ExperimentAnalysis (Tuner.fit, Tuner.restore) warns that it
    # found no metrics for each trial; MLflow holds them.
    return not record.getMessage().startswith("Failed to fetch metrics")


def trial_name(trial) -> str:
    return f"trial_{trial.trial_id}"


def ray_trial_configs(experiment: str) -> dict[str, tuple[str, dict]]:
    """``{trial id: (status, config)}`` from the newest Tune experiment state of ``experiment``
    (a folder or a URI); empty when there is none, or it is unreadable: MLflow's counts still stand."""
    tune = require("ray.tune")
    try:
        analysis = tune.ExperimentAnalysis(experiment)
    except Exception:  # no or unreadable state
        return {}
    return {t.trial_id: (t.status, dict(t.config)) for t in analysis.trials}


def ray_trials(experiment: str) -> dict[str, str]:
    """``{trial id: status}`` from the newest Tune experiment state of ``experiment``."""
    return {trial: status for trial, (status, _) in ray_trial_configs(experiment).items()}
