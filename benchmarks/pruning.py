"""Does multi-objective pruning keep the Pareto front? Pruners replayed on fully trained trials.

Target (issue 10): with >= 3 sampler seeds, Pareto pruning reaches a validation hypervolume within
1% of no pruning with <= 50% of its trial-epochs.

How it measures (exact for a sampler that does not look at results, which is why it uses Optuna's
``RandomSampler``): for each sampler seed, ``--trials`` configurations are sampled from the
pipeline's search space (define-by-run, as a sweep does) and each is trained for all of the
pipeline's epochs, recording (val_accuracy, storage_bytes) per epoch. Then every pruner is replayed
on those curves through the sweep's own pruning path (:class:`OptunaPrunerScheduler` over an
Optuna journal, the pruner built by :func:`make_pruner` from the pipeline's objectives), with
``--concurrency`` trials advancing in lock step (a sweep's ``max_concurrent``, epochs of equal
length), trials started in sampling order. A pruned trial costs the epochs it ran; the front is
made of the finished trials' last-epoch values, as the search study records them.

Hypervolume: the report's (``albsnn.report.pareto``), of (val_accuracy, storage_bytes) over the
finished trials, reference point (chance accuracy, the largest fp32 size among the seed's trials),
as a fraction of that box; the same reference for every pruner of a seed. No test metric is read.

    nice -n 19 python benchmarks/pruning.py --curves runs/pruning-curves.json   # train + replay
    python benchmarks/pruning.py --curves runs/pruning-curves.json --replay-only   # replay again
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import optuna
import torch

from albsnn.data import dataset_info
from albsnn.metrics import STORAGE_BYTES, VAL_ACCURACY
from albsnn.report.pareto import hypervolume_2d
from albsnn.sweep.pipeline import load_pipeline
from albsnn.sweep.pruners import make_pruner
from albsnn.sweep.scheduler import OptunaPrunerScheduler
from albsnn.train import Callback, TrainConfig, fit

REPO = Path(__file__).resolve().parents[1]
HV_TOLERANCE = 0.01  # target: hypervolume within 1% of no pruning
MAX_EPOCH_SHARE = 0.50  # target: with at most half its trial-epochs
# Pruners compared with no pruning: the default of multi-objective pipelines and the demo's old one.
ARMS = {
    "none": {"kind": "none"},
    "pareto": {"kind": "pareto"},
    "median": {"kind": "median", "n_startup_trials": 5, "n_warmup_steps": 3},
}


class _Curve(Callback):
    def __init__(self):
        self.epochs: list[dict] = []

    def on_epoch_end(self, trainer, metrics: dict) -> bool:
        keep = (VAL_ACCURACY, STORAGE_BYTES, "fp32_bytes")
        self.epochs.append({k: float(metrics[k]) for k in keep})
        return False


def sample_configs(pipe, n: int, seed: int) -> list[dict]:
    """``n`` configurations drawn by Optuna's RandomSampler(seed) through the define-by-run space."""
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    return [pipe.search_space.suggest(study.ask()) for _ in range(n)]


def train_curves(pipe, seeds: list[int], n: int, cache: Path | None) -> dict:
    """``{seed: [{"config": ..., "epochs": [{val_accuracy, storage_bytes, fp32_bytes}, ...]}]}``.

    With ``cache``, every trained trial is saved at once and a rerun continues where it stopped.
    """
    curves = json.loads(cache.read_text()) if cache is not None and cache.exists() else {}
    for seed in seeds:
        rows = curves.setdefault(str(seed), [])
        for i, params in enumerate(sample_configs(pipe, n, seed)):
            if i < len(rows):
                continue
            values = {**pipe.base_config(), **params, "estimator_check": False, "seed": pipe.seeds[0]}
            curve = _Curve()
            fit(TrainConfig.from_dict(values), [curve])
            rows.append({"config": params, "epochs": curve.epochs})
            if cache is not None:
                cache.parent.mkdir(parents=True, exist_ok=True)
                cache.write_text(json.dumps(curves))
            last = curve.epochs[-1]
            print(
                f"  seed {seed} trial {i}: val {last[VAL_ACCURACY]:.3f}, {last[STORAGE_BYTES]:.0f} B",
                file=sys.stderr,
                flush=True,
            )
    return {str(s): curves[str(s)][:n] for s in seeds}


class _Trial:
    """What the scheduler reads of a Ray trial."""

    def __init__(self, trial_id: str):
        self.trial_id = trial_id


def replay(pipe, rows: list[dict], spec: dict, concurrency: int) -> dict:
    """Run ``rows`` through the sweep's pruning path; the finished trials' final values and the cost."""
    metric, mode = pipe.prune_on
    pruner = make_pruner(spec, pipe.epochs, objectives=pipe.prune_objectives)
    with tempfile.TemporaryDirectory() as tmp:
        sched = OptunaPrunerScheduler(
            pruner, Path(tmp) / "optuna.journal", "bench.pruning", metric, mode, max_step=pipe.epochs
        )
        queue, running = list(range(len(rows))), []
        epochs_run, finished, pruned = 0, [], 0
        while queue or running:
            while queue and len(running) < concurrency:
                running.append([queue.pop(0), 0])
            for slot in list(running):
                index, done = slot
                result = {**rows[index]["epochs"][done], "epoch": done + 1}
                epochs_run += 1
                slot[1] = done + 1
                trial = _Trial(f"t{index:04d}")
                if sched.on_trial_result(None, trial, result) == sched.STOP:
                    pruned += 1
                    running.remove(slot)
                elif slot[1] == len(rows[index]["epochs"]):
                    sched.on_trial_complete(None, trial, result)
                    finished.append(result)
                    running.remove(slot)
    return {"finished": finished, "pruned": pruned, "trial_epochs": epochs_run}


def normalized_hypervolume(points: list[tuple[float, float]], chance: float, fp32: float) -> float:
    """The report's hypervolume (albsnn.report.pareto): a fraction of the (chance..1) x (0..fp32) box."""
    accuracy, storage = [a for a, _ in points], [s for _, s in points]
    return hypervolume_2d(accuracy, storage, (chance, fp32)) / ((1 - chance) * fp32)


def evaluate(pipe, curves: dict, concurrency: int, arms: dict) -> list[dict]:
    chance = 1 / dataset_info(pipe.dataset).num_classes
    rows = []
    for seed, trials in curves.items():
        fp32 = max(e["fp32_bytes"] for t in trials for e in t["epochs"])
        for arm, spec in arms.items():
            out = replay(pipe, trials, spec, concurrency)
            points = [(r[VAL_ACCURACY], r[STORAGE_BYTES]) for r in out["finished"]]
            rows.append(
                {
                    "seed": int(seed),
                    "arm": arm,
                    "hv": normalized_hypervolume(points, chance, fp32),
                    "trial_epochs": out["trial_epochs"],
                    "pruned": out["pruned"],
                    "finished": len(out["finished"]),
                    "min_storage": min(p[1] for p in points),
                }
            )
    return rows


def table(rows: list[dict]) -> tuple[str, bool]:
    """A Markdown table (one line per seed and pruner, then the means) and whether the target holds."""
    base = {r["seed"]: r for r in rows if r["arm"] == "none"}
    lines = [
        "| seed | pruner | finished / pruned | trial-epochs | share of none | val. hypervolume "
        "| HV vs none | smallest finished (B) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    means: dict[str, list] = {}
    for r in rows:
        b = base[r["seed"]]
        share, ratio = r["trial_epochs"] / b["trial_epochs"], r["hv"] / b["hv"]
        means.setdefault(r["arm"], []).append((share, ratio))
        lines.append(
            f"| {r['seed']} | {r['arm']} | {r['finished']} / {r['pruned']} | {r['trial_epochs']} | "
            f"{share:.0%} | {r['hv']:.4f} | {ratio - 1:+.2%} | {r['min_storage']:.0f} |"
        )
    for arm, values in means.items():
        share = sum(v[0] for v in values) / len(values)
        ratio = sum(v[1] for v in values) / len(values)
        lines.append(f"| mean | {arm} | | | {share:.0%} | | {ratio - 1:+.2%} | |")
    pareto = means.get("pareto", [])
    ok = (
        bool(pareto)
        and all(ratio >= 1 - HV_TOLERANCE for _, ratio in pareto)
        and sum(s for s, _ in pareto) / len(pareto) <= MAX_EPOCH_SHARE
    )
    return "\n".join(lines), ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pipeline", default=str(REPO / "pipelines" / "demo.yaml"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="sampler seeds")
    parser.add_argument("--trials", type=int, default=20, help="trials per sampler seed")
    parser.add_argument("--epochs", type=int, default=None, help="override the pipeline's epochs")
    parser.add_argument("--concurrency", type=int, default=2, help="trials running at once (lock step)")
    parser.add_argument("--curves", type=Path, default=None, help="JSON cache of the trained curves")
    parser.add_argument("--replay-only", action="store_true", help="read --curves, do not train")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--pareto", type=json.loads, default={}, help="pareto options as JSON, e.g. '{\"min_dominators\": 1}'"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    pipe = load_pipeline(args.pipeline)
    if args.epochs:
        pipe.epochs = pipe.train["epochs"] = args.epochs
    started = time.monotonic()
    if args.replay_only:
        curves = json.loads(args.curves.read_text())
    else:
        curves = train_curves(pipe, args.seeds, args.trials, args.curves)
    arms = {**ARMS, "pareto": {**ARMS["pareto"], **args.pareto}}
    text, ok = table(evaluate(pipe, curves, args.concurrency, arms))
    print(text)
    print(
        f"\n{pipe.name}: {len(curves)} sampler seeds x {args.trials} trials x {pipe.epochs} epochs, "
        f"concurrency {args.concurrency}, pareto {arms['pareto']}; target {'met' if ok else 'NOT met'} "
        f"({time.monotonic() - started:.0f} s)"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
