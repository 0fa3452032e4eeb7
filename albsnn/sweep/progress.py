"""One line per trial event and a periodic tally: what ``albsnn sweep`` shows while it runs.

The tally (every ``every_s`` seconds) counts trials by state and estimates the time left for the whole
sweep: the share of work done (ended trials, plus running trials' epochs) at this driver's pace.
"""

from __future__ import annotations

import datetime
import sys
import time
from collections.abc import Callable

from albsnn.metrics import VAL_ACCURACY
from albsnn.sweep._imports import require

__all__ = ["ProgressPrinter"]

_tune = require("ray.tune")


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _detail(last: dict) -> str:
    """``epoch 8, val_accuracy 0.9123, test 0.9050, 12.3 KiB``: validation first, test labelled."""
    detail = f"epoch {last.get('epoch')}"
    val, test, size = last.get(VAL_ACCURACY), last.get("test_accuracy"), last.get("storage_bytes")
    if val is not None:
        detail += f", {VAL_ACCURACY} {val:.4f}"
    if test is not None:
        detail += f", test {test:.4f}"
    if size is not None:
        detail += f", {size / 1024:.1f} KiB"
    return detail


class ProgressPrinter(_tune.Callback):
    """Print trial starts, prunes, finishes, failures and retries, and a tally every ``every_s``.

    Args:
        total: the number of trials the sweep will run (for ``[k/total]``).
        param_names: config keys shown for each trial.
        trial_state: ``fn(ray_trial_id) -> "PRUNED" | None``.
        every_s: seconds between tallies.
    """

    def __init__(
        self,
        total: int,
        param_names: list[str],
        trial_state: Callable[[str], str | None] | None = None,
        every_s: float = 30.0,
    ):
        self.total = total
        self.param_names = param_names
        self.trial_state = trial_state
        self.every_s = every_s
        self._start = time.monotonic()
        self._last_tally = time.monotonic()
        self._done: dict[str, str] = {}

    def setup(self, **info) -> None:
        # Also after Tuner.restore, where this object comes from the pickled tuner (and the sweep's
        # budget may have been raised since: Tune passes the current one).
        self.total = info.get("total_num_samples") or self.total
        self._start = self._last_tally = time.monotonic()
        self._done = {}
        self._seen = False
        self._start_fraction = 0.0

    def on_step_begin(self, iteration, trials, **info) -> None:
        if not getattr(self, "_seen", True):  # a resumed sweep: count the trials that ended before
            self._seen = True
            for t in trials:
                if t.status == "ERROR":
                    self._done[t.trial_id] = "FAILED"
                elif t.status == "TERMINATED":
                    state = self.trial_state(t.trial_id) if self.trial_state else None
                    self._done[t.trial_id] = state or "FINISHED"
            self._start_fraction = self.fraction_done(trials)

    def _print(self, text: str) -> None:
        elapsed = time.monotonic() - self._start
        print(f"[{elapsed:6.0f}s] {text}", file=sys.stdout, flush=True)

    def _name(self, trial) -> str:
        params = " ".join(f"{k}={_fmt(trial.config[k])}" for k in self.param_names if k in trial.config)
        return f"{trial.trial_id} ({params})" if params else trial.trial_id

    def on_trial_start(self, iteration, trials, trial, **info) -> None:
        self._print(f"start    {self._name(trial)}")

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        last = trial.last_result or {}
        state = (self.trial_state(trial.trial_id) if self.trial_state else None) or "FINISHED"
        self._done[trial.trial_id] = state
        word = "pruned  " if state == "PRUNED" else "finished"
        self._print(f"{word} {trial.trial_id} [{len(self._done)}/{self.total}] {_detail(last)}")

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        self._done[trial.trial_id] = "FAILED"
        where = getattr(trial, "error_file", None) or ""
        self._print(f"FAILED   {trial.trial_id} [{len(self._done)}/{self.total}]: {where}")

    def on_trial_recover(self, iteration, trials, trial, **info) -> None:
        self._print(f"retry    {trial.trial_id}: crashed, restarting from its last checkpoint")

    def on_step_end(self, iteration, trials, **info) -> None:
        if time.monotonic() - self._last_tally < self.every_s:
            return
        self._last_tally = time.monotonic()
        counts: dict[str, int] = {}
        for t in trials:
            counts[t.status] = counts.get(t.status, 0) + 1
        ended: dict[str, int] = {}
        for state in self._done.values():
            ended[state] = ended.get(state, 0) + 1
        self._print(
            f"tally    running {counts.get('RUNNING', 0)}, pending {counts.get('PENDING', 0)}, "
            f"finished {ended.get('FINISHED', 0)}, pruned {ended.get('PRUNED', 0)}, "
            f"failed {ended.get('FAILED', 0)}; {self._eta(trials)}"
        )

    def fraction_done(self, trials) -> float:
        """Share of the sweep's work done: an ended trial counts 1, a running one its epochs so far."""
        done = 0.0
        for t in trials:
            if t.status in ("TERMINATED", "ERROR"):
                done += 1
            elif t.status == "RUNNING":
                epoch, epochs = (t.last_result or {}).get("epoch"), t.config.get("epochs")
                if epoch and epochs:
                    done += min(epoch / epochs, 1.0)
        return min(done / self.total, 1.0) if self.total else 1.0

    def _eta(self, trials) -> str:
        """``45% done, ETA 0:03:12`` at this session's pace (pruned trials end early: an upper bound)."""
        fraction = self.fraction_done(trials)
        gained = fraction - getattr(self, "_start_fraction", 0.0)
        if gained <= 0:
            return f"{fraction:.0%} done, ETA unknown"
        left = (time.monotonic() - self._start) * (1 - fraction) / gained
        return f"{fraction:.0%} done, ETA {datetime.timedelta(seconds=round(left))}"
