"""Milliseconds per training step of one TrainConfig on one stored batch, and where the CPU time goes.

Times ``Trainer.train_step`` (optimizer step included, no evaluation, no data loading) after warm-up
steps, then prints the torch profiler's top operators over a few more steps. Used for the per-step
figure in docs/performance.md ("Time to accuracy on the 2-core CPU")::

    PYTHONPATH=. python benchmarks/step_time.py --data-dir ../shared/data --threads 2 \
        --set width=0.5 --set batch_size=128
"""

from __future__ import annotations

import argparse
import time

import torch

from albsnn.cli.train import parse_option
from albsnn.train import TrainConfig, Trainer

BASE = {
    "dataset": "fashion-mnist",
    "arch": "fmnist",
    "width": 0.5,
    "time_steps": 1,
    "binarize": "all",
    "estimator": "weight-error",
    "bwo": "off",
    "epochs": 1,
    "batch_size": 128,
    "limit_train": 3000,
    "limit_test": 500,
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", required=True)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--set", action="append", type=parse_option, default=[], metavar="KEY=VALUE")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    overrides = dict(args.set)
    trainer = Trainer(TrainConfig(**{**BASE, "data_dir": args.data_dir, **overrides}))
    candidates = trainer.policy.candidates(trainer.model)
    trainer.model.train()
    xb, yb = next(iter(trainer.train_loader))
    for _ in range(args.warmup):
        trainer.train_step(xb, yb, 100, candidates)
    t0 = time.perf_counter()
    for _ in range(args.steps):
        trainer.train_step(xb, yb, 100, candidates)
    print(
        f"{(time.perf_counter() - t0) / args.steps * 1000:.1f} ms/step ({trainer.config.batch_size} samples)"
    )
    with torch.profiler.profile() as prof:
        for _ in range(3):
            trainer.train_step(xb, yb, 100, candidates)
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=10))


if __name__ == "__main__":
    main()
