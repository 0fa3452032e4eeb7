"""A sweep's SQLite MLflow store in write-ahead-log mode: what each of its writes costs the driver.

MLflow opens a SQLite store in SQLite's default rollback-journal mode, in which every commit creates,
syncs and deletes a journal file. The driver's sender commits five times per trial (run, params, epochs,
end metrics, status): about 30 of the ~50 ms of driver CPU a trial costs (``benchmarks/sweep_scale.py``,
``mlflow_cpu_s``). With ``journal_mode=WAL`` and ``synchronous=NORMAL`` a write costs 1.4-3.6 ms of
CPU instead of 2.5-5.3 (``benchmarks/mlflow_write_cost.py``, 2026-12-03) and never waits for a disk
sync, which on a busy disk cost 23-38 ms of wall per write (2026-12-02); in whole sweeps the driver's
CPU per result halved (docs/performance.md, "Where the driver's CPU goes").

What it changes for a user:

* A killed driver loses nothing it committed (the log is written before a commit returns); a power
  loss may roll back the last commits, never corrupt the file (SQLite's guarantee for this mode). The
  spool would then hold records MLflow lost: the same "at most the last moment" as the Optuna journal.
* WAL mode is a property of the file and stays: every reader (``mlflow ui``, ``albsnn report``) must
  reach it through the same machine's file system. SQLite's WAL does not work over a network file
  system: set ``ALBSNN_MLFLOW_SQLITE_WAL=0`` before the sweep's first run on such a store, or use a
  tracking server.

Only the store a sweep was pointed at is changed, and only in the process that runs the sweep; other
SQLite databases the process opens keep their settings.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from pathlib import Path

__all__ = ["WAL_ENV", "use_wal", "sqlite_path"]

WAL_ENV = "ALBSNN_MLFLOW_SQLITE_WAL"  # "0": leave the store in SQLite's default mode
_paths: set[str] = set()  # resolved files of the stores this process put in WAL mode


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` tracking URI; None for any other URI or an in-memory store."""
    if not uri.startswith("sqlite:///"):
        return None
    path = uri[len("sqlite:///") :].split("?", 1)[0]
    return None if path in ("", ":memory:") else Path(path)


def use_wal(uri: str) -> None:
    """Put the SQLite store at ``uri`` in WAL mode with ``synchronous=NORMAL`` for this process.

    Call before the process's first MLflow call on ``uri`` (``layout.client`` does): connections the
    store's engine opens from then on get both settings. A store another engine already opened is
    switched to WAL at once (a setting of the file); its open connections keep their own sync mode.
    """
    path = sqlite_path(uri)
    if path is None or os.environ.get(WAL_ENV, "1") == "0":
        return
    key = os.path.realpath(path)
    if key in _paths:
        return
    _listen()
    _paths.add(key)
    if path.is_file():
        with contextlib.closing(sqlite3.connect(path)) as conn:
            _tune(conn)
    # a missing file is created by MLflow's engine, whose first connection then gets the settings


def _tune(conn) -> None:
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")


def _on_connect(dbapi_connection, connection_record) -> None:
    if not (_paths and isinstance(dbapi_connection, sqlite3.Connection)):
        return
    files = dbapi_connection.execute("PRAGMA database_list").fetchall()
    main = next((f for _, name, f in files if name == "main"), "")
    if main and os.path.realpath(main) in _paths:
        _tune(dbapi_connection)


def _listen() -> None:
    import sqlalchemy

    if not sqlalchemy.event.contains(sqlalchemy.engine.Engine, "connect", _on_connect):
        sqlalchemy.event.listen(sqlalchemy.engine.Engine, "connect", _on_connect)
