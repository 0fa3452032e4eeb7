"""The Ray Tune trainable: one :func:`albsnn.train.fit` run that reports every epoch.

Each epoch ends with ``ray.tune.report(metrics, checkpoint=...)``. The checkpoint folder holds
what the driver-side MLflow callback logs as artifacts (``config.json``, ``metrics.json``,
``estimator_history.json``, ``binarized_layers.json``, ``model.albsnn``, and at the last epoch of a
run with ``estimator_check`` also ``estimator_check.json``) plus the trainer's ``checkpoint.pt``
and ``state.json`` (``{"epoch": n}``). The trainer computes every metric, including
``best_val_accuracy``; the trainable only flattens them (:func:`flat_metrics`). The first epoch
an attempt reports also carries ``dataset`` (JSON of :func:`dataset_record`: name, digest of the
exact samples, split sizes), which the callback logs as the run's MLflow dataset input.

A restarted trial (``FailureConfig`` retry, or ``albsnn sweep --resume``) continues from the newest
of two checkpoints: Ray's (``ray.tune.get_checkpoint()``) and the copy the trial keeps of its last
*reported* epoch in ``<sweep>/trials/<trial_id>/epoch-NNNN``. The second matters after a killed driver:
Ray restores the checkpoint named in its last experiment snapshot, which may be a few epochs old
or already rotated away (``keep_checkpoints``). Epochs are never reported twice by a resumed trial
that had its own copy; without one, the MLflow callback skips epochs it has logged.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from albsnn.metrics import (
    CHECK_ESTIMATE_PREFIX,
    CHECK_MEASURED_PREFIX,
    ESTIMATE_PREFIX,
    ESTIMATOR_CHECK,
    FIRING_RATE_PREFIX,
)
from albsnn.sweep.tracking.callback import DATASET_RESULT
from albsnn.sweep.tracking.layout import ESTIMATOR_CHECK_FILE

__all__ = ["TrialOptions", "run_trial", "flat_metrics", "dataset_record", "STATE_FILE", "CHECKPOINT_FILES"]

STATE_FILE = "state.json"
CHECKPOINT_FILES = (
    "config.json",
    "metrics.json",
    "estimator_history.json",
    "binarized_layers.json",
    "model.albsnn",
)


@dataclass(frozen=True)
class TrialOptions:
    """What every trial of one sweep shares besides its config."""

    sweep_dir: str  # absolute; trials keep their last reported checkpoint under sweep_dir/trials
    cpus: float = 1
    fail_once_at_epoch: int | None = None  # tests: raise once, in the first attempt, at this epoch


def _json_safe(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def flat_metrics(metrics: dict) -> dict:
    """An epoch's metrics as flat numbers for Ray/MLflow (``firing_rate.<layer>``, ``estimate.<layer>``).

    The final epoch's ``estimator_check`` becomes ``check_measured.<layer>`` (the measured accuracy
    drop, pp) and ``check_estimate.<estimator>.<layer>``. ``binarized_layers`` stays a list; None
    and NaN values are left out.
    """
    out = {}
    for key, value in metrics.items():
        if key == "firing_rates":
            out.update(_prefixed(FIRING_RATE_PREFIX, value))
        elif key == "estimates":
            out.update(_prefixed(ESTIMATE_PREFIX, value))
        elif key == ESTIMATOR_CHECK:
            out.update(_check_metrics(value or {}))
        elif key == "binarized_layers":
            out[key] = list(value)
        else:
            out[key] = value
    return {k: v for k, v in out.items() if v is not None and not (isinstance(v, float) and math.isnan(v))}


def _prefixed(prefix: str, values: dict) -> dict:
    return {f"{prefix}{k}": v for k, v in values.items()}


def _check_metrics(check: dict) -> dict:
    """``{"measured": {layer: pp}, "estimates": {estimator: {layer: v}}}`` as flat metrics."""
    out = _prefixed(CHECK_MEASURED_PREFIX, check.get("measured", {}))
    for estimator, values in check.get("estimates", {}).items():
        out.update(_prefixed(f"{CHECK_ESTIMATE_PREFIX}{estimator}.", values))
    return out


def _epoch_of(folder: Path | None) -> int:
    try:
        return int(json.loads((folder / STATE_FILE).read_text())["epoch"])
    except (OSError, ValueError, KeyError, TypeError):
        return -1


class _Reporter:
    """albsnn Callback: write the epoch's checkpoint folder, report it, keep a copy of it."""

    def __init__(self, config, trial_dir: Path, options: TrialOptions, resumed: bool):
        self.config = config
        self.trial_dir = trial_dir
        self.options = options
        self.resumed = resumed
        self.node_id = _node_id()
        self.dataset: str | None = None  # reported with the first epoch of this attempt

    def on_fit_start(self, trainer) -> None:
        self.dataset = json.dumps(dataset_record(trainer))

    def on_fit_end(self, trainer, result: dict) -> None:
        pass

    def on_epoch_end(self, trainer, metrics: dict) -> bool:
        from ray import tune

        fail_at = self.options.fail_once_at_epoch
        if fail_at is not None and trainer.epoch == fail_at and not self.resumed:
            raise RuntimeError(f"injected failure at epoch {fail_at} (first attempt only)")
        report = flat_metrics(metrics)
        if self.node_id:
            report["node_id"] = self.node_id
        if self.dataset is not None:
            report[DATASET_RESULT], self.dataset = self.dataset, None
        with tempfile.TemporaryDirectory(prefix="albsnn-ckpt-") as tmp:
            folder = Path(tmp)
            self._write(trainer, metrics, folder)
            tune.report(report, checkpoint=tune.Checkpoint.from_directory(tmp))
            self._keep(folder)
        return False

    def _write(self, trainer, metrics: dict, folder: Path) -> None:
        trainer.save_checkpoint(folder / "checkpoint.pt")
        trainer.export(folder / "model.albsnn")
        from albsnn.estimator import history_rows

        history = history_rows(trainer.policy.history)
        files = {
            "config.json": trainer.config.to_dict(),
            "metrics.json": trainer.history,
            "estimator_history.json": history,
            "binarized_layers.json": trainer.history[-1]["binarized_layers"],
            STATE_FILE: {"epoch": trainer.epoch},
        }
        if metrics.get(ESTIMATOR_CHECK):  # the final epoch of a run that measured its layers
            files[ESTIMATOR_CHECK_FILE] = metrics[ESTIMATOR_CHECK]
        for name, data in files.items():
            (folder / name).write_text(json.dumps(_json_safe(data), indent=1))

    def _keep(self, folder: Path) -> None:
        """Copy this epoch's folder to ``<trial>/epoch-NNNN`` (via a rename), then drop older ones.

        At any moment at least one complete copy exists, whatever instant the process dies at.
        """
        self.trial_dir.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=self.trial_dir))
        shutil.copytree(folder, staging, dirs_exist_ok=True)
        target = self.trial_dir / f"epoch-{_epoch_of(folder):04d}"
        shutil.rmtree(target, ignore_errors=True)
        os.replace(staging, target)
        for old in self.trial_dir.glob("epoch-*"):
            if old != target:
                shutil.rmtree(old, ignore_errors=True)


def dataset_record(trainer) -> dict:
    """What MLflow's Dataset column shows: the name, a digest of the exact samples, the split sizes."""
    s, c = trainer.splits, trainer.config
    digest = hashlib.sha256()
    for tensor in (s.train_x, s.train_y, s.val_x, s.val_y, s.test_x, s.test_y):
        digest.update(tensor.contiguous().cpu().numpy().tobytes())
    sizes = {"train": len(s.train_y), "val": len(s.val_y), "test": len(s.test_y)}
    source = str(c.data_dir) if c.data_dir else f"albsnn.data:{c.dataset}"
    return {"name": c.dataset, "digest": digest.hexdigest()[:16], "source": source, "profile": sizes}


def _node_id() -> str | None:
    import ray

    # get_runtime_context() would start a local Ray when called outside one
    return ray.get_runtime_context().get_node_id() if ray.is_initialized() else None


def run_trial(config: dict, options: TrialOptions) -> None:
    """Ray Tune function trainable: ``tune.with_parameters(run_trial, options=TrialOptions(...))``."""
    import torch
    from ray import tune

    from albsnn.train import TrainConfig, fit

    torch.set_num_threads(max(1, int(options.cpus)))
    values = dict(config)
    values["out"] = None  # checkpoints and exports are written per epoch by the reporter
    train_config = TrainConfig.from_dict(values)
    trial_dir = Path(options.sweep_dir) / "trials" / tune.get_context().get_trial_id()
    with tempfile.TemporaryDirectory(prefix="albsnn-resume-") as tmp:
        resume_from = _pick_checkpoint(tune.get_checkpoint(), trial_dir, Path(tmp))
        reporter = _Reporter(train_config, trial_dir, options, resumed=resume_from is not None)
        fit(train_config, [reporter], resume_from=resume_from)


def _pick_checkpoint(ray_checkpoint, trial_dir: Path, tmp: Path) -> Path | None:
    """Copy the newest of Ray's checkpoint and the trial's own copies to ``tmp``; None if none."""
    ray_dir_ctx = None
    try:
        ray_dir = None
        if ray_checkpoint is not None:
            try:
                ray_dir_ctx = ray_checkpoint.as_directory()
                ray_dir = Path(ray_dir_ctx.__enter__())
            except Exception:  # rotated away or unreachable: our own copy still counts
                ray_dir_ctx = None
        own = sorted(trial_dir.glob("epoch-*")) if trial_dir.is_dir() else []
        candidates = [d for d in (ray_dir, *own) if d is not None and (d / "checkpoint.pt").is_file()]
        best = max(candidates, key=_epoch_of, default=None)
        if best is None or _epoch_of(best) < 0:
            return None
        shutil.copy2(best / "checkpoint.pt", tmp / "checkpoint.pt")
        return tmp / "checkpoint.pt"
    finally:
        if ray_dir_ctx is not None:
            ray_dir_ctx.__exit__(None, None, None)
