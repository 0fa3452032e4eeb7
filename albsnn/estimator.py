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

* ``adaptive`` with a threshold: greedy on evidence. The *cost* of a binary set is the accuracy the
  whole set costs against the same weights in full precision, measured jointly (:meth:`Estimator.cost`);
  ``measured`` compares per-sample outcomes on the calibration set and bounds the cost from above
  (:func:`upper_bound`, one-sided, Bonferroni over the candidates of a round). Binarize the candidate
  whose set has the lowest bound if that bound is ``<= threshold``, repeat. The threshold is thus a cap
  on the binary set as a whole, not a per-layer allowance that adds up.
* ``adaptive`` with a ``budget``: among the candidate subsets whose storage reduction is closest to the
  budget (within :data:`BUDGET_TOLERANCE`), binarize the one with the lowest summed estimate.
* ``random`` (needs a ``budget``): the control for ``adaptive``. Once, at the first decision epoch, a
  subset from the same storage-matched family: draw ``draw`` of a seeded shuffle, so draws 0..k-1 of
  one seed are k different subsets.
* ``deepest`` / ``largest`` (need a ``budget``): cheap static rules at the same storage, applied at the
  same epoch. The member of the family with the deepest layers / the largest layers (ties: shallowest).
* ``all`` / ``none``: the ablation baselines (every candidate binary from the start / never).

Ties are broken by layer name, so a run is deterministic. Estimates are computed only on epochs that
decide (``all``/``none`` never); they go into :attr:`BinarizationPolicy.history`, and every decision's
joint cost into :attr:`BinarizationPolicy.decisions`. The paper gives no formulas: the three
estimators, the evidence rule, ``budget``, the controls and ``reversible`` are our reading (see
docs/method.md).
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
    "Cost",
    "upper_bound",
    "DEFAULT_CONFIDENCE",
    "Measured",
    "WeightError",
    "Taylor",
    "THRESHOLD_RANGE",
    "BUDGET_TOLERANCE",
    "DEFAULT_ESTIMATOR",
    "ESTIMATORS",
    "get_estimator",
    "POLICY_MODES",
    "STATIC_MODES",
    "HistoryEntry",
    "Decision",
    "BinarizationPolicy",
]


THRESHOLD_RANGE = (0.0, 100.0)  # every estimator's output and threshold: percent
BUDGET_TOLERANCE = 0.02  # storage reduction (absolute) within which two layer subsets count as matched
# A budget farther than this from every subset's storage reduction cannot be matched: refused.
BUDGET_REACH = 0.1
DEFAULT_CONFIDENCE = 0.95  # one-sided level of the bound on a binary set's cost


@dataclass(frozen=True)
class Cost:
    """Estimated accuracy cost (pp) of a binary set against the same weights in full precision.

    ``upper`` bounds ``mean`` from above at the decision's confidence; an estimator without a noise
    model (weight-error, taylor) sets ``upper = mean`` and ``n = 0``. ``worse`` / ``better``: calibration
    samples the full-precision model gets right and the binary one wrong, and the reverse.
    """

    mean: float
    upper: float
    n: int = 0
    worse: int = 0
    better: int = 0


def upper_bound(worse: int, better: int, n: int, confidence: float = DEFAULT_CONFIDENCE) -> float:
    """One-sided upper confidence bound (pp) on a paired accuracy drop ``(worse - better) / n``.

    Exact and conditional on the ``m = worse + better`` discordant samples (McNemar's view): given
    ``m``, ``worse ~ Binomial(m, p)`` and the drop is ``m (2p - 1) / n``; ``p`` is bounded by
    Clopper-Pearson. No discordant sample: 0.

    >>> round(upper_bound(0, 0, 144), 6), round(upper_bound(1, 0, 144), 3)
    (0.0, 0.694)
    """
    m = worse + better
    if m == 0 or n == 0:
        return 0.0
    from scipy.stats import beta  # scikit-learn's own dependency: always installed

    p_hi = 1.0 if worse == m else float(beta.ppf(confidence, worse + 1, m - worse))
    return 100.0 * m * (2.0 * p_hi - 1.0) / n


class Probe:
    """Measures the bound model as it is now: ``outcomes()`` -> per-sample correctness (bool tensor).

    ``state()`` names the model's current binary state (a cache key): the trainer builds one over a
    fixed calibration set, re-estimating BatchNorm statistics before each measurement.
    """

    def outcomes(self) -> torch.Tensor:
        raise NotImplementedError

    def __call__(self) -> float:
        """Accuracy in ``[0, 1]``."""
        return float(self.outcomes().float().mean())

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

    def cost(self, subset: Iterable[str], layers: dict[str, BinaryLayer], confidence: float) -> Cost:
        """Cost of exactly ``subset`` binary (the other ``layers`` full precision). Default: the sum of
        the layers' estimates, read as additive and noise-free (``upper = mean``)."""
        total = math.fsum(self.estimate(n, layers[n]) for n in subset)
        return Cost(total, total)


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
        self._cache: dict[tuple, torch.Tensor] = {}

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
        return 100.0 * float(full.float().mean() - binary.float().mean())

    def cost(self, subset: Iterable[str], layers: dict[str, BinaryLayer], confidence: float) -> Cost:
        """Paired per-sample outcomes of all-full-precision vs ``subset`` binary, measured jointly."""
        if self._probe is None:
            return Cost(math.nan, math.nan)
        subset = set(subset)
        was = {n: m.is_binary for n, m in layers.items()}
        try:
            for layer in layers.values():
                layer.set_binary(False)
            full = self._measure()
            for name, layer in layers.items():
                layer.set_binary(name in subset)
            binary = self._measure()
        finally:
            for name, layer in layers.items():
                layer.set_binary(was[name])
        n, worse, better = len(full), int((full & ~binary).sum()), int((binary & ~full).sum())
        mean = 100.0 * (worse - better) / max(n, 1)
        return Cost(mean, upper_bound(worse, better, n, confidence), n, worse, better)

    def _measure(self) -> torch.Tensor:
        key = self._probe.state()
        if key not in self._cache:
            self._cache[key] = self._probe.outcomes()
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


STATIC_MODES = ("deepest", "largest")  # cheap rules at a matched budget: the controls with no data
POLICY_MODES = ("adaptive", "random", *STATIC_MODES, "all", "none")
_MATCHED_MODES = ("random", *STATIC_MODES)  # choose once from the storage-matched family


@dataclass
class HistoryEntry:
    epoch: int
    layer: str
    estimate: float  # NaN on epochs that do not decide (nothing is estimated there)
    binary: bool  # the layer's state after this epoch's decision
    decision: bool  # True on epochs where the policy was allowed to change layers


@dataclass
class Decision:
    """The binary set after a decision epoch and what the estimator said it costs, jointly (pp)."""

    epoch: int
    layers: list[str]
    cost: float  # point estimate against the same weights in full precision
    upper: float  # its upper confidence bound (= cost for estimators without a noise model)
    summed: float  # the sum of the layers' single estimates (what budget mode ranks by)


class BinarizationPolicy:
    """Decides, epoch by epoch, which candidate layers are binary.

    Args:
        estimator: scores layers (see :func:`get_estimator`).
        mode: ``"adaptive"`` (estimator-driven), ``"random"`` / ``"deepest"`` / ``"largest"``
            (storage-matched controls), ``"all"`` or ``"none"`` (ablation baselines).
        threshold: the most the whole binary set may cost (adaptive, no budget), on the estimators'
            percent scale ``[0, 100]``: for ``measured``, its upper confidence bound in pp.
        confidence: one-sided level of that bound (Bonferroni-split over a round's candidates).
        warmup: epochs of full-precision training before the first decision.
        interval: epochs between decisions.
        reversible: let a binary layer return to full precision (estimate > threshold*(1+hysteresis)).
        hysteresis: margin above the threshold before a binary layer is reverted.
        budget: target storage reduction in (0, 1); replaces the threshold when given.
        binarize_first, binarize_classifier: make the first conv / the classifier candidates too.
        last_decision_epoch: no decision after this epoch (the trainer passes ``epochs - freeze_last``).
        seed, draw: the ``random`` subset is draw ``draw`` of the family shuffled with ``seed``.

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
        confidence: float = DEFAULT_CONFIDENCE,
        warmup: int = 2,
        interval: int = 1,
        reversible: bool = False,
        hysteresis: float = 0.2,
        budget: float | None = None,
        binarize_first: bool = False,
        binarize_classifier: bool = False,
        last_decision_epoch: int | None = None,
        seed: int = 0,
        draw: int = 0,
    ) -> None:
        lo, hi = THRESHOLD_RANGE
        if mode not in POLICY_MODES:
            raise ConfigError(f"binarize mode must be one of {POLICY_MODES}, but got {mode=}")
        if not lo <= threshold <= hi:
            raise ConfigError(
                f"threshold must be in [{lo:g}, {hi:g}] (percent: pp of accuracy for 'measured'), "
                f"but got {threshold=}"
            )
        if not 0 < confidence < 1:
            raise ConfigError(f"confidence must be in (0, 1), but got {confidence=}")
        if warmup < 0:
            raise ConfigError(f"warmup must be >= 0 epochs, but got {warmup=}")
        if interval < 1:
            raise ConfigError(f"interval must be >= 1 epoch, but got {interval=}")
        if not hysteresis >= 0:
            raise ConfigError(f"hysteresis must be >= 0, but got {hysteresis=}")
        if budget is not None and not 0 < budget < 1:
            raise ConfigError(f"budget (target storage reduction) must be in (0, 1), but got {budget=}")
        if mode in _MATCHED_MODES and budget is None:
            raise ConfigError(
                f"binarize={mode} needs a budget (storage reduction in (0, 1)), e.g. --budget 0.5"
            )
        if draw < 0:
            raise ConfigError(f"draw must be >= 0, but got {draw=}")
        if draw and mode != "random":
            raise ConfigError(f"draw selects a random subset; binarize={mode} has none, but got {draw=}")
        self.estimator = estimator
        self.mode = mode
        self.threshold = threshold
        self.confidence = confidence
        self.warmup = warmup
        self.interval = interval
        self.reversible = reversible
        self.hysteresis = hysteresis
        self.budget = budget
        self.binarize_first = binarize_first
        self.binarize_classifier = binarize_classifier
        self.last_decision_epoch = last_decision_epoch
        self.seed = seed
        self.draw = draw
        self.history: list[HistoryEntry] = []
        self.decisions: list[Decision] = []

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

    def check(self, model: nn.Module, reduction: Callable[[nn.Module], float]) -> None:
        """Refuse, before any training, a budget no subset meets or a draw the family does not have."""
        if self.budget is None or self.mode not in ("adaptive", *_MATCHED_MODES):
            return
        layers = self.candidates(model)
        if self.mode in _MATCHED_MODES:
            self._choose(model, layers, reduction)
        else:
            self._matched(model, layers, reduction)

    def is_decision_epoch(self, epoch: int) -> bool:
        if self.mode not in ("adaptive", *_MATCHED_MODES):
            return False
        if self.last_decision_epoch is not None and epoch > self.last_decision_epoch:
            return False
        first = max(self.warmup, 1)
        if self.mode in _MATCHED_MODES or self.budget is not None and not self.reversible:
            return epoch == first  # a storage-matched subset is chosen once

        return epoch >= first and (epoch - self.warmup) % self.interval == 0

    def step(self, epoch: int, model: nn.Module, reduction: Callable[[nn.Module], float]) -> list[str]:
        """Decide after ``epoch`` (1-based) if it is a decision epoch, record; returns binary layers."""
        layers = self.candidates(model)
        decide = self.is_decision_epoch(epoch)
        # Estimates only where they decide (or describe a control's choice): `all`/`none` never pay.
        estimates = self._estimates(layers) if decide else dict.fromkeys(layers, math.nan)
        if decide and self.mode in _MATCHED_MODES:
            self._apply_subset(layers, self._choose(model, layers, reduction))
        elif decide and self.budget is not None:
            family, _ = self._matched(model, layers, reduction)
            self._apply_subset(layers, min(family, key=lambda s: (_cost(s, estimates), s)))
        elif decide:
            estimates = self._greedy(layers, estimates)
        if decide:
            self._record_decision(epoch, layers, estimates)
        for name, layer in layers.items():
            self.history.append(HistoryEntry(epoch, name, estimates[name], layer.is_binary, decide))
        return [n for n, m in layers.items() if m.is_binary]

    def _estimates(self, layers: dict[str, BinaryLayer]) -> dict[str, float]:
        return {n: self.estimator.estimate(n, m) for n, m in layers.items()}

    def _record_decision(self, epoch: int, layers: dict[str, BinaryLayer], estimates: dict) -> None:
        binary = [n for n, m in layers.items() if m.is_binary]
        cost = self.estimator.cost(binary, layers, self.confidence)
        summed = _cost(tuple(binary), estimates)
        self.decisions.append(Decision(epoch, binary, cost.mean, cost.upper, summed))

    def _greedy(self, layers: dict[str, BinaryLayer], estimates: dict[str, float]) -> dict[str, float]:
        """Add the layer whose binary set has the lowest cost bound while that bound is <= threshold."""
        if self.reversible:
            for name, layer in layers.items():
                if layer.is_binary and estimates[name] > self.threshold * (1 + self.hysteresis):
                    layer.set_binary(False)
        binary = [n for n, m in layers.items() if m.is_binary]
        while True:
            open_ = [n for n in layers if n not in binary and _known(estimates[n])]
            if not open_:
                return estimates
            # Bonferroni: the round takes the best of len(open_) bounds, so each is held to alpha/k.
            level = 1 - (1 - self.confidence) / len(open_)
            costs = {n: self.estimator.cost([*binary, n], layers, level) for n in open_}
            best = min(open_, key=lambda n: (costs[n].upper, costs[n].mean, n))
            if not costs[best].upper <= self.threshold:  # NaN (unknown) is never taken
                return estimates
            binary.append(best)
            layers[best].set_binary(True)

    def _gains(
        self, model: nn.Module, layers: dict[str, BinaryLayer], reduction: Callable[[nn.Module], float]
    ) -> tuple[float, dict[str, float]]:
        """Storage reduction with every candidate full precision, and each candidate's own gain."""
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
        return base, gain

    def _matched(
        self, model: nn.Module, layers: dict[str, BinaryLayer], reduction: Callable[[nn.Module], float]
    ) -> tuple[list[tuple[str, ...]], dict[str, float]]:
        """The candidate subsets whose storage reduction is closest to the budget (storage is additive),
        and each candidate's own storage gain."""
        names = list(layers)
        if len(names) > 20:
            raise ConfigError(
                f"budget/random modes enumerate layer subsets; {len(names)} candidates is too many"
            )
        base, gain = self._gains(model, layers, reduction)
        subsets = [s for k in range(len(names) + 1) for s in itertools.combinations(names, k)]
        reach = {s: base + sum(gain[n] for n in s) for s in subsets}
        dist = {s: abs(reach[s] - self.budget) for s in subsets}
        best = min(dist.values())
        if best > BUDGET_REACH:
            reachable = ", ".join(f"{r:.3f}" for r in sorted(set(round(v, 3) for v in reach.values())))
            raise ConfigError(
                f"budget {self.budget:g}: no subset of the candidates {names} comes within "
                f"{BUDGET_REACH:g} of it; their storage reductions are {reachable}"
            )
        return [s for s in subsets if dist[s] <= best + BUDGET_TOLERANCE], gain

    def _choose(
        self, model: nn.Module, layers: dict[str, BinaryLayer], reduction: Callable[[nn.Module], float]
    ) -> tuple[str, ...]:
        """A control's subset of the storage-matched family."""
        family, gain = self._matched(model, layers, reduction)
        family = sorted(family)
        depth = {n: i for i, n in enumerate(layers)}
        if self.mode == "deepest":
            return max(family, key=lambda s: sorted((depth[n] for n in s), reverse=True))
        if self.mode == "largest":
            size = {n: round(g, 9) for n, g in gain.items()}  # equal layers must tie exactly
            return max(
                family,
                key=lambda s: (sorted((size[n] for n in s), reverse=True), sorted(-depth[n] for n in s)),
            )
        random.Random(self.seed).shuffle(family)  # one order per seed: draws 0..k-1 all differ
        if self.draw >= len(family):
            raise ConfigError(
                f"draw {self.draw}: the storage-matched family at budget {self.budget:g} holds only "
                f"{len(family)} subset(s) ({_names(sorted(family))}); use draws 0..{len(family) - 1}"
            )
        return family[self.draw]

    def _apply_subset(self, layers: dict[str, BinaryLayer], subset: tuple[str, ...]) -> None:
        for name, layer in layers.items():
            if name in subset or not self.reversible and layer.is_binary:
                layer.set_binary(True)
            else:
                layer.set_binary(False)

    def epoch_estimates(self, epoch: int) -> dict[str, float]:
        """The estimates computed after ``epoch`` (empty where it did not decide)."""
        return {h.layer: h.estimate for h in self.history if h.epoch == epoch and _known(h.estimate)}

    def last_estimates(self) -> dict[str, float]:
        """The most recent estimates computed (the last decision epoch's)."""
        for entry in reversed(self.history):
            if _known(entry.estimate):
                return self.epoch_estimates(entry.epoch)
        return {}

    def state_dict(self) -> dict:
        return {
            "history": [asdict(h) for h in self.history],
            "decisions": [asdict(d) for d in self.decisions],
        }

    def load_state_dict(self, state: dict) -> None:
        self.history = [HistoryEntry(**h) for h in state["history"]]
        self.decisions = [Decision(**d) for d in state.get("decisions", [])]


def _names(family: list[tuple[str, ...]]) -> str:
    return "; ".join("+".join(s) or "none" for s in family)


def _known(value: float) -> bool:
    return not math.isnan(value)  # NaN: no evidence either way, keep the current state


def _cost(subset: tuple[str, ...], estimates: dict[str, float]) -> float:
    values = [estimates[n] for n in subset]
    return math.inf if any(math.isnan(v) for v in values) else sum(values)


def history_rows(history: Iterable[HistoryEntry]) -> list[dict]:
    """History as plain dicts (JSON / DataFrame ready)."""
    return [asdict(h) for h in history]
