"""A search sweep's trial budget, read from its ``sweep.json``, so that a resume can raise it.

Ray Tune keeps the number of trials to create (``num_samples``) inside its snapshot of the search
algorithm, and ``Tuner.restore`` brings back that number: ``--num-samples`` on a resumed sweep would
be ignored. :class:`TrialBudget` is Ray's ``SearchGenerator`` with two changes when Ray restores its
state: the budget becomes the ``num_samples`` written in the sweep's ``sweep.json`` (which
``albsnn sweep --resume --num-samples N`` updates first), and a generator that had already handed
out its old budget is open again; trials that the killed driver finished after Ray's last snapshot
(``StudySearch.lost_trials``) count as created, since their results stand.

    search_alg = TrialBudget(ConcurrencyLimiter(searcher, max_concurrent), sweep_dir / SWEEP_FILE)
    Tuner(..., tune_config=TuneConfig(search_alg=search_alg, num_samples=n))
"""

from __future__ import annotations

from pathlib import Path

from albsnn.sweep._imports import require
from albsnn.sweep.record import recorded_budget

__all__ = ["TrialBudget", "budget_of"]

_search = require("ray.tune.search")


def budget_of(sweep_file: str | Path) -> int:
    """The ``num_samples`` recorded in a ``sweep.json``."""
    return recorded_budget(sweep_file)


class TrialBudget(_search.SearchGenerator):
    """``SearchGenerator`` whose trial budget, on restore, is the one in ``sweep_file``."""

    def __init__(self, searcher, sweep_file: str | Path):
        super().__init__(searcher)
        self.sweep_file = str(sweep_file)

    def set_state(self, state: dict) -> None:
        super().set_state(state)
        # Trials the killed driver finished after Ray's snapshot used the budget; their results stand.
        # (Ray restores the base searcher before this state.)
        self._counter += len(_lost_trials(self.searcher))
        budget = budget_of(self.sweep_file)
        if budget > self._total_samples:
            self._total_samples = budget
            self._finished = False  # "finished" meant "handed out the old budget"


def _lost_trials(searcher) -> list[str]:
    while hasattr(searcher, "searcher"):  # through ConcurrencyLimiter and the like
        searcher = searcher.searcher
    lost = getattr(searcher, "lost_trials", None)
    return lost() if lost is not None else []
