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
    """``H(x - threshold)`` with the surrogate's backward, in as few passes over ``x`` as possible.

    The threshold is an argument, not a prior subtraction, because on CPU every elementwise op is a
    full pass over the activations: forward is one comparison written straight into a float tensor,
    and backward asks the surrogate for ``grad * dH/dx`` in its cheapest form (:meth:`Surrogate.backward`).
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, threshold: float, surrogate: Surrogate) -> torch.Tensor:
        ctx.save_for_backward(x)
        ctx.threshold, ctx.surrogate = threshold, surrogate
        return torch.ge(x, threshold, out=torch.empty_like(x))

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (x,) = ctx.saved_tensors
        u = x - ctx.threshold if ctx.threshold else x
        return ctx.surrogate.backward(grad, u), None, None


@dataclass(frozen=True)
class Surrogate:
    """Heaviside forward, ``derivative(x)`` backward. Subclasses define ``derivative``; they may also
    override :meth:`backward` with a cheaper equivalent of ``grad * derivative(x)``."""

    def derivative(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def backward(self, grad: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return grad * self.derivative(x)

    def __call__(self, x: torch.Tensor, threshold: float = 0.0) -> torch.Tensor:
        """Spikes ``H(x - threshold)`` (float, like ``x``)."""
        return _Spike.apply(x, threshold, self)


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

    def backward(self, grad: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        # grad / ((2/a) * (1 + (pi/2 * a * x)^2)): two passes (addcmul, div) instead of six.
        scale = 2 / self.alpha
        denominator = torch.addcmul(
            x.new_full((), scale), x, x, value=scale * (math.pi / 2 * self.alpha) ** 2
        )
        return grad / denominator


SURROGATES = {"rectangular": Rectangular, "sigmoid": Sigmoid, "atan": ATan}


def get_surrogate(name: str, param: float | None = None) -> Surrogate:
    """Build a surrogate by name; ``param`` is the width (rectangular) or alpha (others)."""
    if name not in SURROGATES:
        raise ConfigError(f"unknown surrogate {name!r}; choose one of {sorted(SURROGATES)}")
    cls = SURROGATES[name]
    return cls() if param is None else cls(param)
