"""The Ray Tune trainable: one :func:`albsnn.train.fit` run that reports every epoch.

Each epoch ends with ``ray.tune.report(metrics, checkpoint=...)``. The checkpoint folder holds
what the driver-side MLflow callback logs as artifacts (``config.json``, ``metrics.json``,
``estimator_history.json``, ``binarized_layers.json``, ``model.albsnn``, and at the last epoch of a
run with ``estimator_check`` also ``estimator_check.json``) plus the trainer's ``checkpoint.pt``
and ``state.json`` (``{"epoch": n}``). The trainer computes every metric, including
``best_val_accuracy``; the trainable only flattens them (:func:`flat_metrics`). The first epoch
an attempt reports also carries ``dataset`` (JSON of :func:`dataset_record`: name, digest of the
exact samples, split sizes), which the callback logs as the run's MLflow dataset input.

Checkpoints are written every ``checkpoint_every`` epochs and at the final epoch; the other epochs
report metrics only. Each checkpoint is written once, by Ray, into the trial's folder on the sweep's
storage (a local path or any URI ``pyarrow.fs`` takes). Ray's own rotation (``num_to_keep``) is off
because it forces an experiment snapshot every ``num_to_keep`` checkpoints of a trial, whose cost
grows with the number of trials; the trial empties its older ``checkpoint_*`` folders itself (each
keeps a ``ROTATED`` marker, see ``_Reporter._rotate``), keeping the newest ``keep_checkpoints``.

A restarted trial (``FailureConfig`` retry, or ``albsnn sweep --resume``) continues from the newest
checkpoint by epoch: Ray's (``ray.tune.get_checkpoint()``, the one named in Ray's last experiment
snapshot, which is rare and may be older or already emptied) or the newest ``checkpoint_*`` folder
in its storage folder. Epochs a resumed trial reports again are skipped by the MLflow callback.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from albsnn.metrics import (
    CHECK_ESTIMATE_PREFIX,
    CHECK_MEASURED_PREFIX,
    ESTIMATE_PREFIX,
    ESTIMATOR_CHECK,
    FIRING_RATE_PREFIX,
)
from albsnn.sweep.tracking.callback import DATASET_RESULT
from albsnn.sweep.tracking.layout import ESTIMATOR_CHECK_FILE, TRIAL_WHERE

__all__ = [
    "TrialOptions",
    "run_trial",
    "flat_metrics",
    "dataset_record",
    "STATE_FILE",
    "CHECKPOINT_FILES",
    "TRIAL_WHERE",
]

STATE_FILE = "state.json"
ROTATED_FILE = "ROTATED"  # all that is left of a rotated checkpoint folder
# Reported with every epoch; the MLflow callback records them as run tags (layout.TRIAL_WHERE).
TRIAL_HOST, TRIAL_NODE_ID, TRIAL_GPU_IDS, TRIAL_CODE_VERSION = tuple(TRIAL_WHERE)
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

    cpus: float = 1
    checkpoint_every: int = 1  # epochs between checkpoints; the final epoch always checkpoints
    keep_checkpoints: int = 1  # newest checkpoint folders a trial keeps in its storage folder
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
    """albsnn Callback: report every epoch; write, report and rotate a checkpoint when one is due."""

    def __init__(self, options: TrialOptions, storage, resumed_from: str | None, replay: bool = False):
        self.options = options
        self.replay = replay  # resumed from a stored checkpoint Ray had not seen reported
        self.storage = storage  # Ray's StorageContext of this trial (filesystem + trial folder)
        self.resumed = resumed_from is not None
        self.kept = [resumed_from] if resumed_from else []  # checkpoint folders this attempt keeps
        self.rotated: set[str] = set()  # folders this attempt has emptied
        self.where = _where()
        self.reported = False
        self.dataset: str | None = None  # reported with the first epoch of this attempt

    def on_fit_start(self, trainer) -> None:
        self.dataset = json.dumps(dataset_record(trainer))
        # The checkpoint reached storage before the driver logged its epoch (the driver died in
        # between): report that epoch again; the MLflow callback and the pruner skip what they have.
        if self.replay and trainer.history:
            self._report(trainer, trainer.history[-1], checkpoint=trainer.epoch >= trainer.config.epochs)

    def on_fit_end(self, trainer, result: dict) -> None:
        # Resumed from its final checkpoint (it finished after Ray's last snapshot): nothing was
        # trained, so report that epoch again, or Ray, Optuna and MLflow would never see the end.
        if not self.reported and trainer.history:
            self._report(trainer, trainer.history[-1], checkpoint=True)

    def due(self, trainer) -> bool:
        return trainer.epoch % self.options.checkpoint_every == 0 or trainer.epoch >= trainer.config.epochs

    def on_epoch_end(self, trainer, metrics: dict) -> bool:
        fail_at = self.options.fail_once_at_epoch
        if fail_at is not None and trainer.epoch == fail_at and not self.resumed:
            raise RuntimeError(f"injected failure at epoch {fail_at} (first attempt only)")
        self._report(trainer, metrics, checkpoint=self.due(trainer))
        return False

    def _report(self, trainer, metrics: dict, checkpoint: bool) -> None:
        from ray import tune

        self.reported = True
        report = {**flat_metrics(metrics), **self.where}
        if self.dataset is not None:
            report[DATASET_RESULT], self.dataset = self.dataset, None
        if not checkpoint:
            tune.report(report)
            return
        with tempfile.TemporaryDirectory(prefix="albsnn-ckpt-") as tmp:
            write_checkpoint(trainer, metrics, Path(tmp))
            tune.report(report, checkpoint=tune.Checkpoint.from_directory(tmp))
        if self.storage is not None:
            self.kept.append(self.storage.checkpoint_fs_path)
            self._rotate()

    def _rotate(self) -> None:
        """Empty this trial's checkpoint folders except the newest ``keep_checkpoints`` it kept.

        An emptied folder keeps one marker file (ROTATED_FILE): Ray's last experiment snapshot may
        name it, and Ray refuses to restore a trial whose checkpoint folder does not exist. The
        restored trial then finds no ``checkpoint.pt`` there and takes its newest stored one.
        """
        keep = set(self.kept[-self.options.keep_checkpoints :])
        self.kept = [k for k in self.kept if k in keep]
        fs = self.storage.storage_filesystem
        for folder in checkpoint_folders(fs, self.storage.trial_fs_path):
            if folder not in keep and folder not in self.rotated:
                with contextlib.suppress(FileNotFoundError):  # gone already: nothing to keep
                    fs.delete_dir_contents(folder)
                with fs.open_output_stream(f"{folder}/{ROTATED_FILE}") as marker:
                    marker.write(b"rotated: see the newer checkpoint_* folders of this trial\n")
                self.rotated.add(folder)


def dataset_record(trainer) -> dict:
    """What MLflow's Dataset column shows: the name, a digest of the exact samples, the split sizes."""
    s, c = trainer.splits, trainer.config
    digest = hashlib.sha256()
    for tensor in (s.train_x, s.train_y, s.val_x, s.val_y, s.test_x, s.test_y):
        digest.update(tensor.contiguous().cpu().numpy().tobytes())
    sizes = {"train": len(s.train_y), "val": len(s.val_y), "test": len(s.test_y)}
    source = str(c.data_dir) if c.data_dir else f"albsnn.data:{c.dataset}"
    return {"name": c.dataset, "digest": digest.hexdigest()[:16], "source": source, "profile": sizes}


def write_checkpoint(trainer, metrics: dict, folder: Path) -> None:
    """The epoch's checkpoint folder: trainer checkpoint, export, records (module docstring)."""
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


def checkpoint_folders(fs, trial_fs_path: str) -> list[str]:
    """The ``checkpoint_*`` folders in a trial's storage folder (paths on ``fs``), oldest name first."""
    import pyarrow.fs as pafs

    try:
        infos = fs.get_file_info(pafs.FileSelector(trial_fs_path, allow_not_found=True))
    except OSError:
        return []
    return sorted(
        i.path for i in infos if i.type == pafs.FileType.Directory and i.base_name.startswith("checkpoint_")
    )


def _where() -> dict:
    """Where the trial runs: host, Ray node, GPUs Ray assigned, and the albsnn code version."""
    import socket

    import ray

    from albsnn.sweep.code_version import code_version

    where = {TRIAL_HOST: socket.gethostname(), TRIAL_CODE_VERSION: code_version()}
    # get_runtime_context() would start a local Ray when called outside one
    if ray.is_initialized():
        where[TRIAL_NODE_ID] = ray.get_runtime_context().get_node_id()
        gpus = ray.get_gpu_ids()
        if gpus:
            where[TRIAL_GPU_IDS] = ",".join(str(g) for g in gpus)
    return where


def run_trial(config: dict, options: TrialOptions) -> None:
    """Ray Tune function trainable: ``tune.with_parameters(run_trial, options=TrialOptions(...))``."""
    import torch
    from ray import tune

    from albsnn.train import TrainConfig, fit

    torch.set_num_threads(max(1, int(options.cpus)))
    # checkpoints and exports are written by the reporter; the pipeline checked every value
    train_config = TrainConfig.from_checked({**config, "out": None})
    storage = _storage()
    stored = []
    if storage is not None:
        fs = storage.storage_filesystem
        stored = [tune.Checkpoint(p, filesystem=fs) for p in checkpoint_folders(fs, storage.trial_fs_path)]
    ray_checkpoint = tune.get_checkpoint()
    with tempfile.TemporaryDirectory(prefix="albsnn-resume-") as tmp:
        resume_from, source = _pick_checkpoint([ray_checkpoint, *stored], Path(tmp))
        rays = str(PurePosixPath(ray_checkpoint.path)) if ray_checkpoint is not None else None
        reporter = _Reporter(options, storage, resumed_from=source, replay=source not in (None, rays))
        fit(train_config, [reporter], resume_from=resume_from)


def _storage():
    from ray import tune

    try:
        return tune.get_context().get_storage()
    except Exception:  # outside a Tune session (unit tests call the reporter directly)
        return None


def _pick_checkpoint(checkpoints, tmp: Path) -> tuple[Path | None, str | None]:
    """Copy the newest (by epoch) readable checkpoint's ``checkpoint.pt`` to ``tmp``.

    Returns (its local copy, the checkpoint's path in storage), or (None, None) when none is readable:
    a checkpoint named by an old snapshot may have been deleted by rotation since.
    """
    best, best_epoch = None, -1
    for checkpoint in checkpoints:
        if checkpoint is None:
            continue
        try:
            with checkpoint.as_directory() as folder:
                epoch = _epoch_of(Path(folder))
                if epoch > best_epoch and (Path(folder) / "checkpoint.pt").is_file():
                    shutil.copy2(Path(folder) / "checkpoint.pt", tmp / "checkpoint.pt")
                    best, best_epoch = checkpoint, epoch
        except Exception:  # deleted or unreachable: the others still count
            continue
    if best is None:
        return None, None
    return tmp / "checkpoint.pt", str(PurePosixPath(best.path))
