"""What one MLflow write costs the sweep driver on a SQLite store: why the spool sends in groups, and
why a sweep puts its store in WAL mode.

Prints the driver's CPU time (``time.process_time``) and wall time per call of ``log_batch`` with one
epoch's metrics, with five epochs' metrics, ``create_run``, ``set_terminated`` and a ``search_runs`` by
tag, on a fresh SQLite store in a temporary folder, once in SQLite's default rollback-journal mode (how
MLflow opens a store) and once in WAL mode with ``synchronous=NORMAL`` (how a sweep opens it:
``albsnn.sweep.tracking.sqlite_store``; docs/tracking.md, "Sent in groups")::

    PYTHONPATH=. .venv/bin/python benchmarks/mlflow_write_cost.py
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable

from mlflow import MlflowClient
from mlflow.entities import Metric

from albsnn.sweep.tracking.sqlite_store import use_wal

KEYS = ("val_accuracy", "test_accuracy", "storage_bytes", "epoch")


def per_call(fn: Callable[[int], object], calls: int) -> tuple[float, float]:
    """(CPU ms, wall ms) per call of ``fn(i)``."""
    cpu, wall = time.process_time(), time.perf_counter()
    for i in range(calls):
        fn(i)
    return 1000 * (time.process_time() - cpu) / calls, 1000 * (time.perf_counter() - wall) / calls


def costs(wal: bool) -> dict[str, tuple[float, float]]:
    with tempfile.TemporaryDirectory() as folder:
        uri = f"sqlite:///{folder}/mlflow.db"
        if wal:
            use_wal(uri)
        client = MlflowClient(uri)
        experiment = client.create_experiment("cost")  # the schema migration is not a write's cost
        runs = [client.create_run(experiment).info.run_id for _ in range(40)]

        def one_epoch(i: int) -> None:
            client.log_batch(runs[i % 8], metrics=[Metric(k, 0.5, 1000 + i, i) for k in KEYS])

        def five_epochs(i: int) -> None:
            metrics = [Metric(k, 0.5, 10**6 + 10 * i + s, 10**4 + 10 * i + s) for s in range(5) for k in KEYS]
            client.log_batch(runs[i % 8], metrics=metrics)

        return {
            "log_batch, 1 epoch (4 metrics)": per_call(one_epoch, 200),
            "log_batch, 5 epochs (20 metrics)": per_call(five_epochs, 40),
            "create_run": per_call(lambda i: client.create_run(experiment), 40),
            "set_terminated": per_call(lambda i: client.set_terminated(runs[i], "FINISHED"), 40),
            "search_runs by tag": per_call(lambda i: client.search_runs([experiment], f"tags.x = '{i}'"), 40),
        }


def main() -> None:
    default, wal = costs(wal=False), costs(wal=True)
    print("| call | CPU ms, rollback journal (MLflow's default) | wall ms | CPU ms, WAL + NORMAL | wall ms |")
    print("|---|---|---|---|---|")
    for name in default:
        cells = [f"{x:.1f}" for x in (*default[name], *wal[name])]
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
