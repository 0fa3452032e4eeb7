"""Do the defaults show the method? ``albsnn train --dataset digits --epochs 8 --time-steps 2``, seeds 0-4,
against the same seeds with ``--binarize none``.

Target (issue 8): every seed binarizes layers worth >= 20% storage reduction, and its test accuracy is
within 1 pp of the same seed without binarization. Prints a Markdown table (the README's) and exits 1
when a seed misses the target.

    .venv/bin/python benchmarks/defaults_digits.py            # ~2 min on a 2-core CPU
    .venv/bin/python benchmarks/defaults_digits.py --seeds 0 1
"""

from __future__ import annotations

import argparse
import sys

import torch

from albsnn.train import TrainConfig, fit

MIN_REDUCTION = 0.20
MAX_DROP_PP = 1.0


def _run(seed: int, **overrides) -> dict:
    return fit(TrainConfig(dataset="digits", epochs=8, time_steps=2, seed=seed, **overrides))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(
        "| seed | layers (defaults) | storage reduction | test acc. defaults | test acc. none | Δ (pp) | ok |"
    )
    print("|---|---|---|---|---|---|---|")
    misses = 0
    for seed in args.seeds:
        adaptive, none = _run(seed), _run(seed, binarize="none")
        drop = 100 * (none["test_accuracy"] - adaptive["test_accuracy"])
        ok = adaptive["storage_reduction"] >= MIN_REDUCTION and drop <= MAX_DROP_PP
        misses += not ok
        print(
            f"| {seed} | {', '.join(adaptive['binarized_layers']) or '-'} | "
            f"{adaptive['storage_reduction']:.1%} | {adaptive['test_accuracy']:.2%} | "
            f"{none['test_accuracy']:.2%} | {-drop:+.2f} | {'yes' if ok else 'NO'} |",
            flush=True,
        )
    return 1 if misses else 0


if __name__ == "__main__":
    sys.exit(main())
