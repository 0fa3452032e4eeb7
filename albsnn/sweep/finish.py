"""How a sweep ends: its records sent, its parent run ended with the summary metrics, or, on any
error or interrupt, nothing of it left RUNNING in MLflow.

The report is not made here (the sweep never imports :mod:`albsnn.report`): :func:`finish_sweep`
says whether one is due (``SweepResult.report_due``: the pipeline wants it, the sweep ended whole and
MLflow has every record), and ``albsnn sweep`` makes it after the sweep.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from albsnn.sweep.pipeline import Pipeline
from albsnn.sweep.result import SweepResult

__all__ = ["FLUSH_S", "open_log", "ended_on_error", "finish_sweep"]

FLUSH_S = 300  # how long the end of a sweep waits for MLflow before leaving records in the spool


def open_log(sweep_dir, uri: str, experiment_id: str, parent: str):
    """The sweep's MLflow log (its spool in ``sweep_dir``, sent in the background)."""
    from albsnn.sweep.tracking.spool import SweepLog

    return SweepLog.open(sweep_dir, uri, experiment_id, parent)


@contextlib.contextmanager
def ended_on_error(log) -> Iterator[None]:
    """Nothing left RUNNING: on any error or interrupt, the trials' runs and the parent end KILLED/FAILED."""
    try:
        yield
    except BaseException as e:
        if log.closed:  # the sweep was recorded whole; the error came after
            raise
        interrupted = isinstance(e, KeyboardInterrupt)
        reason = "interrupted" if interrupted else f"driver error: {_last_line(e)}"
        log.kill_unfinished(reason)
        log.end_sweep("KILLED" if interrupted else "FAILED", reason=reason)
        log.close(timeout=30)
        raise


def _last_line(error: BaseException) -> str:
    """``Type: message`` of an error; for a TuneError that wraps a traceback, its last line (the cause)."""
    lines = [line for line in str(error).splitlines() if line.strip()]
    text = lines[-1].strip() if lines else ""
    return (text if ": " in text and len(lines) > 1 else f"{type(error).__name__}: {text}")[:250]


def finish_sweep(result: SweepResult, pipe: Pipeline, log, metrics: dict[str, float]) -> SweepResult:
    """Send the records, say whether a report is due, end the parent run (KILLED when interrupted)."""
    unsent = log.flush(FLUSH_S)
    if not result.interrupted and pipe.report.get("enabled", True):
        if unsent:
            result.report_error = f"{unsent} MLflow record(s) still unsent"
        else:
            result.report_due = True
            result.report_out_dir = pipe.report.get("out_dir")
    reason = "interrupted" if result.interrupted else None
    log.end_sweep("KILLED" if result.interrupted else "FINISHED", metrics, reason=reason)
    log.close(FLUSH_S)
    from albsnn.sweep.journal import sync_journals

    sync_journals()  # the Optuna journal's last appends on disk before the sweep says it ended
    result.tracking_notes = log.notes()
    return result
