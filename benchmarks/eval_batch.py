"""Evaluation time per sample against the evaluation batch size, on this machine's CPU (or GPU).

The trainer evaluates in eval mode (validation, test, the measured estimator's probes), where the
batch size changes nothing but speed; ``albsnn.train.EVAL_BATCH`` is chosen from this. Batch sizes
are interleaved over several rounds and medians reported, so a load that changes during the run
biases no size; the ratio to the largest batch is the figure to read::

    PYTHONPATH=. python benchmarks/eval_batch.py --threads 2 --widths 0.5 0.25
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from albsnn.models import build_model


def per_sample_ms(model, x: torch.Tensor, batch: int) -> float:
    start = time.perf_counter()
    with torch.no_grad():
        for i in range(0, len(x), batch):
            model(x[i : i + batch])
    if x.device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / len(x) * 1000


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--widths", type=float, nargs="+", default=[0.5, 0.25])
    p.add_argument("--batches", type=int, nargs="+", default=[64, 128, 256, 512, 1024])
    p.add_argument("--samples", type=int, default=2048)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    x = torch.randn(a.samples, 1, 28, 28, device=a.device)
    for width in a.widths:
        model = build_model(arch="fmnist", width=width, time_steps=1, input_size=(28, 28)).to(a.device).eval()
        per_sample_ms(model, x[: max(a.batches)], max(a.batches))  # warm-up: allocator, kernels
        times = {b: [] for b in a.batches}
        for _ in range(a.rounds):
            for b in a.batches:
                times[b].append(per_sample_ms(model, x, b))
        largest = statistics.median(times[max(a.batches)])
        print(f"fmnist width {width}, T=1, {a.device}, {a.threads} thread(s), median of {a.rounds} rounds:")
        for b, ts in times.items():
            ms = statistics.median(ts)
            print(f"  batch {b:5d}: {ms:6.3f} ms/sample ({ms / largest:.2f}x of batch {max(a.batches)})")


if __name__ == "__main__":
    main()
