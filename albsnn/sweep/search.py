"""Ray's ``OptunaSearch`` over the sweep's persistent study, with pruned trials recorded as PRUNED.

:class:`StudySearch` changes four things about ``ray.tune.search.optuna.OptunaSearch``:

* a trial the pruning scheduler stopped is told to the study as PRUNED, not COMPLETE with partial
  accuracy (``OptunaSearch`` would do the latter and bias the sampler and the Pareto front);
* every Optuna trial carries the user attribute ``ray_trial_id``, so the study, Ray and MLflow
  can be joined;
* the study names its objectives (``set_metric_names``) and says it is the search study
  (:mod:`albsnn.sweep.dashboard`), so optuna-dashboard shows ``val_accuracy``, not "0";
* after ``Tuner.restore``, Optuna trials that were asked for by the killed driver after its last
  experiment checkpoint (so Ray does not know them) are handed to the next trials Ray asks for,
  instead of asking new ones: the study keeps exactly one Optuna trial per Ray trial;
* trials that the killed driver *finished* after that checkpoint are lost to Ray but their results
  stand (in the study and in MLflow): :meth:`StudySearch.lost_trials` names them, so that the trial
  budget counts them (:mod:`albsnn.sweep.budget`) and the sweep keeps their MLflow runs.
"""

from __future__ import annotations

from collections.abc import Callable

from albsnn.sweep._imports import require
from albsnn.sweep.dashboard import RAY_TRIAL_ID

__all__ = ["StudySearch", "trials_by_ray_id", "ended_unknown_to_ray"]

_optuna_search = require("ray.tune.search.optuna")


class StudySearch(_optuna_search.OptunaSearch):
    """``OptunaSearch`` that asks ``is_pruned(ray_trial_id)`` before telling a finished trial.

    Args:
        is_pruned: usually :meth:`OptunaPrunerScheduler.is_pruned`; None when nothing prunes.
        **kwargs: ``OptunaSearch`` arguments (``metric``, ``mode``, ``sampler``, ``study_name``,
            ``storage``).
    """

    def __init__(self, *, is_pruned: Callable[[str], bool] | None = None, **kwargs):
        self._is_pruned = is_pruned
        super().__init__(**kwargs)

    def _setup_study(self, mode) -> None:
        super()._setup_study(mode)
        from albsnn.sweep.dashboard import SEARCH, label_study

        metrics = self._metric if isinstance(self._metric, list) else [self._metric]
        label_study(self._ot_study, metrics, SEARCH)

    def save(self, checkpoint_path: str) -> None:
        # The callable points at the live scheduler; never snapshot (and later restore) a copy of it.
        is_pruned, self._is_pruned = self._is_pruned, None
        try:
            super().save(checkpoint_path)
        finally:
            self._is_pruned = is_pruned

    def restore(self, checkpoint_path: str) -> None:
        is_pruned = self._is_pruned
        super().restore(checkpoint_path)
        self._is_pruned = is_pruned
        self._orphans = None  # looked for once, on the first new trial after a restore
        self._lost = None

    def suggest(self, trial_id: str) -> dict | None:
        if trial_id not in self._ot_trials and hasattr(self, "_orphans"):
            orphan = self._orphan()
            if orphan is not None:
                self._ot_trials[trial_id] = orphan
        config = super().suggest(trial_id)
        ot_trial = self._ot_trials.get(trial_id)
        if ot_trial is not None:
            ot_trial.set_user_attr(RAY_TRIAL_ID, trial_id)
        return config

    def _orphan(self):
        """A RUNNING Optuna trial that no Ray trial owns (left by a driver killed mid-sweep).

        Only a restored searcher has orphans; they are listed once, so new trials cost no scan.
        """
        if self._ot_study is None:
            return None
        optuna = require("optuna")
        if self._orphans is None:
            owned = {t._trial_id for t in self._ot_trials.values()}
            running = self._ot_study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
            self._orphans = [t._trial_id for t in running if t._trial_id not in owned]
        if not self._orphans:
            return None
        return optuna.trial.Trial(self._ot_study, self._orphans.pop(0))

    def lost_trials(self) -> list[str]:
        """Ray trial ids of study trials that ended (COMPLETE or PRUNED) unknown to the restored Ray.

        Empty unless restored; listed once, like the orphans.
        """
        if not hasattr(self, "_lost") or self._ot_study is None:
            return []
        if self._lost is None:
            self._lost = list(ended_unknown_to_ray(self._ot_study, set(self._ot_trials)))
        return list(self._lost)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        if self._is_pruned is not None and self._is_pruned(trial_id) and trial_id in self._ot_trials:
            if trial_id in self._completed_trials:
                return
            state = require("optuna.trial").TrialState
            self._ot_study.tell(self._ot_trials[trial_id], state=state.PRUNED, skip_if_finished=True)
            self._completed_trials.add(trial_id)
            return
        super().on_trial_complete(trial_id, result=result, error=error)

    def trial_number(self, trial_id: str) -> int | None:
        """The Optuna trial number of Ray trial ``trial_id`` (None before it was suggested)."""
        trial = self._ot_trials.get(trial_id)
        return None if trial is None else trial.number


def trials_by_ray_id(study, states=None) -> dict:
    """The study's trials (of ``states``; default all) by the id of the Ray trial that ran them."""
    trials = study.get_trials(deepcopy=False, states=states)
    return {t.user_attrs[RAY_TRIAL_ID]: t for t in trials if RAY_TRIAL_ID in t.user_attrs}


def ended_unknown_to_ray(study, ray_trial_ids: set[str]) -> dict:
    """Trials that ended (COMPLETE or PRUNED) with a Ray trial id not in ``ray_trial_ids``, by that id:
    a killed driver finished them after Ray's last experiment snapshot, so Ray lost them."""
    state = require("optuna.trial").TrialState
    ended = trials_by_ray_id(study, (state.COMPLETE, state.PRUNED))
    return {i: t for i, t in ended.items() if i not in ray_trial_ids}
