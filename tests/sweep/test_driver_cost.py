"""What the sweep driver writes per trial and per result (issue 19, part 4): a backlog of epochs is one
MLflow write per trial, a new trial's run is created without a lookup, an epoch's unchanged tags are
not written again, and the Optuna journal is fsynced in groups, not at every append."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import signal
import subprocess
import time
from types import SimpleNamespace

import optuna
import pytest
from mlflow import MlflowClient

from albsnn.sweep.journal import GroupSyncBackend, open_journal, sync_journals
from albsnn.sweep.tracking.callback import MlflowTrialCallback
from albsnn.sweep.tracking.runs import ensure_experiment, start_parent_run
from albsnn.sweep.tracking.spool import SweepLog


@pytest.fixture
def parent(tracking_uri, request):
    experiment_id = ensure_experiment(tracking_uri, f"cost-{request.node.name}")
    return experiment_id, start_parent_run(tracking_uri, experiment_id, "sweep", {})


def count_calls(obj, name: str) -> list:
    calls, real = [], getattr(obj, name)

    def counted(*args, **kwargs):
        calls.append(kwargs)
        return real(*args, **kwargs)

    setattr(obj, name, counted)
    return calls


def test_a_backlog_of_epochs_is_one_write_per_trial_and_every_step_arrives(tracking_uri, parent, tmp_path):
    log = SweepLog(tmp_path / "s", tracking_uri, *parent, quiet=True)
    batches = count_calls(log.writer.client, "log_batch")
    with log._lock:  # the sender waits: everything below is one backlog
        for trial in ("a", "b"):
            log.start_trial(trial, trial, {"lr": "0.1"})
        for step in range(1, 6):
            for trial in ("a", "b"):
                log.epoch(trial, step, {"val_accuracy": step / 10, "storage_bytes": 100.0 * step})
        log.end_trial("a", "FINISHED", step=5, metrics={"best_val_accuracy": 0.5})
    assert log.close(timeout=60) == 0 and not log.problems
    epoch_writes = [b for b in batches if any(m.key == "storage_bytes" for m in b.get("metrics", []))]
    assert len(epoch_writes) == 2  # 10 epoch records: one write per trial
    assert len(batches) == 4  # + the params of each trial (trial a's end went with its epochs)
    client = MlflowClient(tracking_uri)
    runs = client.search_runs([parent[0]], "tags.`albsnn.role` = 'trial'")
    assert len(runs) == 2
    for run in runs:
        history = client.get_metric_history(run.info.run_id, "val_accuracy")
        assert sorted((m.step, m.value) for m in history) == [(s, s / 10) for s in range(1, 6)]


def test_records_arriving_within_the_linger_are_one_write_per_trial_and_flush_does_not_wait(
    tracking_uri, parent, tmp_path
):
    log = SweepLog(tmp_path / "s", tracking_uri, *parent, quiet=True)
    log.linger_s = 30.0  # longer than the test: only flush() can end it
    batches = count_calls(log.writer.client, "log_batch")
    log.start_trial("a", "a", {"lr": "0.1"})
    for step in range(1, 6):
        time.sleep(0.02)  # results arriving one by one, as from a running trial
        log.epoch("a", step, {"val_accuracy": step / 10, "storage_bytes": 1.0})
    started = time.monotonic()
    assert log.flush(timeout=60) == 0
    assert time.monotonic() - started < 10  # flush sends at once, it does not sit out the linger
    assert len(batches) == 2  # the params, then all five epochs in one write
    assert log.close(timeout=60) == 0


def test_a_new_trials_run_is_created_without_a_lookup_and_a_resumed_one_is_found(
    tracking_uri, parent, tmp_path
):
    log = SweepLog(tmp_path / "s", tracking_uri, *parent, quiet=True)
    lookups = count_calls(log.writer.client, "search_runs")
    log.start_trial("t", "t", {"lr": "0.1"})
    log.epoch("t", 1, {"val_accuracy": 0.1})
    assert log.close(timeout=60) == 0 and lookups == []
    again = SweepLog(tmp_path / "s", tracking_uri, *parent, quiet=True)  # --resume: the same spool
    lookups = count_calls(again.writer.client, "search_runs")
    again.start_trial("t", "t", {"lr": "0.1"})  # the trial restarts: its run exists
    again.epoch("t", 2, {"val_accuracy": 0.2})
    assert again.close(timeout=60) == 0 and len(lookups) >= 1
    (run,) = MlflowClient(tracking_uri).search_runs([parent[0]], "tags.`albsnn.role` = 'trial'")
    assert {
        m.step for m in MlflowClient(tracking_uri).get_metric_history(run.info.run_id, "val_accuracy")
    } == {1, 2}


def test_an_epochs_tags_are_recorded_when_they_change(tracking_uri, parent, tmp_path):
    log = SweepLog(tmp_path / "s", tracking_uri, *parent, quiet=True)
    callback = MlflowTrialCallback(log, param_names=[])
    trial = SimpleNamespace(trial_id="x", config={}, last_result={}, checkpoint=None)
    callback.on_trial_start(0, [], trial)
    for epoch, host in [(1, "a"), (2, "a"), (3, "b")]:
        callback.on_trial_result(0, [], trial, {"epoch": epoch, "val_accuracy": 0.5, "host": host})
    epochs = [r for r in log._records if r["op"] == "epoch"]
    assert [r["tags"] for r in epochs] == [{"albsnn.trial_host": "a"}, {}, {"albsnn.trial_host": "b"}]
    assert log.close(timeout=60) == 0
    (run,) = MlflowClient(tracking_uri).search_runs([parent[0]], "tags.`albsnn.role` = 'trial'")
    assert run.data.tags["albsnn.trial_host"] == "b"


def test_the_drivers_journal_is_one_storage_fsynced_in_groups_and_readable_at_once(tmp_path, monkeypatch):
    path = tmp_path / "optuna.journal"
    storage = open_journal(path, shared=True)
    assert open_journal(path, shared=True) is storage  # the searcher's and the scheduler's
    fsyncs = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (fsyncs.append(fd), real_fsync(fd)))
    study = optuna.create_study(study_name="s", storage=storage, direction="maximize")
    for i in range(20):  # 20 trials: ~60 appends in well under a second
        trial = study.ask()
        trial.report(i / 20, 1)
        study.tell(trial, i / 20)
    fresh = optuna.load_study(study_name="s", storage=open_journal(path))  # another process's view
    assert len(fresh.trials) == 20 and fresh.best_value == pytest.approx(19 / 20)
    assert len(fsyncs) <= 2, len(fsyncs)  # Optuna's own backend: one per append
    sync_journals()
    before = len(fsyncs)
    sync_journals()  # nothing left to sync
    assert len(fsyncs) == before and before >= 1
    copy = pickle.loads(pickle.dumps(storage))  # Ray pickles the searcher with its storage (--resume)
    assert len(optuna.load_study(study_name="s", storage=copy).trials) == 20


def test_a_journal_whose_folder_was_removed_syncs_quietly(tmp_path):
    # A sweep's temporary study (tests, `make demo`) is removed before its 1 s fsync timer fires: the timer
    # thread must not raise (pytest and users saw a FileNotFoundError traceback from a thread).
    folder = tmp_path / "study"
    folder.mkdir()
    storage = open_journal(folder / "optuna.journal", shared=True)
    optuna.create_study(study_name="s", storage=storage)
    shutil.rmtree(folder)  # well before the timer's 1 s
    sync_journals()  # the timer's call, for every open journal


_APPENDER = """
import sys
from albsnn.sweep.journal import GroupSyncBackend
backend = GroupSyncBackend(sys.argv[1])
for i in range(300):
    # lines of ~3 KB: beyond what an append writes atomically
    backend.append_logs([{"writer": sys.argv[2], "i": i, "pad": "x" * 3000}])
backend.sync()
"""


def test_journal_appends_from_two_processes_never_interleave_and_no_lock_file_churns(
    tmp_path, python, subprocess_env, monkeypatch
):
    path = tmp_path / "optuna.journal"
    procs = [
        subprocess.Popen([python, "-c", _APPENDER, str(path), name], env=subprocess_env) for name in "ab"
    ]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    logs = [json.loads(line) for line in path.read_text().splitlines()]  # every line whole
    assert sorted((log["writer"], log["i"]) for log in logs) == [(w, i) for w in "ab" for i in range(300)]
    removed = []
    monkeypatch.setattr(os, "unlink", lambda p, *a, **k: removed.append(p))
    monkeypatch.setattr(os, "rename", lambda s, d, *a, **k: removed.append(s))
    GroupSyncBackend(str(path)).append_logs([{"writer": "c"}])
    assert removed == []  # Optuna's symlink lock creates, renames and removes a file per append


def test_a_driver_killed_holding_the_journal_lock_does_not_block_the_resumed_one(
    tmp_path, python, subprocess_env
):
    path = tmp_path / "optuna.journal"
    holder = subprocess.Popen(
        [
            python,
            "-c",
            "import sys, time\nfrom albsnn.sweep.journal import FlockLock\n"
            "FlockLock(sys.argv[1]).acquire(); print('held', flush=True); time.sleep(600)",
            str(path),
        ],
        env=subprocess_env,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout.readline().strip() == "held"
    holder.send_signal(signal.SIGKILL)
    holder.wait(timeout=30)
    start = time.monotonic()
    GroupSyncBackend(str(path)).append_logs([{"after": "kill"}])
    assert time.monotonic() - start < 1.0  # Optuna's symlink lock: 30 s before it breaks a stale lock
