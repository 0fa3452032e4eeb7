"""A sweep's MLflow records: appended to a spool file first, sent by a background thread.

Training never waits for MLflow. Each record goes to ``<sweep>/mlflow-spool.jsonl`` (one JSON line)
and into the queue of one sender thread, which applies the records waiting (in order per trial, each
trial's waiting epochs in one write: :meth:`.writer.MlflowWriter.apply_group`) and notes how many are
applied in ``mlflow-spool.sent``. When the server is slow or down the sender
retries the same record, with a growing pause, until it answers, so nothing is lost or reordered;
records left at the end of a sweep are replayed by ``--resume`` or ``--abandon`` (which open the
same spool). Replays are harmless (every operation is idempotent, see :mod:`.writer`), and a
trial's epochs are recorded once: :meth:`SweepLog.epoch` drops a step the trial already recorded.

    log = SweepLog(sweep_dir, uri, experiment_id, parent_run_id)
    log.start_trial("abc", "T=2 s0", params={...})
    log.epoch("abc", 1, {"val_accuracy": 0.8})
    log.end_trial("abc", "FINISHED", step=1)
    log.close(timeout=60)            # the number of records still unsent
"""

from __future__ import annotations

import json
import logging
import shutil
import sys
import threading
import time
from collections.abc import Iterable, Mapping
from pathlib import Path

from albsnn.atomic import write_atomic
from albsnn.sweep.tracking import layout as L
from albsnn.sweep.tracking.writer import MlflowWriter, fail_fast_http, first_line, is_permanent

__all__ = ["SweepLog", "SPOOL_FILE", "SENT_FILE", "OUTBOX_DIR", "LINGER_S"]

SPOOL_FILE = "mlflow-spool.jsonl"
SENT_FILE = "mlflow-spool.sent"
OUTBOX_DIR = "mlflow-outbox"  # artifacts staged for upload (removed once uploaded)
_log = logging.getLogger(__name__)
_MAX_PAUSE = 5.0
_GROUP = 200  # records sent in one go when they wait (a trial's epochs in one write)
LINGER_S = 0.5  # how long the sender lets records gather before it sends them (MLflow is that late)


def _now_ms() -> int:
    return int(time.time() * 1000)


class SweepLog:
    """The spool, its sender thread, and what the records say about each trial.

    :meth:`open` returns the log a process already has open for a sweep folder (the callback Tune
    unpickles on ``--resume`` finds the runner's log that way).
    """

    _open: dict[Path, SweepLog] = {}

    @classmethod
    def open(
        cls, sweep_dir: str | Path, uri: str, experiment_id: str, parent_run_id: str, **kwargs
    ) -> SweepLog:
        key = Path(sweep_dir).resolve()
        log = cls._open.get(key)
        if log is None or log.closed:
            log = cls._open[key] = cls(key, uri, experiment_id, parent_run_id, **kwargs)
        return log

    def __init__(
        self, sweep_dir: str | Path, uri: str, experiment_id: str, parent_run_id: str, *, quiet: bool = False
    ):
        self.folder = Path(sweep_dir)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.uri = uri
        self.quiet = quiet  # problems are still counted for the summary
        self.writer = MlflowWriter(uri, experiment_id, parent_run_id)
        fail_fast_http(uri)
        self.last_step: dict[str, int] = {}
        self.states: dict[str, str] = {}  # trial id -> RUNNING | FINISHED | PRUNED | FAILED
        self.last: dict[str, dict[str, float]] = {}  # trial id -> its newest value of each metric
        self.inputs: set[str] = set()  # trials whose dataset is recorded
        self.confirming: set[str] = set()  # confirmation runs' trial ids (role CONFIRM), not search trials
        self.problems: dict[str, int] = {}  # message -> how often
        self.outages: list[float] = []  # seconds the server did not answer, each time it answered again
        self._records: list[dict] = []
        self._fresh: set[int] = set()  # indices of first starts recorded by this process, not yet tried
        self._lock = threading.Condition()
        self._sent = self._read_sent()
        self._down_since: float | None = None
        self._down_at = ""  # wall clock of the outage still going on, for the summary
        self._stop = False
        self._flushing = 0  # callers waiting in flush(): send at once
        self.linger_s = LINGER_S
        self.closed = False
        for record in self._read_spool():
            self._note(record)
            self._records.append(record)
        # an earlier driver's records: a run it made may belong to a trial the restored Tune lost
        self.inherited = bool(self._records)
        self._file = open(self.folder / SPOOL_FILE, "a", encoding="utf-8")  # noqa: SIM115 - open for the sweep
        self._thread = threading.Thread(target=self._send_loop, name="albsnn-mlflow-sender", daemon=True)
        self._thread.start()

    # ---------------------------------------------------------------- recording (never blocks on MLflow)
    def start_trial(self, trial: str, name: str, params: Mapping[str, str], tags: Mapping | None = None):
        self._add(
            {"op": "start", "trial": trial, "name": name, "params": dict(params), "tags": dict(tags or {})}
        )

    def epoch(self, trial: str, step: int, metrics: Mapping[str, float], tags: Mapping | None = None) -> bool:
        """Record one epoch; False (and nothing recorded) when the trial recorded this step before."""
        if step <= self.last_step.get(trial, 0):
            return False
        self._add(
            {"op": "epoch", "trial": trial, "step": step, "metrics": dict(metrics), "tags": dict(tags or {})}
        )
        return True

    def dataset(self, trial: str, dataset: Mapping) -> None:
        if trial not in self.inputs:
            self._add({"op": "input", "trial": trial, "dataset": dict(dataset)})

    def tags(self, trial: str, tags: Mapping[str, str]) -> None:
        self._add({"op": "tags", "trial": trial, "tags": dict(tags)})

    def end_trial(
        self,
        trial: str,
        state: str,
        *,
        step: int = 0,
        metrics: Mapping | None = None,
        tags: Mapping | None = None,
    ) -> None:
        tags = {**(tags or {}), L.TRIAL_STATE: state}
        if state == L.PRUNED and step:
            tags[L.PRUNED_AT_EPOCH] = str(step)
        self._add(
            {
                "op": "end",
                "trial": trial,
                "state": state,
                "step": step,
                "metrics": dict(metrics or {}),
                "tags": tags,
            }
        )

    def artifacts(self, trial: str, files: Iterable[Path]) -> None:
        """Copy ``files`` to the outbox now (checkpoints rotate away) and upload them in the background."""
        files = list(files)
        if not files:  # no record: it would only split the trial's last epochs from its end
            return
        outbox = self.folder / OUTBOX_DIR / trial
        shutil.rmtree(outbox, ignore_errors=True)
        outbox.mkdir(parents=True)
        for path in files:
            shutil.copy2(path, outbox / Path(path).name)
        self._add({"op": "artifacts", "trial": trial, "folder": str(outbox)})

    def forget_orphans(self, known: Iterable[str], role: str = L.TRIAL) -> None:
        """Delete the runs of ``role`` whose trial is not in ``known``. A log that inherited no records
        skips it (and the scan of every run it costs): each run was then made by this process, for a
        trial its own Tune experiment started and still lists."""
        if not self.inherited:
            return
        self._add({"op": "orphans", "known": sorted(known), "role": role})

    def kill_unfinished(self, reason: str) -> None:
        self._add({"op": "kill_unfinished", "reason": reason})

    def end_sweep(self, status: str, metrics: Mapping | None = None, reason: str | None = None) -> None:
        tags = {L.END_REASON: reason} if reason else {}
        self._add({"op": "parent_end", "status": status, "metrics": dict(metrics or {}), "tags": tags})

    def reopen_sweep(self, tags: Mapping[str, str] | None = None) -> None:
        self._add({"op": "parent_reopen", "tags": dict(tags or {})})

    # ---------------------------------------------------------------- state
    def counts(self, trials: Iterable[str] | None = None) -> dict[str, int]:
        """``{FINISHED, PRUNED, FAILED: n}`` over ``trials`` (default: every trial recorded)."""
        wanted = self.states if trials is None else {t: self.states.get(t, L.RUNNING) for t in trials}
        out = {L.FINISHED: 0, L.PRUNED: 0, L.FAILED: 0}
        for state in wanted.values():
            out[state] = out.get(state, 0) + 1
        return out

    @property
    def pending(self) -> int:
        with self._lock:
            return len(self._records) - self._sent

    def run_id(self, trial: str, timeout: float = 60.0) -> str | None:
        """The trial's MLflow run id, once the records so far are sent."""
        self.flush(timeout)
        return self.writer.runs.get(trial)

    def flush(self, timeout: float | None = None) -> int:
        """Wait until every record is sent or ``timeout`` passes; returns the number still unsent."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            self._flushing += 1  # the sender stops lingering
            self._lock.notify_all()
            try:
                while self._sent < len(self._records) and self._thread.is_alive():
                    left = None if deadline is None else deadline - time.monotonic()
                    if left is not None and left <= 0:
                        break
                    self._lock.wait(left if left is not None else 1.0)
                return len(self._records) - self._sent
            finally:
                self._flushing -= 1

    def close(self, timeout: float | None = 60.0) -> int:
        """Send what can be sent within ``timeout``, stop the sender; returns the number left unsent."""
        left = self.flush(timeout)
        with self._lock:
            self._stop = True
            self._lock.notify_all()
        self._thread.join(timeout=10)
        self._file.close()
        self.closed = True
        if left:
            self.problem(
                f"{left} record(s) not sent to {self.uri}; kept in {self.folder / SPOOL_FILE} and sent "
                "by `albsnn sweep --resume` or `--abandon`"
            )
        return left

    def notes(self) -> list[str]:
        """What the sweep's summary says about MLflow: how outages ended, then each problem once."""
        down_now = self._down_since is not None
        if not self.outages and not down_now:
            return list(self.problems)
        total = sum(self.outages) + (time.monotonic() - self._down_since if down_now else 0.0)
        times = len(self.outages) + down_now
        if down_now:
            end = f"it does not answer since {self._down_at}"
        elif self.pending:
            end = f"{self.pending} record(s) still unsent"
        else:
            end = "every record was sent when it answered again"
        outage = f"{self.uri} did not answer {times} time(s), {total:.0f} s in all; {end}"
        return [outage, *self.problems]

    def problem(self, message: str) -> None:
        """Say ``message`` on the console the first time; count it for the summary."""
        first = message not in self.problems
        self.problems[message] = self.problems.get(message, 0) + 1
        if first and not self.quiet:
            print(f"MLflow: {message}", file=sys.stderr, flush=True)

    # ---------------------------------------------------------------- internals
    def _add(self, record: dict) -> None:
        record.setdefault("ts", _now_ms())
        with self._lock:
            if record["op"] == "start" and record["trial"] not in self.states:
                self._fresh.add(len(self._records))  # its run cannot exist: no lookup before creating it
            self._note(record)
            self._file.write(json.dumps(record) + "\n")
            self._file.flush()
            self._records.append(record)
            self._lock.notify_all()

    def _note(self, record: dict) -> None:
        op, trial = record["op"], record.get("trial")
        if op == "start":
            self.states[trial] = L.RUNNING
            if record.get("tags", {}).get(L.ROLE) == L.CONFIRM:
                self.confirming.add(trial)
        elif op == "epoch":
            self.last_step[trial] = max(self.last_step.get(trial, 0), record["step"])
            self.last.setdefault(trial, {}).update(record["metrics"])
        elif op == "end":
            self.states[trial] = record["state"]
            self.last.setdefault(trial, {}).update(record["metrics"])
        elif op == "input":
            self.inputs.add(trial)

    def _read_spool(self) -> list[dict]:
        path = self.folder / SPOOL_FILE
        if not path.is_file():
            return []
        records = []
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                records.append(json.loads(line))
            except ValueError:  # a line cut short by a killed process: it was never sent either
                continue
        return records

    def _read_sent(self) -> int:
        try:
            return int((self.folder / SENT_FILE).read_text())
        except (OSError, ValueError):
            return 0

    def _write_sent(self, count: int) -> None:
        # not durable: written once per group of records, and a count a crash rolls back only
        # replays records, which are idempotent
        write_atomic(self.folder / SENT_FILE, str(count), durable=False)

    def _send_loop(self) -> None:
        pause = 0.2
        while True:
            with self._lock:
                while self._sent >= len(self._records) and not self._stop:
                    self._lock.wait()
                self._linger()
                if self._sent >= len(self._records) or self._stop:
                    return
                start = self._sent
                group = self._records[start : start + _GROUP]
                fresh = {i - start for i in self._fresh if i < start + len(group)}
                self._fresh.difference_update(i + start for i in fresh)  # fresh on the first try only
            try:
                self._apply(group, fresh)
            except Exception as e:  # noqa: BLE001 - every failure is reported, none reaches Tune
                self._down(e)
                with self._lock:
                    self._lock.wait(pause)
                    if self._stop:
                        return
                pause = min(pause * 2, _MAX_PAUSE)
                continue
            pause = 0.2
            self._up()
            with self._lock:
                self._sent = start + len(group)
                self._write_sent(self._sent)
                self._lock.notify_all()

    def _linger(self) -> None:
        """Let the records of the next ``LINGER_S`` join the first (called holding the lock): at a
        high rate of results each trial's epochs of that interval are one write, not one each."""
        deadline = time.monotonic() + self.linger_s
        while not self._stop and not self._flushing and (left := deadline - time.monotonic()) > 0:
            self._lock.wait(left)

    def _apply(self, group: list[dict], fresh: set[int]) -> None:
        """The records waiting (up to ``_GROUP``) in one go; when MLflow refuses one for good, one by
        one, that one skipped and reported. A server that does not answer raises (all are retried)."""
        try:
            self.writer.apply_group(group, fresh)
            return
        except Exception as e:  # noqa: BLE001
            if not is_permanent(e):
                raise
        for record in group:
            try:
                self.writer.apply(record)
            except Exception as e:  # noqa: BLE001
                if not is_permanent(e):
                    raise
                self.problem(f"a {record['op']} record was refused and skipped ({first_line(e)})")

    def _down(self, error: Exception) -> None:
        # Said at once, not kept as a problem: the summary says how the outage ended (notes()).
        if self._down_since is None:
            self._down_since = time.monotonic()
            self._down_at = time.strftime("%H:%M:%S")
            if not self.quiet:
                print(
                    f"MLflow: {self.uri} does not answer ({first_line(error)[:200]}); training goes on, "
                    f"records wait in {self.folder / SPOOL_FILE}",
                    file=sys.stderr,
                    flush=True,
                )

    def _up(self) -> None:
        if self._down_since is not None:
            down = time.monotonic() - self._down_since
            self._down_since = None
            self.outages.append(down)
            if not self.quiet:
                print(
                    f"MLflow: {self.uri} answers again after {down:.0f} s; sending the waiting records",
                    file=sys.stderr,
                    flush=True,
                )
