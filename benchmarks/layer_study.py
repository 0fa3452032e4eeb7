"""Does the estimator's layer choice beat chance, and a cheap rule, at the same storage? (issue 17)

Every seed trains one network per *cell*, all at the same storage (``budget``: the same number of
equal-size candidate layers binary) on ``fmnist_const``, whose five candidates (conv2-conv6, at 28/14/7
px) are equal in size, so the storage-matched family holds ten different pairs:

* ``adaptive``: the ``measured`` estimator picks the pair (budget mode, lowest summed estimate);
* ``random``: ``--draws`` different pairs of the family per seed (draws 0..k-1); the contrast uses
  their mean per seed;
* ``deepest`` / ``largest``: static rules (deepest two; largest two, ties to the shallowest);
* ``bwo``: ``adaptive`` with BWO (``project``) forced at epoch ``epochs - 2``: the BWO on/off cell;
* ``rule`` / ``none``: the default threshold rule (no budget) and full precision, on the first three
  seeds: does the rule cost no more than its threshold on Fashion-MNIST? ``rule5k``: the same rule
  calibrated on 5,000 of the 6,000 validation samples instead of 1,000 (a bound ~2.2x narrower).

Every cell of a seed sees the same data order, initialisation, validation split and the full
10,000-image test set. The better static rule is chosen on **validation** (mean final val accuracy);
nothing reads test to choose. One JSON per finished run goes to ``OUT/runs/`` (commit them as they
land: ``--report`` recomputes everything from those files, and a later session resumes by running only
the missing ones).

    PYTHONPATH=. .venv/bin/python benchmarks/layer_study.py --pilot            # one run, timed
    PYTHONPATH=. .venv/bin/python benchmarks/layer_study.py --seeds 0 1 2 3 4 5 --workers 2
    PYTHONPATH=. .venv/bin/python benchmarks/layer_study.py --report          # OUT/README.md, summary.json
    PYTHONPATH=. .venv/bin/python benchmarks/layer_study.py --verify adaptive 0   # re-run one, compare
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "reports" / "layer-study-cpu"
CELLS = ("adaptive", "random", "deepest", "largest", "bwo", "rule", "rule5k", "none")
THRESHOLD_CELLS = ("rule", "rule5k", "none")  # run on the first THRESHOLD_SEEDS seeds only
STATIC = ("deepest", "largest")
# Each cell and the cells it needs: a contrast without its control cannot be computed.
CONTROLS = {"adaptive": ("random",), "bwo": ("adaptive",), "rule": ("none",), "rule5k": ("none",)}
THRESHOLD_SEEDS = 3  # rule / none run on the first three seeds
# The study's recipe: every cell is this plus its own fields (train.TrainConfig names).
RECIPE: dict = {
    "dataset": "fashion-mnist",
    "arch": "fmnist_const",
    "width": 0.25,
    "time_steps": 1,
    "spike_after_pool": True,
    "channels_last": True,
    "limit_train": 10_000,
    "val_fraction": 0.1,
    "epochs": 8,
    "batch_size": 64,
    "lr": 2e-3,
    "schedule": "cosine",
    "warmup": 2,
    "budget": 0.4,
    "bwo": "off",
}
# Verification tolerance (pp of test accuracy) for --verify: a re-run on the same machine kind.
VERIFY_TOLERANCE_PP = 1.0


def cell_config(cell: str, seed: int, draw: int = 0, data_dir: str | None = None) -> dict:
    config = {**RECIPE, "seed": seed, "data_dir": data_dir or str(ROOT.parent / "shared" / "data")}
    if cell in ("random", "deepest", "largest", "adaptive"):
        config["binarize"] = cell
    if cell == "random":
        config["draw"] = draw
    if cell == "bwo":
        config.update(binarize="adaptive", bwo="project", bwo_epoch=RECIPE["epochs"] - 2)
    if cell in ("rule", "rule5k"):
        config.update(binarize="adaptive", budget=None)
    if cell == "rule5k":
        config["calibration_size"] = 5000
    if cell == "none":
        config.update(binarize="none", budget=None)
    return config


def plan(cells: list[str], seeds: list[int], draws: int) -> list[tuple[str, int, int]]:
    """(cell, seed, draw) of every run, in the order they run (seed-major: a cut study stays paired)."""
    runs = []
    for i, seed in enumerate(seeds):
        for cell in cells:
            if cell in THRESHOLD_CELLS and i >= THRESHOLD_SEEDS:
                continue
            for draw in range(draws if cell == "random" else 1):
                runs.append((cell, seed, draw))
    return runs


def run_name(cell: str, seed: int, draw: int) -> str:
    return f"{cell}{draw if cell == 'random' else ''}-s{seed}"


def check_cells(cells: list[str], draws: int) -> None:
    """A cell without its control, or draws the family cannot give: one line, before anything runs."""
    from albsnn.errors import ConfigError

    unknown = sorted(set(cells) - set(CELLS))
    if unknown:
        raise ConfigError(f"unknown cell(s) {unknown}; choose from {list(CELLS)}")
    for cell in cells:
        missing = [c for c in CONTROLS.get(cell, ()) if c not in cells]
        if missing:
            raise ConfigError(f"cell {cell!r} needs its control {missing[0]!r} in --cells")
    if "adaptive" in cells and not set(STATIC) & set(cells):
        raise ConfigError("cell 'adaptive' needs a static control: add 'deepest' and/or 'largest' to --cells")
    if draws < 1:
        raise ConfigError(f"--draws must be >= 1, but got {draws}")


def train_one(cell: str, seed: int, draw: int, out: str, threads: int, data_dir: str | None) -> dict:
    import torch

    from albsnn.provenance import provenance
    from albsnn.train import TrainConfig, Trainer

    torch.set_num_threads(threads)
    config = TrainConfig.from_dict(cell_config(cell, seed, draw, data_dir))
    t0 = time.perf_counter()
    trainer = Trainer(config)
    result = trainer.fit()
    keep = (
        "epoch",
        "val_accuracy",
        "test_accuracy",
        "storage_reduction",
        "binarized_layers",
        "epoch_seconds",
    )
    record = {
        "cell": cell,
        "seed": seed,
        "draw": draw,
        "config": {k: v for k, v in config.to_dict().items() if k != "data_dir"},
        "result": {k: v for k, v in result.items() if k not in ("model_path",)},
        "epochs": [{k: h[k] for k in keep} for h in trainer.history],
        "estimates_at_decision": trainer.policy.last_estimates(),
        "wall_seconds": time.perf_counter() - t0,
        "provenance": provenance(),
    }
    path = Path(out) / "runs" / f"{run_name(cell, seed, draw)}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(record, indent=1) + "\n")
    os.replace(tmp, path)
    return record


def run_study(args) -> int:
    todo = [r for r in plan(args.cells, args.seeds, args.draws) if not _path(args.out, *r).exists()]
    print(f"{len(todo)} run(s) to do in {args.out}", flush=True)
    with ProcessPoolExecutor(args.workers) as pool:
        jobs = {pool.submit(train_one, *r, str(args.out), args.threads, args.data_dir): r for r in todo}
        for job in as_completed(jobs):
            rec = job.result()
            res = rec["result"]
            print(
                f"{run_name(rec['cell'], rec['seed'], rec['draw'])}: val {res['val_accuracy']:.4f} "
                f"test {res['test_accuracy']:.4f} layers {res['binarized_layers']} "
                f"{rec['wall_seconds']:.0f} s",
                flush=True,
            )
    return 0


def _path(out: Path, cell: str, seed: int, draw: int) -> Path:
    return Path(out) / "runs" / f"{run_name(cell, seed, draw)}.json"


# ---- the report: recomputed from the run files ---------------------------------------------------
def load_runs(out: Path) -> list[dict]:
    runs = [json.loads(p.read_text()) for p in sorted((Path(out) / "runs").glob("*.json"))]
    seen = set()
    for r in runs:
        key = (r["cell"], r["seed"], r["draw"])
        if key in seen:
            raise ValueError(f"run {key} appears twice in {out}/runs")
        seen.add(key)
    return runs


def per_seed(runs: list[dict], cell: str, metric: str) -> dict:
    """``{seed: value in %}``; a cell with several draws: their mean per seed."""
    values: dict[int, list[float]] = {}
    for r in runs:
        if r["cell"] == cell:
            values.setdefault(r["seed"], []).append(100 * r["result"][metric])
    return {s: math.fsum(v) / len(v) for s, v in sorted(values.items())}


def better_static(runs: list[dict]) -> str:
    """The static rule with the higher mean final *validation* accuracy (test never chooses)."""
    by_cell = {c: per_seed(runs, c, "val_accuracy") for c in STATIC}
    means = {c: _mean(v.values()) for c, v in by_cell.items() if v}
    return max(means, key=lambda c: (means[c], c))


def _mean(values) -> float:
    values = list(values)
    return math.fsum(values) / len(values) if values else math.nan


def layer_choice_check(runs: list[dict], seed_count_min: int = 3) -> dict:
    """Does the estimated cost at decision time predict the final validation accuracy of that pair?

    One point per distinct (seed, pair) among the storage-matched bwo-off runs (adaptive, random draws,
    deepest, largest; a pair two cells chose is kept once; the bwo cell is left out: its projected
    layers are not the pair's own training). Both variables are centred within the seed (seed effects
    would otherwise dominate), then Spearman's ρ with a bootstrap CI over points. Baselines: the
    pair's mean depth (candidate index) and its mean resolution (px); size is constant here.
    """
    import numpy as np
    from scipy.stats import spearmanr

    points: dict[tuple, dict] = {}
    for r in runs:
        if r["cell"] not in ("adaptive", "random", *STATIC):
            continue
        decisions = r["result"].get("decisions") or []
        if not decisions:
            continue
        pair = tuple(sorted(r["result"]["binarized_layers"]))
        points.setdefault(
            (r["seed"], pair),
            {
                "seed": r["seed"],
                "pair": pair,
                "summed": decisions[0]["summed"],
                "joint": decisions[0]["cost"],
                "val": 100 * r["result"]["val_accuracy"],
            },
        )
    rows = list(points.values())
    if len({p["seed"] for p in rows}) < seed_count_min or len(rows) < 6:
        return {"points": len(rows), "note": "too few runs for a correlation"}
    depth = {f"conv{i}": i for i in range(2, 7)}
    px = {"conv2": 28, "conv3": 14, "conv4": 14, "conv5": 7, "conv6": 7}
    for p in rows:
        p["depth"] = _mean(depth[n] for n in p["pair"])
        p["resolution"] = _mean(px[n] for n in p["pair"])
    seeds = sorted({p["seed"] for p in rows})
    keys = ("summed", "joint", "depth", "resolution", "val")
    centred = {k: np.empty(len(rows)) for k in keys}
    for s in seeds:
        idx = [i for i, p in enumerate(rows) if p["seed"] == s]
        for k in keys:
            v = np.array([rows[i][k] for i in idx], dtype=float)
            centred[k][idx] = v - v.mean()
    rng = np.random.default_rng(0)
    boots = [rng.integers(0, len(rows), len(rows)) for _ in range(2000)]
    out = {"points": len(rows), "seeds": seeds, "predictors": {}}
    for k in ("summed", "joint", "depth", "resolution"):
        if np.ptp(centred[k]) == 0 or np.ptp(centred["val"]) == 0:
            out["predictors"][k] = {"rho": None, "ci_low": None, "ci_high": None}  # constant: undefined
            continue
        rho = spearmanr(centred[k], centred["val"]).statistic
        sample = [spearmanr(centred[k][b], centred["val"][b]).statistic for b in boots]
        sample = [x for x in sample if np.isfinite(x)]
        lo, hi = np.percentile(sample, [2.5, 97.5]) if sample else (math.nan, math.nan)
        out["predictors"][k] = {"rho": float(rho), "ci_low": float(lo), "ci_high": float(hi)}
    return out


def report(out: Path) -> dict:
    from albsnn.report.ablation import paired_contrasts

    runs = load_runs(out)
    cells = [c for c in CELLS if any(r["cell"] == c for r in runs)]
    test = {c: per_seed(runs, c, "test_accuracy") for c in cells}
    static = better_static(runs)
    pairs = [("adaptive", "random"), ("adaptive", static)]
    other = next(c for c in STATIC if c != static)
    if other in test:
        pairs.append(("adaptive", other))
    if "bwo" in test:
        pairs.append(("bwo", "adaptive"))
    info = paired_contrasts(test, pairs, margin=0.5)
    rules = [(c, "none") for c in ("rule", "rule5k") if c in test]
    rule = paired_contrasts(test, rules, margin=0.5) if rules else None
    summary = {
        "cells": {
            c: {
                "seeds": sorted(test[c]),
                "test_accuracy_mean": _mean(test[c].values()),
                "val_accuracy_mean": _mean(per_seed(runs, c, "val_accuracy").values()),
                "storage_reduction_mean": _mean(per_seed(runs, c, "storage_reduction").values()) / 100,
                "runs": sum(r["cell"] == c for r in runs),
            }
            for c in cells
        },
        "better_static_on_validation": static,
        "contrasts": info.to_dict(),
        "contrasts_markdown": info.to_markdown(),  # docs/results.md and README show this table
        "rule_vs_none": rule.to_dict() if rule else None,
        "layer_choice_check": layer_choice_check(runs),
        "bwo_fired": sorted({r["result"]["bwo_epoch"] for r in runs if r["cell"] == "bwo"} - {None}),
        "recipe": RECIPE,
        "provenance": sorted({(r["provenance"]["commit"][:12], r["provenance"]["cpu"]) for r in runs}),
        "seconds": math.fsum(r["wall_seconds"] for r in runs),
    }
    (Path(out) / "summary.json").write_text(json.dumps(summary, indent=1, default=list) + "\n")
    _save_figure(info, Path(out) / "contrasts.png")
    (Path(out) / "README.md").write_text(render(summary, info, rule, runs))
    return summary


def _save_figure(info, path: Path) -> None:
    from albsnn.report.figures import plot_contrasts

    fig = plot_contrasts(info)
    if fig is not None:
        fig.savefig(path, dpi=110, metadata={"Software": None})


def render(summary: dict, info, rule, runs: list[dict]) -> str:
    lines = [
        "# Layer choice at matched storage: adaptive vs random vs static rules (Fashion-MNIST, CPU)",
        "",
        "Made by `PYTHONPATH=. .venv/bin/python benchmarks/layer_study.py --report` from the run files in",
        "`runs/` (one JSON per run, each with its config, per-epoch curve, commit and machine).",
        f"Runs: {len(runs)}, {summary['seconds'] / 60:.0f} minutes of run time summed over runs (two ran at "
        "a time, one thread each), on "
        + ", ".join(sorted({cpu for _, cpu in summary["provenance"]}))
        + "; each run file names the commit it finished at ("
        + ", ".join(f"`{c}`" for c in sorted({c for c, _ in summary["provenance"]}))
        + ").",
        "",
        "Recipe (every cell): " + ", ".join(f"`{k}={v}`" for k, v in RECIPE.items()) + ".",
        "",
        "| cell | seeds | runs | test acc. % (mean) | val acc. % (mean) | storage reduction |",
        "|---|---|---|---|---|---|",
    ]
    for c, s in summary["cells"].items():
        lines.append(
            f"| {c} | {len(s['seeds'])} | {s['runs']} | {s['test_accuracy_mean']:.2f} | "
            f"{s['val_accuracy_mean']:.2f} | {s['storage_reduction_mean']:.1%} |"
        )
    lines += [
        "",
        f"Better static rule, chosen on validation: **{summary['better_static_on_validation']}**.",
        "",
        "## Paired contrasts (test accuracy, pp; Holm across the rows)",
        "",
        info.to_markdown(),
        "",
        "![paired contrasts](contrasts.png)",
    ]
    if rule is not None:
        lines += [
            "",
            "## The threshold rule against full precision (first three seeds)",
            "",
            rule.to_markdown(),
        ]
    check = summary["layer_choice_check"]
    lines += ["", "## Does the estimate at decision time predict the pair's final validation accuracy?", ""]
    if "predictors" in check:
        lines += [
            f"{check['points']} distinct (seed, pair) points over seeds {check['seeds']}, "
            "centred within seed; "
            "Spearman ρ with a 95% bootstrap CI over points (2,000 resamples). A good predictor of "
            "*cost* has ρ < 0 (higher cost, lower accuracy); depth and resolution are the cheap "
            "baselines (a pair's size is no baseline here: every candidate has the same storage).",
            "",
            "| predictor | ρ | 95% CI |",
            "|---|---|---|",
        ]
        for k, v in check["predictors"].items():
            if v["rho"] is None:
                lines.append(f"| {k} | – (constant) | – |")
            else:
                lines.append(f"| {k} | {v['rho']:+.2f} | [{v['ci_low']:+.2f}, {v['ci_high']:+.2f}] |")
    else:
        lines.append(check["note"])
    return "\n".join(lines) + "\n"


def verify(out: Path, cell: str, seed: int, draw: int, threads: int, data_dir: str | None) -> int:
    """Re-run one committed run into a scratch folder and compare within VERIFY_TOLERANCE_PP."""
    import tempfile

    committed = json.loads(_path(out, cell, seed, draw).read_text())
    with tempfile.TemporaryDirectory() as tmp:
        fresh = train_one(cell, seed, draw, tmp, threads, data_dir)
    a, b = 100 * committed["result"]["test_accuracy"], 100 * fresh["result"]["test_accuracy"]
    same_layers = committed["result"]["binarized_layers"] == fresh["result"]["binarized_layers"]
    ok = abs(a - b) <= VERIFY_TOLERANCE_PP
    print(
        f"{run_name(cell, seed, draw)}: committed {a:.2f}%, now {b:.2f}% "
        f"(tolerance {VERIFY_TOLERANCE_PP} pp), layers {'same' if same_layers else 'differ'}: "
        f"{'ok' if ok else 'FAILED'}"
    )
    return 0 if ok else 1


def main(argv=None) -> int:
    from albsnn.errors import ConfigError

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cells", nargs="+", default=list(CELLS))
    p.add_argument("--seeds", type=int, nargs="+", default=list(range(6)))
    p.add_argument("--draws", type=int, default=4, help="random draws per seed (different pairs)")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--threads", type=int, default=1, help="torch threads per worker")
    p.add_argument("--out", type=Path, default=OUT)
    p.add_argument("--data-dir", default=None)
    p.add_argument("--report", action="store_true", help="recompute the report from the run files")
    p.add_argument("--pilot", action="store_true", help="time one adaptive run into a scratch folder")
    p.add_argument("--verify", nargs="+", metavar=("CELL", "SEED"), help="re-run CELL SEED [DRAW], compare")
    args = p.parse_args(argv)
    try:
        check_cells(args.cells, args.draws)
        if args.report:
            report(args.out)
            print((args.out / "README.md").read_text())
            return 0
        if args.verify:
            cell, seed, draw = (
                args.verify[0],
                int(args.verify[1]),
                int(args.verify[2]) if len(args.verify) > 2 else 0,
            )
            return verify(args.out, cell, seed, draw, args.threads, args.data_dir)
        if args.pilot:
            import tempfile

            with tempfile.TemporaryDirectory() as tmp:
                rec = train_one("adaptive", 0, 0, tmp, args.threads, args.data_dir)
            print(json.dumps({k: rec[k] for k in ("epochs", "wall_seconds")}, indent=1))
            return 0
        return run_study(args)
    except ConfigError as e:
        print(f"layer_study: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
