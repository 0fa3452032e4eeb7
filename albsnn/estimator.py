"""Accuracy loss estimator (ALE): how much would binarizing each layer hurt, and which to binarize.

An :class:`Estimator` scores one layer (lower = binarizing it is safer). Every estimator answers on a
percent scale, so one ``threshold`` in ``[0, 100]`` (:data:`THRESHOLD_RANGE`) sweeps them all:

* ``measured`` (default): the accuracy drop, in percentage points, that binarizing the layer alone
  causes in the current model, measured on a fixed calibration set drawn from the validation split,
  each state's BatchNorm statistics re-estimated on fixed training batches first (so the number is
  not dominated by stale running statistics). Needs a :class:`Probe` (the trainer binds one).
* ``weight-error``: ``100 * ||W - W_b||^2 / ||W||^2``, the relative weight distortion (data-free).
* ``taylor``: ``100 * |sum(g * (W_b - W))|`` per batch, averaged over the epoch's batches and divided
  by the epoch's mean training loss: the first-order relative loss change (``g`` = dL/dW).

:class:`BinarizationPolicy` turns estimates into decisions. After ``warmup`` epochs, every
``interval`` epochs and never in the last ``freeze_last`` epochs:

* ``adaptive`` with a threshold: greedy. Binarize the candidate with the lowest estimate if it is
  ``<= threshold``, re-estimate the remaining full-precision candidates in the new state, repeat.
* ``adaptive`` with a ``budget``: among the candidate subsets whose storage reduction is closest to the
  budget (within :data:`BUDGET_TOLERANCE`), binarize the one with the lowest summed estimate.
* ``random`` (needs a ``budget``): the control for ``adaptive``. Once, at the first decision epoch, a
  subset drawn uniformly (seeded) from the same storage-matched family.
* ``all`` / ``none``: the ablation baselines (every candidate binary from the start / never).

Ties are broken by layer name, so a run is deterministic. Every epoch's estimates go into
:attr:`BinarizationPolicy.history`. The paper gives no formulas: the three estimators, the greedy
rule, ``budget``, ``random`` and ``reversible`` are our reading (see docs/method.md).
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass

import torch
from torch import nn

from albsnn.binarize import BinaryLayer, binary_layers
from albsnn.errors import ConfigError

__all__ = [
    "Estimator",
    "Probe",
    "Measured",
    "WeightError",
    "Taylor",
    "THRESHOLD_RANGE",
    "BUDGET_TOLERANCE",
    "DEFAULT_ESTIMATOR",
    "ESTIMATORS",
    "get_estimator",
    "POLICY_MODES",
    "HistoryEntry",
    "BinarizationPolicy",
]


THRESHOLD_RANGE = (0.0, 100.0)  # every estimator's output and threshold: percent
BUDGET_TOLERANCE = 0.02  # storage reduction (absolute) within which two layer subsets count as matched


class Probe:
    """Measures the bound model as it is now: ``probe()`` -> accuracy in ``[0, 1]``.

    ``state()`` names the model's current binary state (a cache key): the trainer builds one over a
    fixed calibration set, re-estimating BatchNorm statistics before each measurement.
    """

    def __call__(self) -> float:
        raise NotImplementedError

    def state(self) -> tuple:
        raise NotImplementedError


class Estimator:
    """Scores the damage binarizing a layer would do (percent scale). Hooks do nothing by default."""

    name = "base"
    unit = ""

    def bind(self, probe: Probe) -> None:
        """Called by the trainer with a probe of the model (estimators that measure need it)."""

    def on_epoch_start(self) -> None:
        """Called before an epoch's first batch."""

    def after_backward(self, layers: dict[str, BinaryLayer], loss: torch.Tensor) -> None:
        """Called after each training batch's backward pass, before the optimizer step."""

    def estimate(self, name: str, layer: BinaryLayer) -> float:
        raise NotImplementedError


class Measured(Estimator):
    """Accuracy drop (pp) of binarizing the layer alone, measured by the bound :class:`Probe`.

    Measurements are cached per binary state until the next epoch, so the greedy policy's
    re-estimation only measures states it has not seen: with ``k`` candidates a decision costs at
    most ``1 + k + (k-1) + ...`` probe calls, usually ``k + 1`` plus ``k - 1`` per binarized layer.
    """

    name = "measured"
    unit = "accuracy drop, percentage points"

    def __init__(self) -> None:
        self._probe: Probe | None = None
        self._cache: dict[tuple, float] = {}

    def bind(self, probe: Probe) -> None:
        self._probe, self._cache = probe, {}

    def on_epoch_start(self) -> None:
        self._cache = {}  # weights change during the epoch

    def estimate(self, name: str, layer: BinaryLayer) -> float:
        if self._probe is None:
            return float("nan")  # no data to measure on: unknown, so never binarized
        was = layer.is_binary
        try:
            layer.set_binary(False)
            full = self._measure()
            layer.set_binary(True)
            binary = self._measure()
        finally:
            layer.set_binary(was)
        return 100.0 * (full - binary)

    def _measure(self) -> float:
        key = self._probe.state()
        if key not in self._cache:
            self._cache[key] = self._probe()
        return self._cache[key]


class WeightError(Estimator):
    """``100 * ||W - W_b||^2 / ||W||^2``."""

    name = "weight-error"
    unit = "relative weight distortion, percent"

    @torch.no_grad()
    def estimate(self, name: str, layer: BinaryLayer) -> float:
        w = layer.weight.float()
        err = (w - layer.binarized_weight().float()).square().sum()
        return 100.0 * float(err / w.square().sum().clamp_min(1e-30))


class Taylor(Estimator):
    """``100 * mean_batches |sum(g * (W_b - W))| / mean training loss`` over the last epoch."""

    name = "taylor"
    unit = "first-order relative loss change, percent"

    def __init__(self) -> None:
        self._sums: dict[str, torch.Tensor] = {}
        self._batches = 0
        self._loss: torch.Tensor | float = 0.0

    def on_epoch_start(self) -> None:
        self._sums, self._batches, self._loss = {}, 0, 0.0

    @torch.no_grad()
    def after_backward(self, layers: dict[str, BinaryLayer], loss: torch.Tensor) -> None:
        self._batches += 1
        # Device tensors, read once in estimate(): a float() per batch would sync a GPU every step.
        self._loss = self._loss + loss.detach().float()
        for name, layer in layers.items():
            g = layer.weight.grad
            if g is None:
                continue
            change = (g * (layer.binarized_weight() - layer.weight)).sum().abs()
            self._sums[name] = self._sums.get(name, 0.0) + change

    def estimate(self, name: str, layer: BinaryLayer) -> float:
        if not self._batches or name not in self._sums:
            return float("nan")  # no gradient seen yet: unknown, so never binarized
        mean_loss = max(float(self._loss) / self._batches, 1e-12)
        return 100.0 * float(self._sums[name]) / self._batches / mean_loss


ESTIMATORS: dict[str, type[Estimator]] = {e.name: e for e in (Measured, WeightError, Taylor)}
DEFAULT_ESTIMATOR = Measured.name


def get_estimator(name: str) -> Estimator:
    if name not in ESTIMATORS:
        raise ConfigError(f"unknown estimator {name!r}; choose one of {sorted(ESTIMATORS)}")
    return ESTIMATORS[name]()


POLICY_MODES = ("adaptive", "random", "all", "none")


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
        mode: ``"adaptive"`` (estimator-driven), ``"random"`` (storage-matched control), ``"all"``
            or ``"none"`` (ablation baselines).
        threshold: binarize a layer whose estimate is ``<= threshold`` (adaptive, no budget), on the
            estimators' percent scale ``[0, 100]``.
        warmup: epochs of full-precision training before the first decision.
        interval: epochs between decisions.
        reversible: let a binary layer return to full precision (estimate > threshold*(1+hysteresis)).
        hysteresis: margin above the threshold before a binary layer is reverted.
        budget: target storage reduction in (0, 1); replaces the threshold when given.
        binarize_first, binarize_classifier: make the first conv / the classifier candidates too.
        last_decision_epoch: no decision after this epoch (the trainer passes ``epochs - freeze_last``).
        seed: draws the ``random`` subset.

    Example:
        >>> from albsnn.models import build_model
        >>> policy = BinarizationPolicy(WeightError(), threshold=100.0, warmup=0)
        >>> net = build_model(arch="tiny")
        >>> policy.step(1, net, reduction=lambda m: 0.0)
        ['conv2', 'conv3', 'conv4']
    """

    def __init__(
        self,
        estimator: Estimator,
        *,
        mode: str = "adaptive",
        threshold: float = 0.5,
        warmup: int = 2,
        interval: int = 1,
        reversible: bool = False,
        hysteresis: float = 0.2,
        budget: float | None = None,
        binarize_first: bool = False,
        binarize_classifier: bool = False,
        last_decision_epoch: int | None = None,
        seed: int = 0,
    ) -> None:
        lo, hi = THRESHOLD_RANGE
        if mode not in POLICY_MODES:
            raise ConfigError(f"binarize mode must be one of {POLICY_MODES}, but got {mode=}")
        if not lo <= threshold <= hi:
            raise ConfigError(
                f"threshold must be in [{lo:g}, {hi:g}] (percent: pp of accuracy for 'measured'), "
                f"but got {threshold=}"
            )
        if warmup < 0:
            raise ConfigError(f"warmup must be >= 0 epochs, but got {warmup=}")
        if interval < 1:
            raise ConfigError(f"interval must be >= 1 epoch, but got {interval=}")
        if not hysteresis >= 0:
            raise ConfigError(f"hysteresis must be >= 0, but got {hysteresis=}")
        if budget is not None and not 0 < budget < 1:
            raise ConfigError(f"budget (target storage reduction) must be in (0, 1), but got {budget=}")
        if mode == "random" and budget is None:
            raise ConfigError(
                "binarize=random needs a budget (storage reduction in (0, 1)), e.g. --budget 0.5"
            )
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
        self.last_decision_epoch = last_decision_epoch
        self.seed = seed
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
        if self.mode not in ("adaptive", "random"):
            return False
        if self.last_decision_epoch is not None and epoch > self.last_decision_epoch:
            return False
        first = max(self.warmup, 1)
        if self.mode == "random" or self.budget is not None and not self.reversible:
            return epoch == first  # a storage-matched subset is chosen once

        return epoch >= first and (epoch - self.warmup) % self.interval == 0

    def step(self, epoch: int, model: nn.Module, reduction: Callable[[nn.Module], float]) -> list[str]:
        """Score every candidate after ``epoch`` (1-based), decide, record; returns binary layers."""
        layers = self.candidates(model)
        estimates = self._estimates(layers)
        decide = self.is_decision_epoch(epoch)
        if decide and self.mode == "random":
            self._apply_subset(layers, self._draw(self._matched(model, layers, reduction)))
        elif decide and self.budget is not None:
            family = self._matched(model, layers, reduction)
            self._apply_subset(layers, min(family, key=lambda s: (_cost(s, estimates), s)))
        elif decide:
            estimates = self._greedy(layers, estimates)
        for name, layer in layers.items():
            self.history.append(HistoryEntry(epoch, name, estimates[name], layer.is_binary, decide))
        return [n for n, m in layers.items() if m.is_binary]

    def _estimates(self, layers: dict[str, BinaryLayer]) -> dict[str, float]:
        return {n: self.estimator.estimate(n, m) for n, m in layers.items()}

    def _greedy(self, layers: dict[str, BinaryLayer], estimates: dict[str, float]) -> dict[str, float]:
        """Binarize the safest layer under the threshold, re-estimate the rest, repeat."""
        if self.reversible:
            for name, layer in layers.items():
                if layer.is_binary and estimates[name] > self.threshold * (1 + self.hysteresis):
                    layer.set_binary(False)
        while True:
            open_ = [n for n, m in layers.items() if not m.is_binary and _known(estimates[n])]
            if not open_:
                return estimates
            best = min(open_, key=lambda n: (estimates[n], n))
            if estimates[best] > self.threshold:
                return estimates
            layers[best].set_binary(True)
            rest = {n: layers[n] for n in open_ if n != best}
            estimates = {**estimates, **self._estimates(rest)}

    def _matched(
        self, model: nn.Module, layers: dict[str, BinaryLayer], reduction: Callable[[nn.Module], float]
    ) -> list[tuple[str, ...]]:
        """The candidate subsets whose storage reduction is closest to the budget (storage is additive)."""
        names = list(layers)
        if len(names) > 20:
            raise ConfigError(
                f"budget/random modes enumerate layer subsets; {len(names)} candidates is too many"
            )
        state = {n: m.is_binary for n, m in layers.items()}
        for layer in layers.values():
            layer.set_binary(False)
        base = reduction(model)
        gain = {}
        for name, layer in layers.items():
            layer.set_binary(True)
            gain[name] = reduction(model) - base
            layer.set_binary(False)
        for name, layer in layers.items():
            layer.set_binary(state[name])
        subsets = [s for k in range(len(names) + 1) for s in itertools.combinations(names, k)]
        dist = {s: abs(base + sum(gain[n] for n in s) - self.budget) for s in subsets}
        best = min(dist.values())
        return [s for s in subsets if dist[s] <= best + BUDGET_TOLERANCE]

    def _draw(self, family: list[tuple[str, ...]]) -> tuple[str, ...]:
        return random.Random(self.seed).choice(sorted(family))

    def _apply_subset(self, layers: dict[str, BinaryLayer], subset: tuple[str, ...]) -> None:
        for name, layer in layers.items():
            if name in subset or not self.reversible and layer.is_binary:
                layer.set_binary(True)
            else:
                layer.set_binary(False)

    def last_estimates(self) -> dict[str, float]:
        if not self.history:
            return {}
        last = self.history[-1].epoch
        return {h.layer: h.estimate for h in self.history if h.epoch == last}

    def state_dict(self) -> dict:
        return {"history": [asdict(h) for h in self.history]}

    def load_state_dict(self, state: dict) -> None:
        self.history = [HistoryEntry(**h) for h in state["history"]]


def _known(value: float) -> bool:
    return not math.isnan(value)  # NaN: no evidence either way, keep the current state


def _cost(subset: tuple[str, ...], estimates: dict[str, float]) -> float:
    values = [estimates[n] for n in subset]
    return math.inf if any(math.isnan(v) for v in values) else sum(values)


def history_rows(history: Iterable[HistoryEntry]) -> list[dict]:
    """History as plain dicts (JSON / DataFrame ready)."""
    return [asdict(h) for h in history]
