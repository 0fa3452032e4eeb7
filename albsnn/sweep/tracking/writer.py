"""Apply spooled records to MLflow: the only code that writes a sweep's child runs.

Every operation is idempotent, so a record may be applied twice (the process died between the
write and the note that it was sent): a trial's run is found by its ``albsnn.trial_id`` tag before
one is created, metrics carry the timestamp they were recorded with (MLflow keeps one row per key,
step, timestamp and value), params are written with the same values, tags and statuses are set.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

from albsnn.sweep.tracking import layout as L

__all__ = ["MlflowWriter", "is_permanent", "fail_fast_http", "first_line"]

# MLflow error codes that a retry cannot fix: the record is skipped (and reported).
_PERMANENT = {"INVALID_PARAMETER_VALUE", "RESOURCE_DOES_NOT_EXIST", "BAD_REQUEST", "INVALID_STATE"}
_PARAM_BATCH = 100  # MLflow's limit of params per log_batch
_METRIC_BATCH = 1000  # ... of metrics


def fail_fast_http(uri: str) -> None:
    """Let one request to a server that is down fail in seconds, not after minutes of retries.

    The sender retries on its own, without holding anything up; MLflow's defaults (7 retries with
    exponential backoff) would make every call of this process wait minutes. A user's own
    ``MLFLOW_HTTP_REQUEST_*`` settings win.
    """
    if uri.startswith(("http://", "https://")):
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "15")


def is_permanent(error: Exception) -> bool:
    return getattr(error, "error_code", None) in _PERMANENT


def first_line(error: Exception) -> str:
    """The first line of an MLflow (or any) error's message; its type when it has none."""
    text = str(getattr(error, "message", None) or error).strip()
    return text.splitlines()[0] if text else type(error).__name__


class MlflowWriter:
    """Writes the records of one sweep (experiment + parent run) to the MLflow at ``uri``."""

    def __init__(self, uri: str, experiment_id: str, parent_run_id: str):
        self.uri, self.experiment_id, self.parent_run_id = uri, experiment_id, parent_run_id
        self.runs: dict[str, str] = {}  # trial id -> run id
        self._client = None

    @property
    def client(self):
        if self._client is None:
            self._client = L.client(self.uri)
        return self._client

    def apply(self, record: dict, fresh: bool = False) -> None:
        """Apply one record. ``fresh``: a trial's first start, applied for the first time by the
        process that recorded it, so its run cannot exist yet: created without looking it up."""
        if fresh and record["op"] == "start":
            self._start_new(record)
        else:
            getattr(self, f"_{record['op']}")(record)

    def apply_group(self, records: list[dict], fresh: set[int] = frozenset()) -> None:
        """Apply ``records`` (``fresh``: indices of fresh starts) in order per trial, with each
        trial's consecutive epochs in one ``log_batch``: what a backlog costs is one write per trial,
        not one per epoch. Another trial's records may go first; sweep-level records wait for all
        before them. On an error nothing is noted as sent: the whole group is applied again."""
        epochs: dict[str, list[dict]] = {}
        for i, record in enumerate(records):
            trial = record.get("trial")
            if record["op"] == "epoch":
                epochs.setdefault(trial, []).append(record)
                continue
            if record["op"] == "artifacts":  # files, not metrics: no order to keep with the epochs
                self.apply(record)
                continue
            if record["op"] == "end" and epochs.get(trial):  # its last epochs and its end: one write
                self._epochs([*epochs.pop(trial), record])
                self._terminate(record)
                continue
            if trial is None:  # a sweep-level record: every epoch before it first
                for waiting in epochs.values():
                    self._epochs(waiting)
                epochs.clear()
            elif trial in epochs:
                self._epochs(epochs.pop(trial))
            self.apply(record, fresh=i in fresh)
        for waiting in epochs.values():
            self._epochs(waiting)

    # -- trial runs
    def run_id(self, trial_id: str, create: dict | None = None) -> str | None:
        run_id = self.runs.get(trial_id)
        if run_id is None:
            found = self.client.search_runs(
                [self.experiment_id],
                L.trial_filter(self.parent_run_id, trial_id),
                max_results=5,
                order_by=["attributes.start_time ASC"],
            )
            if found:
                run_id = found[0].info.run_id
            elif create is not None:
                run_id = self._create(trial_id, create)
            if run_id is not None:
                self.runs[trial_id] = run_id
        return run_id

    def _create(self, trial_id: str, record: dict) -> str:
        tags = {
            L.ROLE: L.TRIAL,  # a confirmation run's record says CONFIRM
            **record.get("tags", {}),
            L.PARENT_RUN_ID: self.parent_run_id,
            L.TRIAL_ID: trial_id,
            L.TRIAL_STATE: L.RUNNING,
        }
        run = self.client.create_run(
            self.experiment_id, run_name=record["name"], tags=tags, start_time=record.get("ts")
        )
        return run.info.run_id

    def _start(self, record: dict) -> None:
        run_id = self.run_id(record["trial"], create=record)
        run = self.client.get_run(run_id)
        if run.info.status != "RUNNING":  # a resumed or retried trial: its run is open again
            self._reopen(run)
            self.client.set_tag(run_id, L.TRIAL_STATE, L.RUNNING)
        missing = {k: v for k, v in record.get("params", {}).items() if k not in run.data.params}
        self._params(run_id, missing)

    def _params(self, run_id: str, params: dict[str, str]) -> None:
        from mlflow.entities import Param

        items = [Param(k, v) for k, v in sorted(params.items())]
        for i in range(0, len(items), _PARAM_BATCH):
            self.client.log_batch(run_id, params=items[i : i + _PARAM_BATCH])

    def _start_new(self, record: dict) -> None:
        run_id = self.runs[record["trial"]] = self._create(record["trial"], record)
        self._params(run_id, record.get("params", {}))

    def _epoch(self, record: dict) -> None:
        self._batch(self.run_id(record["trial"]), record)

    def _epochs(self, records: list[dict]) -> None:
        """One trial's epoch records, in one log_batch (MLflow's limits: 1000 metrics, 100 tags)."""
        from mlflow.entities import Metric, RunTag

        run_id = self.run_id(records[0]["trial"]) if records else None
        if run_id is None:
            return
        now = int(time.time() * 1000)
        metrics = [
            Metric(k, v, r.get("ts") or now, r.get("step", 0))
            for r in records
            for k, v in r["metrics"].items()
        ]
        newest = {k: v for r in records for k, v in r.get("tags", {}).items()}  # a few keys, the last values
        tags = [RunTag(k, v) for k, v in newest.items()]
        for i in range(0, max(len(metrics), 1), _METRIC_BATCH):
            self.client.log_batch(run_id, metrics=metrics[i : i + _METRIC_BATCH], tags=tags if i == 0 else [])

    def _tags(self, record: dict) -> None:
        self._batch(self.run_id(record["trial"]), record)

    def _end(self, record: dict) -> None:
        self._batch(self.run_id(record["trial"]), record)
        self._terminate(record)

    def _terminate(self, record: dict) -> None:
        status = L.STATE_TO_STATUS[record["state"]]
        self.client.set_terminated(self.run_id(record["trial"]), status, end_time=record.get("ts"))

    def _batch(self, run_id: str | None, record: dict) -> None:
        if run_id is None:
            return  # the trial's start was never recorded (nothing to attach this to)
        from mlflow.entities import Metric, RunTag

        ts, step = record.get("ts") or int(time.time() * 1000), record.get("step", 0)
        metrics = [Metric(k, v, ts, step) for k, v in record.get("metrics", {}).items()]
        tags = [RunTag(k, v) for k, v in record.get("tags", {}).items()]
        if metrics or tags:
            self.client.log_batch(run_id, metrics=metrics, tags=tags)

    def _input(self, record: dict) -> None:
        from mlflow.entities import Dataset, DatasetInput, InputTag

        data = record["dataset"]
        dataset = Dataset(
            name=data["name"],
            digest=data["digest"],
            source_type=data.get("source_type", "local"),
            source=data.get("source", ""),
            profile=json.dumps(data.get("profile", {})),
        )
        context = InputTag("mlflow.data.context", data.get("context", "training"))
        self.client.log_inputs(self.run_id(record["trial"]), datasets=[DatasetInput(dataset, [context])])

    def _artifacts(self, record: dict) -> None:
        folder = Path(record["folder"])
        if not folder.is_dir():
            return  # uploaded before (the folder goes once it is)
        run_id = self.run_id(record["trial"])
        for path in sorted(folder.iterdir()):
            where = L.MODEL_DIR if path.name == L.MODEL_FILE else None
            self.client.log_artifact(run_id, str(path), artifact_path=where)
        shutil.rmtree(folder, ignore_errors=True)

    # -- the sweep as a whole
    def _orphans(self, record: dict) -> None:
        """Delete child runs whose Ray trial no longer exists (created just before a driver died).

        Only runs of the record's role: the search and the confirmation are two Tune experiments,
        and each knows its own trials.
        """
        known, role = set(record["known"]), record.get("role", L.TRIAL)
        for run in L.search_all(self.client, [self.experiment_id], L.children_filter(self.parent_run_id)):
            if run.data.tags.get(L.ROLE, L.TRIAL) != role:
                continue
            if run.data.tags.get(L.TRIAL_ID) not in known:
                self.client.set_tag(run.info.run_id, L.TRIAL_STATE, L.ORPHANED)
                self.client.delete_run(run.info.run_id)

    def _kill_unfinished(self, record: dict) -> None:
        """End every child run still RUNNING as KILLED, tagged with why."""
        unfinished = f"{L.children_filter(self.parent_run_id)} and attributes.status = 'RUNNING'"
        for run in L.search_all(self.client, [self.experiment_id], unfinished):
            self.client.set_tag(run.info.run_id, L.END_REASON, record["reason"])
            self.client.set_terminated(run.info.run_id, "KILLED", end_time=record.get("ts"))

    def _parent_end(self, record: dict) -> None:
        self._batch(self.parent_run_id, record)
        self.client.set_terminated(self.parent_run_id, record["status"], end_time=record.get("ts"))

    def _parent_reopen(self, record: dict) -> None:
        self._reopen(self.client.get_run(self.parent_run_id))
        self._batch(self.parent_run_id, record)

    def _reopen(self, run) -> None:
        self.client.update_run(run.info.run_id, status="RUNNING")
        if L.END_REASON in run.data.tags:  # it is running again: why it stopped no longer holds
            self.client.delete_tag(run.info.run_id, L.END_REASON)
