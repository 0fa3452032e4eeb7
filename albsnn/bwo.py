"""Binary weight optimization (BWO): once training stalls, optimise the binary weights directly.

When it fires (once per run, and only if some layer is binary) BWO applies one mode to every layer
that is binary at that moment:

* ``project``: latent weights are set to ``alpha * sign(W)`` (the binary weights themselves) and their
  optimizer state is reset; the trainer multiplies the learning rate of *those layers' parameter
  groups only* by ``bwo_lr_factor`` (a global LR cut would confound the BWO ablation with LR decay);
* ``off``: never.

There is no ``scale`` mode any more: a learned per-channel ``alpha`` sits right before BatchNorm,
which divides any positive per-channel scale out again, so its gradient is noise and training it was
a random walk (docs/method.md).

*When* it fires is a :class:`Trigger`, built like an Optuna pruner: :class:`NeverTrigger` (no-op),
:class:`PlateauTrigger` (the validation loss has not improved by more than ``eps``, relative, for
``patience`` epochs; the trainer passes only the epochs since the binary set last changed, so the
jump a switch causes is never read as a plateau), :class:`FixedEpochTrigger`, and
:class:`DelayedTrigger`, which wraps another so it cannot fire before a given epoch. The trigger
rules are our reading of the paper's BWO (see docs/method.md).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from albsnn.binarize import BinaryLayer, binary_layers
from albsnn.errors import ConfigError

__all__ = [
    "BWO_MODES",
    "Trigger",
    "NeverTrigger",
    "PlateauTrigger",
    "FixedEpochTrigger",
    "DelayedTrigger",
    "apply_bwo",
]

BWO_MODES = ("project", "off")


class Trigger:
    """Decides whether BWO fires after an epoch, given every epoch's training loss so far."""

    def should_fire(self, epoch: int, losses: Sequence[float]) -> bool:
        raise NotImplementedError


class NeverTrigger(Trigger):
    def should_fire(self, epoch: int, losses: Sequence[float]) -> bool:
        return False


class PlateauTrigger(Trigger):
    """Fires when the loss has not gone below ``best * (1 - eps)`` for ``patience`` epochs.

    Example:
        >>> PlateauTrigger(patience=2, eps=0.01).should_fire(4, [1.0, 0.5, 0.499, 0.498])
        True
    """

    def __init__(self, patience: int = 2, eps: float = 0.01) -> None:
        if patience < 1:
            raise ConfigError(f"BWO patience must be >= 1 epoch, but got {patience=}")
        if not 0 <= eps < 1:
            raise ConfigError(f"BWO eps (relative improvement) must be in [0, 1), but got {eps=}")
        self.patience = patience
        self.eps = eps

    def should_fire(self, epoch: int, losses: Sequence[float]) -> bool:
        best, stale = float("inf"), 0
        for loss in losses:
            if loss < best * (1 - self.eps) or best == float("inf"):
                best, stale = loss, 0
            else:
                stale += 1
        return stale >= self.patience


class FixedEpochTrigger(Trigger):
    def __init__(self, epoch: int) -> None:
        if epoch < 1:
            raise ConfigError(f"BWO epoch must be >= 1, but got {epoch=}")
        self.epoch = epoch

    def should_fire(self, epoch: int, losses: Sequence[float]) -> bool:
        return epoch >= self.epoch


class DelayedTrigger(Trigger):
    """``inner``, but never before ``min_epoch``."""

    def __init__(self, inner: Trigger, min_epoch: int) -> None:
        self.inner = inner
        self.min_epoch = min_epoch

    def should_fire(self, epoch: int, losses: Sequence[float]) -> bool:
        return epoch >= self.min_epoch and self.inner.should_fire(epoch, losses)


def _project(layer: BinaryLayer, optimizer: torch.optim.Optimizer) -> None:
    with torch.no_grad():
        layer.weight.copy_(layer.binarized_weight())
    optimizer.state.pop(layer.weight, None)


def apply_bwo(mode: str, model: nn.Module, optimizer: torch.optim.Optimizer) -> list[str]:
    """Apply BWO ``mode`` to every binary layer of ``model``; returns the layers touched."""
    if mode not in BWO_MODES:
        raise ConfigError(f"unknown BWO mode {mode!r}; choose one of {list(BWO_MODES)}")
    if mode == "off":
        return []
    touched = {n: m for n, m in binary_layers(model).items() if m.is_binary}
    for layer in touched.values():
        _project(layer, optimizer)
    return list(touched)
