r"""Wall time to a target accuracy on full Fashion-MNIST at T = 1 with (nearly) every weight binary.

The run: ``albsnn.train.Trainer`` on the 60,000 training images (a stratified ``val_fraction`` of
them held out as the validation split), T = 1, ``binarize=all`` (every candidate conv binary from
the first step; the first conv and the classifier stay full precision unless ``--set
binarize_first=true`` / ``binarize_classifier=true``), so the exported model is >= 90 % smaller than
FP32 (checked and reported). The recipe is :data:`RECIPE`, each field overridable with ``--set``.

Select on validation, report on test:

* ``--stop val`` (default): the run stops at the first epoch whose **validation** accuracy reaches
  ``--target``; the test accuracy of that epoch is reported. No decision reads the test split.
* ``--stop none``: every ``epochs`` epoch runs (the schedule is fixed in advance); the final test
  accuracy is reported.
* Either way, the trainer evaluates the test split at every epoch end as a *measurement only* (it
  stops nothing, selects nothing); the report also gives the first epoch at which that measurement
  reached the target ("time to test target"). Taking the first crossing of a noisy curve is
  optimistic; the final epoch's test accuracy under ``--stop none`` is the unbiased number.

Reported: wall seconds from the start of training to the stopping epoch's end (training, BN
re-estimation, validation and the test measurement included; data loading and model building are
``setup_s``, reported apart), pure training seconds, epochs, accuracies, storage reduction, recipe.

CPU knobs worth measuring (one at a time, on a quiet machine): ``--threads``, ``--set
channels_last=true``, ``--set batch_size=...``, ``--set epochs=...`` (the schedule spans them),
``--set lr=...``, ``--set schedule=onecycle|cosine``, ``--set width=...``, ``--set compile=true``.

Run (from the repository root; about 4 minutes on 2 idle cores)::

    PYTHONPATH=. python benchmarks/time_to_accuracy.py --data-dir ../shared/data --threads 2 \
        --json runs/tta_cpu.json

    # a quick check that it runs (small subsets; the accuracy means nothing)
    PYTHONPATH=. python benchmarks/time_to_accuracy.py --data-dir ../shared/data \
        --set limit_train=3000 --set limit_test=500 --set epochs=1 --stop none
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import torch

from albsnn.cli.train import parse_option
from albsnn.train import TrainConfig, Trainer

# The recipe under test (edit here or override with --set KEY=VALUE).
# Measured one change at a time in docs/performance.md ("Time to accuracy on the 2-core CPU").
RECIPE: dict = {
    "dataset": "fashion-mnist",
    "arch": "fmnist_fast",  # fmnist's convs, first pool behind conv1: 4x fewer multiply-adds
    "width": 0.5,
    "time_steps": 1,
    "binarize": "all",
    "estimator": "weight-error",  # binarize=all decides nothing; a data-free estimator costs nothing
    "bwo": "off",
    "epochs": 2,
    "batch_size": 64,  # as fast per image as 128 on this CPU, with twice the updates
    "optimizer": "adam",
    "lr": 4e-3,
    "schedule": "onecycle",
    "label_smoothing": 0.1,
    "seed": 0,
    "val_fraction": 0.1,
    "channels_last": True,  # oneDNN convolutions in NHWC: about 20% less per step
    "compile": False,
    "spike_after_pool": True,  # same spikes at T=1 on 4x fewer neurons behind each pool
}
MIN_STORAGE_REDUCTION = 0.90
STOPS = ("val", "none")


class Clock:
    """Per-epoch wall time since training started, accuracies, and the stopping rule (validation only)."""

    def __init__(self, target: float, stop: str) -> None:
        self.target, self.stop = target, stop
        self.t0 = 0.0
        self.epochs: list[dict] = []

    def on_fit_start(self, trainer) -> None:
        self.t0 = time.perf_counter()

    def on_epoch_end(self, trainer, m: dict) -> bool:
        row = {
            "epoch": m["epoch"],
            "wall_s": time.perf_counter() - self.t0,
            "train_s": sum(e["train_s_epoch"] for e in self.epochs) + m["epoch_seconds"],
            "train_s_epoch": m["epoch_seconds"],
            "train_loss": m["train_loss"],
            "val_accuracy": m["val_accuracy"],
            "test_accuracy": m["test_accuracy"],  # measurement only: nothing below reads it to decide
            "storage_reduction": m["storage_reduction"],
        }
        self.epochs.append(row)
        print(
            f"epoch {row['epoch']:2d}  wall {row['wall_s']:7.1f}s  train {row['train_s']:7.1f}s  "
            f"loss {row['train_loss']:.4f}  val {100 * row['val_accuracy']:.2f}%  "
            f"test {100 * row['test_accuracy']:.2f}%  storage -{100 * row['storage_reduction']:.1f}%",
            flush=True,
        )
        return self.stop == "val" and 100 * m["val_accuracy"] >= self.target

    def on_fit_end(self, trainer, result: dict) -> None:
        pass


def summarize(clock: Clock, target: float, setup_s: float) -> dict:
    last = clock.epochs[-1]
    first_test = next((e for e in clock.epochs if 100 * e["test_accuracy"] >= target), None)
    return {
        "target_percent": target,
        "stopped_at_epoch": last["epoch"],
        "reached_by_validation": 100 * last["val_accuracy"] >= target,
        "test_accuracy": last["test_accuracy"],
        "val_accuracy": last["val_accuracy"],
        "wall_s": last["wall_s"],
        "train_s": last["train_s"],
        "setup_s": setup_s,
        "storage_reduction": last["storage_reduction"],
        "storage_ok": last["storage_reduction"] >= MIN_STORAGE_REDUCTION,
        # measurement only (see the module docstring): the first epoch whose test accuracy reached the target
        "test_target_epoch": first_test["epoch"] if first_test else None,
        "test_target_wall_s": first_test["wall_s"] if first_test else None,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--data-dir", type=Path, help="data root holding fashion-mnist/ (default $ALBSNN_DATA)")
    p.add_argument("--target", type=float, default=90.0, help="accuracy target in percent (default 90.0)")
    p.add_argument("--stop", choices=STOPS, default="val", help="stop when val accuracy >= target, or never")
    p.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's choice)")
    p.add_argument(
        "--set", dest="overrides", action="append", type=parse_option, default=[], metavar="KEY=VALUE"
    )
    p.add_argument("--json", type=Path, help="write the per-epoch rows and the summary here")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    recipe = {**RECIPE, **dict(args.overrides)}
    if args.data_dir:
        recipe["data_dir"] = str(args.data_dir)
    config = TrainConfig.from_dict(recipe)
    if config.time_steps != 1:
        p.error("this benchmark is defined at T=1 (time_steps=1)")

    env = {
        "torch": torch.__version__,
        "python": platform.python_version(),
        "torch_threads": torch.get_num_threads(),
        "loadavg_before": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }
    print(f"env: {env}")
    print(f"recipe: {json.dumps(recipe)}")
    t0 = time.perf_counter()
    clock = Clock(args.target, args.stop)
    trainer = Trainer(config, [clock])
    setup_s = time.perf_counter() - t0
    print(
        f"{len(trainer.splits.train_y)} train / {len(trainer.splits.val_y)} val / "
        f"{len(trainer.splits.test_y)} test, batch {trainer.batch_size}, setup {setup_s:.1f}s",
        flush=True,
    )
    trainer.fit()
    summary = summarize(clock, args.target, setup_s)
    env["loadavg_after"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    print(
        f"{'reached' if summary['reached_by_validation'] else 'did NOT reach'} {args.target}% val at epoch "
        f"{summary['stopped_at_epoch']}: test {100 * summary['test_accuracy']:.2f}%, "
        f"wall {summary['wall_s']:.1f}s (training {summary['train_s']:.1f}s, setup {setup_s:.1f}s apart), "
        f"storage -{100 * summary['storage_reduction']:.1f}%"
        + ("" if summary["storage_ok"] else f"  (BELOW the {MIN_STORAGE_REDUCTION:.0%} required)")
    )
    if summary["test_target_epoch"] is not None:
        print(
            f"test measurement first >= {args.target}% at epoch {summary['test_target_epoch']} "
            f"(wall {summary['test_target_wall_s']:.1f}s); measurement only, decided nothing"
        )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        payload = {"recipe": recipe, "env": env, "epochs": clock.epochs, "summary": summary}
        args.json.write_text(json.dumps(payload, indent=2))
        print(f"wrote {args.json}")
    return 0 if summary["storage_ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
