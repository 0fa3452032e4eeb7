"""What the sweep driver costs per trial and per result as a sweep grows from 100 to 2,000 trials.

Each size runs ``albsnn.sweep.run_sweep`` on a search pipeline (random sampler, two objectives,
median pruner, ``max_concurrent: 8``, Ray started with 8 logical CPUs) whose trainable does no
training: every epoch it reports made-up validation accuracy and storage, and at checkpoint epochs
a one-file checkpoint. Everything else is the real platform path: the Optuna searcher and journal,
the pruning scheduler, the MLflow spool and sender (SQLite), the progress printer, Ray Tune's
controller, experiment snapshots and checkpoint persistence.

Each size is run twice, with 1 epoch per trial and with ``--epochs`` (default 10; the median pruner
judges from epoch ``--warmup`` + 1 = 9 on, so every trial reports at least 8 results), so that the
driver's cost splits into what each trial costs once and what each reported result adds. The split
needs that lever: with 5 epochs and judging from epoch 4 (about 3 results per trial) two runs of one
commit gave 0.6 and 8.5 ms per result at 500 trials; with the defaults, 6.73 and 6.71
(reports/sweep-scale-cpu/README.md, "Repeats"):

* ``driver_ms_per_result`` (marginal): the difference in driver CPU between the two sweeps divided
  by the difference in results (trial-epochs) they reported;
* ``driver_ms_per_trial`` (fixed): the 1-epoch sweep's driver CPU less its results at that marginal
  cost, divided by its trials;
* ``results_per_s``: results of the longer sweep per second of its wall time, and
  ``capacity_results_per_s`` = 1000 / ``driver_ms_per_result``: the rate a core spent on the driver
  would sustain.

Driver CPU is the driver process's CPU time (user + system, all its threads: Tune's loop, the MLflow
sender, Ray's client threads; ``time.process_time``) from the first trial's start to the end of
``run_sweep`` (so the records the MLflow sender still sends after Tune's experiment ended count);
``results_per_s`` uses the wall time from the first trial's start to the end of the experiment. CPU
time, not wall time, so other load on the machine does not inflate it (it can still slow caches).
Per run also: ``mlflow_writes`` (and ``mlflow_calls`` by client method), ``mlflow_cpu_s`` (the CPU
those writes took on the thread that made them, ``time.thread_time``: the MLflow share of the
driver's CPU), ``tune_loop_cpu_s`` (the main thread's CPU, where Tune's loop, its scheduler,
searcher and callbacks run, over the same window), ``snapshots`` (Ray Tune experiment snapshots and
the bytes of the last and of all), ``actors`` (Tune's trial actors: ``requested`` new ones,
``withdrawn`` before their process started, ``started`` fresh for a trial, ``reused`` from a
finished trial, and ``removed`` after their process started: every worker process the sweep started
ends removed, so ``removed`` counts them), ``box_cpu_s`` (the machine's CPU seconds by kind over the
whole ``run_sweep``, from ``/proc/stat``: ``nice`` is Ray's trial workers, ``steal`` what the
hypervisor took; and Ray's ``gcs_server`` and ``raylet``), ``gc`` (the driver's garbage collections
per generation and the CPU they took), ``wall_s`` and ``trial_epochs``.

Run from the repository root (500 trials take about 6 minutes on 2 cores beside two trainings; 2,000
about four times that)::

    PYTHONPATH=. .venv/bin/python benchmarks/sweep_scale.py --trials 100 500 2000 --json scale.json

Results are in docs/performance.md ("Sweep driver cost at scale").
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import gc
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

    first_start: tuple | None = None
    end: tuple | None = None

    # Tune's loop runs these on the main thread: thread_time is then the loop's own CPU
    def on_trial_start(self, iteration, trials, trial, **info) -> None:
        if CpuWindow.first_start is None:
            CpuWindow.first_start = (time.process_time(), time.perf_counter(), time.thread_time())

    def on_experiment_end(self, trials, **info) -> None:
        CpuWindow.end = (time.process_time(), time.perf_counter(), time.thread_time())


class Counters:
    """Counts MLflow client writes and Ray Tune experiment snapshots in this (the driver) process."""

    def __init__(self):
        self.mlflow_writes = 0
        self.mlflow_calls: dict[str, int] = {}
        self.mlflow_cpu_s = 0.0
        self.snapshots = 0
        self.snapshot_bytes_last = 0
        self.snapshot_bytes_total = 0
        # Tune's actor handling: a trial either gets a new actor (a worker process started, its
        # imports paid) or reuses a stopped trial's cached one; removed actors end their process.
        self.actors = {"requested": 0, "started": 0, "reused": 0, "removed": 0, "withdrawn": 0}
        # Python's cyclic garbage collector in the driver: a full collection walks every object
        # the driver holds, and the driver holds every trial
        self.gc = {"collections": [0, 0, 0], "seconds": [0.0, 0.0, 0.0]}
        self._gc_start = 0.0

    def install(self) -> None:
        from mlflow import MlflowClient
        from ray.tune.execution.tune_controller import TuneController

        for name in MLFLOW_WRITES:
            real = getattr(MlflowClient, name)
            setattr(MlflowClient, name, self._counted(name, real))
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
        real_started = TuneController._actor_started
        real_schedule = TuneController._schedule_trial_actor
        real_remove = TuneController._remove_actor

        def actor_started(controller, tracked_actor, log="STARTED"):
            counters.actors["reused" if log == "REUSED" else "started"] += 1
            return real_started(controller, tracked_actor, log=log)

        def schedule_trial_actor(controller, trial):
            before = len(controller._actor_manager._pending_actors_to_attrs)
            real_schedule(controller, trial)
            counters.actors["requested"] += len(controller._actor_manager._pending_actors_to_attrs) > before

        def remove_actor(controller, tracked_actor):
            started = controller._actor_manager.is_actor_started(tracked_actor)
            counters.actors["removed" if started else "withdrawn"] += 1
            return real_remove(controller, tracked_actor=tracked_actor)

        TuneController._actor_started = actor_started
        TuneController._schedule_trial_actor = schedule_trial_actor
        TuneController._remove_actor = remove_actor
        gc.callbacks.append(self._collected)

    def _collected(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._gc_start = time.thread_time()
            return
        generation = info["generation"]
        self.gc["collections"][generation] += 1
        self.gc["seconds"][generation] += time.thread_time() - self._gc_start

    def _counted(self, name, real):
        def counted(*args, **kwargs):
            self.mlflow_writes += 1
            self.mlflow_calls[name] = self.mlflow_calls.get(name, 0) + 1
            start = time.thread_time()  # the calling thread's CPU: the write's own, not its disk waits
            try:
                return real(*args, **kwargs)
            finally:
                self.mlflow_cpu_s += time.thread_time() - start

        return counted

    def reset(self) -> None:
        self.__init__()


def box_cpu() -> dict:
    """Seconds of CPU the whole machine spent since boot, by kind (Linux ``/proc/stat``; empty
    elsewhere), and Ray's own servers' CPU: what else the sweep's wall time went to."""
    tick = os.sysconf("SC_CLK_TCK")
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]
    except OSError:
        return {}
    # Ray's trial workers run at nice 15: their CPU is the "nice" share
    names = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")
    cpu = {name: int(value) / tick for name, value in zip(names, fields, strict=True)}
    for proc in Path("/proc").glob("[0-9]*"):
        with contextlib.suppress(OSError):
            comm = (proc / "comm").read_text().strip()
            if comm in ("gcs_server", "raylet"):
                stat = (proc / "stat").read_text().rsplit(")", 1)[1].split()
                cpu[comm] = cpu.get(comm, 0) + (int(stat[11]) + int(stat[12])) / tick
    return cpu


def pipeline(work: Path, trials: int, epochs: int, args) -> Path:
    (work / "space.yaml").write_text(yaml.safe_dump({"training": {"lr": {"loguniform": [1e-4, 1e-1]}}}))
    data = {
        "name": f"scale{trials}x{epochs}",
        "dataset": "digits",
        "epochs": epochs,
        "search_space": "space.yaml",
        "objectives": {"val_accuracy": "max", "storage_bytes": "min"},
        "mode": "search",
        "sampler": {"kind": "random"},
        "pruner": {"kind": "median", "n_startup_trials": 5, "n_warmup_steps": args.warmup},
        "num_samples": trials,
        "max_concurrent": args.concurrency,
        "resources": {"cpus": 1},
        "checkpoint_every": args.checkpoint_every,
        "max_failures": 0,
        "storage": str(work / "sweeps"),
        "mlflow": {"experiment": f"scale{trials}x{epochs}"},
        "report": {"enabled": False},
    }
    path = work / f"scale{trials}x{epochs}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def measure(trials: int, epochs: int, args, counters: Counters) -> dict:
    """One sweep of ``trials`` trials of ``epochs`` epochs: the driver's CPU, results, writes, snapshots."""
    from mlflow import MlflowClient

    from albsnn.metrics import VAL_ACCURACY
    from albsnn.sweep import runner
    from albsnn.sweep.tracking import layout

    def trivial_trainable(pipe, fail_once_at_epoch):
        fn = tune.with_parameters(trivial_trial, epochs=pipe.epochs, checkpoint_every=pipe.checkpoint_every)
        return tune.with_resources(fn, {"cpu": pipe.resources["cpus"]})

    runner.make_trainable = trivial_trainable  # runner looks it up at call time
    with tempfile.TemporaryDirectory(prefix="albsnn-scale-") as tmp:
        work = Path(tmp)
        uri = f"sqlite:///{work / 'mlflow.db'}"
        layout.client(uri).search_experiments()  # the schema migration is not the sweep's cost
        path = pipeline(work, trials, epochs, args)
        counters.reset()
        CpuWindow.first_start = CpuWindow.end = None
        box0 = box_cpu()
        cpu0, wall0 = time.process_time(), time.perf_counter()
        with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull):
            result = runner.run_sweep(path, tracking_uri=uri, progress=True)
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
        box = {k: round(v - box0.get(k, 0), 1) for k, v in box_cpu().items()}
        client = MlflowClient(uri)
        runs = client.search_runs([result.experiment_id], "tags.`albsnn.role` = 'trial'", max_results=5000)
        results = sum(_steps(client, r, VAL_ACCURACY) for r in runs)
    # to the end of run_sweep: what the trials' records still cost after Tune's experiment ended
    # (the MLflow sender drains them then) is theirs
    window_cpu = cpu0 + cpu - CpuWindow.first_start[0]
    window_wall = CpuWindow.end[1] - CpuWindow.first_start[1]
    return {
        "trials": trials,
        "epochs": epochs,
        "counts": result.counts,
        "trial_epochs": results,
        "wall_s": round(wall, 1),
        "window_wall_s": round(window_wall, 1),
        "driver_cpu_s": round(cpu, 1),
        "window_cpu_s": round(window_cpu, 2),
        "driver_cpu_ms_per_trial_epoch": round(1000 * window_cpu / results, 2),
        "mlflow_writes": counters.mlflow_writes,
        "mlflow_writes_per_trial_epoch": round(counters.mlflow_writes / results, 2),
        "mlflow_calls": counters.mlflow_calls,
        "mlflow_cpu_s": round(counters.mlflow_cpu_s, 2),
        "tune_loop_cpu_s": round(CpuWindow.end[2] - CpuWindow.first_start[2], 2),
        "snapshots": counters.snapshots,
        "snapshot_bytes_last": counters.snapshot_bytes_last,
        "snapshot_bytes_total": counters.snapshot_bytes_total,
        "actors": dict(counters.actors),
        "box_cpu_s": box,
        "gc": {
            "collections": counters.gc["collections"],
            "cpu_s": [round(x, 2) for x in counters.gc["seconds"]],
        },
    }


def split(short: dict, long: dict) -> dict:
    """Per-trial (fixed) and per-result (marginal) driver CPU from a 1-epoch and a longer sweep."""
    per_result = (long["window_cpu_s"] - short["window_cpu_s"]) / (
        long["trial_epochs"] - short["trial_epochs"]
    )
    per_trial = (short["window_cpu_s"] - per_result * short["trial_epochs"]) / short["trials"]
    return {
        "trials": short["trials"],
        "driver_ms_per_trial": round(1000 * per_trial, 1),
        "driver_ms_per_result": round(1000 * per_result, 2),
        "results_per_s": round(long["trial_epochs"] / long["window_wall_s"], 1),
        "capacity_results_per_s": round(1 / per_result, 1) if per_result > 0 else None,
        "runs": [short, long],
    }


def _steps(client, run, key: str) -> int:
    return max((m.step for m in client.get_metric_history(run.info.run_id, key)), default=0)


def table(files: list[str]) -> str:
    """A Markdown table of result files (``--json`` outputs): one row per file and size."""
    rows = [
        "| file | trials | longer sweep: epochs, results | driver ms per trial | driver ms per result | "
        "results/s (observed) | capacity results/s | MLflow writes per result (longer sweep) | "
        "wall s (1-epoch / longer) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name in files:
        for size in json.loads(Path(name).read_text()):
            short, long = size["runs"]
            cells = [
                Path(name).name,
                size["trials"],
                # the split's lever: how many more results than the 1-epoch sweep
                f"{long['epochs']}, {long['trial_epochs']}",
                size["driver_ms_per_trial"],
                size["driver_ms_per_result"],
            ]
            cells += [
                size["results_per_s"],
                size["capacity_results_per_s"],
                long["mlflow_writes_per_trial_epoch"],
            ]
            cells.append(f"{short['wall_s']:.0f} / {long['wall_s']:.0f}")
            rows.append("| " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, nargs="+", default=[100, 500, 2000])
    parser.add_argument("--epochs", type=int, default=10, help="epochs of the longer sweep of each size")
    parser.add_argument(
        "--warmup",
        type=int,
        default=8,
        help="epochs the median pruner never prunes: the longer sweep then reports at least this many "
        "results per trial, so the per-result cost is measured over a difference of >= 7 results per trial",
    )
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--checkpoint-every", type=int, default=1)
    parser.add_argument("--json", help="also write the results to this file")
    parser.add_argument(
        "--profile", help="write a cProfile of the driver's main thread per sweep to FILE.<trials>x<epochs>"
    )
    parser.add_argument("--table", nargs="+", metavar="JSON", help="print a Markdown table of result files")
    args = parser.parse_args()
    if args.table:
        print(table(args.table))
        return

    import ray

    counters = Counters()
    counters.install()
    os.environ["RAY_TUNE_CALLBACKS"] = "__main__.CpuWindow"
    ray.init(num_cpus=args.concurrency, include_dashboard=False, log_to_driver=False)
    results = []
    try:
        for trials in args.trials:
            runs = []
            for epochs in (1, args.epochs):
                profile = cProfile.Profile() if args.profile else None
                if profile:
                    profile.enable()
                runs.append(measure(trials, epochs, args, counters))
                if profile:
                    profile.disable()
                    # one file per sweep: the two sweeps' difference is where each result's cost goes
                    profile.dump_stats(f"{args.profile}.{trials}x{epochs}")
                print(json.dumps(runs[-1]), flush=True)
            results.append(split(*runs))
            print(json.dumps({k: v for k, v in results[-1].items() if k != "runs"}), flush=True)
            if args.json:
                Path(args.json).write_text(json.dumps(results, indent=2))
    finally:
        ray.shutdown()
    for r in results:
        print(json.dumps({k: v for k, v in r.items() if k != "runs"}))


if __name__ == "__main__":
    main()
