"""What the sweep driver costs per trial-epoch as a sweep grows from 100 to 2,000 trials.

Each size runs ``albsnn.sweep.run_sweep`` on a search pipeline (random sampler, two objectives,
median pruner, ``max_concurrent: 8``, Ray started with 8 logical CPUs) whose trainable does no
training: every epoch it reports made-up validation accuracy and storage, and at checkpoint epochs
a one-file checkpoint. Everything else is the real platform path: the Optuna searcher and journal,
the pruning scheduler, the MLflow callback (SQLite), the progress printer, Ray Tune's controller,
experiment snapshots and checkpoint persistence.

Measured per size, in the driver process:

* ``driver_cpu_ms_per_trial_epoch``: the driver's process CPU time (user + system, all its
  threads, ``time.process_time``) from the first trial's start to the end of the experiment,
  divided by the trial-epochs reported: the cost that grows with the sweep. CPU time, not wall
  time, so other load on the machine does not inflate it (it can still slow caches).
  ``driver_cpu_s`` is the whole ``run_sweep`` call, with its one-off set-up and wrap-up.
* ``mlflow_writes`` and ``mlflow_writes_per_s``: calls of the MLflow client's write methods
  (create_run, log_batch, set_tag, set_terminated, log_artifact, ...) and their rate over wall time.
* ``snapshots``, ``snapshot_bytes_last`` and ``snapshot_bytes_total``: Ray Tune experiment
  snapshots taken, the size of the driver staging folder each one writes and syncs (last and summed).
* ``wall_s`` and ``trial_epochs``.

Run from the repository root (about 10 minutes for the three sizes on 2 busy cores)::

    PYTHONPATH=. .venv/bin/python benchmarks/sweep_scale.py --trials 100 500 2000 --json scale.json

Results are in docs/performance.md ("Sweep driver cost at scale").
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

import yaml
from ray import tune

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

MLFLOW_WRITES = (
    "create_run",
    "log_batch",
    "log_metric",
    "log_param",
    "set_tag",
    "set_terminated",
    "update_run",
    "log_artifact",
    "log_artifacts",
    "delete_run",
)


def trivial_trial(config: dict, epochs: int, checkpoint_every: int) -> None:
    """A trial that trains nothing: made-up metrics every epoch, a one-file checkpoint when due."""
    rng = random.Random(repr(sorted(config.items())))
    ceiling = rng.uniform(0.5, 0.95)
    size = rng.randint(1_000, 50_000)
    for epoch in range(1, epochs + 1):
        accuracy = ceiling * (1 - 0.5**epoch)
        metrics = {"epoch": epoch, "val_accuracy": accuracy, "test_accuracy": accuracy, "storage_bytes": size}
        if epoch % checkpoint_every and epoch < epochs:
            tune.report(metrics)
            continue
        with tempfile.TemporaryDirectory() as tmp:
            (Path(tmp) / "state.json").write_text(json.dumps({"epoch": epoch}))
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(tmp))


class CpuWindow(tune.Callback):
    """Ray Tune callback (``RAY_TUNE_CALLBACKS=__main__.CpuWindow``): the driver's CPU time from the
    first trial start to the end of the experiment."""

    first_start: float | None = None
    end: float | None = None

    def on_trial_start(self, iteration, trials, trial, **info) -> None:
        if CpuWindow.first_start is None:
            CpuWindow.first_start = time.process_time()

    def on_experiment_end(self, trials, **info) -> None:
        CpuWindow.end = time.process_time()


class Counters:
    """Counts MLflow client writes and Ray Tune experiment snapshots in this (the driver) process."""

    def __init__(self):
        self.mlflow_writes = 0
        self.snapshots = 0
        self.snapshot_bytes_last = 0
        self.snapshot_bytes_total = 0

    def install(self) -> None:
        from mlflow import MlflowClient
        from ray.tune.execution.tune_controller import TuneController

        for name in MLFLOW_WRITES:
            real = getattr(MlflowClient, name)
            setattr(MlflowClient, name, self._counted(real))
        real_save = TuneController.save_to_dir
        counters = self

        def save_to_dir(controller):
            real_save(controller)
            staging = Path(controller._storage.experiment_driver_staging_path)
            size = sum(p.stat().st_size for p in staging.rglob("*") if p.is_file())
            counters.snapshots += 1
            counters.snapshot_bytes_last = size
            counters.snapshot_bytes_total += size

        TuneController.save_to_dir = save_to_dir

    def _counted(self, real):
        def counted(*args, **kwargs):
            self.mlflow_writes += 1
            return real(*args, **kwargs)

        return counted

    def reset(self) -> None:
        self.__init__()


def pipeline(work: Path, trials: int, args) -> Path:
    (work / "space.yaml").write_text(yaml.safe_dump({"training": {"lr": {"loguniform": [1e-4, 1e-1]}}}))
    data = {
        "name": f"scale{trials}",
        "dataset": "digits",
        "epochs": args.epochs,
        "search_space": "space.yaml",
        "objectives": {"val_accuracy": "max", "storage_bytes": "min"},
        "mode": "search",
        "sampler": {"kind": "random"},
        "pruner": {"kind": "median", "n_startup_trials": 5, "n_warmup_steps": 1},
        "num_samples": trials,
        "max_concurrent": args.concurrency,
        "resources": {"cpus": 1},
        "checkpoint_every": args.checkpoint_every,
        "max_failures": 0,
        "storage": str(work / "sweeps"),
        "mlflow": {"experiment": f"scale{trials}"},
        "report": {"enabled": False},
    }
    path = work / f"scale{trials}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def measure(trials: int, args, counters: Counters) -> dict:
    from mlflow import MlflowClient

    from albsnn.metrics import VAL_ACCURACY
    from albsnn.sweep import runner

    def trivial_trainable(pipe, fail_once_at_epoch):
        fn = tune.with_parameters(trivial_trial, epochs=pipe.epochs, checkpoint_every=pipe.checkpoint_every)
        return tune.with_resources(fn, {"cpu": pipe.resources["cpus"]})

    runner.make_trainable = trivial_trainable  # runner looks it up at call time
    with tempfile.TemporaryDirectory(prefix="albsnn-scale-") as tmp:
        work = Path(tmp)
        uri = f"sqlite:///{work / 'mlflow.db'}"
        MlflowClient(uri).search_experiments()  # the schema migration is not the sweep's cost
        path = pipeline(work, trials, args)
        counters.reset()
        CpuWindow.first_start = CpuWindow.end = None
        cpu0, wall0 = time.process_time(), time.perf_counter()
        with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull):
            result = runner.run_sweep(path, tracking_uri=uri, progress=True)
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
        client = MlflowClient(uri)
        runs = client.search_runs([result.experiment_id], "tags.`albsnn.role` = 'trial'", max_results=5000)
        epochs = sum(_steps(client, r, VAL_ACCURACY) for r in runs)
    return {
        "trials": trials,
        "counts": result.counts,
        "trial_epochs": epochs,
        "wall_s": round(wall, 1),
        "driver_cpu_s": round(cpu, 1),
        "driver_cpu_ms_per_trial_epoch": round(1000 * (CpuWindow.end - CpuWindow.first_start) / epochs, 2),
        "mlflow_writes": counters.mlflow_writes,
        "mlflow_writes_per_trial_epoch": round(counters.mlflow_writes / epochs, 2),
        "mlflow_writes_per_s": round(counters.mlflow_writes / wall, 1),
        "snapshots": counters.snapshots,
        "snapshot_bytes_last": counters.snapshot_bytes_last,
        "snapshot_bytes_total": counters.snapshot_bytes_total,
    }


def _steps(client, run, key: str) -> int:
    return max((m.step for m in client.get_metric_history(run.info.run_id, key)), default=0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, nargs="+", default=[100, 500, 2000])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--checkpoint-every", type=int, default=1)
    parser.add_argument("--json", help="also write the results to this file")
    parser.add_argument("--profile", help="write a cProfile of the driver's main thread to this file")
    args = parser.parse_args()

    import ray

    counters = Counters()
    counters.install()
    os.environ["RAY_TUNE_CALLBACKS"] = "__main__.CpuWindow"
    ray.init(num_cpus=args.concurrency, include_dashboard=False, log_to_driver=False)
    results = []
    profile = cProfile.Profile() if args.profile else None
    try:
        for trials in args.trials:
            if profile:
                profile.enable()
            results.append(measure(trials, args, counters))
            if profile:
                profile.disable()
                profile.dump_stats(args.profile)
            print(json.dumps(results[-1]), flush=True)
            if args.json:
                Path(args.json).write_text(json.dumps(results, indent=2))
    finally:
        ray.shutdown()
    base = results[0]["driver_cpu_ms_per_trial_epoch"]
    for r in results:
        r["cost_vs_smallest"] = round(r["driver_cpu_ms_per_trial_epoch"] / base, 2)
    text = json.dumps(results, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text)


if __name__ == "__main__":
    main()
