"""Training loop: surrogate-gradient SNN training with adaptive binarization and BWO.

``fit(TrainConfig(...))`` trains, evaluates every epoch on the validation and the test split, lets
the :class:`BinarizationPolicy` binarize layers, fires BWO when the validation loss stalls,
checkpoints every epoch (``out``), and exports the final model as a bit-packed ``model.albsnn``.
Callbacks see each epoch's metrics and may stop the run (the sweep platform reports them to Ray Tune
from here).

Select on validation, report on test: every decision (layers, BWO, best epoch) reads the validation
split (``val_fraction`` of the training data); ``test_*`` metrics are logged, never used.

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
import platform
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from albsnn.atomic import atomic_path, write_atomic
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
from albsnn.calibration import CalibrationProbe, evaluate, recalibrate_bn
from albsnn.data import DEFAULT_VAL_FRACTION, VAL_FRACTION_RANGE, DatasetSplits, dataset_info, load_dataset
from albsnn.data.loader import TensorLoader
from albsnn.errors import ConfigError
from albsnn.estimator import (
    DEFAULT_CONFIDENCE,
    DEFAULT_ESTIMATOR,
    ESTIMATORS,
    POLICY_MODES,
    THRESHOLD_RANGE,
    BinarizationPolicy,
    Measured,
    Taylor,
    get_estimator,
)
from albsnn.interval import Interval, check_in_range
from albsnn.metrics import (
    BEST_EPOCH,
    BEST_EPOCH_TEST_ACCURACY,
    BEST_VAL_ACCURACY,
    BINARIZED_LAYERS,
    BWO_EPOCH,
    EPOCH,
    EPOCH_SECONDS,
    ESTIMATES,
    ESTIMATOR_CHECK,
    FIRING_RATES,
    FP32_BYTES,
    LEARNING_RATE,
    NUM_BINARIZED,
    STORAGE_BYTES,
    STORAGE_REDUCTION,
    TEST_ACCURACY,
    TEST_LOSS,
    TRAIN_ACCURACY,
    TRAIN_LOSS,
    VAL_ACCURACY,
    VAL_LOSS,
)
from albsnn.models import ModelConfig, SpikingNet, build_model
from albsnn.neuron import firing_rates, reset_firing_rates
from albsnn.storage import fp32_bytes, storage_bytes

__all__ = ["TrainConfig", "Callback", "Trainer", "fit", "get_lr", "CONFIG_GROUPS", "OPTIMIZERS", "SCHEDULES"]

OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULES = ("cosine", "onecycle", "constant")
CHECKPOINT = "checkpoint.pt"
MODEL_FILE = "model.albsnn"
CHECKPOINT_FORMAT = "albsnn-checkpoint-2"  # 2: per-layer LR groups, validation metrics
# Without a batch_size: a GPU needs larger batches to fill it (kernel launches dominate small ones).
DEFAULT_BATCH_SIZE = {"cpu": 64, "cuda": 256}
AUGMENT_SEED_STRIDE = 1_000_003  # augmentation seed = (seed * stride + epoch) * stride + step
BN_SAMPLES = 512  # training samples that re-estimate BatchNorm statistics: each epoch and per probe
# Evaluation batch (eval mode: results do not depend on it). On CPU, 128 keeps a layer's activations
# in cache: 10-50% less time per sample than 512 (benchmarks/eval_batch.py, docs/performance.md);
# a GPU wants large ones.
EVAL_BATCH = {"cpu": 128, "cuda": 1024}
TAYLOR_CHECK_BATCHES = 16  # training batches (no optimizer step) behind the end-of-run taylor estimate


# The group of every TrainConfig field (its `group` metadata). Search-space files write parameters
# under these names (albsnn.sweep.space derives its GROUPS from the metadata); the order is theirs.
CONFIG_GROUPS = ("model", "estimator", "bwo", "training", "data")
_MODEL_FIELDS = {f.name: f for f in dataclasses.fields(ModelConfig)}
# Every estimator answers in percent (albsnn.estimator); `measured` in pp of validation accuracy.
_THRESHOLD = f"[{THRESHOLD_RANGE[0]:g}, {THRESHOLD_RANGE[1]:g}]"


def _param(
    group: str,
    default: Any = dataclasses.MISSING,
    *,
    choices: Sequence[str] = (),
    range: str | None = None,  # noqa: A002 - the metadata key it sets
    **kwargs,
) -> Any:
    """A :class:`TrainConfig` field in ``group``; ``choices``, if given, are the values it allows.

    ``range`` is a numeric field's valid interval (:class:`~albsnn.interval.Interval` syntax, e.g.
    ``"[0, 1)"``); None values pass (they mean "not set").
    """
    if group not in CONFIG_GROUPS:
        raise ValueError(f"group must be one of {CONFIG_GROUPS}, but got {group=}")
    metadata = {"group": group, **({"choices": tuple(choices)} if choices else {})}
    if range is not None:
        Interval.parse(range)  # a typo fails at import, not at the first run
        metadata["range"] = range
    return field(default=default, metadata=metadata, **kwargs)


def _model_param(name: str) -> Any:
    """A model field: default and choices are :class:`ModelConfig`'s, so the two cannot drift.

    ModelConfig owns them, not TrainConfig, because exported model files store a ModelConfig and
    load it with :mod:`albsnn.models` alone, without importing this module.
    """
    source = _MODEL_FIELDS[name]
    return field(default=source.default, metadata={"group": "model", **source.metadata})


@dataclass
class TrainConfig:
    """One training run. Every field is a parameter (YAML names are these names) in one group.

    ``dataclasses.fields(TrainConfig)[i].metadata`` holds the field's ``group`` (one of
    :data:`CONFIG_GROUPS`) and, for a field with a fixed set of values, its ``choices``; the
    ``albsnn train`` flags and the search-space checks are generated from them.
    """

    # data
    dataset: str = _param("data", "digits")
    data_dir: str | None = _param("data", None)  # None: $ALBSNN_DATA or ~/.cache/albsnn
    # stratified subset sizes, for quick runs
    limit_train: int | None = _param("data", None, range="[1, inf)")
    limit_test: int | None = _param("data", None, range="[1, inf)")
    # stratified share of train held out for every selection
    val_fraction: float = _param("data", DEFAULT_VAL_FRACTION, range=VAL_FRACTION_RANGE)
    data_options: dict = _param("data", default_factory=dict)  # forwarded to the dataset loader
    # model: defaults and choices come from ModelConfig (see _model_param)
    arch: str | None = _param("model", None)  # None: the dataset's suggested architecture
    width: float = _model_param("width")  # channel multiplier, 1.0
    time_steps: int = _model_param("time_steps")  # T, 2
    head: str = _model_param("head")  # gap | fc (the GAP-vs-FC ablation)
    fc_hidden: int = _model_param("fc_hidden")
    readout: str = _model_param("readout")  # membrane | rate
    decay: float = _model_param("decay")
    v_threshold: float = _model_param("v_threshold")
    reset: str = _model_param("reset")  # hard | soft
    detach_reset: bool = _model_param("detach_reset")
    surrogate: str = _model_param("surrogate")  # atan | sigmoid | rectangular
    surrogate_param: float | None = _model_param("surrogate_param")
    alpha_mode: str = _model_param("alpha_mode")  # channel | layer
    clip_value: float = _model_param("clip_value")
    lif_backend: str = _model_param("lif_backend")  # auto | fused | triton | loop (speed only)
    spike_after_pool: bool = _model_param(
        "spike_after_pool"
    )  # pool potentials, then spike (T=1: same spikes)
    # accuracy loss estimator / binarization policy
    # adaptive | random | deepest | largest | all | none
    binarize: str = _param("estimator", "adaptive", choices=POLICY_MODES)
    # measured | weight-error | taylor
    estimator: str = _param("estimator", DEFAULT_ESTIMATOR, choices=tuple(ESTIMATORS))
    # percent scale [0, 100]; measured: the most val accuracy (pp) the whole binary set may cost,
    # as an upper confidence bound at `confidence` (docs/method.md, "The decision rule")
    threshold: float = _param("estimator", 0.5, range=_THRESHOLD)
    confidence: float = _param("estimator", DEFAULT_CONFIDENCE, range="(0, 1)")
    warmup: int = _param("estimator", 2, range="[0, inf)")  # epochs before the first decision
    interval: int = _param("estimator", 1, range="[1, inf)")  # epochs between decisions
    # no decisions in the last epochs: every switched layer is trained before export (a run too short
    # for any decision trains in full precision and says so)
    freeze_last: int = _param("estimator", 1, range="[1, inf)")
    # validation samples the measured estimator evaluates per state
    calibration_size: int = _param("estimator", 1000, range="[1, inf)")
    # at the end, measure every candidate's true val accuracy drop
    estimator_check: bool = _param("estimator", False)
    reversible: bool = _param("estimator", False)
    hysteresis: float = _param("estimator", 0.2, range="[0, inf)")
    # target storage reduction in (0, 1); replaces the threshold; random needs it
    budget: float | None = _param("estimator", None, range="(0, 1)")
    # which random subset: draws 0..k-1 of one seed are k different members of the matched family
    draw: int = _param("estimator", 0, range="[0, inf)")
    binarize_first: bool = _param("estimator", False)
    binarize_classifier: bool = _param("estimator", False)
    # binary weight optimization
    bwo: str = _param("bwo", "project", choices=BWO_MODES)  # project | off
    # epochs since the binary set last changed without > bwo_eps val loss gain
    bwo_patience: int = _param("bwo", 2, range="[1, inf)")
    bwo_eps: float = _param("bwo", 0.01, range="[0, 1)")
    # fire at this epoch instead of on a plateau
    bwo_epoch: int | None = _param("bwo", None, range="[1, inf)")
    # LR factor of the binary layers' parameter groups at BWO (a cut: at most 1)
    bwo_lr_factor: float = _param("bwo", 0.1, range="(0, 1]")
    # optimisation and the run itself
    epochs: int = _param("training", 8, range="[1, inf)")
    # None: DEFAULT_BATCH_SIZE of the device
    batch_size: int | None = _param("training", None, range="[1, inf)")
    optimizer: str = _param("training", "adam", choices=OPTIMIZERS)  # adam | adamw | sgd
    lr: float = _param("training", 2e-3, range="(0, inf)")
    momentum: float = _param("training", 0.9, range="[0, 1)")  # sgd only
    weight_decay: float = _param("training", 0.0, range="[0, inf)")
    schedule: str = _param("training", "cosine", choices=SCHEDULES)  # cosine | onecycle | constant
    label_smoothing: float = _param("training", 0.0, range="[0, 1)")
    seed: int = _param("training", 0, range="[0, 4294967295]")
    device: str = _param("training", "auto")  # auto: cuda when present
    amp: bool = _param("training", True)  # bf16 autocast on CUDA (ignored on CPU)
    channels_last: bool = _param("training", False)  # NHWC convolutions (model and 4-D input)
    compile: bool = _param("training", False)  # torch.compile the training forward (see docs/performance.md)
    # deterministic kernels (torch.use_deterministic_algorithms, cuDNN); slower on CUDA, same on CPU
    deterministic: bool = _param("training", False)
    out: str | None = _param("training", None)  # folder for checkpoint.pt, model.albsnn, metrics.jsonl

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Every value alone (its field's ``range`` and ``choices``), then the rules that join values."""
        fields = dataclasses.fields(self)
        for f in fields:
            _check_range(f, getattr(self, f.name))
        self._check_rules()
        for f in fields:
            _check_choice(f, getattr(self, f.name))
        self.check_parts()

    @classmethod
    def check_value(cls, name: str, value: object) -> None:
        """One value of field ``name`` alone, against the field's declared ``range`` and ``choices``."""
        f = _FIELDS[name]
        _check_range(f, value)
        _check_choice(f, value)

    def _check_rules(self) -> None:
        """TrainConfig's own rules that join values (the model, policy and trigger state theirs)."""
        if self.readout == "rate" and self.time_steps == 1:
            raise ConfigError(
                "readout=rate needs time_steps >= 2 (at T=1 logits are 0/1 spikes and argmax ties "
                "favour class 0); use readout=membrane"
            )

    def check_parts(self) -> None:
        """The model's, the policy's and the BWO trigger's own checks, by building them (no data is read)."""
        # The model fields are ModelConfig's, so its validation judges them.
        model = self._model_values()
        if self.arch is None:  # the dataset suggests one when the run starts
            del model["arch"]
        ModelConfig(**model)
        self.make_policy()
        self.make_trigger()

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        _check_known(d)
        return cls(**d)

    @classmethod
    def from_checked(cls, d: dict) -> TrainConfig:
        """A config of values that were checked when they were read, built without checking them again.

        For a sweep's trials, whose pipeline checks every value a trial can get when it is read (each
        fixed value, and each search-space domain's bounds or choices: :meth:`check_value`) together
        with the rules that join them as far as it can see (:meth:`check_parts`). Only TrainConfig's own
        joined rule runs here, since two sampled values can still meet (``readout=rate`` with
        ``time_steps=1``); the model, the policy and the trigger check theirs when the trainer builds
        them. Everyone else builds with the constructor or :meth:`from_dict`, which check everything.
        """
        _check_known(d)
        config = object.__new__(cls)
        for f in dataclasses.fields(cls):
            default = f.default_factory() if f.default is dataclasses.MISSING else f.default
            setattr(config, f.name, d.get(f.name, default))
        config._check_rules()
        return config

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def make_policy(self) -> BinarizationPolicy:
        return BinarizationPolicy(
            get_estimator(self.estimator),
            mode=self.binarize,
            threshold=self.threshold,
            confidence=self.confidence,
            warmup=self.warmup,
            interval=self.interval,
            reversible=self.reversible,
            hysteresis=self.hysteresis,
            budget=self.budget,
            binarize_first=self.binarize_first,
            binarize_classifier=self.binarize_classifier,
            last_decision_epoch=self.epochs - self.freeze_last,
            seed=self.seed,
            draw=self.draw,
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
            **{**self._model_values(), "arch": self.arch or splits_info.suggested_arch},
            in_channels=c,
            num_classes=splits_info.num_classes,
            input_size=(h, w),
        )

    def _model_values(self) -> dict:
        """``{field: value}`` for the fields in group ``model`` (``arch`` may be None)."""
        return {name: getattr(self, name) for name in _MODEL_KEYS}


_MODEL_KEYS = tuple(f.name for f in dataclasses.fields(TrainConfig) if f.metadata["group"] == "model")
_FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}


def _check_known(d: dict) -> None:
    unknown = sorted(set(d) - set(_FIELDS))
    if unknown:
        raise ConfigError(f"unknown training parameter(s) {unknown}; known: {sorted(_FIELDS)}")


def _check_range(f: dataclasses.Field, value: object) -> None:
    if "range" in f.metadata and value is not None:  # None means "not set"
        check_in_range(f.name, value, f.metadata["range"])


def _check_choice(f: dataclasses.Field, value: object) -> None:
    allowed = f.metadata.get("choices")
    if allowed is not None and value not in allowed:
        raise ConfigError(f"unknown {f.name} {value!r}; choose one of {list(allowed)}")


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

    def on_step_end(self, trainer: Trainer, step_in_epoch: int, steps_in_epoch: int, samples: int) -> None:
        """Called after every optimizer step (1-based ``step_in_epoch``; ``samples`` seen this epoch).

        Runs inside the hot loop: do no device work here. ``trainer.epoch_loss_sum`` (a device
        tensor: the sum of loss x batch size so far this epoch) costs a host sync to read, so read it
        only when showing it, a few times a second at most.
        """

    def on_epoch_end(self, trainer: Trainer, metrics: dict) -> bool | None:
        """Called with each epoch's metrics."""

    def on_fit_end(self, trainer: Trainer, result: dict) -> None:
        """Called with the final result."""


def _set_determinism(on: bool, device: torch.device) -> None:
    """Process-wide switches, set by every run (a worker reused for another trial gets its own)."""
    if on and device.type == "cuda":
        # cuBLAS needs this before its first call to pick deterministic reductions.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(on)
    torch.backends.cudnn.deterministic = on
    # benchmark mode times several conv algorithms per shape and keeps the fastest: not reproducible.
    torch.backends.cudnn.benchmark = device.type == "cuda" and not on


def _check_compile(device: torch.device) -> None:
    """``compile=True`` where torch.compile cannot run: one line saying why (ConfigError)."""
    import shutil

    problem = None
    if not hasattr(torch, "compile"):
        problem = f"this torch ({torch.__version__}) has no torch.compile"
    else:
        from torch import _dynamo

        if not _dynamo.is_dynamo_supported():
            problem = f"torch.compile does not support this Python ({platform.python_version()})"
        elif device.type == "cpu" and not (
            os.environ.get("CXX") or shutil.which("g++") or shutil.which("c++")
        ):
            problem = "torch.compile on CPU needs a C++ compiler (g++, c++ or $CXX) and none was found"
    if problem:
        raise ConfigError(f"compile: {problem}; run without --compile")


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
        if c.compile:
            _check_compile(self.device)
        _set_determinism(c.deterministic, self.device)
        self.batch_size = c.batch_size or DEFAULT_BATCH_SIZE.get(self.device.type, DEFAULT_BATCH_SIZE["cpu"])
        torch.manual_seed(c.seed)
        self.splits = self._load_splits(splits)
        self.model: SpikingNet = self._build_model()
        # the training forward; evaluation and BN re-estimation run the eager model
        self.train_forward = torch.compile(self.model) if c.compile else self.model
        self.notes: list[str] = []  # one line each, for the user: printed to stderr and in the result
        self._start_policy()
        self.trigger = c.make_trigger()
        self.optimizer = self._make_optimizer()
        self._make_loaders()
        self.probe = self._make_probe(c.calibration_size)
        self.policy.estimator.bind(self.probe)
        self.epoch = 0
        self.step = 0
        self.bwo_epoch: int | None = None
        self.bwo_layers: list[str] = []
        self.changed_epoch = 0  # last epoch whose decision changed the binary set
        self.history: list[dict] = []
        self.out = Path(c.out).resolve() if c.out else None

    def _load_splits(self, splits: DatasetSplits | None) -> DatasetSplits:
        """``splits``, or the dataset loaded as the config says; either must have a validation split."""
        c = self.config
        dataset_info(c.dataset)  # unknown name -> ConfigError before any file is read
        splits = splits or load_dataset(
            c.dataset,
            c.data_dir,
            time_steps=c.time_steps,
            limit_train=c.limit_train,
            limit_test=c.limit_test,
            seed=c.seed,
            val_fraction=c.val_fraction,
            **c.data_options,
        )
        if splits.val_y is None:
            raise ConfigError(
                f"dataset {c.dataset!r} came without a validation split; load it with load_dataset"
            )
        return splits

    def _build_model(self) -> SpikingNet:
        model = build_model(self.config.model_config(self.splits.info)).to(self.device)
        if self.config.channels_last:
            model.to(memory_format=torch.channels_last)
        return model

    def _start_policy(self) -> None:
        """The binarization policy, checked against the model before any training, and its FP32 size."""
        c = self.config
        self.policy = c.make_policy()
        self.fp32_bytes = fp32_bytes(self.model)
        self.policy.check(self.model, self._reduction)
        self.policy.start(self.model)
        if c.binarize not in ("all", "none") and not any(
            self.policy.is_decision_epoch(e) for e in range(1, c.epochs + 1)
        ):
            self._note(
                f"binarize={c.binarize} never decides in {c.epochs} epoch(s) (warm-up {c.warmup}, "
                f"freeze_last {c.freeze_last}): this run trains in full precision"
            )

    def _make_loaders(self) -> None:
        """Training batches shuffled by the seed; validation and test in larger evaluation batches."""
        s, device = self.splits, self.device
        self.train_loader = TensorLoader(
            s.train_x, s.train_y, self.batch_size, shuffle=True, seed=self.config.seed, device=device
        )
        self.eval_batch = EVAL_BATCH.get(device.type, EVAL_BATCH["cpu"])
        self.val_loader = TensorLoader(s.val_x, s.val_y, self.eval_batch, device=device)
        self.test_loader = TensorLoader(s.test_x, s.test_y, self.eval_batch, device=device)

    def _make_optimizer(self) -> torch.optim.Optimizer:
        """One parameter group per switchable layer (BWO scales only the binary ones) plus the rest."""
        c = self.config
        layers = binary_layers(self.model)
        own = {id(p) for m in layers.values() for p in m.parameters(recurse=False)}
        groups = [
            {"params": list(m.parameters(recurse=False)), "layer": name, "lr_scale": 1.0}
            for name, m in layers.items()
        ]
        rest = [p for p in self.model.parameters() if id(p) not in own]
        groups.append({"params": rest, "layer": None, "lr_scale": 1.0})
        # CUDA: one fused kernel per step, step counts on the device (foreach launches several per
        # parameter group). CPU keeps the default, whose results the documented runs were measured with.
        fused = {"fused": True} if self.device.type == "cuda" else {}
        if c.optimizer == "sgd":
            return torch.optim.SGD(groups, lr=c.lr, momentum=c.momentum, weight_decay=c.weight_decay, **fused)
        if c.optimizer == "adamw":  # weight decay decoupled from Adam's gradient scaling
            return torch.optim.AdamW(groups, lr=c.lr, weight_decay=c.weight_decay, **fused)
        return torch.optim.Adam(groups, lr=c.lr, weight_decay=c.weight_decay, **fused)

    def _batches(self, x: torch.Tensor, y: torch.Tensor, keep: torch.Tensor, batch: int) -> list:
        keep = keep.to(x.device)
        return list(TensorLoader(x[keep], y[keep], batch, device=self.device))

    def _reduction(self, model) -> float:
        """Storage reduction of ``model`` against its FP32 size (the policy matches budgets with it)."""
        return 1 - storage_bytes(model) / self.fp32_bytes

    def _note(self, message: str) -> None:
        self.notes.append(message)
        print(f"albsnn: {message}", file=sys.stderr, flush=True)

    def _make_probe(self, calibration_size: int) -> CalibrationProbe:
        from albsnn.data import stratified_subset

        s, n_val = self.splits, len(self.splits.val_y)
        # One batch: BN re-estimation averages per-batch statistics, so its batching changes the model.
        bn = self._batches(s.train_x, s.train_y, stratified_subset(s.train_y, BN_SAMPLES, seed=0), BN_SAMPLES)
        if self.config.estimator_check and calibration_size >= n_val:
            # The check must measure on samples the estimator never saw: split validation in two.
            calibration_size = n_val // 2
            self._note(
                f"validation has {n_val} samples, not more than calibration_size "
                f"{self.config.calibration_size}: the estimator calibrates on {calibration_size} of them "
                f"and the estimator check measures on the other {n_val - calibration_size}"
            )
        self.calibration_index = stratified_subset(s.val_y, calibration_size, seed=0)
        calibration = self._batches(s.val_x, s.val_y, self.calibration_index, self.eval_batch)
        return CalibrationProbe(self.model, bn, calibration, self._eval_inputs)

    def _holdout_probe(self) -> CalibrationProbe:
        """The validation samples the measured estimator never saw (disjoint by construction)."""
        s = self.splits
        rest = torch.ones(len(s.val_y), dtype=torch.bool)
        rest[self.calibration_index] = False
        keep = rest.nonzero().flatten()
        return CalibrationProbe(
            self.model,
            self.probe.bn_batches,
            self._batches(s.val_x, s.val_y, keep, self.eval_batch),
            self._eval_inputs,
        )

    # ---- one epoch -------------------------------------------------------------------------------
    def _inputs(
        self, xb: torch.Tensor, train: bool, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        x = self.splits.prepare(xb, train, generator)
        if self.splits.info.events:
            return x.transpose(0, 1)  # events: [B,T,...] -> [T,B,...]
        return x.contiguous(memory_format=torch.channels_last) if self.config.channels_last else x

    def _augment_generator(self) -> torch.Generator:
        """Augmentation's own generator, seeded by (seed, epoch, step): a resumed run draws the same crops
        whatever else used the global RNGs (CUDA's included)."""
        stride = AUGMENT_SEED_STRIDE
        seed = ((self.config.seed * stride + self.epoch) * stride + self.step) % (2**63)
        return torch.Generator(device=self.device).manual_seed(seed)

    def _eval_inputs(self, xb: torch.Tensor) -> torch.Tensor:
        return self._inputs(xb, train=False)

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
        loss_sum = self.epoch_loss_sum = torch.zeros((), device=self.device)
        correct = torch.zeros((), device=self.device, dtype=torch.long)
        seen = 0
        self._sync()
        t0 = time.perf_counter()
        steps, step_hooks = len(self.train_loader), self._step_hooks()
        for i, (xb, yb) in enumerate(self.train_loader, 1):
            loss, logits = self.train_step(xb, yb, total_steps, candidates)
            loss_sum += loss * len(yb)
            correct += (logits.argmax(1) == yb).sum()
            seen += len(yb)
            for hook in step_hooks:
                hook(self, i, steps, seen)
        self._sync()
        seconds = time.perf_counter() - t0
        return float(loss_sum) / seen, float(correct) / seen, seconds

    def _step_hooks(self) -> list:
        """The callbacks' own ``on_step_end`` methods (the hot loop calls no inherited no-op)."""
        hooks = []
        for cb in self.callbacks:
            method = getattr(type(cb), "on_step_end", Callback.on_step_end)
            if method is not Callback.on_step_end:
                hooks.append(cb.on_step_end)
        return hooks

    def train_step(
        self, xb: torch.Tensor, yb: torch.Tensor, total_steps: int, candidates: dict
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One optimizer step on a stored batch; returns the detached loss and logits (device tensors).

        Nothing here reads a device value on the host: on a GPU the step is queued, never waited for.
        """
        c = self.config
        lr = get_lr(self.step, total_steps, c.lr, c.schedule)
        for group in self.optimizer.param_groups:
            group["lr"] = lr * group["lr_scale"]
        x = self._inputs(xb, train=True, generator=self._augment_generator())
        with self._autocast():
            logits = self.train_forward(x).float()
        loss = F.cross_entropy(logits, yb, label_smoothing=c.label_smoothing)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.policy.estimator.after_backward(candidates, loss)
        self.optimizer.step()
        self.step += 1
        return loss.detach(), logits.detach()

    def evaluate(self, loader: TensorLoader | None = None) -> tuple[float, float]:
        """``(accuracy, loss)`` on ``loader`` (default: the validation split)."""
        reset_firing_rates(self.model)
        with self._autocast():
            return evaluate(self.model, loader or self.val_loader, self._eval_inputs)

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize()

    # ---- the run ---------------------------------------------------------------------------------
    def fit(self) -> dict:
        c = self.config
        for cb in self.callbacks:
            cb.on_fit_start(self)
        full = self.fp32_bytes
        while self.epoch < c.epochs:
            self.epoch += 1
            train_loss, train_acc, seconds = self.train_epoch()
            before = [n for n, m in binary_layers(self.model).items() if m.is_binary]
            binary = self.policy.step(self.epoch, self.model, self._reduction)
            if set(binary) != set(before):
                self.changed_epoch = self.epoch
            # Every mode, every epoch: BN statistics of the weights being evaluated and exported, never
            # an EMA that mixes earlier weights or another binary state (a confound between modes).
            recalibrate_bn(self.model, self.probe.bn_batches, self._eval_inputs)
            val_acc, val_loss = self.evaluate(self.val_loader)
            test_acc, test_loss = self.evaluate(self.test_loader)
            rates = firing_rates(self.model)
            self._maybe_bwo(val_loss)
            size = storage_bytes(self.model)
            metrics = {
                EPOCH: self.epoch,
                TRAIN_LOSS: train_loss,
                TRAIN_ACCURACY: train_acc,
                VAL_ACCURACY: val_acc,
                VAL_LOSS: val_loss,
                BEST_VAL_ACCURACY: max([val_acc] + [h[VAL_ACCURACY] for h in self.history]),
                TEST_ACCURACY: test_acc,
                TEST_LOSS: test_loss,
                STORAGE_BYTES: size,
                FP32_BYTES: full,
                STORAGE_REDUCTION: 1 - size / full,
                BINARIZED_LAYERS: binary,
                NUM_BINARIZED: len(binary),
                ESTIMATES: self.policy.epoch_estimates(self.epoch),
                FIRING_RATES: rates,
                EPOCH_SECONDS: seconds,
                LEARNING_RATE: self.optimizer.param_groups[-1]["lr"],
                BWO_EPOCH: self.bwo_epoch,
            }
            if self.epoch == c.epochs and c.estimator_check:
                metrics[ESTIMATOR_CHECK] = self.check_estimators()
            self.history.append(metrics)
            if self.out:
                self.save_checkpoint(self.out / CHECKPOINT)
                write_atomic(self.out / "metrics.jsonl", "".join(json.dumps(h) + "\n" for h in self.history))
            if any([cb.on_epoch_end(self, metrics) for cb in self.callbacks]):
                break
        result = self.result()
        for cb in self.callbacks:
            cb.on_fit_end(self, result)
        return result

    def _maybe_bwo(self, val_loss: float) -> None:
        """BWO on a validation-loss plateau counted from the last change of the binary set."""
        c = self.config
        if self.bwo_epoch is not None or c.bwo == "off":
            return
        if not any(m.is_binary for m in binary_layers(self.model).values()):
            return  # nothing to optimise: no LR cut, no confound
        since = [h[VAL_LOSS] for h in self.history if h[EPOCH] > self.changed_epoch]
        losses = since + ([val_loss] if self.epoch > self.changed_epoch else [])
        if not self.trigger.should_fire(self.epoch, losses):
            return
        self.bwo_layers = apply_bwo(c.bwo, self.model, self.optimizer)
        for group in self.optimizer.param_groups:
            if group["layer"] in self.bwo_layers:
                group["lr_scale"] *= c.bwo_lr_factor
        self.bwo_epoch = self.epoch

    def check_estimators(self) -> dict:
        """Every estimator's estimate and the true val accuracy drop (pp) of each candidate, final model.

        The truth: accuracy with the layer full precision minus with it binary (the other layers as
        they are, BN re-estimated in both states), on the validation samples outside the ``measured``
        estimator's calibration set, so the two are measured on disjoint data.
        """
        layers = self.policy.candidates(self.model)
        truth = Measured()
        truth.bind(self._holdout_probe())
        measured = {n: truth.estimate(n, m) for n, m in layers.items()}
        estimates = {}
        for kind in ESTIMATORS:
            estimator = get_estimator(kind)
            estimator.bind(self.probe)
            if isinstance(estimator, Taylor):
                self._taylor_batches(estimator, layers)
            estimates[kind] = {n: estimator.estimate(n, m) for n, m in layers.items()}
        return {"measured": measured, "estimates": estimates}

    def _taylor_batches(self, estimator: Taylor, layers: dict) -> None:
        """Gradients of a few training batches, no optimizer step, BN statistics untouched (eval mode)."""
        self.model.eval()
        estimator.on_epoch_start()
        for i, (xb, yb) in enumerate(self.train_loader):
            if i == TAYLOR_CHECK_BATCHES:
                break
            self.model.zero_grad(set_to_none=True)
            loss = F.cross_entropy(self.model(self._inputs(xb, train=False)).float(), yb)
            loss.backward()
            estimator.after_backward(layers, loss)
        self.model.zero_grad(set_to_none=True)

    def result(self) -> dict:
        last = self.history[-1]
        best = max(self.history, key=lambda h: h[VAL_ACCURACY])  # first of equals: earliest epoch
        model_path = self.export(self.out / MODEL_FILE) if self.out else None
        keys = (VAL_ACCURACY, TEST_ACCURACY, STORAGE_BYTES, FP32_BYTES, STORAGE_REDUCTION)
        return {
            **{k: last[k] for k in keys},
            BINARIZED_LAYERS: last[BINARIZED_LAYERS],
            "epochs": self.epoch,
            BWO_EPOCH: self.bwo_epoch,
            "bwo_layers": self.bwo_layers,
            "model_path": str(model_path) if model_path else None,
            TRAIN_LOSS: last[TRAIN_LOSS],
            TRAIN_ACCURACY: last[TRAIN_ACCURACY],
            BEST_EPOCH: best[EPOCH],
            BEST_VAL_ACCURACY: best[VAL_ACCURACY],
            BEST_EPOCH_TEST_ACCURACY: best[TEST_ACCURACY],
            ESTIMATOR_CHECK: last.get(ESTIMATOR_CHECK),
            "decisions": [dataclasses.asdict(d) for d in self.policy.decisions],
            "notes": self.notes,
            "arch": self.model.config.arch,
            "dataset": self.config.dataset,
            "time_steps": self.config.time_steps,
            "seconds": sum(h[EPOCH_SECONDS] for h in self.history),
        }

    def export(self, path: Path) -> Path:
        from albsnn.export import save_model

        last = self.history[-1] if self.history else {}
        meta = {
            "estimates": self.policy.last_estimates(),
            "dataset": self.config.dataset,
            "class_names": list(self.splits.info.class_names),
            "train_config": self.config.to_dict(),
            VAL_ACCURACY: last.get(VAL_ACCURACY),
            TEST_ACCURACY: last.get(TEST_ACCURACY),
            "epochs": self.epoch,
        }
        return save_model(self.model, path, metadata=meta)

    # ---- checkpoints -----------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {
            "format": CHECKPOINT_FORMAT,
            "config": self.config.to_dict(),
            "epoch": self.epoch,
            "step": self.step,
            "bwo_epoch": self.bwo_epoch,
            "bwo_layers": self.bwo_layers,
            "changed_epoch": self.changed_epoch,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "policy": self.policy.state_dict(),
            "history": self.history,
            "rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if self.device.type == "cuda" else [],
        }

    def save_checkpoint(self, path: str | os.PathLike) -> Path:
        """Write atomically (a killed run never leaves a half-written checkpoint)."""
        with atomic_path(path) as tmp:
            torch.save(self.state_dict(), tmp)
        return Path(path)

    def load_checkpoint(self, path: str | os.PathLike) -> None:
        """Continue from ``path``: the run then ends with the weights an uninterrupted run has."""
        from albsnn.errors import ModelFileError

        try:
            state = torch.load(path, map_location=self.device, weights_only=True)
        except FileNotFoundError:
            raise ModelFileError(f"checkpoint {path} does not exist") from None
        except Exception as e:  # torch raises several types for damaged files
            raise ModelFileError(f"checkpoint {path} is not a readable ALBSNN checkpoint ({e})") from None
        if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
            raise ModelFileError(f"{path} is not an ALBSNN checkpoint")
        self.model.load_state_dict(state["model"])
        for layer in binary_layers(self.model).values():
            if layer._alpha_learned:
                layer.alpha.requires_grad_(True)
        self.optimizer.load_state_dict(state["optimizer"])
        self.policy.load_state_dict(state["policy"])
        self.epoch, self.step = state["epoch"], state["step"]
        self.bwo_epoch, self.bwo_layers = state["bwo_epoch"], state["bwo_layers"]
        self.changed_epoch = state["changed_epoch"]
        self.history = list(state["history"])
        torch.set_rng_state(state["rng"].cpu())
        if self.device.type == "cuda" and state.get("cuda_rng"):
            torch.cuda.set_rng_state_all([r.cpu() for r in state["cuda_rng"]])


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
    try:
        return trainer.fit()
    except RuntimeError as e:
        if config.deterministic and "deterministic" in str(e):
            op = str(e).strip().splitlines()[0]
            raise ConfigError(
                f"deterministic: an op of this run has no deterministic kernel on {trainer.device} ({op}); "
                "run without --deterministic"
            ) from None
        raise
