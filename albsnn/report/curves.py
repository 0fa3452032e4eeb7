"""Curves and maps: accuracy vs time steps, learning curves, binarized layers, estimator history.

Each is a typed record computed from plain numbers; :mod:`albsnn.report.figures` draws them and
:mod:`albsnn.report.tables` lists them. Bands are ``mean ± std`` (sample std, ``ddof=1``; 0 for one
run) over the runs of a group, and ``n`` says how many runs each point stands on. A band's ``best``
is the value of the run a *selector* picks (the highest validation accuracy), never the highest
value itself: a test accuracy is reported, not selected on.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "Band",
    "TimeStepInfo",
    "LearningCurve",
    "LearningCurvesInfo",
    "LayerMapInfo",
    "EstimatorHistoryInfo",
    "band",
    "band_by_step",
    "layer_sort_key",
    "compact_layers",
]


@dataclass(frozen=True)
class Band:
    """``mean ± std`` of a group of runs at each x."""

    label: str
    x: tuple[float, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    n: tuple[int, ...]
    best: tuple[float, ...] | None  # at each x, the value of the run the selector ranks first


@dataclass(frozen=True)
class TimeStepInfo:
    """Final test accuracy against the number of time steps T, one band per group.

    ``best`` is the test accuracy of the run with the highest validation accuracy at each T.
    """

    group_by: str | None  # the parameter whose levels are the bands (None: all runs one band)
    bands: tuple[Band, ...]


@dataclass(frozen=True)
class LearningCurve:
    label: str  # the configuration
    test_accuracy: Band  # x = epoch
    train_loss: Band
    val_accuracy: Band | None = None  # None: not logged


@dataclass(frozen=True)
class LearningCurvesInfo:
    what: str  # which configurations are drawn, in words
    curves: tuple[LearningCurve, ...]


@dataclass(frozen=True)
class LayerMapInfo:
    """Which layers each Pareto-front configuration binarized (True) or kept full precision."""

    layers: tuple[str, ...]  # network order
    columns: tuple[str, ...]  # "#1" .. along the front, smallest model first
    run_ids: tuple[str, ...]
    binary: tuple[tuple[bool | None, ...], ...]  # [layer][column]; None: not recorded


@dataclass(frozen=True)
class EstimatorHistoryInfo:
    """The accuracy-loss estimate of each layer, epoch by epoch, in the best run (on validation)."""

    run_id: str
    label: str
    threshold: float | None
    bwo_epoch: int | None
    layers: tuple[str, ...]
    epochs: tuple[tuple[int, ...], ...]  # per layer
    estimates: tuple[tuple[float, ...], ...]  # per layer
    binary: tuple[tuple[bool, ...], ...]  # per layer: binary after that epoch's decision


def band(
    label: str,
    groups: Mapping[float, Sequence[float]],
    select: Mapping[float, Sequence[float]] | None = None,
) -> Band:
    """A band from ``{x: [values of the runs at x]}`` (x sorted).

    ``select`` (``{x: [selector of each of those runs]}``, same order) picks ``best``: the value of
    the run with the highest selector (the first on a tie). Without it ``best`` is None.
    """
    xs = sorted(groups)
    arrays = [np.asarray(groups[x], dtype=float) for x in xs]
    best = None
    if select is not None:
        best = tuple(float(a[int(np.argmax(select[x]))]) for x, a in zip(xs, arrays, strict=True))
    return Band(
        label=label,
        x=tuple(float(x) for x in xs),
        mean=tuple(float(a.mean()) for a in arrays),
        std=tuple(float(a.std(ddof=1)) if len(a) > 1 else 0.0 for a in arrays),
        n=tuple(len(a) for a in arrays),
        best=best,
    )


def band_by_step(label: str, histories: Iterable[Sequence[tuple[int, float]]]) -> Band:
    """A band over runs from each run's ``[(step, value)]`` history (steps need not align)."""
    groups: dict[float, list[float]] = {}
    for history in histories:
        for step, value in history:
            if np.isfinite(value):
                groups.setdefault(float(step), []).append(float(value))
    return band(label, groups)


def layer_sort_key(name: str) -> tuple:
    """Network order for the usual names: conv1 < conv2 < conv10 < fc1 < classifier."""
    kind = 2 if name.startswith("classifier") else (1 if name.startswith(("fc", "linear")) else 0)
    return (kind, *[(int(t) if t.isdigit() else 0, t) for t in re.split(r"(\d+)", name) if t])


def compact_layers(layers: Sequence[str]) -> str:
    """``["conv2", "conv3", "conv4", "fc1"]`` -> ``"conv2-4, fc1"`` (runs of consecutive numbers)."""
    if not layers:
        return "none"
    names = sorted(layers, key=layer_sort_key)
    parsed = [re.fullmatch(r"(.*?)(\d+)", name) for name in names]
    out: list[str] = []
    i = 0
    while i < len(names):
        m = parsed[i]
        j = i
        while (
            m
            and j + 1 < len(names)
            and parsed[j + 1]
            and parsed[j + 1].group(1) == m.group(1)
            and int(parsed[j + 1].group(2)) == int(parsed[j].group(2)) + 1
        ):
            j += 1
        out.append(names[i] if j == i else f"{names[i]}-{parsed[j].group(2)}")
        i = j + 1
    return ", ".join(out)
