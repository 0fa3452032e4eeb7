"""The driver-side Ray Tune callback: turns trial events into :class:`~.spool.SweepLog` records.

Trial workers never talk to MLflow, and neither does this callback: it appends records to the
sweep's spool (a local file) and returns, so a slow or unreachable server never stalls Tune's
event loop. Its hooks never raise into Tune: a failure is reported once and the sweep goes on.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterable
from pathlib import Path

from albsnn.sweep._imports import require
from albsnn.sweep.tracking import layout as L
from albsnn.sweep.tracking.spool import SweepLog

__all__ = ["MlflowTrialCallback", "trial_params", "DATASET_RESULT"]  # noqa: F822 - see __getattr__

DATASET_RESULT = "dataset"  # result key: JSON {name, digest, source, profile} (first epoch of an attempt)


def trial_params(config: dict) -> dict[str, str]:
    """Every field of the trial's resolved TrainConfig (searched and fixed alike), as MLflow params."""
    from albsnn.train import TrainConfig

    try:
        values = TrainConfig.from_checked({**config, "out": None}).to_dict()  # the pipeline checked them
    except Exception:  # noqa: BLE001 - the trial itself will say what is wrong; log what it got
        values = dict(config)
    values.pop("out", None)
    return {k: L.param_text(v) for k, v in values.items()}


def _guarded(hook):
    @functools.wraps(hook)
    def run(self, *args, **kwargs):
        try:
            hook(self, *args, **kwargs)
        except Exception as e:  # noqa: BLE001 - a tracking failure must not end the sweep
            self.log.problem(f"{hook.__name__} failed ({type(e).__name__}: {str(e).splitlines()[0][:200]})")

    return run


class _MlflowTrialCallback:
    """One MLflow child run per Ray trial, nested under the sweep's parent run.

    Args:
        log: the sweep's :class:`SweepLog` (pickled as its folder, URI and run ids).
        param_names: the swept trial config keys (search space and ``seed``): they name the run.
        trial_state: ``fn(ray_trial_id) -> "PRUNED" | None`` (the pruning scheduler's verdict).
        trial_number: ``fn(ray_trial_id) -> int | None`` (the Optuna trial number, search mode).
        source: MLflow source tags for every child run (:func:`~.runs.source_tags`).
        confirm: for the confirmation's experiment: ``{config_key(config): (search trial id, point)}``
            of every confirmation run (:mod:`albsnn.sweep.confirm`); its runs get role CONFIRM.
    """

    def __init__(
        self,
        log: SweepLog,
        *,
        param_names: Iterable[str],
        trial_state: Callable[[str], str | None] | None = None,
        trial_number: Callable[[str], int | None] | None = None,
        source: dict | None = None,
        confirm: dict[str, tuple[str, int]] | None = None,
    ):
        self.log = log
        self.confirm = dict(confirm) if confirm is not None else None
        self.param_names = list(param_names)
        self.trial_state = trial_state
        self.trial_number = trial_number
        self.source = dict(source or {})
        self._tags_sent: dict[str, dict[str, str]] = {}  # trial id -> the epoch tags recorded so far

    def __reduce__(self):
        # Tune pickles its callbacks with the experiment; a restored one reopens the same spool.
        log = self.log
        where = (str(log.folder), log.uri, log.writer.experiment_id, log.writer.parent_run_id)
        options = dict(
            param_names=self.param_names,
            trial_state=self.trial_state,
            trial_number=self.trial_number,
            source=self.source,
            confirm=self.confirm,
        )
        return (_restore, (type(self), where, options))

    def _number_tag(self, trial_id: str) -> dict:
        number = self.trial_number(trial_id) if self.trial_number else None
        return {L.OPTUNA_TRIAL_NUMBER: str(number)} if number is not None else {}

    # -- Tune hooks
    @_guarded
    def on_trial_start(self, iteration: int, trials: list, trial, **info) -> None:
        name = L.trial_run_name(trial.config, self.param_names)
        tags = {**self.source, **self._number_tag(trial.trial_id)}
        if self.confirm is not None:
            from albsnn.sweep.confirm import config_key

            confirms, point = self.confirm[config_key(trial.config)]
            name = L.confirm_run_name(trial.config, self.param_names, point)
            tags.update({L.ROLE: L.CONFIRM, L.CONFIRMS: confirms, L.CONFIRM_POINT: str(point)})
        self.log.start_trial(trial.trial_id, name, trial_params(trial.config), tags)

    @_guarded
    def on_trial_result(self, iteration: int, trials: list, trial, result: dict, **info) -> None:
        epoch = result.get("epoch")
        if not isinstance(epoch, int):
            return
        if isinstance(result.get(DATASET_RESULT), str):
            self.log.dataset(trial.trial_id, json.loads(result[DATASET_RESULT]))
        tags = self._number_tag(trial.trial_id)
        tags.update({tag: str(result[key]) for key, tag in L.TRIAL_WHERE.items() if result.get(key)})
        sent = self._tags_sent.setdefault(trial.trial_id, {})
        changed = {k: v for k, v in tags.items() if sent.get(k) != v}  # the same tags every epoch: once
        if self.log.epoch(trial.trial_id, epoch, L.epoch_metrics(result), changed):
            sent.update(changed)

    @_guarded
    def on_trial_complete(self, iteration: int, trials: list, trial, **info) -> None:
        state = (self.trial_state(trial.trial_id) if self.trial_state else None) or L.FINISHED
        self._finish(trial, state)

    @_guarded
    def on_trial_error(self, iteration: int, trials: list, trial, **info) -> None:
        self._finish(trial, L.FAILED)

    @_guarded
    def on_trial_recover(self, iteration: int, trials: list, trial, **info) -> None:
        retries = getattr(trial.run_metadata, "num_failures", None)
        if retries is not None:
            self.log.tags(trial.trial_id, {L.RETRIES: str(retries)})

    @_guarded
    def on_experiment_end(self, trials: list, **info) -> None:
        # The search's runs are settled by the runner, which also knows the trials Ray lost but the
        # study kept (albsnn.sweep.run.lost_trials); a confirmation knows only its own Ray trials.
        if self.confirm is not None:
            self.log.forget_orphans((t.trial_id for t in trials), role=L.CONFIRM)

    def _finish(self, trial, state: str) -> None:
        last = trial.last_result or {}
        epoch = last.get("epoch")
        if not isinstance(epoch, int):
            epoch = self.log.last_step.get(trial.trial_id, 0)
        self._artifacts(trial)
        self.log.end_trial(
            trial.trial_id,
            state,
            step=epoch or 0,
            metrics=L.final_metrics(last),
            tags=self._number_tag(trial.trial_id),
        )

    def _artifacts(self, trial) -> None:
        checkpoint = getattr(trial, "checkpoint", None)
        if checkpoint is None:
            return
        try:
            with checkpoint.as_directory() as folder:
                names = (*L.TRIAL_ARTIFACTS, L.MODEL_FILE)
                files = [Path(folder) / n for n in names if (Path(folder) / n).is_file()]
                self.log.artifacts(trial.trial_id, files)
        except OSError as e:  # a checkpoint rotated away: the metrics are still there
            self.log.tags(trial.trial_id, {L.ARTIFACTS_ERROR: str(e)[:500]})


def _restore(cls: type, where: tuple, options: dict):
    return cls(SweepLog.open(*where), **options)


@functools.cache
def _callback_class() -> type:
    tune = require("ray.tune")
    cls = type("MlflowTrialCallback", (_MlflowTrialCallback, tune.Callback), {})
    cls.__module__ = __name__
    cls.__doc__ = _MlflowTrialCallback.__doc__
    return cls


def __getattr__(name: str):
    # subclasses ray.tune.Callback, created on first use so that importing this module needs no Ray
    if name == "MlflowTrialCallback":
        return _callback_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
