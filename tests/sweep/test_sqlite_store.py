"""A sweep's SQLite MLflow store runs in WAL mode (cheaper writes for the driver); nothing else changes."""

from __future__ import annotations

import contextlib
import sqlite3

import sqlalchemy
from mlflow import MlflowClient

from albsnn.sweep.tracking import layout
from albsnn.sweep.tracking.sqlite_store import WAL_ENV, sqlite_path, use_wal

FULL, NORMAL = 2, 1  # PRAGMA synchronous values


def journal_mode(path) -> str:
    with contextlib.closing(sqlite3.connect(path)) as conn:
        return conn.execute("PRAGMA journal_mode").fetchone()[0]


def synchronous_of_a_new_engine(path) -> int:
    engine = sqlalchemy.create_engine(f"sqlite:///{path}")
    try:
        with engine.connect() as conn:
            return conn.exec_driver_sql("PRAGMA synchronous").scalar()
    finally:
        engine.dispose()


def plain_database(path):
    with contextlib.closing(sqlite3.connect(path)) as conn:
        conn.execute("CREATE TABLE t (x)")
    return path


def test_the_sweep_store_is_in_wal_mode_and_its_runs_read_back(tracking_uri):
    client = layout.client(tracking_uri)
    path = sqlite_path(tracking_uri)
    assert journal_mode(path) == "wal"
    assert synchronous_of_a_new_engine(path) == NORMAL  # every connection the process opens on it
    experiment = client.create_experiment("wal-readback")
    run = client.create_run(experiment).info.run_id
    client.log_metric(run, "val_accuracy", 0.5, step=1)
    client.set_terminated(run, "FINISHED")
    other = MlflowClient(tracking_uri)  # what `mlflow ui` or `albsnn report` would see
    assert other.get_run(run).info.status == "FINISHED"
    assert [m.value for m in other.get_metric_history(run, "val_accuracy")] == [0.5]


def test_other_sqlite_databases_of_the_process_keep_their_settings(tracking_uri, tmp_path):
    layout.client(tracking_uri)  # the listener is installed
    other = plain_database(tmp_path / "other.db")
    assert synchronous_of_a_new_engine(other) == FULL
    assert journal_mode(other) == "delete"


def test_wal_can_be_turned_off_for_stores_on_a_network_file_system(tmp_path, monkeypatch):
    store = plain_database(tmp_path / "nfs.db")
    monkeypatch.setenv(WAL_ENV, "0")
    use_wal(f"sqlite:///{store}")
    assert journal_mode(store) == "delete"
    assert synchronous_of_a_new_engine(store) == FULL


def test_only_file_stores_are_touched():
    assert sqlite_path("sqlite:///:memory:") is None
    assert sqlite_path("http://localhost:5000") is None
    assert str(sqlite_path("sqlite:////abs/mlflow.db?timeout=5")) == "/abs/mlflow.db"
    use_wal("http://localhost:5000")  # nothing to do, no error
