"""Pareto dominance between objective vectors, written once.

The Pareto pruner (a trial against finished trials at one epoch, with margins) and the confirmation
of fronts (candidates on their seed means) both decide with :func:`dominates`. Pure Python: it needs
no Ray, Optuna or MLflow.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence

__all__ = ["dominates", "nondominated"]


def _at_least(a: float, b: float, mode: str, margin: float) -> bool:
    """``a`` is at least ``margin`` better than ``b`` (NaN is worse than any number)."""
    if math.isnan(a):
        return False
    if math.isnan(b):
        return True
    return a >= b + margin if mode == "max" else a <= b - margin


def dominates(
    d: Sequence[float], t: Sequence[float], modes: Sequence[str], margins: Sequence[float] | None = None
) -> bool:
    """``d`` is ``margins`` (default 0: no worse) better than ``t`` in every objective, strictly in one.

    ``modes[i]`` is ``"max"`` or ``"min"`` for objective ``i``.
    """
    margins = margins if margins is not None else [0.0] * len(modes)
    if not all(_at_least(a, b, m, g) for a, b, m, g in zip(d, t, modes, margins, strict=True)):
        return False
    return any(_at_least(a, b, m, 0.0) and a != b for a, b, m in zip(d, t, modes, strict=True))


def nondominated(points: Mapping[Hashable, Sequence[float]], modes: Sequence[str]) -> list:
    """The keys of ``points`` that no other point dominates (exact duplicates all stay)."""
    return [k for k, p in points.items() if not any(dominates(q, p, modes) for q in points.values())]
