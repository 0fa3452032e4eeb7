"""Multi-objective successive halving: at each rung, keep the top ``1 / reduction_factor`` of the trials.

The idea of Syne Tune's MOASHA (Schmucker et al., "Multi-objective multi-fidelity hyperparameter
optimization with application to fairness"; Salinas et al., NAS workshop at ICLR 2021), as an Optuna
pruner. Rungs are the epochs ``min_resource * reduction_factor**k`` (1, 2, 4, ... by default). When
a trial reports the epoch of a rung, it is ranked among **every** trial that has reached that rung
(running, finished or pruned: each reported its values there once, as in ASHA) by

1. non-dominated sorting of the objective vectors at that epoch (:func:`albsnn.pareto.nondominated_ranks`:
   front 0 is the Pareto front of the rung, front 1 the front of the rest, ...), then
2. inside its front, NSGA-II crowding distance (:func:`crowding_distance`; the extremes of each
   objective rank first), so a front larger than the quota keeps the ends and the spread-out points.

It is pruned when ``better >= n / reduction_factor``, where ``n`` is how many trials reached the
rung (itself included) and ``better`` how many rank strictly before it: ties are kept together. Between
rungs nothing is decided, so a trial is never pruned before ``min_resource`` epochs; and no trial is
pruned at a rung until ``min_trials`` trials have reached it (a grace for the first trials of a
sweep, which meet few peers there; the benchmark found none needed).

Unlike :class:`~albsnn.sweep.pareto_pruner.ParetoPruner`, which waits for finished trials that
dominate a trial, this rule judges a trial against its peers at the rung, so it prunes from the
first rung of the first trials on. Its defaults (``reduction_factor=2, min_resource=1,
min_trials=1``) were chosen on two sampler seeds of 48-trial digits sweeps and then kept the
validation hypervolume within 0.5 % at 41-47 % of the trial-epochs on three others
(``benchmarks/pruning.py``; docs/performance.md, "Pruning that saves half"). It reads the objective
vectors that :class:`~albsnn.sweep.scheduler.OptunaPrunerScheduler` records per epoch (as for
``pareto``: :func:`~albsnn.sweep.pareto_pruner.objective_values`).

    >>> MOASHAPruner({"val_accuracy": "max", "storage_bytes": "min"}, reduction_factor=3)
    MOASHAPruner(val_accuracy max, storage_bytes min; reduction_factor=3, min_resource=1, min_trials=1)
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from albsnn.pareto import nondominated_ranks
from albsnn.sweep.pareto_pruner import ObjectivesPruner

__all__ = ["MOASHAPruner", "crowding_distance"]


def crowding_distance(costs: np.ndarray) -> np.ndarray:
    """NSGA-II crowding distance of the points of one front, ``costs`` ``[n, objectives]``.

    Per objective, a point at the lowest or highest value gets infinity (the ends of the front are
    kept first); another gets the gap between its nearest distinct neighbours below and above,
    over the objective's range. Neighbours are *distinct* values, so exact duplicates get the same
    distance whatever their order. Larger is better (a less crowded point).
    """
    costs = np.asarray(costs, dtype=float)
    distance = np.zeros(len(costs))
    for column in costs.T:
        values = np.unique(column)
        at = np.searchsorted(values, column)
        ends = (at == 0) | (at == len(values) - 1)
        distance[ends] = np.inf
        if len(values) > 2:
            inner = ~ends
            gap = values[at[inner] + 1] - values[at[inner] - 1]
            distance[inner] += gap / (values[-1] - values[0])
    return distance


class MOASHAPruner(ObjectivesPruner):
    """Prune a trial at a rung unless non-dominated sorting puts it in the top ``1/reduction_factor``.

    Args:
        objectives: ``{metric: "max" | "min"}``; the first is the pruning study's intermediate
            value, the others are read from the per-epoch user attributes (as for ``pareto``).
        reduction_factor: eta (>= 2): the share of trials kept at each rung is ``1/eta``, and
            the rungs are ``eta`` times apart. 2 (Syne Tune's default is 3) because 3 and 4 cut the
            sweep's most accurate trials at early rungs on the tuning seeds of the benchmark.
        min_resource: the first rung (epoch, >= 1); nothing is pruned before it.
        min_trials: no trial is pruned at a rung until this many (itself included) reached it.
    """

    def __init__(
        self,
        objectives: Mapping[str, str],
        reduction_factor: int = 2,
        min_resource: int = 1,
        min_trials: int = 1,
    ):
        super().__init__(objectives)
        for name, value, least in (
            ("reduction_factor", reduction_factor, 2),
            ("min_resource", min_resource, 1),
            ("min_trials", min_trials, 1),
        ):
            if not isinstance(value, int) or isinstance(value, bool) or value < least:
                raise ValueError(f"{name} must be an integer >= {least}, but got {name}={value!r}")
        self.reduction_factor = reduction_factor
        self.min_resource = min_resource
        self.min_trials = min_trials

    def __repr__(self) -> str:
        objectives = ", ".join(f"{k} {v}" for k, v in self.objectives.items())
        return (
            f"MOASHAPruner({objectives}; reduction_factor={self.reduction_factor}, "
            f"min_resource={self.min_resource}, min_trials={self.min_trials})"
        )

    def is_rung(self, step: int) -> bool:
        """Whether ``step`` is ``min_resource * reduction_factor**k`` for some k >= 0."""
        rung = self.min_resource
        while rung < step:
            rung *= self.reduction_factor
        return rung == step

    def rung_values(self, study, trial, step: int) -> np.ndarray:
        """``[n, objectives]``: ``trial``'s vector at ``step`` (row 0), then every other trial's there.

        Empty when ``trial`` has not reported all objectives at ``step``.
        """
        mine = self.values_at(trial, step)
        if mine is None:
            return np.empty((0, len(self.objectives)))
        return np.vstack([np.asarray(mine, dtype=float), self.peers_at(study, trial, step)])

    def better_than(self, values: np.ndarray) -> int:
        """How many rows of ``values`` rank strictly before row 0 (front first, then crowding)."""
        columns = {m: values[:, i] for i, m in enumerate(self.objectives)}
        ranks = nondominated_ranks(columns, self.objectives)
        better = int(np.sum(ranks < ranks[0]))
        peers = np.flatnonzero(ranks == ranks[0])
        if len(peers) > 1 and np.isfinite(values[0]).all():  # diverged trials stay tied
            crowding = crowding_distance(values[peers])  # a distance: the same for max and min
            better += int(np.sum(crowding > crowding[0]))  # peers[0] == 0: row 0 is this trial
        return better

    def prune(self, study, trial) -> bool:
        step = trial.last_step
        if step is None or not self.is_rung(step):
            return False
        values = self.rung_values(study, trial, step)
        if len(values) < self.min_trials:  # also empty: this trial has not reported all objectives
            return False
        return self.better_than(values) >= len(values) / self.reduction_factor
