"""Accuracy loss estimator (ALE): how much would binarizing each layer hurt, and which to binarize.

An :class:`Estimator` scores one layer (lower = binarizing it is safer). Two kinds:

* ``weight-error``: ``||W - W_b||^2 / ||W||^2``, the relative weight distortion binarization causes
  (0 for weights that are already ``+-alpha``; data-free, computed at decision time).
* ``taylor``: ``|sum(g * (W_b - W))|`` per batch, averaged over the epoch's batches and divided by
  the epoch's mean training loss: the first-order estimate of the relative loss change if the
  layer were binarized now (``g`` = gradient of the loss w.r.t. the latent weights).

:class:`BinarizationPolicy` turns estimates into decisions. After ``warmup`` epochs, every
``interval`` epochs, it binarizes each full-precision candidate whose estimate is ``<= threshold``;
with ``reversible`` a binary layer whose estimate exceeds ``threshold * (1 + hysteresis)`` returns
to full precision; in ``budget`` mode it binarizes in order of increasing estimate until the model's
storage reduction reaches the target, instead of using a threshold. Modes ``all`` and ``none`` are
the ablation baselines (every candidate binary from the start / never). Ties are broken by layer
name, so a run is deterministic. Every epoch's estimates go into :attr:`BinarizationPolicy.history`.

The paper gives no formulas: both estimators, ``reversible`` and ``budget`` are our reading of
"accuracy loss estimator" (see docs/method.md).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass

import torch
from torch import nn

from albsnn.binarize import BinaryLayer, binary_layers
from albsnn.errors import ConfigError

__all__ = [
    "Estimator",
    "WeightError",
    "Taylor",
    "ESTIMATORS",
    "get_estimator",
    "POLICY_MODES",
    "HistoryEntry",
    "BinarizationPolicy",
]


class Estimator:
    """Scores the damage binarizing a layer would do. Hooks default to doing nothing."""

    name = "base"

    def on_epoch_start(self) -> None:
        """Called before an epoch's first batch."""

    def after_backward(self, layers: dict[str, BinaryLayer], loss: torch.Tensor) -> None:
        """Called after each training batch's backward pass, before the optimizer step."""

    def estimate(self, name: str, layer: BinaryLayer) -> float:
        raise NotImplementedError


class WeightError(Estimator):
    """``||W - W_b||^2 / ||W||^2``."""

    name = "weight-error"

    @torch.no_grad()
    def estimate(self, name: str, layer: BinaryLayer) -> float:
        w = layer.weight.float()
        err = (w - layer.binarized_weight().float()).square().sum()
        return float(err / w.square().sum().clamp_min(1e-30))


class Taylor(Estimator):
    """``mean_batches |sum(g * (W_b - W))| / mean training loss`` over the last epoch."""

    name = "taylor"

    def __init__(self) -> None:
        self._sums: dict[str, torch.Tensor] = {}
        self._batches = 0
        self._loss = 0.0

    def on_epoch_start(self) -> None:
        self._sums, self._batches, self._loss = {}, 0, 0.0

    @torch.no_grad()
    def after_backward(self, layers: dict[str, BinaryLayer], loss: torch.Tensor) -> None:
        self._batches += 1
        self._loss += float(loss.detach())
        for name, layer in layers.items():
            g = layer.weight.grad
            if g is None:
                continue
            change = (g * (layer.binarized_weight() - layer.weight)).sum().abs()
            self._sums[name] = self._sums.get(name, 0.0) + change

    def estimate(self, name: str, layer: BinaryLayer) -> float:
        if not self._batches or name not in self._sums:
            return float("nan")  # no gradient seen yet: unknown, so never binarized
        mean_loss = max(self._loss / self._batches, 1e-12)
        return float(self._sums[name]) / self._batches / mean_loss


ESTIMATORS: dict[str, type[Estimator]] = {"weight-error": WeightError, "taylor": Taylor}


def get_estimator(name: str) -> Estimator:
    if name not in ESTIMATORS:
        raise ConfigError(f"unknown estimator {name!r}; choose one of {sorted(ESTIMATORS)}")
    return ESTIMATORS[name]()


POLICY_MODES = ("adaptive", "all", "none")


@dataclass
class HistoryEntry:
    epoch: int
    layer: str
    estimate: float
    binary: bool  # the layer's state after this epoch's decision
    decision: bool  # True on epochs where the policy was allowed to change layers


class BinarizationPolicy:
    """Decides, epoch by epoch, which candidate layers are binary.

    Args:
        estimator: scores layers (see :func:`get_estimator`).
        mode: ``"adaptive"`` (estimator-driven), ``"all"`` or ``"none"`` (ablation baselines).
        threshold: binarize a layer whose estimate is ``<= threshold`` (adaptive, no budget).
        warmup: epochs of full-precision training before the first decision.
        interval: epochs between decisions.
        reversible: let a binary layer return to full precision (estimate > threshold*(1+hysteresis)).
        hysteresis: margin above the threshold before a binary layer is reverted.
        budget: target storage reduction in (0, 1); replaces the threshold when given.
        binarize_first, binarize_classifier: make the first conv / the classifier candidates too.

    Example:
        >>> from albsnn.models import build_model
        >>> policy = BinarizationPolicy(WeightError(), threshold=1.0, warmup=0)
        >>> net = build_model(arch="tiny")
        >>> policy.step(1, net, reduction=lambda m: 0.0)
        ['conv2', 'conv3', 'conv4']
    """

    def __init__(
        self,
        estimator: Estimator,
        *,
        mode: str = "adaptive",
        threshold: float = 0.3,
        warmup: int = 2,
        interval: int = 1,
        reversible: bool = False,
        hysteresis: float = 0.2,
        budget: float | None = None,
        binarize_first: bool = False,
        binarize_classifier: bool = False,
    ) -> None:
        if mode not in POLICY_MODES:
            raise ConfigError(f"binarize mode must be one of {POLICY_MODES}, but got {mode=}")
        if not threshold >= 0:
            raise ConfigError(f"threshold must be >= 0, but got {threshold=}")
        if warmup < 0:
            raise ConfigError(f"warmup must be >= 0 epochs, but got {warmup=}")
        if interval < 1:
            raise ConfigError(f"interval must be >= 1 epoch, but got {interval=}")
        if not hysteresis >= 0:
            raise ConfigError(f"hysteresis must be >= 0, but got {hysteresis=}")
        if budget is not None and not 0 < budget < 1:
            raise ConfigError(f"budget (target storage reduction) must be in (0, 1), but got {budget=}")
        self.estimator = estimator
        self.mode = mode
        self.threshold = threshold
        self.warmup = warmup
        self.interval = interval
        self.reversible = reversible
        self.hysteresis = hysteresis
        self.budget = budget
        self.binarize_first = binarize_first
        self.binarize_classifier = binarize_classifier
        self.history: list[HistoryEntry] = []

    def candidates(self, model: nn.Module) -> dict[str, BinaryLayer]:
        """Switchable layers the policy may binarize (first conv and classifier opt-in)."""
        skip = set()
        if not self.binarize_first:
            skip.add(getattr(model, "first_layer", None))
        if not self.binarize_classifier:
            skip.add(getattr(model, "classifier_layer", None))
        return {n: m for n, m in binary_layers(model).items() if n not in skip}

    def start(self, model: nn.Module) -> None:
        """Set the initial state: everything binary in ``all`` mode, nothing otherwise."""
        for layer in self.candidates(model).values():
            layer.set_binary(self.mode == "all")

    def is_decision_epoch(self, epoch: int) -> bool:
        return (
            self.mode == "adaptive"
            and epoch >= max(self.warmup, 1)
            and (epoch - self.warmup) % self.interval == 0
        )

    def step(self, epoch: int, model: nn.Module, reduction: Callable[[nn.Module], float]) -> list[str]:
        """Score every candidate after ``epoch`` (1-based), decide, record; returns binary layers."""
        layers = self.candidates(model)
        estimates = {n: self.estimator.estimate(n, m) for n, m in layers.items()}
        decide = self.is_decision_epoch(epoch)
        if decide and self.budget is not None:
            self._apply_budget(model, layers, estimates, reduction)
        elif decide:
            self._apply_threshold(layers, estimates)
        for name, layer in layers.items():
            self.history.append(HistoryEntry(epoch, name, estimates[name], layer.is_binary, decide))
        return [n for n, m in layers.items() if m.is_binary]

    def _apply_threshold(self, layers: dict[str, BinaryLayer], estimates: dict[str, float]) -> None:
        for name, layer in layers.items():
            est = estimates[name]
            if est != est:  # NaN: no evidence either way, keep the current state
                continue
            if not layer.is_binary and est <= self.threshold:
                layer.set_binary(True)
            elif layer.is_binary and self.reversible and est > self.threshold * (1 + self.hysteresis):
                layer.set_binary(False)

    def _apply_budget(
        self,
        model: nn.Module,
        layers: dict[str, BinaryLayer],
        estimates: dict[str, float],
        reduction: Callable[[nn.Module], float],
    ) -> None:
        if self.reversible:  # recompute the cheapest set from scratch
            for layer in layers.values():
                layer.set_binary(False)
        known = [n for n in layers if estimates[n] == estimates[n]]
        for name in sorted(known, key=lambda n: (estimates[n], n)):
            if reduction(model) >= self.budget:
                return
            layers[name].set_binary(True)

    def last_estimates(self) -> dict[str, float]:
        if not self.history:
            return {}
        last = self.history[-1].epoch
        return {h.layer: h.estimate for h in self.history if h.epoch == last}

    def state_dict(self) -> dict:
        return {"history": [asdict(h) for h in self.history]}

    def load_state_dict(self, state: dict) -> None:
        self.history = [HistoryEntry(**h) for h in state["history"]]


def history_rows(history: Iterable[HistoryEntry]) -> list[dict]:
    """History as plain dicts (JSON / DataFrame ready)."""
    return [asdict(h) for h in history]
