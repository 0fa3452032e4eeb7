"""An Optuna pruner as a Ray Tune trial scheduler (the pruning decision stays Optuna's).

Ray's ``OptunaSearch`` builds its study with a ``NopPruner`` and never asks ``should_prune``, and a
trial that a Ray scheduler stops is told to Optuna as COMPLETE with its partial accuracy, which
biases the sampler and the Pareto front. :class:`OptunaPrunerScheduler` closes that gap:

* every epoch's value of the pruning metric (``val_accuracy`` for multi-objective sweeps; never a
  test metric, which is reported, not selected on) is
  reported to a single-objective *pruning study* in the sweep's Optuna journal, one Optuna trial per
  Ray trial (user attribute ``ray_trial_id``);
* the configured Optuna pruner judges that trial (``Trial.should_prune``); when it says prune, the
  scheduler returns ``STOP`` and tells the pruning study PRUNED;
* a pruner that compares several objectives (``ParetoPruner.extra_metrics``) also gets their
  values of that epoch, kept on the same Optuna trial (:func:`~albsnn.sweep.pareto_pruner.report_objectives`);
* a crashed trial that Ray retries (``FailureConfig``) stays RUNNING in the pruning study, keeps
  its reported epochs and can still be pruned; only a final failure is told FAIL (Ray calls
  ``on_trial_error`` for both, see :func:`_is_retry`);
* :meth:`is_pruned` lets :class:`~albsnn.sweep.search.StudySearch` record the trial as PRUNED in the
  search study and the MLflow callback end its run KILLED.

The pruning study lives in the journal file, not in this object: Ray does not checkpoint
schedulers, and after ``Tuner.restore`` this scheduler finds its trials again by ``ray_trial_id``.
A trial that was pruned just before the driver died is stopped again on its first result.

    scheduler = OptunaPrunerScheduler(optuna.pruners.MedianPruner(), storage_file, "demo.pruning")
    Tuner(..., tune_config=TuneConfig(scheduler=scheduler, ...))
"""

from __future__ import annotations

import logging
from pathlib import Path

from albsnn.metrics import VAL_ACCURACY
from albsnn.sweep._imports import require
from albsnn.sweep.dashboard import RAY_TRIAL_ID
from albsnn.sweep.journal import open_journal
from albsnn.sweep.pareto_pruner import report_objectives

__all__ = ["FifoQueue", "OptunaPrunerScheduler", "open_journal"]

_tune_schedulers = require("ray.tune.schedulers")
_log = logging.getLogger(__name__)


def _is_retry(trial) -> bool:
    """Whether Ray is about to requeue ``trial`` after an error (vs. giving up on it).

    Ray 2.60 calls ``on_trial_error`` on both paths of ``TuneController._process_trial_failure``:
    a retry (``trial.should_recover()``; ``_try_recover`` has already set the trial to ERROR and
    ``_requeue_trial`` sets it PENDING after this call) and a final failure (called while the trial is
    still RUNNING or PENDING, followed by the searcher's error and the callbacks' ``on_trial_error``).
    """
    return trial.status == trial.ERROR and trial.should_recover()


class FifoQueue(_tune_schedulers.FIFOScheduler):
    """Ray's FIFO scheduler, choosing from the trials still in play instead of every trial.

    ``FIFOScheduler.choose_trial_to_run`` walks every trial of the experiment, finished ones
    included, at every step of Tune's loop: its cost grows with the sweep (about 2.5 ms of the
    driver's sampled time per trial at 1,500 trials, py-spy on a loaded box). This one keeps Ray's
    order (a requeued trial is added again, at the end, as Ray moves it) and forgets a trial once it
    is finished: the first PENDING trial, else the first PAUSED one, as Ray's.
    """

    def __init__(self):
        super().__init__()
        self._queue: dict = {}  # trial -> None, in the order Ray added (or re-added) them

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_queue": {}}  # Ray adds the trials again after a restore

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self.__dict__.setdefault("_queue", {})  # pickled by a sweep started before the queue

    def on_trial_add(self, tune_controller, trial) -> None:
        self._queue.pop(trial, None)
        self._queue[trial] = None

    def choose_trial_to_run(self, tune_controller):
        done, paused, chosen = [], None, None
        for trial in self._queue:
            if trial.status in (trial.TERMINATED, trial.ERROR):
                done.append(trial)  # a retried trial comes back through on_trial_add
            elif trial.status == trial.PENDING:
                chosen = trial
                break
            elif paused is None and trial.status == trial.PAUSED:
                paused = trial
        for trial in done:
            del self._queue[trial]
        return chosen or paused


class OptunaPrunerScheduler(FifoQueue):
    """Ask an Optuna pruner after every reported epoch; stop the trials it prunes.

    Args:
        pruner: any ``optuna.pruners.BasePruner``.
        storage_path: absolute path of the Optuna journal file that holds the pruning study.
        study_name: name of the pruning study (created on first use, reloaded after a restore).
        metric: the reported metric the pruner judges.
        mode: ``"max"`` or ``"min"``.
        step_key: the reported value used as the step (the epoch, 1-based).
        max_step: the last step (the sweep's ``epochs``): a trial that reached it has spent its
            compute, so it is never pruned there (its value is still reported).
        extra_metrics: reported metrics recorded per step besides ``metric``; default: what the
            pruner reads (``pruner.extra_metrics``, e.g. ``storage_bytes`` for ``ParetoPruner``).
    """

    def __init__(
        self,
        pruner,
        storage_path: str | Path,
        study_name: str,
        metric: str = VAL_ACCURACY,
        mode: str = "max",
        step_key: str = "epoch",
        max_step: int | None = None,
        extra_metrics: list[str] | None = None,
    ):
        super().__init__()
        if mode not in ("max", "min"):
            raise ValueError(f"mode must be 'max' or 'min', but got {mode=}")
        self.pruner = pruner
        self.storage_path = str(storage_path)
        self.study_name = study_name
        self._metric = metric
        self.mode = mode
        self.step_key = step_key
        self.max_step = max_step
        self.extra_metrics = list(
            getattr(pruner, "extra_metrics", []) if extra_metrics is None else extra_metrics
        )
        self._study = None
        self._trials: dict[str, object] = {}  # ray trial id -> optuna.trial.Trial
        self._known: dict[str, int] | None = None  # ray trial id -> storage trial id, from the journal
        self.pruned: dict[str, int] = {}  # ray trial id -> epoch it was pruned at

    # Ray pickles schedulers into tuner.pkl; the study is reopened from the journal when needed.
    def __getstate__(self) -> dict:
        state = super().__getstate__()
        state["_study"], state["_trials"], state["pruned"], state["_known"] = None, {}, {}, None
        return state

    def __setstate__(self, state: dict) -> None:
        state.setdefault("extra_metrics", [])  # a sweep started before extra metrics existed
        super().__setstate__(state)

    def set_search_properties(self, metric, mode, **spec) -> bool:
        return True  # the pruning metric is ours, whatever the searcher optimises

    @property
    def study(self):
        if self._study is None:
            optuna = require("optuna")
            self._study = optuna.create_study(
                storage=open_journal(self.storage_path, shared=True),
                study_name=self.study_name,
                pruner=self.pruner,
                direction="maximize" if self.mode == "max" else "minimize",
                load_if_exists=True,
            )
            from albsnn.sweep.dashboard import PRUNING, label_study

            label_study(self._study, [self._metric], PRUNING)
        return self._study

    def _trial(self, trial_id: str):
        """The pruning-study trial of Ray trial ``trial_id``: cached, found again, or new."""
        if trial_id in self._trials:
            return self._trials[trial_id]
        optuna = require("optuna")
        known = self._journal_trials().get(trial_id)
        if known is not None:
            trial = optuna.trial.Trial(self.study, known)
        else:
            trial = self.study.ask()
            trial.set_user_attr(RAY_TRIAL_ID, trial_id)
        self._trials[trial_id] = trial
        return trial

    def _journal_trials(self) -> dict[str, int]:
        """``{ray trial id: storage trial id}`` of the trials the journal held when first asked.

        Read once (after a restore, the trials of the earlier driver); trials this scheduler adds
        are cached in ``_trials``, so no event scans the whole study.
        """
        if self._known is None:
            self._known = {
                t.user_attrs[RAY_TRIAL_ID]: t._trial_id
                for t in self.study.get_trials(deepcopy=False)
                if RAY_TRIAL_ID in t.user_attrs
            }
        return self._known

    def _frozen(self, trial):
        return self.study._storage.get_trial(trial._trial_id)

    def is_pruned(self, trial_id: str) -> bool:
        return trial_id in self.pruned

    def trial_state(self, trial_id: str) -> str | None:
        """``"PRUNED"`` for trials this scheduler (or, before a restore, its predecessor) stopped."""
        if trial_id in self.pruned:
            return "PRUNED"
        known = self._journal_trials().get(trial_id) if trial_id not in self._trials else None
        if known is not None:
            state = self.study._storage.get_trial(known).state
            if state == require("optuna.trial").TrialState.PRUNED:
                return "PRUNED"
        return None

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        if self._metric not in result or self.step_key not in result:
            return self.CONTINUE
        TrialState = require("optuna.trial").TrialState
        ot_trial = self._trial(trial.trial_id)
        step = int(result[self.step_key])
        frozen = self._frozen(ot_trial)
        if frozen.state == TrialState.PRUNED:  # pruned before a restore: stop it again
            self.pruned.setdefault(trial.trial_id, step)
            return self.STOP
        if frozen.state.is_finished():
            return self.CONTINUE
        if step not in frozen.intermediate_values:
            # the extra values first: the pruner reads them when it judges this step
            extra = {m: result[m] for m in self.extra_metrics if m in result}
            report_objectives(ot_trial, extra, step)
            ot_trial.report(float(result[self._metric]), step)
        if (self.max_step is not None and step >= self.max_step) or not ot_trial.should_prune():
            return self.CONTINUE
        self.study.tell(ot_trial, state=TrialState.PRUNED, skip_if_finished=True)
        self.pruned[trial.trial_id] = step
        _log.info(
            "pruned trial %s at epoch %d (%s=%.4f)", trial.trial_id, step, self._metric, result[self._metric]
        )
        return self.STOP

    def on_trial_complete(self, tune_controller, trial, result: dict) -> None:
        if trial.trial_id in self.pruned:
            return
        value = (result or {}).get(self._metric)
        ot_trial = self._trial(trial.trial_id)
        state = require("optuna.trial").TrialState
        if value is None:
            self.study.tell(ot_trial, state=state.FAIL, skip_if_finished=True)
        else:
            self.study.tell(ot_trial, float(value), skip_if_finished=True)

    def on_trial_error(self, tune_controller, trial) -> None:
        if _is_retry(trial):  # Ray requeues it: it stays RUNNING (and prunable) in the study
            return
        state = require("optuna.trial").TrialState
        self.study.tell(self._trial(trial.trial_id), state=state.FAIL, skip_if_finished=True)

    def on_trial_remove(self, tune_controller, trial) -> None:
        if trial.trial_id in self._trials:
            state = require("optuna.trial").TrialState
            self.study.tell(self._trials[trial.trial_id], state=state.FAIL, skip_if_finished=True)

    def debug_string(self) -> str:
        return (
            f"Optuna {type(self.pruner).__name__} on {self._metric} ({self.mode}); {len(self.pruned)} pruned."
        )

    def save(self, checkpoint_path: str) -> None:  # state lives in the journal
        pass

    def restore(self, checkpoint_path: str) -> None:
        pass
