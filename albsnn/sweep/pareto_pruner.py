"""Pareto pruning: stop a trial only when, at its epoch, enough finished trials dominate it.

A median pruner on validation accuracy cuts exactly the low-storage end of an accuracy/storage
front: configurations that binarize more layers learn more slowly by design, so they sit below the
median at every epoch. :class:`ParetoPruner` instead compares a trial's whole objective vector at
epoch ``e`` (validation accuracy *and* storage) with the vectors of the COMPLETE trials at the same
epoch ``e``, and prunes it when at least ``min_dominators`` of them dominate it by ``margin``:

* ``d`` dominates ``t`` by ``margin`` when ``d`` is at least ``margin[m]`` better than ``t`` in
  every objective ``m`` (a missing margin is 0, i.e. "no worse") and strictly better in one.
  With margins 0 this is ordinary Pareto dominance; a margin on accuracy (e.g. 0.01) keeps a trial
  whose deficit at epoch ``e`` is within epoch-to-epoch noise.
* So a trial that is non-dominated at its epoch is never pruned, whatever its accuracy: the
  smallest configurations survive as long as no finished trial is both as small and more accurate.
* Only COMPLETE trials dominate (as in Optuna's median pruner): their value at ``e`` comes from a
  run that reached the end, and a pruned trial never decides another's fate.

The first objective is the pruning study's own intermediate value (``trial.report``: one float per
step, which is all Optuna stores); the others are kept per step as user attributes of the same
Optuna trial (:func:`report_objectives`, key :func:`step_key`), written by
:class:`~albsnn.sweep.scheduler.OptunaPrunerScheduler` before it asks ``should_prune``.

    >>> ParetoPruner({"val_accuracy": "max", "storage_bytes": "min"}, min_dominators=2)
    ParetoPruner(val_accuracy max, storage_bytes min; min_dominators=2, margin={}, ...)
"""

from __future__ import annotations

import weakref
from collections.abc import Mapping, Sequence

import numpy as np

from albsnn.pareto import as_objectives, dominated_by
from albsnn.sweep._imports import require

__all__ = ["ObjectivesPruner", "ParetoPruner", "objective_values", "report_objectives", "step_key"]

_optuna_pruners = require("optuna.pruners")


def step_key(metric: str, step: int) -> str:
    """The Optuna user attribute that holds ``metric``'s value at ``step`` (one write per epoch)."""
    return f"{metric}@{step}"


def report_objectives(trial, values: Mapping[str, float], step: int) -> None:
    """Record the objectives besides the study's own at ``step`` on Optuna ``trial``."""
    for metric, value in values.items():
        trial.set_user_attr(step_key(metric, step), float(value))


def objective_values(trial, objectives: Sequence[str], step: int) -> tuple[float, ...] | None:
    """``trial``'s vector of ``objectives`` at ``step``; None until it has reported all of them.

    The first objective is the pruning study's intermediate value, the others the user attributes
    that :func:`report_objectives` wrote.
    """
    first = trial.intermediate_values.get(step)
    rest = [trial.user_attrs.get(step_key(m, step)) for m in objectives[1:]]
    if first is None or any(v is None for v in rest):
        return None
    return (float(first), *(float(v) for v in rest))


class ObjectivesPruner(_optuna_pruners.BasePruner):
    """An Optuna pruner that judges a trial on several objectives at its step.

    The first objective is the pruning study's intermediate value; the others (``extra_metrics``)
    are the per-step user attributes that :class:`~albsnn.sweep.scheduler.OptunaPrunerScheduler`
    records for it (:func:`report_objectives`).
    """

    def __init__(self, objectives: Mapping[str, str]):
        self.objectives = as_objectives(objectives)
        self._seen = weakref.WeakKeyDictionary()  # storage -> {(study id, trial number, step): vector}

    # Ray pickles the pruner with the scheduler into every experiment snapshot: not the cache.
    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "_seen"}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._seen = weakref.WeakKeyDictionary()

    @property
    def extra_metrics(self) -> list[str]:
        """The objectives kept as per-step user attributes (all but the first)."""
        return list(self.objectives)[1:]

    def values_at(self, trial, step: int) -> tuple | None:
        """``trial``'s objective vector at ``step``; None when it has not reported all of them."""
        return objective_values(trial, list(self.objectives), step)

    def peers_at(self, study, trial, step: int, states=None) -> np.ndarray:
        """``[n, objectives]``: the vectors at ``step`` of the study's trials in ``states`` (None:
        all) other than ``trial`` that reported every objective there.

        A trial reports a step once, so its vector there never changes, and a finished trial that
        did not report it never will: each trial is read once per step and remembered, since a
        judgement late in a large sweep would otherwise read every earlier trial again.
        """
        key = (study._study_id, step, states)
        peers = self._seen.setdefault(study._storage, {}).setdefault(key, _Peers(len(self.objectives)))
        for other in study.get_trials(deepcopy=False, states=states):
            if other.number in peers.settled:
                continue
            values = self.values_at(other, step)
            if values is not None:
                peers.add(other.number, values)
            elif other.state.is_finished():
                peers.settled.add(other.number)
        return peers.without(trial.number)


class _Peers:
    """The vectors at one step of one study's trials, as rows, grown as trials report."""

    def __init__(self, width: int):
        self.settled: set[int] = set()  # trial numbers read for good (with or without a vector)
        self._numbers: list[int] = []
        self._rows: list[tuple] = []
        self._array = np.empty((0, width))
        self._index = np.empty(0, dtype=int)

    def add(self, number: int, values: tuple) -> None:
        self.settled.add(number)
        self._numbers.append(number)
        self._rows.append(values)

    def without(self, number: int) -> np.ndarray:
        if len(self._rows) != len(self._array):  # rows arrived since the last judgement
            self._array = np.array(self._rows, dtype=float).reshape(len(self._rows), self._array.shape[1])
            self._index = np.array(self._numbers, dtype=int)
        return self._array[self._index != number]


class ParetoPruner(ObjectivesPruner):
    """Prune a trial when ``min_dominators`` COMPLETE trials dominate it (by ``margin``) at its step.

    Args:
        objectives: ``{metric: "max" | "min"}``; the first is the pruning study's intermediate
            value, the others are read from :func:`step_key` user attributes.
        min_dominators: how many finished trials must dominate a trial before it is pruned
            (>= 1); more is more cautious.
        margin: ``{metric: amount}`` in the metric's own units by which every dominator must be
            better (default 0 for each: no worse); accuracy is a fraction, so 0.01 is 1 pp.
        n_startup_trials: no pruning before this many trials are COMPLETE.
        n_warmup_steps: no pruning before this step (epoch); the earliest is this step.
    """

    def __init__(
        self,
        objectives: Mapping[str, str],
        min_dominators: int = 2,
        margin: Mapping[str, float] | None = None,
        n_startup_trials: int = 0,
        n_warmup_steps: int = 1,
    ):
        super().__init__(objectives)
        objectives = self.objectives
        margin = dict(margin or {})
        if min_dominators < 1:
            raise ValueError(f"min_dominators must be >= 1, but got {min_dominators}")
        unknown = sorted(set(margin) - set(objectives))
        if unknown:
            raise ValueError(f"margin names {unknown}, which are not objectives {list(objectives)}")
        if any(not isinstance(v, (int, float)) or v < 0 for v in margin.values()):
            raise ValueError(f"margins must be numbers >= 0, but got {margin}")
        if n_startup_trials < 0 or n_warmup_steps < 0:
            raise ValueError(f"{n_startup_trials=} and {n_warmup_steps=} must be >= 0")
        self.min_dominators = int(min_dominators)
        self.margin = margin
        self.n_startup_trials = int(n_startup_trials)
        self.n_warmup_steps = int(n_warmup_steps)
        self._modes = tuple(objectives.values())
        self._margins = tuple(float(margin.get(m, 0.0)) for m in objectives)

    def __repr__(self) -> str:
        objectives = ", ".join(f"{k} {v}" for k, v in self.objectives.items())
        return (
            f"ParetoPruner({objectives}; min_dominators={self.min_dominators}, margin={self.margin}, "
            f"n_startup_trials={self.n_startup_trials}, n_warmup_steps={self.n_warmup_steps})"
        )

    def dominators(self, study, trial, step: int) -> int:
        """How many COMPLETE trials (other than ``trial``) dominate ``trial`` at ``step``."""
        mine = self.values_at(trial, step)
        if mine is None:
            return 0
        TrialState = require("optuna.trial").TrialState
        others = self.peers_at(study, trial, step, states=(TrialState.COMPLETE,))
        return int(dominated_by(others, mine, self._modes, self._margins).sum())

    def prune(self, study, trial) -> bool:
        step = trial.last_step
        if step is None or step < self.n_warmup_steps:
            return False
        if self.n_startup_trials:
            TrialState = require("optuna.trial").TrialState
            if len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))) < self.n_startup_trials:
                return False
        return self.dominators(study, trial, step) >= self.min_dominators
