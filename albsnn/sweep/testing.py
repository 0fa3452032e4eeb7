"""Test doubles for the sweep platform (in the manner of ``optuna/testing/pruners.py``)."""

from __future__ import annotations

from albsnn.sweep._imports import require

__all__ = ["DeterministicPruner"]

_optuna_pruners = require("optuna.pruners")


class DeterministicPruner(_optuna_pruners.BasePruner):
    """Prune exactly the trials numbered in ``trials`` once they report step ``at_step`` or later.

    Trial numbers are those of the pruning study (the order in which trials first report).
    ``every`` instead prunes every ``every``-th trial (numbers 1, 1 + every, ...), e.g. ``every: 2``
    prunes the odd-numbered trials.

    Example (pipeline YAML): ``pruner: {kind: deterministic, trials: [1, 3], at_step: 1}``
    """

    def __init__(self, trials: list[int] | tuple[int, ...] = (), at_step: int = 1, every: int | None = None):
        if every is not None and every < 1:
            raise ValueError(f"every must be >= 1, but got {every=}")
        self.trials = frozenset(int(t) for t in trials)
        self.at_step = int(at_step)
        self.every = every

    def _targets(self, number: int) -> bool:
        if self.every is not None:
            return number % self.every == 1 % self.every
        return number in self.trials

    def prune(self, study, trial) -> bool:
        step = trial.last_step
        return step is not None and step >= self.at_step and self._targets(trial.number)
