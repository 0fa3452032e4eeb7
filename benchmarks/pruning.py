"""Does multi-objective pruning keep the Pareto front at half the cost? Pruners replayed on trained trials.

Target (issue 19, part 5): on sweeps of >= 48 trials and >= 3 sampler seeds that were not used to
tune the pruner, a validation hypervolume within 1% of no pruning with <= 50% of its trial-epochs.

How it measures (exact for a sampler that does not look at results, which is why it uses Optuna's
``RandomSampler``): for each sampler seed, ``--trials`` configurations are sampled from the
pipeline's search space (define-by-run, as a sweep does) and each is trained for all of the
pipeline's epochs, recording (val_accuracy, storage_bytes) per epoch. Then every pruner is replayed
on those curves through the sweep's own pruning path (:class:`OptunaPrunerScheduler` over an
Optuna journal, the pruner built by :func:`make_pruner` from the pipeline's objectives), with
``--concurrency`` trials advancing in lock step (a sweep's ``max_concurrent``, epochs of equal
length), trials started in sampling order. A pruned trial costs the epochs it ran; the front is
made of the finished trials' last-epoch values, as the search study records them.

Hypervolume: :func:`albsnn.pareto.hypervolume_2d` of (val_accuracy, storage_bytes) over the
finished trials, reference point (chance accuracy, the largest fp32 size among the seed's trials),
as a fraction of that box; the same reference for every pruner of a seed. No test metric is read.

Protocol (tuning is never done on the seeds that are reported):

1. Train the curves of the tuning seeds (0, 1) and of the held-out seeds (10, 11, 12), 48 trials
   each. They are cached in ``--curves`` (default ``reports/pruning-cpu/curves.json``, committed,
   with the commit and machine that trained each seed), so replays take seconds.
2. ``--tune --seeds 0 1``: replay a grid of ``moasha`` parameters (``reduction_factor``,
   ``min_resource``, ``min_trials``) and of ``pareto``'s ``min_dominators`` on the tuning seeds
   only (``tuning.md``); the chosen parameters, the cheapest mean share whose worst tuning seed
   stays within the tolerance, are written into :data:`ARMS` below.
3. ``--seeds 10 11 12 --out reports/pruning-cpu``: replay the fixed arms on the held-out seeds,
   once; ``pruning.json`` and ``README.md`` there are the result, per seed and the mean.

    nice -n 19 python benchmarks/pruning.py --seeds 0 1 10 11 12 --train-only   # ~30 min, 2 cores
    python benchmarks/pruning.py --seeds 0 1 --replay-only --tune --out reports/pruning-cpu
    python benchmarks/pruning.py --seeds 10 11 12 --replay-only --out reports/pruning-cpu
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import tempfile
import time
from pathlib import Path

import optuna
import torch

from albsnn.atomic import write_atomic
from albsnn.data import dataset_info
from albsnn.metrics import EPOCH, FP32_BYTES, STORAGE_BYTES, VAL_ACCURACY
from albsnn.pareto import hypervolume_2d
from albsnn.provenance import provenance
from albsnn.sweep.pipeline import load_pipeline
from albsnn.sweep.pruners import MOASHA, PARETO, make_pruner
from albsnn.sweep.scheduler import OptunaPrunerScheduler
from albsnn.train import Callback, TrainConfig, fit

REPO = Path(__file__).resolve().parents[1]
CURVES = REPO / "reports" / "pruning-cpu" / "curves.json"
RAM_DISK = Path("/dev/shm")
HV_TOLERANCE = 0.01  # target: hypervolume within 1% of no pruning
MAX_EPOCH_SHARE = 0.50  # target: with at most half its trial-epochs
# Pruners compared with no pruning: `pareto` as shipped (min_dominators 2), and the settings of
# `pareto` and `moasha` that --tune chose on sampler seeds 0 and 1 (reports/pruning-cpu/tuning.md:
# the cheapest mean share whose worst tuning seed keeps the hypervolume within 1%); `median` is the
# demo's old pruner.
ARMS = {
    "none": {"kind": "none"},
    PARETO: {"kind": PARETO},
    f"{PARETO}-3": {"kind": PARETO, "min_dominators": 3},
    MOASHA: {"kind": MOASHA, "reduction_factor": 2, "min_resource": 1, "min_trials": 1},
    "median": {"kind": "median", "n_startup_trials": 5, "n_warmup_steps": 3},
}
TARGET_ARMS = (PARETO, f"{PARETO}-3", MOASHA)  # the arms the target is checked for
TUNING_SEEDS = (0, 1)  # the sampler seeds ARMS were chosen on; report on others
# The grid --tune replays on the tuning seeds.
TUNE_GRID = {
    MOASHA: {"reduction_factor": [2, 3, 4], "min_resource": [1, 2, 3], "min_trials": [1, 4, 8, 12, 16]},
    PARETO: {"min_dominators": [1, 2, 3]},
}


class _Curve(Callback):
    def __init__(self):
        self.epochs: list[dict] = []

    def on_epoch_end(self, trainer, metrics: dict) -> bool:
        keep = (VAL_ACCURACY, STORAGE_BYTES, FP32_BYTES)
        self.epochs.append({k: float(metrics[k]) for k in keep})
        return False


def sample_configs(pipe, n: int, seed: int) -> list[dict]:
    """``n`` configurations drawn by Optuna's RandomSampler(seed) through the define-by-run space."""
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    return [pipe.search_space.suggest(study.ask()) for _ in range(n)]


def load_curves(cache: Path | None) -> dict:
    """``{"provenance": {seed: ...}, "seeds": {seed: [trial, ...]}}`` from ``cache``, or empty."""
    if cache is None or not cache.exists():
        return {"provenance": {}, "seeds": {}}
    data = json.loads(cache.read_text())
    if "seeds" not in data:
        raise SystemExit(f"{cache}: not a curves file of this benchmark (no 'seeds'); train it again")
    return data


def train_curves(pipe, seeds: list[int], n: int, cache: Path | None, train: bool = True) -> dict:
    """``{seed: [{"config": ..., "epochs": [{val_accuracy, storage_bytes, fp32_bytes}, ...]}]}``.

    With ``cache``, every trained trial is saved at once (with the commit and machine that trained
    the seed) and a rerun continues where it stopped; ``train=False`` only reads it.
    """
    data = load_curves(cache)
    made_by = provenance()  # the code this process loaded, even if HEAD moves while it trains
    for seed in seeds:
        rows = data["seeds"].setdefault(str(seed), [])
        for i, params in enumerate(sample_configs(pipe, n, seed)):
            if i < len(rows) or not train:
                continue
            values = {**pipe.base_config(), **params, "estimator_check": False, "seed": pipe.seeds[0]}
            curve = _Curve()
            fit(TrainConfig.from_dict(values), [curve])
            rows.append({"config": params, "epochs": curve.epochs})
            data["provenance"].setdefault(str(seed), made_by)
            if cache is not None:
                cache.parent.mkdir(parents=True, exist_ok=True)
                write_atomic(cache, json.dumps(data))
            print(f"  seed {seed}: trained trial {i + 1} of {n}", file=sys.stderr, flush=True)
    missing = {s: len(data["seeds"].get(str(s), [])) for s in seeds if len(data["seeds"].get(str(s), [])) < n}
    if missing:
        raise SystemExit(f"{cache}: fewer than {n} trained trials {missing}; run without --replay-only")
    return {str(s): data["seeds"][str(s)][:n] for s in seeds}


class _Trial:
    """What the scheduler reads of a Ray trial."""

    def __init__(self, trial_id: str):
        self.trial_id = trial_id


def replay(pipe, rows: list[dict], spec: dict, concurrency: int) -> dict:
    """Run ``rows`` through the sweep's pruning path; the finished trials' final values and the cost."""
    metric, mode = pipe.prune_on
    pruner = make_pruner(spec, pipe.epochs, objectives=pipe.prune_objectives)
    # The journal on a RAM disk where there is one: Optuna fsyncs every journal write, which costs
    # ~0.3 s per write on a busy disk and would make replays take minutes; the decisions are the same.
    with tempfile.TemporaryDirectory(dir=RAM_DISK if RAM_DISK.is_dir() else None) as tmp:
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
                result = {**rows[index]["epochs"][done], EPOCH: done + 1}
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
    """Hypervolume (albsnn.pareto) as a fraction of the (chance..1) x (0..fp32) box."""
    accuracy, storage = [a for a, _ in points], [s for _, s in points]
    return hypervolume_2d(accuracy, storage, (chance, fp32)) / ((1 - chance) * fp32)


def evaluate(pipe, curves: dict, concurrency: int, arms: dict) -> list[dict]:
    """One row per seed and arm: hypervolume, its ratio to ``none``'s, trial-epochs and their share."""
    chance = 1 / dataset_info(pipe.dataset).num_classes
    rows = []
    for seed, trials in curves.items():
        fp32 = max(e[FP32_BYTES] for t in trials for e in t["epochs"])
        base = None
        for arm, spec in {"none": ARMS["none"], **arms}.items():
            out = replay(pipe, trials, spec, concurrency)
            points = [(r[VAL_ACCURACY], r[STORAGE_BYTES]) for r in out["finished"]]
            row = {
                "seed": int(seed),
                "arm": arm,
                "hv": normalized_hypervolume(points, chance, fp32),
                "trial_epochs": out["trial_epochs"],
                "pruned": out["pruned"],
                "finished": len(out["finished"]),
                "min_storage": min(p[1] for p in points),
            }
            base = base or row
            row["hv_ratio"] = row["hv"] / base["hv"]
            row["epoch_share"] = row["trial_epochs"] / base["trial_epochs"]
            rows.append(row)
    return rows


def summary(rows: list[dict]) -> dict:
    """Per arm: mean share and HV ratio, the worst seed's, and whether the target holds on every seed."""
    out = {}
    for arm in dict.fromkeys(r["arm"] for r in rows):
        mine = [r for r in rows if r["arm"] == arm]
        shares, ratios = [r["epoch_share"] for r in mine], [r["hv_ratio"] for r in mine]
        out[arm] = {
            "seeds": [r["seed"] for r in mine],
            "mean_epoch_share": sum(shares) / len(shares),
            "mean_hv_ratio": sum(ratios) / len(ratios),
            "max_epoch_share": max(shares),
            "min_hv_ratio": min(ratios),
            "target_met": min(ratios) >= 1 - HV_TOLERANCE and max(shares) <= MAX_EPOCH_SHARE,
        }
    return out


def table(rows: list[dict]) -> str:
    """A Markdown table: one line per seed and pruner, then the means."""
    lines = [
        "| seed | pruner | finished / pruned | trial-epochs | share of none | val. hypervolume "
        "| HV vs none | smallest finished (B) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['seed']} | {r['arm']} | {r['finished']} / {r['pruned']} | {r['trial_epochs']} | "
            f"{r['epoch_share']:.0%} | {r['hv']:.4f} | {r['hv_ratio'] - 1:+.2%} | {r['min_storage']:.0f} |"
        )
    for arm, s in summary(rows).items():
        lines.append(
            f"| mean | {arm} | | | {s['mean_epoch_share']:.0%} | | {s['mean_hv_ratio'] - 1:+.2%} | |"
        )
    return "\n".join(lines)


def tune(pipe, curves: dict, concurrency: int) -> tuple[str, dict]:
    """Replay :data:`TUNE_GRID` on ``curves``; a table and, per kind, the cheapest setting in tolerance."""
    lines = ["| pruner | options | mean share | max share | worst HV vs none |", "|---|---|---|---|---|"]
    best: dict[str, tuple[float, dict]] = {}
    for kind, grid in TUNE_GRID.items():
        for combo in itertools.product(*grid.values()):
            options = dict(zip(grid, combo, strict=True))
            rows = evaluate(pipe, curves, concurrency, {kind: {"kind": kind, **options}})
            s = summary(rows)[kind]
            lines.append(
                f"| {kind} | {options} | {s['mean_epoch_share']:.0%} | {s['max_epoch_share']:.0%} "
                f"| {s['min_hv_ratio'] - 1:+.2%} |"
            )
            print(f"  {lines[-1]}", file=sys.stderr, flush=True)
            if s["min_hv_ratio"] >= 1 - HV_TOLERANCE and s["mean_epoch_share"] < best.get(kind, (2.0,))[0]:
                best[kind] = (s["mean_epoch_share"], options)
    return "\n".join(lines), {kind: options for kind, (_, options) in best.items()}


def write_report(out: Path, text: str, result: dict) -> None:
    """``pruning.json`` (rows, summary, arms, provenance) and ``README.md`` (the table) under ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    write_atomic(out / "pruning.json", json.dumps(result, indent=1) + "\n")
    p, setup = result["provenance"], result["setup"]
    lines = [
        "# Pruning that saves half (benchmarks/pruning.py)",
        "",
        f"`{p['command']}` at commit `{p['commit']}` on {p['cpu']} (torch {p['torch']}); curves trained "
        f"at {sorted({c['commit'] for c in result['curves_provenance'].values()})}.",
        "",
        f"{setup['pipeline']}: sampler seeds {setup['seeds']} x {setup['trials']} trials x {setup['epochs']} "
        f"epochs, concurrency {setup['concurrency']}. Arms: {json.dumps(setup['arms'])}.",
        "",
        text,
        "",
        f"Parameters of `{PARETO}-3` and `{MOASHA}` chosen on sampler seeds {list(TUNING_SEEDS)} "
        "(tuning.md); "
        + (
            "the seeds above include tuning seeds."
            if set(setup["seeds"]) & set(TUNING_SEEDS)
            else "the seeds above were not looked at while choosing them."
        ),
        "Target (every seed: HV within 1% of none, <= 50% of its trial-epochs): "
        + ", ".join(f"{a} {'met' if result['summary'][a]['target_met'] else 'NOT met'}" for a in TARGET_ARMS)
        + ".",
    ]
    write_atomic(out / "README.md", "\n".join(lines) + "\n")


def _args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pipeline", default=str(REPO / "pipelines" / "demo.yaml"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[10, 11, 12], help="sampler seeds")
    parser.add_argument("--trials", type=int, default=48, help="trials per sampler seed")
    parser.add_argument("--epochs", type=int, default=None, help="override the pipeline's epochs")
    parser.add_argument("--concurrency", type=int, default=2, help="trials running at once (lock step)")
    parser.add_argument("--curves", type=Path, default=CURVES, help="JSON cache of the trained curves")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--replay-only", action="store_true", help="read --curves, do not train")
    mode.add_argument("--train-only", action="store_true", help="train the curves, replay nothing")
    parser.add_argument("--tune", action="store_true", help="replay the tuning grid (tuning seeds only)")
    parser.add_argument("--out", type=Path, default=None, help="write pruning.json and README.md here")
    parser.add_argument("--threads", type=int, default=1)
    for kind in (PARETO, MOASHA):
        parser.add_argument(f"--{kind}", type=json.loads, default={}, help=f"{kind} options as JSON")
    return parser.parse_args()


def run_tuning(args, pipe, curves: dict) -> int:
    """``--tune``: print the grid's table (and write ``tuning.md`` under ``--out``)."""
    text, chosen = tune(pipe, curves, args.concurrency)
    text += f"\n\ncheapest within {HV_TOLERANCE:.0%} on every seed {args.seeds}: {chosen}"
    print(text)
    if args.out:
        p = provenance()
        head = f"# Tuning on sampler seeds {args.seeds} (benchmarks/pruning.py --tune)\n\n"
        head += f"`{p['command']}` at commit `{p['commit']}` on {p['cpu']}; "
        head += f"{args.trials} trials x {pipe.epochs} epochs, concurrency {args.concurrency}.\n\n"
        write_atomic(args.out / "tuning.md", head + text + "\n")
    return 0


def run_arms(args, pipe, curves: dict) -> int:
    """Replay :data:`ARMS` (``--pareto``/``--moasha`` override options); exit 0 if one meets the target."""
    started = time.monotonic()
    arms = {arm: {**spec, **getattr(args, arm, {})} for arm, spec in ARMS.items() if arm != "none"}
    rows = evaluate(pipe, curves, args.concurrency, arms)
    text, verdict = table(rows), summary(rows)
    setup = {"pipeline": pipe.name, "seeds": args.seeds, "trials": args.trials, "epochs": pipe.epochs}
    setup.update(concurrency=args.concurrency, arms=arms)
    print(f"{text}\n\n{setup}; {time.monotonic() - started:.0f} s")
    if args.out:
        result = {"setup": setup, "rows": rows, "summary": verdict, "provenance": provenance()}
        made_by = load_curves(args.curves)["provenance"]
        write_report(
            args.out, text, {**result, "curves_provenance": {s: made_by[str(s)] for s in args.seeds}}
        )
    return 0 if any(verdict[arm]["target_met"] for arm in TARGET_ARMS if arm in verdict) else 1


def main() -> int:
    args = _args()
    torch.set_num_threads(args.threads)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    pipe = load_pipeline(args.pipeline)
    if args.epochs:
        pipe.epochs = pipe.train["epochs"] = args.epochs
    curves = train_curves(pipe, args.seeds, args.trials, args.curves, train=not args.replay_only)
    if args.train_only:
        return 0
    return run_tuning(args, pipe, curves) if args.tune else run_arms(args, pipe, curves)


if __name__ == "__main__":
    sys.exit(main())
