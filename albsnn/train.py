"""Training loop: surrogate-gradient SNN training with adaptive binarization and BWO.

``fit(TrainConfig(...))`` trains, evaluates every epoch, lets the :class:`BinarizationPolicy`
binarize layers, fires BWO when the loss stalls, checkpoints every epoch (``out``), and exports the
final model as a bit-packed ``model.albsnn``. Callbacks see each epoch's metrics and may stop the
run (the sweep platform reports them to Ray Tune from here).

    from albsnn.train import TrainConfig, fit
    result = fit(TrainConfig(dataset="digits", epochs=8, time_steps=2, out="runs/demo"))

Measured: ``albsnn train --dataset digits --epochs 8 --time-steps 2`` reaches ~0.95 test accuracy
on a 2-core CPU in well under a minute (see README for the exact run).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from albsnn.binarize import binary_layers
from albsnn.bwo import (
    BWO_MODES,
    DelayedTrigger,
    FixedEpochTrigger,
    NeverTrigger,
    PlateauTrigger,
    Trigger,
    apply_bwo,
)
from albsnn.data import DatasetSplits, dataset_info, load_dataset
from albsnn.data.loader import TensorLoader
from albsnn.errors import ConfigError
from albsnn.estimator import POLICY_MODES, BinarizationPolicy, get_estimator
from albsnn.models import ModelConfig, SpikingNet, build_model
from albsnn.neuron import firing_rates, reset_firing_rates

__all__ = ["TrainConfig", "Callback", "Trainer", "fit", "get_lr", "OPTIMIZERS", "SCHEDULES"]

OPTIMIZERS = ("adam", "sgd")
SCHEDULES = ("cosine", "onecycle", "constant")
CHECKPOINT = "checkpoint.pt"
MODEL_FILE = "model.albsnn"


@dataclass
class TrainConfig:
    """One training run. Every field is a sweepable parameter (YAML names are these names)."""

    # data
    dataset: str = "digits"
    data_dir: str | None = None  # None: $ALBSNN_DATA or ~/.cache/albsnn
    limit_train: int | None = None  # stratified subset sizes, for quick runs
    limit_test: int | None = None
    data_options: dict = field(default_factory=dict)  # forwarded to the dataset loader
    # model
    arch: str | None = None  # None: the dataset's suggested architecture
    width: float = 1.0
    time_steps: int = 2  # T
    head: str = "gap"  # gap | fc (the GAP-vs-FC ablation)
    fc_hidden: int = 256
    readout: str = "membrane"  # membrane | rate
    decay: float = 0.5
    v_threshold: float = 1.0
    reset: str = "hard"  # hard | soft
    detach_reset: bool = False
    surrogate: str = "atan"  # atan | sigmoid | rectangular
    surrogate_param: float | None = None
    alpha_mode: str = "channel"  # channel | layer
    clip_value: float = 1.0
    # accuracy loss estimator / binarization policy
    binarize: str = "adaptive"  # adaptive | all | none
    estimator: str = "weight-error"  # weight-error | taylor
    threshold: float = 0.3
    warmup: int = 2  # epochs before the first decision
    interval: int = 1  # epochs between decisions
    reversible: bool = False
    hysteresis: float = 0.2
    budget: float | None = None  # target storage reduction in (0, 1); replaces the threshold
    binarize_first: bool = False
    binarize_classifier: bool = False
    # binary weight optimization
    bwo: str = "project"  # project | scale | both | off
    bwo_patience: int = 2  # epochs without > bwo_eps relative loss improvement
    bwo_eps: float = 0.01
    bwo_epoch: int | None = None  # fire at this epoch instead of on a plateau
    bwo_lr_factor: float = 0.1
    # optimisation
    epochs: int = 8
    batch_size: int = 64
    optimizer: str = "adam"  # adam | sgd
    lr: float = 2e-3
    momentum: float = 0.9  # sgd only
    weight_decay: float = 0.0
    schedule: str = "cosine"  # cosine | onecycle | constant
    label_smoothing: float = 0.0
    seed: int = 0
    device: str = "auto"  # auto: cuda when present
    amp: bool = True  # bf16 autocast on CUDA (ignored on CPU)
    out: str | None = None  # folder for checkpoint.pt, model.albsnn, metrics.jsonl

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        checks = [
            (self.epochs >= 1, f"epochs must be >= 1, but got epochs={self.epochs}"),
            (self.batch_size >= 1, f"batch_size must be >= 1, but got batch_size={self.batch_size}"),
            (self.lr > 0, f"lr must be > 0, but got lr={self.lr}"),
            (self.time_steps >= 1, f"time_steps (T) must be >= 1, but got time_steps={self.time_steps}"),
            (0 <= self.label_smoothing < 1, f"label_smoothing must be in [0, 1), got {self.label_smoothing}"),
            (self.bwo_lr_factor > 0, f"bwo_lr_factor must be > 0, but got {self.bwo_lr_factor}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)
        for name, allowed in (
            ("optimizer", OPTIMIZERS),
            ("schedule", SCHEDULES),
            ("bwo", BWO_MODES),
            ("binarize", POLICY_MODES),
        ):
            if getattr(self, name) not in allowed:
                raise ConfigError(f"unknown {name} {getattr(self, name)!r}; choose one of {list(allowed)}")
        get_estimator(self.estimator)
        self.make_policy()
        self.make_trigger()

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"unknown training parameter(s) {unknown}; known: {sorted(known)}")
        return cls(**d)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def make_policy(self) -> BinarizationPolicy:
        return BinarizationPolicy(
            get_estimator(self.estimator),
            mode=self.binarize,
            threshold=self.threshold,
            warmup=self.warmup,
            interval=self.interval,
            reversible=self.reversible,
            hysteresis=self.hysteresis,
            budget=self.budget,
            binarize_first=self.binarize_first,
            binarize_classifier=self.binarize_classifier,
        )

    def make_trigger(self) -> Trigger:
        if self.bwo == "off":
            return NeverTrigger()
        inner = (
            FixedEpochTrigger(self.bwo_epoch)
            if self.bwo_epoch
            else PlateauTrigger(self.bwo_patience, self.bwo_eps)
        )
        return DelayedTrigger(inner, min_epoch=self.warmup + 1)

    def model_config(self, splits_info) -> ModelConfig:
        c, h, w = splits_info.input_shape
        return ModelConfig(
            arch=self.arch or splits_info.suggested_arch,
            in_channels=c,
            num_classes=splits_info.num_classes,
            input_size=(h, w),
            **{k: getattr(self, k) for k in _MODEL_KEYS},
        )


_MODEL_KEYS = [
    "width",
    "time_steps",
    "head",
    "fc_hidden",
    "readout",
    "decay",
    "v_threshold",
    "reset",
    "detach_reset",
    "surrogate",
    "surrogate_param",
    "alpha_mode",
    "clip_value",
]


def get_lr(step: int, total: int, base: float, schedule: str, warmup_frac: float = 0.25) -> float:
    """Learning rate at optimizer step ``step`` of ``total`` (cosine to 0, or one-cycle)."""
    progress = min(step / max(total, 1), 1.0)
    if schedule == "constant":
        return base
    if schedule == "onecycle" and progress < warmup_frac:
        return base * (0.04 + 0.96 * progress / warmup_frac)
    if schedule == "onecycle":
        progress = (progress - warmup_frac) / (1 - warmup_frac)
    return base * 0.5 * (1 + math.cos(math.pi * progress))


class Callback:
    """Hooks into :func:`fit`; ``on_epoch_end`` returning True stops the run after that epoch."""

    def on_fit_start(self, trainer: Trainer) -> None:
        """Called once the model, data and optimizer exist (after a resume, too)."""

    def on_epoch_end(self, trainer: Trainer, metrics: dict) -> bool | None:
        """Called with each epoch's metrics."""

    def on_fit_end(self, trainer: Trainer, result: dict) -> None:
        """Called with the final result."""


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(name)
    except RuntimeError as e:
        raise ConfigError(f"unknown device {name!r}: {e}") from None


class Trainer:
    """State of one run: model, optimizer, policy, BWO trigger, metrics. See :func:`fit`."""

    def __init__(
        self, config: TrainConfig, callbacks: Sequence[Callback] = (), splits: DatasetSplits | None = None
    ):
        self.config = c = config
        self.callbacks = list(callbacks)
        self.device = _device(c.device)
        torch.manual_seed(c.seed)
        dataset_info(c.dataset)  # unknown name -> ConfigError before any file is read
        self.splits = splits or load_dataset(
            c.dataset,
            c.data_dir,
            time_steps=c.time_steps,
            limit_train=c.limit_train,
            limit_test=c.limit_test,
            seed=c.seed,
            **c.data_options,
        )
        self.model: SpikingNet = build_model(c.model_config(self.splits.info)).to(self.device)
        self.policy = c.make_policy()
        self.policy.start(self.model)
        self.trigger = c.make_trigger()
        self.optimizer = self._make_optimizer()
        self.train_loader = TensorLoader(
            self.splits.train_x,
            self.splits.train_y,
            c.batch_size,
            shuffle=True,
            seed=c.seed,
            device=self.device,
        )
        self.test_loader = TensorLoader(self.splits.test_x, self.splits.test_y, 512, device=self.device)
        self.epoch = 0
        self.step = 0
        self.lr_scale = 1.0
        self.bwo_epoch: int | None = None
        self.history: list[dict] = []
        self.out = Path(c.out).resolve() if c.out else None

    def _make_optimizer(self) -> torch.optim.Optimizer:
        c = self.config
        params = list(self.model.parameters())
        if c.optimizer == "sgd":
            return torch.optim.SGD(params, lr=c.lr, momentum=c.momentum, weight_decay=c.weight_decay)
        return torch.optim.Adam(params, lr=c.lr, weight_decay=c.weight_decay)

    # ---- one epoch -------------------------------------------------------------------------------
    def _inputs(self, xb: torch.Tensor, train: bool) -> torch.Tensor:
        x = self.splits.prepare(xb, train)
        return x.transpose(0, 1) if self.splits.info.events else x  # events: [B,T,...] -> [T,B,...]

    def _autocast(self):
        enabled = self.config.amp and self.device.type == "cuda"
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=enabled)

    def train_epoch(self) -> tuple[float, float, float]:
        c, model = self.config, self.model
        model.train()
        self.train_loader.set_epoch(self.epoch)
        self.policy.estimator.on_epoch_start()
        candidates = self.policy.candidates(model)
        total_steps = c.epochs * len(self.train_loader)
        loss_sum = torch.zeros((), device=self.device)
        correct = torch.zeros((), device=self.device, dtype=torch.long)
        seen = 0
        self._sync()
        t0 = time.perf_counter()
        for xb, yb in self.train_loader:
            for group in self.optimizer.param_groups:
                group["lr"] = get_lr(self.step, total_steps, c.lr, c.schedule) * self.lr_scale
            with self._autocast():
                logits = model(self._inputs(xb, train=True)).float()
            loss = F.cross_entropy(logits, yb, label_smoothing=c.label_smoothing)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.policy.estimator.after_backward(candidates, loss)
            self.optimizer.step()
            self.step += 1
            loss_sum += loss.detach() * len(yb)
            correct += (logits.argmax(1) == yb).sum()
            seen += len(yb)
        self._sync()
        seconds = time.perf_counter() - t0
        return float(loss_sum) / seen, float(correct) / seen, seconds

    @torch.no_grad()
    def evaluate(self) -> float:
        self.model.eval()
        reset_firing_rates(self.model)
        correct = torch.zeros((), device=self.device, dtype=torch.long)
        for xb, yb in self.test_loader:
            with self._autocast():
                logits = self.model(self._inputs(xb, train=False))
            correct += (logits.argmax(1) == yb).sum()
        return float(correct) / len(self.test_loader.y)

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize()

    # ---- the run ---------------------------------------------------------------------------------
    def fit(self) -> dict:
        from albsnn.storage import fp32_bytes, storage_bytes

        c = self.config
        for cb in self.callbacks:
            cb.on_fit_start(self)
        full = fp32_bytes(self.model)
        while self.epoch < c.epochs:
            self.epoch += 1
            train_loss, train_acc, seconds = self.train_epoch()
            binary = self.policy.step(self.epoch, self.model, lambda m: 1 - storage_bytes(m) / full)
            self._maybe_bwo([h["train_loss"] for h in self.history] + [train_loss])
            test_acc = self.evaluate()
            size = storage_bytes(self.model)
            metrics = {
                "epoch": self.epoch,
                "train_loss": train_loss,
                "train_accuracy": train_acc,
                "test_accuracy": test_acc,
                "storage_bytes": size,
                "fp32_bytes": full,
                "storage_reduction": 1 - size / full,
                "binarized_layers": binary,
                "num_binarized": len(binary),
                "estimates": self.policy.last_estimates(),
                "firing_rates": firing_rates(self.model),
                "epoch_seconds": seconds,
                "lr": self.optimizer.param_groups[0]["lr"],
                "bwo_epoch": self.bwo_epoch,
            }
            self.history.append(metrics)
            if self.out:
                self.save_checkpoint(self.out / CHECKPOINT)
                _write_atomic(self.out / "metrics.jsonl", "".join(json.dumps(h) + "\n" for h in self.history))
            if any([cb.on_epoch_end(self, metrics) for cb in self.callbacks]):
                break
        result = self.result()
        for cb in self.callbacks:
            cb.on_fit_end(self, result)
        return result

    def _maybe_bwo(self, losses: list[float]) -> None:
        c = self.config
        if self.bwo_epoch is not None or not self.trigger.should_fire(self.epoch, losses):
            return
        apply_bwo(c.bwo, self.model, self.optimizer)
        if c.bwo in ("project", "both"):
            self.lr_scale *= c.bwo_lr_factor
        self.bwo_epoch = self.epoch

    def result(self) -> dict:
        last = self.history[-1]
        model_path = self.export(self.out / MODEL_FILE) if self.out else None
        return {
            **{k: last[k] for k in ("test_accuracy", "storage_bytes", "fp32_bytes", "storage_reduction")},
            "binarized_layers": last["binarized_layers"],
            "epochs": self.epoch,
            "bwo_epoch": self.bwo_epoch,
            "model_path": str(model_path) if model_path else None,
            "train_loss": last["train_loss"],
            "train_accuracy": last["train_accuracy"],
            "best_test_accuracy": max(h["test_accuracy"] for h in self.history),
            "arch": self.model.config.arch,
            "dataset": self.config.dataset,
            "time_steps": self.config.time_steps,
            "seconds": sum(h["epoch_seconds"] for h in self.history),
        }

    def export(self, path: Path) -> Path:
        from albsnn.export import save_model

        meta = {
            "estimates": self.policy.last_estimates(),
            "dataset": self.config.dataset,
            "class_names": list(self.splits.info.class_names),
            "train_config": self.config.to_dict(),
            "test_accuracy": self.history[-1]["test_accuracy"] if self.history else None,
            "epochs": self.epoch,
        }
        return save_model(self.model, path, metadata=meta)

    # ---- checkpoints -----------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {
            "format": "albsnn-checkpoint-1",
            "config": self.config.to_dict(),
            "epoch": self.epoch,
            "step": self.step,
            "lr_scale": self.lr_scale,
            "bwo_epoch": self.bwo_epoch,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "policy": self.policy.state_dict(),
            "history": self.history,
            "rng": torch.get_rng_state(),
        }

    def save_checkpoint(self, path: str | os.PathLike) -> Path:
        """Write atomically (a killed run never leaves a half-written checkpoint)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix="tmp-ckpt-", suffix=".pt")
        os.close(fd)
        try:
            torch.save(self.state_dict(), tmp)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        return path

    def load_checkpoint(self, path: str | os.PathLike) -> None:
        """Continue from ``path``: the run then ends with the weights an uninterrupted run has."""
        from albsnn.errors import ModelFileError

        try:
            state = torch.load(path, map_location=self.device, weights_only=True)
        except FileNotFoundError:
            raise ModelFileError(f"checkpoint {path} does not exist") from None
        except Exception as e:  # torch raises several types for damaged files
            raise ModelFileError(f"checkpoint {path} is not a readable ALBSNN checkpoint ({e})") from None
        if not isinstance(state, dict) or state.get("format") != "albsnn-checkpoint-1":
            raise ModelFileError(f"{path} is not an ALBSNN checkpoint")
        self.model.load_state_dict(state["model"])
        for layer in binary_layers(self.model).values():
            if bool(layer.alpha_learned):
                layer.alpha.requires_grad_(True)
        self.optimizer.load_state_dict(state["optimizer"])
        self.policy.load_state_dict(state["policy"])
        self.epoch, self.step = state["epoch"], state["step"]
        self.lr_scale, self.bwo_epoch = state["lr_scale"], state["bwo_epoch"]
        self.history = list(state["history"])
        torch.set_rng_state(state["rng"].cpu())


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def fit(
    config: TrainConfig,
    callbacks: Sequence[Callback] = (),
    *,
    resume_from: str | os.PathLike | None = None,
    splits: DatasetSplits | None = None,
) -> dict:
    """Train one run; ``resume_from`` continues from a checkpoint written by an earlier run.

    Returns the final metrics: ``test_accuracy``, ``storage_bytes``, ``fp32_bytes``,
    ``storage_reduction``, ``binarized_layers``, ``epochs``, ``bwo_epoch``, ``model_path``, ...
    Per-epoch metrics go to the callbacks (and ``out/metrics.jsonl``).
    """
    trainer = Trainer(config, callbacks, splits=splits)
    if resume_from is not None:
        trainer.load_checkpoint(resume_from)
    return trainer.fit()
