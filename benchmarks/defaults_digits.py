"""Do the defaults show the method? ``albsnn train --dataset digits --epochs 8 --time-steps 2`` on
seeds 0-9 against the same seeds with ``--binarize none``.

Targets (issue 17): every seed binarizes layers worth >= 20% of storage; the mean test-accuracy change
against ``none`` over the ten seeds is >= -0.5 pp, and no seed loses more than 2 pp. The decision rule
was set looking at seeds 0-4 only; 5-9 were run once, after it was fixed (``held_out`` in the JSON).
Prints the Markdown table of docs/results.md and README (with the commit and machine it came from)
and exits 1 when a target is missed. ``tests/test_defaults_digits.py`` re-runs it in ``make test``.

    .venv/bin/python benchmarks/defaults_digits.py                 # ~80 s on a 2-core CPU
    .venv/bin/python benchmarks/defaults_digits.py --json reports/defaults-digits/defaults-digits.json
    .venv/bin/python benchmarks/defaults_digits.py --render reports/defaults-digits/defaults-digits.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from pathlib import Path

SEEDS = tuple(range(10))
TUNED_ON = (0, 1, 2, 3, 4)  # the decision rule was set looking at these; 5-9 are held out
MIN_REDUCTION = 0.20
MIN_MEAN_DELTA_PP = -0.5
MIN_SEED_DELTA_PP = -2.0
THREADS = 2  # part of the numerics: reductions are split per thread
# Portable numerics: the same bits on any x86-64 CPU. ATen's baseline kernels (no AVX2/AVX-512
# dispatch), MKL's conditional numerical reproducibility, and no oneDNN/NNPACK convolutions (their
# JIT kernels follow the CPU). Without these, AVX2 and AVX-512 kernels give different layer decisions
# on the same seed (docs/results.md, "Numbers that regenerate").
PORTABLE_ENV = {"ATEN_CPU_CAPABILITY": "default", "MKL_CBWR": "COMPATIBLE"}
# How far a fresh run may be from the committed one (pp) where the bits are not identical. Measured
# (docs/results.md): across AVX-512 / AVX2 / portable kernels on one machine, the mean change moved
# by up to 0.14 pp, a seed's accuracy by up to 1.39 pp (its layers changed on 2-6 of 10 seeds). The
# limits are about twice the mean's and one test image (0.28 pp) above a seed's largest move. A seed's
# storage reduction is not compared: a changed layer set moved it by up to 58 pp; the target holds.
TOLERANCE = {
    "summary": {"mean_delta_pp": 0.3, "worst_delta_pp": 1.7},
    "row": {"test_accuracy": 1.7, "test_accuracy_none": 1.7, "delta_pp": 1.7},
}


def run_seed(seed: int) -> dict:
    from albsnn.train import TrainConfig, fit

    def run(**overrides) -> dict:
        return fit(TrainConfig(dataset="digits", epochs=8, time_steps=2, seed=seed, **overrides))

    adaptive, none = run(), run(binarize="none")
    return {
        "seed": seed,
        "layers": adaptive["binarized_layers"],
        "storage_reduction": adaptive["storage_reduction"],
        "test_accuracy": 100 * adaptive["test_accuracy"],
        "test_accuracy_none": 100 * none["test_accuracy"],
        "delta_pp": 100 * (adaptive["test_accuracy"] - none["test_accuracy"]),
    }


def summarize(rows: list[dict]) -> dict:
    deltas = [r["delta_pp"] for r in rows]
    return {
        "mean_delta_pp": statistics.fmean(deltas),
        "worst_delta_pp": min(deltas),
        "min_storage_reduction": min(r["storage_reduction"] for r in rows),
        "mean_storage_reduction": statistics.fmean(r["storage_reduction"] for r in rows),
    }


def misses(summary: dict) -> list[str]:
    """The targets a result misses, one line each (empty: all met)."""
    out = []
    if summary["min_storage_reduction"] < MIN_REDUCTION:
        out.append(
            f"a seed binarizes {summary['min_storage_reduction']:.1%} < {MIN_REDUCTION:.0%} of storage"
        )
    if summary["mean_delta_pp"] < MIN_MEAN_DELTA_PP:
        out.append(f"mean change {summary['mean_delta_pp']:+.2f} pp < {MIN_MEAN_DELTA_PP} pp")
    if summary["worst_delta_pp"] < MIN_SEED_DELTA_PP:
        out.append(f"a seed changes by {summary['worst_delta_pp']:+.2f} pp < {MIN_SEED_DELTA_PP} pp")
    return out


def render(result: dict) -> str:
    """The Markdown table docs/results.md and README show, with its summary and provenance lines."""
    lines = [
        "| seed | layers (defaults) | storage reduction | test acc. defaults | test acc. none | Δ (pp) |",
        "|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        held = "" if r["seed"] in result["tuned_on"] else " (held out)"
        lines.append(
            f"| {r['seed']}{held} | {', '.join(r['layers']) or '-'} | {r['storage_reduction']:.1%} | "
            f"{r['test_accuracy']:.2f}% | {r['test_accuracy_none']:.2f}% | {r['delta_pp']:+.2f} |"
        )
    s, p, held = result["summary"], result["provenance"], result["held_out_summary"]
    lines += [
        "",
        f"Mean change {s['mean_delta_pp']:+.2f} pp (target >= {MIN_MEAN_DELTA_PP}), worst seed "
        f"{s['worst_delta_pp']:+.2f} pp (target >= {MIN_SEED_DELTA_PP}), storage reduction "
        f"{s['min_storage_reduction']:.1%}-{max(r['storage_reduction'] for r in result['rows']):.1%} "
        f"(target >= {MIN_REDUCTION:.0%})"
        + (f"; held-out seeds alone: mean {held['mean_delta_pp']:+.2f} pp." if held else "."),
        f"Made by `{p['command']}` at commit `{p['commit'][:12]}` on {p['cpu']} "
        f"({p['cpu_capability']} kernels), torch {p['torch']}, {p['threads']} threads.",
    ]
    return "\n".join(lines)


def portable_numerics() -> None:
    """Fix the kernels (call before the first run); PORTABLE_ENV must be set before torch starts."""
    import torch

    missing = {k: v for k, v in PORTABLE_ENV.items() if os.environ.get(k) != v}
    if missing:
        raise RuntimeError(f"set {missing} before torch starts (run this script as a program)")
    torch.set_num_threads(THREADS)
    torch.backends.mkldnn.enabled = False
    torch.backends.nnpack.set_flags(False)


def measure(seeds=SEEDS) -> dict:
    from albsnn.provenance import provenance

    portable_numerics()
    rows = []
    for seed in seeds:
        rows.append(run_seed(seed))
        print(f"seed {seed}: {rows[-1]}", file=sys.stderr, flush=True)
    held = [r for r in rows if r["seed"] not in TUNED_ON]
    return {
        "rows": rows,
        "tuned_on": list(TUNED_ON),
        "summary": summarize(rows),
        "held_out_summary": summarize(held) if held else None,
        "provenance": provenance(),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS))
    parser.add_argument("--json", type=Path, help="write the result here (the committed file)")
    parser.add_argument("--render", type=Path, help="print the table of a result file; run nothing")
    args = parser.parse_args()
    if not args.render and any(os.environ.get(k) != v for k, v in PORTABLE_ENV.items()):
        os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, **PORTABLE_ENV})
    result = json.loads(args.render.read_text()) if args.render else measure(args.seeds)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    print(render(result))
    missed = misses(result["summary"])
    for line in missed:
        print(f"target missed: {line}")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
