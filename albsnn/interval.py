"""Valid ranges of numeric options, written as intervals: ``"[0, 100]"``, ``"(0, 0.5]"``, ``"[1, inf)"``.

A :class:`TrainConfig <albsnn.train.TrainConfig>` or :class:`ModelConfig <albsnn.models.ModelConfig>`
field carries its interval in its ``range`` metadata; the configs' validation, the ``albsnn train``
help and the search-space checks read it from there, so each range is written once.

    >>> r = Interval.parse("(0, 0.5]")
    >>> 0.5 in r, 0 in r
    (True, False)
    >>> str(r)
    '(0, 0.5]'
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from albsnn.errors import ConfigError

__all__ = ["Interval", "check_in_range"]

_SYNTAX = re.compile(r"^\s*([\[(])\s*([^,\s]+)\s*,\s*([^,\s]+)\s*([\])])\s*$")


@dataclass(frozen=True)
class Interval:
    """``low``..``high`` (``-inf``/``inf`` for no bound); ``*_open`` excludes that end."""

    low: float
    high: float
    low_open: bool = False
    high_open: bool = False

    @classmethod
    def parse(cls, text: str) -> Interval:
        match = _SYNTAX.match(text)
        if not match:
            raise ValueError(f"interval {text!r} is not written as [low, high], (low, high], ...")
        left, low, high, right = match.groups()
        return cls(float(low), float(high), left == "(", right == ")")

    def __contains__(self, value: object) -> bool:
        if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
            return False
        above = value > self.low if self.low_open else value >= self.low
        below = value < self.high if self.high_open else value <= self.high
        return above and below

    def __str__(self) -> str:
        left, right = "(" if self.low_open else "[", ")" if self.high_open else "]"
        return f"{left}{_num(self.low)}, {_num(self.high)}{right}"


def _num(x: float) -> str:
    return str(int(x)) if math.isfinite(x) and x.is_integer() else f"{x:g}"


def check_in_range(name: str, value: object, interval: str | Interval) -> None:
    """A :class:`ConfigError` naming ``name``, ``value`` and the interval when ``value`` is outside it."""
    interval = Interval.parse(interval) if isinstance(interval, str) else interval
    if value not in interval:
        raise ConfigError(f"{name} must be in {interval}, but got {name}={value!r}")
