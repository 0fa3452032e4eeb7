r"""The paper's Fashion-MNIST headline on this CPU: test accuracy at T = 1 with storage cut (issue 18).

The paper (ALBSNN) reports 93.39 % on Fashion-MNIST at T = 1 with storage reduced by more than 20 %.
This script trains :data:`RECIPE` on the full data (54,000 train / 6,000 validation / 10,000 test,
the validation split carved from the 60,000 training images with a fixed seed) for each seed and
binarization mode, and aggregates the finished runs:

* ``--binarize adaptive`` (default): the paper's method, the ``measured`` estimator deciding which
  layers go binary; the headline.
* ``--binarize all``: every candidate conv binary from the first step; the other end of the trade-off.

What is measured, per epoch: validation and test accuracy, wall seconds of the epoch (training, the
layer decision, BN re-estimation, validation and the test measurement; setup excluded) and its pure
training seconds, storage (bytes, reduction against FP32) and which layers are binary. **The best
epoch is chosen on validation** (highest validation accuracy, earliest of equals); its test accuracy
is the run's number. Test accuracy is measured every epoch and chooses nothing: not the epoch, not
the recipe, not a threshold.

Files:

* ``reports/fmnist-paper-cpu/runs/{binarize}-s{seed}.json``: one per finished run (per-epoch rows, the
  best epoch, config, provenance: commit and machine). Commit each as it lands.
* ``runs/paper-fmnist/{binarize}-s{seed}/``: the checkpoint of every epoch (``checkpoint.pt``), the
  best-on-validation one (``best.pt``), per-epoch wall times; git-ignored. ``--resume`` continues an
  interrupted run from it exactly (same weights as an uninterrupted run).
* ``--aggregate``: ``reports/fmnist-paper-cpu/summary.json`` and ``README.md`` (curve, layer map,
  target met or not), recomputed from the run files only. A seed asked with ``--seeds`` and absent,
  or present twice, is an error (exit 2), never a mean over fewer seeds.

Cost: 30-46 minutes per run with one torch thread (75-145 s per epoch at width 0.75 beside a second
run on the other core; two torch threads stall when anything else shares the box:
docs/paper-fmnist.md). Run (from the repository root)::

    # in the background, two lanes of one thread each; a later session repeats the same lines:
    # finished runs are skipped, an interrupted one resumes
    mkdir -p runs
    nohup env PYTHONPATH=. .venv/bin/python benchmarks/paper_fmnist.py --binarize all \
        --seeds 0 1 2 --threads 1 --resume > runs/paper-fmnist-all.log 2>&1 &
    nohup env PYTHONPATH=. .venv/bin/python benchmarks/paper_fmnist.py --binarize adaptive \
        --seeds 0 1 2 --threads 1 --resume > runs/paper-fmnist-adaptive.log 2>&1 &

    # when a run file lands: git add reports/fmnist-paper-cpu/runs/<mode>-s<seed>.json; git commit
    PYTHONPATH=. .venv/bin/python benchmarks/paper_fmnist.py --aggregate --binarize adaptive all

    # a quick check that it runs (small subsets; the accuracy means nothing; scratch folders)
    PYTHONPATH=. .venv/bin/python benchmarks/paper_fmnist.py --seeds 0 --out /tmp/pf --ckpt-dir /tmp/pf-ckpt \
        --set limit_train=600 --set limit_test=200 --set epochs=2 --set width=0.25 --set warmup=0
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from albsnn.atomic import write_atomic

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "reports" / "fmnist-paper-cpu"  # committed: runs/*.json, summary.json, README.md
CKPT = ROOT / "runs" / "paper-fmnist"  # git-ignored: checkpoints, per-epoch wall times
DATA_DIR = (ROOT / ".." / "shared" / "data").resolve()
MODES = ("adaptive", "all")
FULL_SPLITS = {"train": 54_000, "val": 6_000, "test": 10_000}  # the paper's comparison needs all of it
RUN_FORMAT = "paper-fmnist-run-1"
# The recipe (train.TrainConfig names); edit here or override a field with --set KEY=VALUE.
# From benchmarks/time_to_accuracy.py's recipe (measured in docs/performance.md), trained longer, with the
# estimator deciding the binary layers; epochs, augmentation and calibration size chosen on seed 0's
# validation accuracy (reports/fmnist-paper-cpu/search/, `--compare`; docs/paper-fmnist.md).
RECIPE: dict = {
    "dataset": "fashion-mnist",
    "arch": "fmnist_fast",  # fmnist's convs, first pool behind conv1: 4x fewer multiply-adds
    # 1.0: validation 93.90 / 94.07 % on seeds 0 / 1 against 93.67 / 93.45 % at 0.75 (search/w1-noaug-e20);
    # the width-0.75 and width-0.5 studies are reports/fmnist-paper-cpu-w075/ and -w05/ (--set width=...)
    "width": 1.0,
    "time_steps": 1,  # the paper's headline is at T = 1
    "binarize": "adaptive",  # --binarize sets it
    "estimator": "measured",
    # 1,000 (the default) rarely binarized a layer on Fashion-MNIST (layer study, docs/results.md)
    "calibration_size": 5000,
    "epochs": 20,
    "batch_size": 64,
    "optimizer": "adam",
    "lr": 4e-3,
    "schedule": "onecycle",
    "label_smoothing": 0.1,
    "val_fraction": 0.1,  # 6,000 of the 60,000 training images: every choice is made on them
    # with random crop + flip (augment=true) the seed-0 search run reached 93.02 % validation (93.15 without)
    # and the estimator binarized no layer in 20 epochs, short of the >= 20 % storage target: off
    "data_options": {"augment": False},
    "channels_last": True,  # oneDNN convolutions in NHWC: about 20% less per step
    "spike_after_pool": True,  # same spikes at T=1 on 4x fewer neurons behind each pool
}
# The paper's number and this targets (fractions; the report prints percent).
TARGET = {
    "test_accuracy": 0.9339,  # mean over seeds 0, 1, 2, adaptive, T = 1
    "storage_reduction": 0.20,  # on every seed
    "stretch_storage_reduction": 0.90,  # >= 93.39 % at >= 90 %: better than the paper on both axes
    "source": "ALBSNN paper, Fashion-MNIST at T=1: 93.39 %, storage reduced by more than 20 %",
}
# Config fields that may differ between runs of one study: everything else is the recipe and must match.
_PER_RUN = ("seed", "binarize", "data_dir", "out")


class StudyError(Exception):
    """A user-fixable problem: printed as one line, exit code 2."""


# ---- one run -------------------------------------------------------------------------------------
def run_path(out: Path, binarize: str, seed: int) -> Path:
    return Path(out) / "runs" / f"{binarize}-s{seed}.json"


def run_config(binarize: str, seed: int, overrides: dict, data_dir: Path, ckpt_dir: Path) -> dict:
    """The recipe with the overrides, this run's mode and seed, and its checkpoint folder."""
    bad = sorted(set(overrides) & {"binarize", "seed", "out", "data_dir"})
    if bad:
        raise StudyError(
            f"--set {bad[0]}=... is not allowed; use --binarize / --seeds / --ckpt-dir / --data-dir"
        )
    config = {**RECIPE, **overrides, "binarize": binarize, "seed": seed}
    if config["time_steps"] != 1:
        raise StudyError(f"this study is defined at T=1, but got time_steps={config['time_steps']}")
    config["data_dir"] = str(data_dir)
    config["out"] = str(Path(ckpt_dir) / f"{binarize}-s{seed}")
    return config


class _Recorder:
    """Epoch wall times (kept beside the checkpoint so a resumed run keeps them) and the best-val copy."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.progress_path = folder / "progress.json"
        self.progress = {"wall_s": {}, "sessions": []}
        if self.progress_path.is_file():
            self.progress = json.loads(self.progress_path.read_text())
        self.trainer = None
        self.t = 0.0

    def on_fit_start(self, trainer) -> None:
        from albsnn.provenance import commit, cpu_model

        self.trainer = trainer
        if trainer.history and best_epoch(trainer.history) is trainer.history[-1]:
            self._keep_best(trainer.history[-1]["epoch"])  # killed before the last copy was made
        self.progress["sessions"].append(
            {"from_epoch": trainer.epoch + 1, "commit": commit(), "cpu": cpu_model()}
        )
        self.t = time.perf_counter()

    def on_epoch_end(self, trainer, m: dict) -> bool:
        now = time.perf_counter()
        wall, self.t = now - self.t, now
        self.progress["wall_s"][str(m["epoch"])] = wall
        if best_epoch(trainer.history) is trainer.history[-1]:  # the model a reader would pick
            self._keep_best(m["epoch"])
        write_atomic(self.progress_path, json.dumps(self.progress, indent=1))
        print(
            f"epoch {m['epoch']:2d}  wall {wall:6.1f}s  "
            f"loss {m['train_loss']:.4f}  val {100 * m['val_accuracy']:.2f}%  "
            f"test {100 * m['test_accuracy']:.2f}%  "
            f"storage -{100 * m['storage_reduction']:.1f}%  binary {m['binarized_layers']}",
            flush=True,
        )
        return False

    def on_fit_end(self, trainer, result: dict) -> None:
        pass

    def _keep_best(self, epoch: int) -> None:
        """``checkpoint.pt`` (the epoch just ended) is the best on validation so far: copy it."""
        if self.progress.get("best_checkpoint_epoch") != epoch:
            shutil.copyfile(self.folder / "checkpoint.pt", self.folder / "best.pt")
            self.progress["best_checkpoint_epoch"] = epoch


def best_epoch(rows: list[dict]) -> dict:
    """The epoch with the highest validation accuracy, the earliest of equals. Test is not read."""
    return max(rows, key=lambda r: (r["val_accuracy"], -r["epoch"]))


def _epoch_row(h: dict, wall: float | None) -> dict:
    keys = (
        "epoch", "val_accuracy", "val_loss", "test_accuracy", "test_loss", "train_loss", "train_accuracy",
        "storage_bytes", "fp32_bytes", "storage_reduction", "binarized_layers", "num_binarized", "estimates",
        "bwo_epoch",
    )  # fmt: skip
    return {
        **{k: h.get(k) for k in keys},
        "wall_s": wall,
        "train_s": h["epoch_seconds"],
        "lr": h.get("learning_rate"),
    }


def _check_resumable(checkpoint: Path, config: dict) -> None:
    """A checkpoint made with another recipe would continue a different run: refuse it."""
    import torch

    from albsnn.train import TrainConfig

    try:
        state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises several types for damaged files
        raise StudyError(f"{checkpoint} is not a readable checkpoint ({e}); --force starts over") from None
    saved = state.get("config", {}) if isinstance(state, dict) else {}

    now = TrainConfig.from_dict(config).to_dict()
    differ = sorted(k for k in now if k not in ("data_dir", "out") and saved.get(k) != now[k])
    if differ:
        k = differ[0]
        raise StudyError(
            f"{checkpoint} was made with {k}={saved.get(k)!r}, this run asks {k}={now[k]!r}; "
            "resume with the same --set values, or delete the folder to start over"
        )


def run(
    binarize: str,
    seed: int,
    *,
    overrides: dict | None = None,
    data_dir: Path = DATA_DIR,
    out: Path = OUT,
    ckpt_dir: Path = CKPT,
    resume: bool = False,
    force: bool = False,
) -> dict | None:
    """Train one (mode, seed) run to its JSON file; ``None`` when that file exists already (skipped).

    ``resume``: continue from the run's checkpoint when there is one (else start fresh);
    ``force``: discard the checkpoint and any run file and start over.
    """
    from albsnn.provenance import provenance
    from albsnn.train import TrainConfig, fit

    overrides = dict(overrides or {})
    config_dict = run_config(binarize, seed, overrides, data_dir, ckpt_dir)
    config = TrainConfig.from_dict(config_dict)  # a bad value fails here, before any data is read
    path = run_path(out, binarize, seed)
    folder = Path(config.out)
    checkpoint = folder / "checkpoint.pt"
    if force:
        shutil.rmtree(folder, ignore_errors=True)
        path.unlink(missing_ok=True)
    if path.exists():
        print(f"{path.relative_to(out)} exists: {binarize} seed {seed} is done (--force runs it again)")
        return None
    resume_from = None
    if checkpoint.is_file():
        if not resume:
            raise StudyError(
                f"{checkpoint} exists (an interrupted run): pass --resume to continue it, "
                "or --force to start over"
            )
        _check_resumable(checkpoint, config_dict)
        resume_from = checkpoint
    elif folder.exists():
        shutil.rmtree(folder)  # progress of a run that never finished an epoch: start clean
    recorder = _Recorder(folder)
    t0 = time.perf_counter()
    print(
        f"{binarize} seed {seed}: " + ("resuming " + str(checkpoint) if resume_from else "starting"),
        flush=True,
    )
    result = fit(config, [recorder], resume_from=resume_from)
    trainer = recorder.trainer
    walls = recorder.progress["wall_s"]
    rows = [_epoch_row(h, walls.get(str(h["epoch"]))) for h in trainer.history]
    best, last = best_epoch(rows), rows[-1]
    pick = ("epoch", "val_accuracy", "test_accuracy", "storage_reduction", "binarized_layers")
    s = trainer.splits
    record = {
        "format": RUN_FORMAT,
        "binarize": binarize,
        "seed": seed,
        "complete": trainer.epoch == config.epochs and len(rows) == config.epochs,
        "recipe": {k: v for k, v in config_dict.items() if k not in _PER_RUN},  # RECIPE + overrides
        "config": config.to_dict(),  # every TrainConfig field, defaults included
        "overrides": overrides,
        "split_sizes": {"train": len(s.train_y), "val": len(s.val_y), "test": len(s.test_y)},
        "candidates": list(trainer.policy.candidates(trainer.model)),
        "epochs": rows,
        "best": {k: best[k] for k in pick},  # chosen on validation
        "final": {k: last[k] for k in pick},
        "wall_s": math.fsum(r["wall_s"] for r in rows if r["wall_s"] is not None),
        "train_s": math.fsum(r["train_s"] for r in rows),
        "wall_s_missing_epochs": [r["epoch"] for r in rows if r["wall_s"] is None],
        "decisions": result["decisions"],
        "bwo_epoch": result["bwo_epoch"],
        "bwo_layers": result["bwo_layers"],
        "notes": result["notes"],
        "sessions": recorder.progress["sessions"],
        "best_checkpoint_epoch": recorder.progress.get("best_checkpoint_epoch"),  # runs/.../best.pt
        "provenance": provenance(),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, json.dumps(record, indent=1) + "\n")
    print(
        f"{binarize} seed {seed}: best epoch {best['epoch']} on validation "
        f"({100 * best['val_accuracy']:.2f}%), "
        f"test {100 * best['test_accuracy']:.2f}%, storage -{100 * best['storage_reduction']:.1f}%, "
        f"{time.perf_counter() - t0:.0f}s this session; wrote {path}; commit it now",
        flush=True,
    )
    return record


# ---- aggregate -----------------------------------------------------------------------------------
def load_runs(out: Path) -> list[tuple[Path, dict]]:
    folder = Path(out) / "runs"
    runs = []
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            record = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise StudyError(f"{path} is not a readable run file ({e})") from None
        if not isinstance(record, dict) or record.get("format") != RUN_FORMAT:
            raise StudyError(f"{path} is not a {RUN_FORMAT} run file")
        runs.append((path, record))
    return runs


def _pick(
    runs: list[tuple[Path, dict]], mode: str, seeds: list[int], folder: Path
) -> list[tuple[Path, dict]]:
    """Exactly one complete run file per asked seed, or a StudyError naming the seed."""
    chosen = []
    for seed in seeds:
        found = [(p, r) for p, r in runs if r["binarize"] == mode and r["seed"] == seed]
        if not found:
            asked = " ".join(map(str, seeds))
            raise StudyError(f"{mode}: seed {seed} has no run file in {folder} (asked: --seeds {asked})")
        if len(found) > 1:
            names = ", ".join(p.name for p, _ in found)
            raise StudyError(f"{mode}: seed {seed} is in {len(found)} run files ({names}); keep one")
        path, record = found[0]
        if not record.get("complete"):
            raise StudyError(
                f"{path} is an incomplete run ({len(record['epochs'])} epochs); finish it with --resume"
            )
        chosen.append(found[0])
    return chosen


def _recipe(record: dict) -> dict:
    return {k: v for k, v in record["config"].items() if k not in _PER_RUN}


def _check_same_recipe(chosen: list[tuple[Path, dict]]) -> None:
    first_path, first = chosen[0]
    for path, record in chosen[1:]:
        a, b = _recipe(first), _recipe(record)
        differ = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
        if differ:
            k = differ[0]
            raise StudyError(
                f"{path.name} was trained with {k}={b.get(k)!r} but {first_path.name} with {k}={a.get(k)!r}; "
                "one summary needs one recipe"
            )


def _mean(values: list[float]) -> float:
    return math.fsum(values) / len(values)


def _std(values: list[float]) -> float | None:
    return statistics.stdev(values) if len(values) > 1 else None  # sample std (n - 1) over seeds


def summarize_mode(chosen: list[tuple[Path, dict]]) -> dict:
    """Per-seed numbers at the best epoch on validation, their mean/std, the curve and the layer map."""
    per_seed = []
    for path, r in chosen:
        best = best_epoch(r["epochs"])  # recomputed from the rows, not taken from the file's "best"
        per_seed.append(
            {
                "seed": r["seed"],
                "file": path.name,
                "best_epoch": best["epoch"],
                "val_accuracy": best["val_accuracy"],
                "test_accuracy": best["test_accuracy"],
                "storage_reduction": best["storage_reduction"],
                "binarized_layers": best["binarized_layers"],
                "final_test_accuracy": r["epochs"][-1]["test_accuracy"],
                "wall_s": r["wall_s"],
                "commit": r["provenance"]["commit"],
                "cpu": r["provenance"]["cpu"],
            }
        )
    test = [s["test_accuracy"] for s in per_seed]
    storage = [s["storage_reduction"] for s in per_seed]
    commits = sorted({s["commit"] for s in per_seed})
    epochs = [row["epoch"] for row in chosen[0][1]["epochs"]]
    layers = list(chosen[0][1]["candidates"])
    curve, layer_map = [], {name: [] for name in layers}
    for i, epoch in enumerate(epochs):
        rows = [r["epochs"][i] for _, r in chosen]
        walls = [row["wall_s"] for row in rows if row["wall_s"] is not None]
        curve.append(
            {
                "epoch": epoch,
                "val_accuracy_mean": _mean([row["val_accuracy"] for row in rows]),
                "test_accuracy_mean": _mean([row["test_accuracy"] for row in rows]),
                "storage_reduction_mean": _mean([row["storage_reduction"] for row in rows]),
                "wall_s_mean": _mean(walls) if walls else None,
            }
        )
        for name in layers:
            layer_map[name].append(sum(name in row["binarized_layers"] for row in rows))
    full = all(r["split_sizes"] == FULL_SPLITS for _, r in chosen)
    mean_test = _mean(test)
    return {
        "seeds": [s["seed"] for s in per_seed],
        "test_accuracy_mean": mean_test,
        "test_accuracy_std": _std(test),
        "val_accuracy_mean": _mean([s["val_accuracy"] for s in per_seed]),
        "storage_reduction_mean": _mean(storage),
        "storage_reduction_min": min(storage),
        "final_test_accuracy_mean": _mean([s["final_test_accuracy"] for s in per_seed]),
        "commit": commits[0] if len(commits) == 1 else ", ".join(commits),
        "full_data": full,  # False: not the 54,000 / 6,000 / 10,000 split, not comparable with the paper
        "split_sizes": chosen[0][1]["split_sizes"],
        "target_met": full
        and mean_test >= TARGET["test_accuracy"]
        and min(storage) >= TARGET["storage_reduction"],
        "stretch_met": full
        and mean_test >= TARGET["test_accuracy"]
        and min(storage) >= TARGET["stretch_storage_reduction"],
        "runs": per_seed,
        "curve": curve,
        "layer_map": layer_map,  # layer -> per epoch, how many seeds had it binary
        "overrides": chosen[0][1]["overrides"],
        "threads": chosen[0][1]["provenance"].get("threads"),
    }


def aggregate(out: Path = OUT, seeds: tuple[int, ...] = (0, 1, 2), modes: list[str] | None = None) -> dict:
    """``summary.json`` from the run files under ``out/runs`` (none other read); raises StudyError."""
    runs = load_runs(out)
    folder = Path(out) / "runs"
    if modes is None:
        modes = [m for m in MODES if any(r["binarize"] == m for _, r in runs)]
        if not modes:
            raise StudyError(f"no run files in {folder}; train first (see the script's docstring)")
    chosen = {m: _pick(runs, m, list(seeds), folder) for m in modes}
    _check_same_recipe([pair for m in modes for pair in chosen[m]])
    left_out = sorted({p.name for p, r in runs} - {p.name for m in modes for p, _ in chosen[m]})
    if left_out:
        print(f"note: not in this summary (other seeds or modes): {', '.join(left_out)}", file=sys.stderr)
    return {
        "format": "paper-fmnist-summary-1",
        "target": TARGET,
        "recipe": chosen[modes[0]][0][1]["recipe"],
        "config": _recipe(chosen[modes[0]][0][1]),
        "modes": {m: summarize_mode(chosen[m]) for m in modes},
        "paired": paired_difference(chosen),
    }


def paired_difference(chosen: dict) -> dict | None:
    """Adaptive minus all-binary test accuracy, paired by seed: mean, 95 % CI and p (paired t)."""
    if not {"adaptive", "all"} <= set(chosen):
        return None
    test = {m: {r["seed"]: best_epoch(r["epochs"])["test_accuracy"] for _, r in chosen[m]} for m in chosen}
    seeds = sorted(set(test["adaptive"]) & set(test["all"]))
    if len(seeds) < 2:
        return None
    from scipy import stats

    a, b = [test["adaptive"][s] for s in seeds], [test["all"][s] for s in seeds]
    result = stats.ttest_rel(a, b)
    ci = result.confidence_interval(0.95)
    return {
        "seeds": seeds,
        "differences": [x - y for x, y in zip(a, b, strict=True)],
        "mean": statistics.fmean(a) - statistics.fmean(b),
        "ci95": [float(ci.low), float(ci.high)],
        "p": float(result.pvalue),
    }


def _pct(x: float | None, digits: int = 2) -> str:
    return "-" if x is None else f"{100 * x:.{digits}f}"


def run_command(summary: dict, modes: list[str]) -> list[str]:
    first = summary["modes"][modes[0]]
    compact = {k: json.dumps(v, separators=(",", ":")) for k, v in first["overrides"].items()}
    sets = "".join(f" --set {shlex.quote(f'{k}={v}')}" for k, v in compact.items())
    seeds = " ".join(map(str, first["seeds"]))
    threads = first["threads"] or 2
    return [
        "mkdir -p runs && nohup env PYTHONPATH=. .venv/bin/python benchmarks/paper_fmnist.py "
        f"--binarize {' '.join(modes)} --seeds {seeds} --threads {threads} --resume{sets} "
        "> runs/paper-fmnist.log 2>&1 &",
        f"PYTHONPATH=. .venv/bin/python benchmarks/paper_fmnist.py --aggregate --binarize {' '.join(modes)} "
        f"--seeds {seeds}",
    ]


def _paired_line(d: dict) -> str:
    low, high = d["ci95"]
    verdict = "no evidence of a difference" if low <= 0 <= high else "a difference"
    return (
        f"adaptive - all, paired by seed {d['seeds']}: {100 * d['mean']:+.2f} pp, 95 % CI "
        f"[{100 * low:+.2f}, {100 * high:+.2f}] pp (paired t, p = {d['p']:.3f}): {verdict}"
    )


def render(summary: dict, plot: str | None = None) -> str:
    """README.md of the study, from the summary alone."""
    t = summary["target"]
    modes = list(summary["modes"])
    lines = [
        "# Fashion-MNIST at T = 1 against the paper's number (CPU)",
        "",
        "Made by `benchmarks/paper_fmnist.py --aggregate` from the run files in `runs/` (one JSON per run: "
        "per-epoch curve, config, commit and machine); `summary.json` holds these numbers.",
        "",
        f"**Target** ({t['source']}): adaptive test mean >= {100 * t['test_accuracy']:.2f} % over the seeds, "
        f"storage reduction >= {t['storage_reduction']:.0%} on every seed "
        f"(stretch: the same accuracy at >= {t['stretch_storage_reduction']:.0%}).",
        "",
    ]
    for m in modes:
        s = summary["modes"][m]
        met = "**met**" if s["target_met"] else "**NOT met**"
        verdict = f"target {met}" if m == "adaptive" else f"the target's bar (set for adaptive) {met}"
        if not s["full_data"]:
            verdict = "target not applicable (not the full 54,000 / 6,000 / 10,000 split)"
        std = f" ± {_pct(s['test_accuracy_std'])}" if s["test_accuracy_std"] is not None else ""
        lines.append(
            f"* `{m}`: test {_pct(s['test_accuracy_mean'])}{std} % (mean ± sample std over seeds "
            f"{', '.join(map(str, s['seeds']))}, each at its best epoch on validation), validation "
            f"{_pct(s['val_accuracy_mean'])} %, storage -{_pct(s['storage_reduction_mean'], 1)} % "
            f"(min -{_pct(s['storage_reduction_min'], 1)} %): {verdict}"
            + (", stretch met" if s["stretch_met"] else "")
            + f". Commit `{s['commit']}`."
        )
    if summary.get("paired"):
        lines.append(f"* {_paired_line(summary['paired'])}.")
    split = summary["modes"][modes[0]]["split_sizes"]
    lines += [
        "",
        f"Data: {split['train']:,} train / {split['val']:,} validation / {split['test']:,} test images. "
        "The epoch of each run is chosen on validation; test accuracy is measured every epoch and chooses "
        "nothing. `final` is the last epoch's test accuracy (a fixed schedule, no choice at all).",
        "",
        "Recipe (the script's RECIPE with the `--set` overrides; every other field at its TrainConfig "
        "default, all listed under `config` in `summary.json`): "
        + ", ".join(f"`{k}={json.dumps(v)}`" for k, v in summary["recipe"].items())
        + ".",
        "",
        "## Per seed",
        "",
        "| mode | seed | best epoch (val) | val % | test % | final test % | storage | binary layers "
        "| wall min |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for m in modes:
        for r in summary["modes"][m]["runs"]:
            lines.append(
                f"| {m} | {r['seed']} | {r['best_epoch']} | {_pct(r['val_accuracy'])} | "
                f"{_pct(r['test_accuracy'])} | "
                f"{_pct(r['final_test_accuracy'])} | -{_pct(r['storage_reduction'], 1)} % | "
                f"{', '.join(r['binarized_layers']) or 'none'} | {r['wall_s'] / 60:.1f} |"
            )
    lines += ["", "## Per-epoch curve (mean over seeds)", ""]
    if plot:
        lines += [f"![validation and test accuracy per epoch]({plot})", ""]
    head = " | ".join(f"{m} val % | {m} test % | {m} storage | {m} s/epoch" for m in modes)
    lines += [f"| epoch | {head} |", "|---" * (1 + 4 * len(modes)) + "|"]
    for i, row in enumerate(summary["modes"][modes[0]]["curve"]):
        cells = []
        for m in modes:
            c = summary["modes"][m]["curve"][i]
            wall = "-" if c["wall_s_mean"] is None else f"{c['wall_s_mean']:.0f}"
            cells += [
                _pct(c["val_accuracy_mean"]),
                _pct(c["test_accuracy_mean"]),
                f"-{_pct(c['storage_reduction_mean'], 1)} %",
                wall,
            ]
        lines.append(f"| {row['epoch']} | " + " | ".join(cells) + " |")
    lines += ["", "## Layer map (seeds with the layer binary, per epoch)", ""]
    for m in modes:
        s = summary["modes"][m]
        n, epochs = len(s["seeds"]), [c["epoch"] for c in s["curve"]]
        lines += [
            f"`{m}`:",
            "",
            "| layer | " + " | ".join(map(str, epochs)) + " |",
            "|---" * (1 + len(epochs)) + "|",
        ]
        for name, counts in s["layer_map"].items():
            lines.append(f"| {name} | " + " | ".join(f"{k}/{n}" for k in counts) + " |")
        lines.append("")
    lines += ["## Commands", "", "```bash", *run_command(summary, modes), "```", ""]
    return "\n".join(lines)


def plot_curve(summary: dict, path: Path) -> bool:
    """Validation and test accuracy per epoch, one line each per mode; False when matplotlib is absent."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed (pip install -e '.[report]'): no curve.png", file=sys.stderr)
        return False
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for i, (m, s) in enumerate(summary["modes"].items()):
        epochs, color = [c["epoch"] for c in s["curve"]], f"C{i}"
        val = [100 * c["val_accuracy_mean"] for c in s["curve"]]
        ax.plot(epochs, val, marker="o", color=color, label=f"{m} val")
        test = [100 * c["test_accuracy_mean"] for c in s["curve"]]
        ax.plot(epochs, test, ls="--", color=color, label=f"{m} test")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.axhline(100 * TARGET["test_accuracy"], color="grey", lw=0.8, label="paper 93.39 %")
    ax.set(xlabel="epoch", ylabel="accuracy (%), mean over seeds")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def write_report(out: Path, summary: dict, plot: bool = True) -> None:
    out = Path(out)
    (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    png = "curve.png" if plot and plot_curve(summary, out / "curve.png") else None
    (out / "README.md").write_text(render(summary, png))
    _warn_uncommitted(out / "runs")


def _warn_uncommitted(folder: Path) -> None:
    """The summary is of the committed runs: say which run files git does not track yet."""
    try:
        tracked = subprocess.run(
            ["git", "ls-files", "."], cwd=folder, capture_output=True, text=True, check=True
        ).stdout.split()
    except (OSError, subprocess.CalledProcessError):
        return  # not in a checkout (a scratch folder)
    for path in sorted(folder.glob("*.json")):
        if path.name not in tracked:
            print(f"note: {path} is not committed yet: git add it with the summary", file=sys.stderr)


# ---- verify ----------------------------------------------------------------------------------------
VERIFIED = ("val_accuracy", "test_accuracy", "storage_reduction", "binarized_layers")


def verify(out: Path, binarize: str, seed: int, epochs: int, data_dir: Path, scratch: Path) -> bool:
    """Re-train the first ``epochs`` epochs of a committed run with today's code and compare its rows.

    The run's own config and thread count are used; prints one line per epoch and whether every
    verified number is identical. ``False`` when any differs.
    """
    import torch

    from albsnn.train import Callback, TrainConfig, fit

    class StopAfter(Callback):  # the schedule still spans the recipe's full length
        def on_epoch_end(self, trainer, metrics: dict) -> bool:
            return metrics["epoch"] >= epochs

    path = run_path(out, binarize, seed)
    if not path.is_file():
        raise StudyError(f"{path} does not exist: nothing to verify")
    record = json.loads(path.read_text())
    threads = record["provenance"].get("threads") or 1
    torch.set_num_threads(threads)
    config = {**record["config"], "data_dir": str(data_dir), "out": str(scratch)}
    shutil.rmtree(scratch, ignore_errors=True)
    recorder = _Recorder(Path(scratch))
    fit(TrainConfig.from_dict(config), [recorder, StopAfter()])
    same = True
    for old, new in zip(record["epochs"][:epochs], recorder.trainer.history, strict=True):
        differ = [k for k in VERIFIED if old[k] != new[k]]
        same = same and not differ
        print(f"epoch {old['epoch']}: " + ("identical" if not differ else "DIFFERS in " + ", ".join(differ)))
    print(
        f"{path.name}: the first {epochs} epochs {'match' if same else 'do NOT match'} at this commit "
        f"({threads} thread(s))"
    )
    return same


# ---- recipe search -------------------------------------------------------------------------------
def compare(folders: list[Path]) -> str:
    """A Markdown table of recipe-search variants (one study folder each), ranked by validation only.

    Every variant's runs are summarized as ``--aggregate`` does (best epoch on validation). The test
    column is printed for the record; the ranking and the choice read the validation column alone.
    """
    rows = []
    for folder in folders:
        runs = load_runs(folder)
        if not runs:
            raise StudyError(f"{folder} has no run files; train the variant first")
        for mode in sorted({r["binarize"] for _, r in runs}):
            chosen = [(p, r) for p, r in runs if r["binarize"] == mode and r.get("complete")]
            if not chosen:
                continue
            s = summarize_mode(chosen)
            config = chosen[0][1]["config"]
            differ = {k: config.get(k) for k in RECIPE if k != "binarize" and config.get(k) != RECIPE[k]}
            # a --set of a field RECIPE leaves at its TrainConfig default (threshold, ...) differs too
            overrides = chosen[0][1].get("overrides") or {}
            differ.update({k: v for k, v in overrides.items() if k not in RECIPE and k not in _PER_RUN})
            rows.append((folder.name, mode, s, differ))
    rows.sort(key=lambda row: -row[2]["val_accuracy_mean"])
    lines = [
        "| variant | mode | seeds | differs from today's RECIPE | best epoch (val) | val % | storage "
        "| test % (not used to choose) | wall min (seeds summed) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, mode, s, differ in rows:
        sets = ", ".join(f"`{k}={json.dumps(v)}`" for k, v in differ.items()) or "nothing"
        epochs = ", ".join(str(r["best_epoch"]) for r in s["runs"])
        wall = sum(r["wall_s"] for r in s["runs"]) / 60
        lines.append(
            f"| {name} | {mode} | {', '.join(map(str, s['seeds']))} | {sets} | {epochs} | "
            f"{_pct(s['val_accuracy_mean'])} | -{_pct(s['storage_reduction_mean'], 1)} % | "
            f"{_pct(s['test_accuracy_mean'])} | {wall:.0f} |"
        )
    return "\n".join(lines)


# ---- command line --------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    from albsnn.cli.train import parse_option

    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="seeds (default 0 1 2)")
    p.add_argument(
        "--binarize",
        nargs="+",
        choices=MODES,
        help="mode(s): training default adaptive; --aggregate default every mode with run files",
    )
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        type=parse_option,
        default=[],
        metavar="KEY=VALUE",
        help="override a RECIPE field (TrainConfig name; value read as JSON), e.g. --set epochs=12",
    )
    p.add_argument(
        "--data-dir", type=Path, default=DATA_DIR, help=f"data root holding fashion-mnist/ ({DATA_DIR})"
    )
    p.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's choice)")
    p.add_argument("--resume", action="store_true", help="continue a run from its checkpoint when it has one")
    p.add_argument(
        "--force", action="store_true", help="discard a run's checkpoint and file and train it again"
    )
    p.add_argument(
        "--aggregate", action="store_true", help="write summary.json and README.md from the run files"
    )
    p.add_argument("--no-plot", action="store_true", help="--aggregate without curve.png")
    p.add_argument(
        "--verify",
        nargs=2,
        metavar=("MODE", "SEED"),
        help="re-train a committed run's first epochs at this commit; exit 1 if any number differs",
    )
    p.add_argument("--verify-epochs", type=int, default=2, help="epochs --verify re-trains (default 2)")
    p.add_argument(
        "--compare",
        type=Path,
        nargs="+",
        metavar="DIR",
        help="print a table of recipe-search variants (study folders), ranked on validation",
    )
    p.add_argument("--out", type=Path, default=OUT, help=f"report folder (default {OUT.relative_to(ROOT)})")
    p.add_argument(
        "--ckpt-dir", type=Path, default=CKPT, help=f"checkpoint folder (default {CKPT.relative_to(ROOT)})"
    )
    args = p.parse_args(argv)
    try:
        if args.verify:
            mode, seed = args.verify[0], int(args.verify[1])
            scratch = Path(args.ckpt_dir) / f"verify-{mode}-s{seed}"
            return 0 if verify(args.out, mode, seed, args.verify_epochs, args.data_dir, scratch) else 1
        if args.compare:
            print(compare(args.compare))
            return 0
        if args.aggregate:
            summary = aggregate(args.out, tuple(args.seeds), args.binarize)
            write_report(args.out, summary, plot=not args.no_plot)
            for m, s in summary["modes"].items():
                print(
                    f"{m}: test {_pct(s['test_accuracy_mean'])} % (sd {_pct(s['test_accuracy_std'])}) "
                    f"over seeds {s['seeds']}, val {_pct(s['val_accuracy_mean'])} %, "
                    f"storage -{_pct(s['storage_reduction_mean'], 1)} %, "
                    f"target {'met' if s['target_met'] else 'NOT met'}"
                )
            if summary["paired"]:
                print(_paired_line(summary["paired"]))
            print(f"wrote {args.out / 'summary.json'} and {args.out / 'README.md'}")
            return 0
        if args.threads:
            import torch

            torch.set_num_threads(args.threads)
        overrides = dict(args.overrides)
        for mode in args.binarize or ["adaptive"]:
            for seed in args.seeds:
                run(
                    mode,
                    seed,
                    overrides=overrides,
                    data_dir=args.data_dir,
                    out=args.out,
                    ckpt_dir=args.ckpt_dir,
                    resume=args.resume,
                    force=args.force,
                )
        return 0
    except StudyError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except Exception as e:  # ConfigError / DataError of the library: one line, as the CLI prints them
        from albsnn.errors import ConfigError, DataError

        if isinstance(e, (ConfigError, DataError)):
            print(f"error: {e}", file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":
    raise SystemExit(main())
