"""What the sweep platform costs, and what pruning saves.

``overhead``: N trials of one config (the platform varies only the seed), run twice, one at a time,
on one thread:

* ``bare``      a Python loop calling ``albsnn.train.fit`` in one process, N/2 times before and N/2
                times after the platform run (a busy machine during one of them shows as a gap);
* ``platform``  ``albsnn.sweep.run_sweep`` on an ablation pipeline of the same config with N seeds
                (``max_concurrent: 1``, 1 CPU per trial): Ray Tune, per-epoch checkpoint + export +
                ``tune.report``, the driver-side MLflow callback (SQLite), progress output.

Overhead = (platform seconds per trial - bare seconds per trial) / bare seconds per trial, where the
platform's trial phase runs from the first trial's MLflow start time to the last trial's end time;
the one-off start-up (Ray ``init``, MLflow database, first worker) is reported separately.

``pruning``: a pipeline (default ``pipelines/demo.yaml``) run as shipped and again with
``pruner: none`` (same sampler and seed): wall time, trials finished / pruned, trial-epochs spent, the
sum of the trials' training seconds (``epoch_seconds``), and
the hypervolume of the finished trials' (test accuracy, storage bytes) front against one reference
point, chance accuracy and the largest full-precision size, as ``albsnn report`` computes it.

Run from the repository root::

    # about 8 minutes on 2 cores: 20 trials of ~10 s (width 1, T=2, 18 epochs on all digits)
    PYTHONPATH=. .venv/bin/python benchmarks/sweep_overhead.py overhead --trials 20 --epochs 18
    # about 3 minutes: short trials show the fixed per-trial cost
    PYTHONPATH=. .venv/bin/python benchmarks/sweep_overhead.py overhead --trials 20 --epochs 2
    # about 5 minutes: the demo pipeline with and without its pruner
    PYTHONPATH=. .venv/bin/python benchmarks/sweep_overhead.py pruning --pipeline pipelines/demo.yaml

Results on a 2-core CPU are in docs/performance.md ("Sweep overhead and pruning efficiency").
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import yaml

from albsnn.metrics import VAL_ACCURACY

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def _trial_config(args) -> dict:
    return {
        "dataset": "digits",
        "arch": "tiny",
        "epochs": args.epochs,
        "width": args.width,
        "time_steps": args.time_steps,
        "batch_size": 64,
        "warmup": 1,
        "seed": 0,
    }


def bare_loop(args, trials: int) -> dict:
    import torch

    from albsnn.train import TrainConfig, fit

    torch.set_num_threads(1)
    fit(TrainConfig(**{**_trial_config(args), "epochs": 1}))  # warm-up: imports, first allocation
    seconds = []
    for _ in range(trials):
        start = time.perf_counter()
        fit(TrainConfig(**_trial_config(args)))
        seconds.append(time.perf_counter() - start)
    return {"trials": trials, "total_s": sum(seconds), "per_trial_s": sum(seconds) / len(seconds)}


def platform(args, work: Path) -> dict:
    from mlflow import MlflowClient

    from albsnn.sweep import run_sweep

    config = _trial_config(args)
    space = {
        "model": {"width": {"fixed": config.pop("width")}, "time_steps": {"fixed": config.pop("time_steps")}},
        "training": {"batch_size": {"fixed": config.pop("batch_size")}},
        "estimator": {"warmup": {"fixed": config.pop("warmup")}},
    }
    (work / "space.yaml").write_text(yaml.safe_dump(space))
    pipeline = {
        "name": "overhead",
        "dataset": config["dataset"],
        "arch": config["arch"],
        "epochs": config["epochs"],
        "search_space": "space.yaml",
        "objectives": {VAL_ACCURACY: "max"},
        "mode": "ablation",
        "pruner": "none",
        "max_concurrent": 1,
        "resources": {"cpus": 1},
        "seeds": list(range(args.trials)),  # same work per trial; ablation repeats seeds, not configs
        "storage": str(work / "sweeps"),
        "mlflow": {"experiment": "overhead"},
        "report": {"enabled": False},
    }
    path = work / "overhead.yaml"
    path.write_text(yaml.safe_dump(pipeline))
    uri = f"sqlite:///{work / 'mlflow.db'}"
    start = time.perf_counter()
    result = run_sweep(path, tracking_uri=uri, progress=False, num_cpus=2)
    total = time.perf_counter() - start
    runs = MlflowClient(uri).search_runs([result.experiment_id], "tags.`albsnn.role` = 'trial'")
    first = min(r.info.start_time for r in runs) / 1000
    last = max(r.info.end_time for r in runs) / 1000
    phase = last - first
    return {"total_s": total, "trial_phase_s": phase, "startup_s": total - phase, "trials": len(runs)}


def overhead(args) -> dict:
    # Half the bare loop before the platform run and half after, so that a slower or busier machine
    # during one of them (a shared VM, thermal drift) shows up as a difference between the halves.
    half = max(1, args.trials // 2)
    with tempfile.TemporaryDirectory(prefix="albsnn-overhead-") as tmp:
        before = bare_loop(args, half)
        plat = platform(args, Path(tmp))
        after = bare_loop(args, half)
    bare_per_trial = (before["total_s"] + after["total_s"]) / (before["trials"] + after["trials"])
    plat_per_trial = plat["trial_phase_s"] / plat["trials"]
    return {
        "trials": args.trials,
        "config": _trial_config(args),
        "bare_before": before,
        "bare_after": after,
        "platform": plat,
        "bare_s_per_trial": bare_per_trial,
        "platform_s_per_trial": plat_per_trial,
        "overhead_s_per_trial": plat_per_trial - bare_per_trial,
        "overhead_fraction": (plat_per_trial - bare_per_trial) / bare_per_trial,
    }


def _sweep_stats(uri: str, result) -> dict:
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    runs = client.search_runs([result.experiment_id], f"tags.`mlflow.parentRunId` = '{result.parent_run_id}'")
    epochs, train_seconds = 0, 0.0
    finished = []
    for run in runs:
        steps = [m.step for m in client.get_metric_history(run.info.run_id, VAL_ACCURACY)]
        epochs += max(steps, default=0)
        train_seconds += sum(m.value for m in client.get_metric_history(run.info.run_id, "epoch_seconds"))
        if run.data.tags.get("albsnn.trial_state") == "FINISHED":
            finished.append(
                (run.data.metrics[VAL_ACCURACY], run.data.metrics["storage_bytes"])
            )  # the front selects on val
    fp32 = max(run.data.metrics.get("fp32_bytes", 0) for run in runs)
    return {
        "wall_s": result.wall_seconds,
        "counts": result.counts,
        "trial_epochs": epochs,
        "train_seconds": train_seconds,  # sum of every trial's epoch_seconds (training compute)
        "finished_points": finished,
        "fp32_bytes": fp32,
        "best_accuracy": max((a for a, _ in finished), default=None),
    }


def _hypervolume(points, reference) -> float:
    try:
        from albsnn.pareto import hypervolume_2d
    except ImportError:  # the report package is optional here; same definition
        hypervolume_2d = None
    acc = [a for a, _ in points]
    size = [s for _, s in points]
    if hypervolume_2d is not None:
        return float(hypervolume_2d(acc, size, reference))
    area, best_size = 0.0, reference[1]
    for a, s in sorted(zip(acc, size, strict=True), reverse=True):
        if a > reference[0] and s < best_size:
            area += (a - reference[0]) * (best_size - s)
            best_size = s
    return area


def pruning(args) -> dict:
    from albsnn.sweep import run_sweep

    source = Path(args.pipeline).resolve()
    data = yaml.safe_load(source.read_text())
    data["search_space"] = str((source.parent / data["search_space"]).resolve())
    out = {}
    with tempfile.TemporaryDirectory(prefix="albsnn-pruning-") as tmp:
        work = Path(tmp)
        uri = f"sqlite:///{work / 'mlflow.db'}"
        for label, pruner in (("with_pruner", data.get("pruner", "none")), ("without_pruner", "none")):
            variant = {
                **data,
                "name": f"{data.get('name', source.stem)}-{label}",
                "pruner": pruner,
                "storage": str(work / "sweeps"),
                "mlflow": {"experiment": f"pruning-{label}"},
                "report": {"enabled": False},
            }
            path = work / f"{label}.yaml"
            path.write_text(yaml.safe_dump(variant))
            result = run_sweep(path, tracking_uri=uri, progress=False, num_cpus=args.cpus)
            out[label] = _sweep_stats(uri, result)
    reference = (0.1, max(v["fp32_bytes"] for v in out.values()))  # digits: 10 classes
    for stats in out.values():
        stats["hypervolume"] = _hypervolume(stats.pop("finished_points"), reference)
        stats["hypervolume_normalized"] = stats["hypervolume"] / ((1 - reference[0]) * reference[1])
    out["reference"] = reference
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="mode", required=True)
    o = sub.add_parser("overhead", help="bare loop vs platform on N identical trials")
    o.add_argument("--trials", type=int, default=20)
    o.add_argument("--epochs", type=int, default=10)
    o.add_argument("--width", type=float, default=1.0)
    o.add_argument("--time-steps", type=int, default=2)
    p = sub.add_parser("pruning", help="a pipeline with and without its pruner")
    p.add_argument("--pipeline", default=str(REPO / "pipelines" / "demo.yaml"))
    p.add_argument("--cpus", type=int, default=None, help="CPUs of the local Ray (default: all)")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    result = overhead(args) if args.mode == "overhead" else pruning(args)
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text)


if __name__ == "__main__":
    main()
