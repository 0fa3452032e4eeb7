"""Measuring a model in a changed binary state: BatchNorm re-estimation and the calibration probe.

Binarizing a layer changes the distribution of everything after it, so the BatchNorm running
statistics learned in the old state are stale. :func:`recalibrate_bn` re-estimates them (cumulative
average, as ``momentum=None``) from fixed training batches; the trainer calls it after every switch,
so no model is evaluated or exported with statistics from another state. :class:`CalibrationProbe`
is the :class:`~albsnn.estimator.Probe` the ``measured`` estimator and the end-of-run estimator check
use: re-estimate BN on the training batches, measure accuracy on the calibration samples (drawn from
the validation split, never the test split), put the statistics back.

Cost of one probe call: ``len(bn_batches)`` + ``len(calibration)`` forward samples, no backward.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from albsnn.binarize import binary_layers
from albsnn.estimator import Probe

__all__ = ["recalibrate_bn", "bn_state", "load_bn_state", "evaluate", "correct", "CalibrationProbe"]

Batches = Sequence[tuple[torch.Tensor, torch.Tensor]]
Prepare = Callable[[torch.Tensor], torch.Tensor]  # stored batch -> model input (eval transform)


def _norms(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def bn_state(model: nn.Module) -> list[tuple[torch.Tensor, ...]]:
    return [
        (m.running_mean.clone(), m.running_var.clone(), m.num_batches_tracked.clone()) for m in _norms(model)
    ]


def load_bn_state(model: nn.Module, state: list[tuple[torch.Tensor, ...]]) -> None:
    for m, (mean, var, n) in zip(_norms(model), state, strict=True):
        m.running_mean.copy_(mean)
        m.running_var.copy_(var)
        m.num_batches_tracked.copy_(n)


@torch.no_grad()
def recalibrate_bn(model: nn.Module, batches: Batches, prepare: Prepare) -> None:
    """Replace every BN layer's running statistics by their average over ``batches``."""
    norms = _norms(model)
    if not norms or not batches:
        return
    was_training = model.training
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the batches, not an EMA
    model.train()
    for x, _ in batches:
        model(prepare(x))
    for m, momentum in zip(norms, momenta, strict=True):
        m.momentum = momentum
    model.train(was_training)


@torch.no_grad()
def evaluate(model: nn.Module, batches: Batches, prepare: Prepare) -> tuple[float, float]:
    """``(accuracy, mean cross-entropy)`` of ``model`` in eval mode over ``batches``."""
    was_training = model.training
    model.eval()
    correct, loss, n = 0, 0.0, 0
    for x, y in batches:  # sums stay on the device, read once at the end (no wait per batch)
        logits = model(prepare(x)).float()
        correct = correct + (logits.argmax(1) == y).sum()
        loss = loss + torch.nn.functional.cross_entropy(logits, y, reduction="sum")
        n += len(y)
    model.train(was_training)
    return float(correct) / max(n, 1), float(loss) / max(n, 1)


@torch.no_grad()
def correct(model: nn.Module, batches: Batches, prepare: Prepare) -> torch.Tensor:
    """Per-sample correctness (bool, on the CPU, in batch order) of ``model`` in eval mode."""
    was_training = model.training
    model.eval()
    hits = [model(prepare(x)).float().argmax(1) == y for x, y in batches]
    model.train(was_training)
    return torch.cat(hits).cpu() if hits else torch.zeros(0, dtype=torch.bool)


class CalibrationProbe(Probe):
    """Accuracy on ``calibration`` after BN re-estimation on ``bn_batches``; BN restored afterwards."""

    def __init__(self, model: nn.Module, bn_batches: Batches, calibration: Batches, prepare: Prepare) -> None:
        self.model = model
        self.bn_batches = bn_batches
        self.calibration = calibration
        self.prepare = prepare
        self.calls = 0

    def outcomes(self) -> torch.Tensor:
        """Per-calibration-sample correctness in the model's current binary state."""
        return self._with_bn(correct)

    def _with_bn(self, fn: Callable):
        self.calls += 1
        saved = bn_state(self.model)
        try:
            recalibrate_bn(self.model, self.bn_batches, self.prepare)
            return fn(self.model, self.calibration, self.prepare)
        finally:
            load_bn_state(self.model, saved)

    def state(self) -> tuple:
        return tuple(m.is_binary for m in binary_layers(self.model).values())
