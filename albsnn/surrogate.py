"""Surrogate gradients for the spike function.

Forward is always the Heaviside step ``H(x) = 1 if x >= 0 else 0`` on ``x = v - V_th``; backward
replaces its zero-almost-everywhere derivative by a smooth or boxed stand-in:

=============  ===================================================  ============
name           dH/dx used in backward                               parameter
=============  ===================================================  ============
rectangular    ``1/w`` if ``|x| < w/2`` else 0                      ``width`` w
sigmoid        ``a * s(ax) * (1 - s(ax))``, s the logistic          ``alpha`` a
atan           ``a / 2 / (1 + (pi/2 * a * x)^2)``                   ``alpha`` a
=============  ===================================================  ============

Each is a small frozen object (no shared mutable default instance), built by name with
:func:`get_surrogate`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from albsnn.errors import ConfigError

__all__ = ["Surrogate", "Rectangular", "Sigmoid", "ATan", "SURROGATES", "get_surrogate"]


class _Spike(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, surrogate: Surrogate) -> torch.Tensor:
        ctx.save_for_backward(x)
        ctx.surrogate = surrogate
        return (x >= 0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (x,) = ctx.saved_tensors
        return grad * ctx.surrogate.derivative(x), None


@dataclass(frozen=True)
class Surrogate:
    """Heaviside forward, ``derivative(x)`` backward. Subclasses define only ``derivative``."""

    def derivative(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return _Spike.apply(x, self)


@dataclass(frozen=True)
class Rectangular(Surrogate):
    width: float = 1.0

    def __post_init__(self) -> None:
        if not self.width > 0:
            raise ConfigError(f"rectangular surrogate width must be > 0, but got {self.width=}")

    def derivative(self, x: torch.Tensor) -> torch.Tensor:
        return (x.abs() < self.width / 2).to(x.dtype) / self.width


@dataclass(frozen=True)
class Sigmoid(Surrogate):
    alpha: float = 4.0

    def __post_init__(self) -> None:
        if not self.alpha > 0:
            raise ConfigError(f"sigmoid surrogate alpha must be > 0, but got {self.alpha=}")

    def derivative(self, x: torch.Tensor) -> torch.Tensor:
        s = torch.sigmoid(self.alpha * x)
        return self.alpha * s * (1 - s)


@dataclass(frozen=True)
class ATan(Surrogate):
    alpha: float = 2.0

    def __post_init__(self) -> None:
        if not self.alpha > 0:
            raise ConfigError(f"atan surrogate alpha must be > 0, but got {self.alpha=}")

    def derivative(self, x: torch.Tensor) -> torch.Tensor:
        return self.alpha / 2 / (1 + (math.pi / 2 * self.alpha * x).square())


SURROGATES = {"rectangular": Rectangular, "sigmoid": Sigmoid, "atan": ATan}


def get_surrogate(name: str, param: float | None = None) -> Surrogate:
    """Build a surrogate by name; ``param`` is the width (rectangular) or alpha (others)."""
    if name not in SURROGATES:
        raise ConfigError(f"unknown surrogate {name!r}; choose one of {sorted(SURROGATES)}")
    cls = SURROGATES[name]
    return cls() if param is None else cls(param)
