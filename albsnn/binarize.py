"""Binary weights: ``W_b = alpha * sign(W)`` with a clipped straight-through gradient.

Forward: ``sign(0) = +1`` (a weight is never 0, so every weight is exactly one bit) and
``alpha = mean|W|`` per output channel (or per layer). Backward, the straight-through estimator
treats ``dW_b/dW`` as 1 where ``|W| <= clip_value`` and 0 elsewhere (weights far outside the range
stop moving, as in BinaryConnect). ``alpha`` computed from ``W`` is a constant to the backward pass;
once BWO's ``scale`` mode makes it a trained parameter it gets ``dL/dalpha = sum(g * sign(W))``.

A :class:`BinaryConv2d` / :class:`BinaryLinear` is the ordinary layer whose weight goes through
:func:`binary_weight` in one place (``effective_weight``). ``set_binary`` switches it at run time;
the latent full-precision weight is never overwritten, so a layer can go back.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from albsnn.errors import ConfigError

__all__ = [
    "ALPHA_MODES",
    "sign",
    "binary_weight",
    "compute_alpha",
    "Binarizer",
    "BinaryLayer",
    "BinaryConv2d",
    "BinaryLinear",
    "binary_layers",
]

ALPHA_MODES = ("channel", "layer")


def sign(w: torch.Tensor) -> torch.Tensor:
    """``+1`` where ``w >= 0``, ``-1`` elsewhere (never 0)."""
    return torch.where(w >= 0, torch.ones_like(w), -torch.ones_like(w))


def compute_alpha(w: torch.Tensor, mode: str = "channel") -> torch.Tensor:
    """``mean|W|`` per output channel (shape ``[C_out, 1, ...]``) or per layer (all ones shape)."""
    if mode == "channel":
        return w.detach().abs().mean(dim=tuple(range(1, w.dim())), keepdim=True)
    return w.detach().abs().mean().reshape((1,) * w.dim())


class _BinaryWeight(torch.autograd.Function):
    @staticmethod
    def forward(ctx, w: torch.Tensor, alpha: torch.Tensor, clip_value: float) -> torch.Tensor:
        s = sign(w)
        ctx.save_for_backward(w, s)
        ctx.clip_value = clip_value
        ctx.alpha_shape = alpha.shape
        return alpha * s

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        w, s = ctx.saved_tensors
        grad_w = grad * (w.abs() <= ctx.clip_value).to(grad.dtype)
        grad_alpha = None
        if ctx.needs_input_grad[1]:
            gs = grad * s
            dims = [d for d, n in enumerate(ctx.alpha_shape) if n == 1]
            grad_alpha = gs.sum(dim=dims, keepdim=True) if dims else gs
        return grad_w, grad_alpha, None


def binary_weight(w: torch.Tensor, alpha: torch.Tensor, clip_value: float = 1.0) -> torch.Tensor:
    """``alpha * sign(w)`` with the clipped straight-through gradient described above."""
    return _BinaryWeight.apply(w, alpha, clip_value)


@dataclass(frozen=True)
class Binarizer:
    """The weight quantizer: holds ``alpha`` mode and ``clip_value``; ``precision`` is 1 bit."""

    alpha: str = "channel"
    clip_value: float = 1.0
    precision: int = 1

    def __post_init__(self) -> None:
        if self.alpha not in ALPHA_MODES:
            raise ConfigError(f"binary alpha must be one of {ALPHA_MODES}, but got alpha={self.alpha!r}")
        if not self.clip_value > 0:
            raise ConfigError(f"binary clip_value must be > 0, but got {self.clip_value=}")

    def alpha_shape(self, weight: torch.Tensor) -> tuple[int, ...]:
        ones = (1,) * (weight.dim() - 1)
        return (weight.shape[0], *ones) if self.alpha == "channel" else (1, *ones)

    def __call__(self, w: torch.Tensor, alpha: torch.Tensor | None = None) -> torch.Tensor:
        if alpha is None:
            alpha = compute_alpha(w, self.alpha)
        return binary_weight(w, alpha, self.clip_value)


class BinaryLayer(nn.Module):
    """Mixin for a layer whose ``weight`` can be used in full precision or binarized.

    State that a checkpoint must carry lives in buffers: ``binary`` (is the layer binarized now)
    and ``alpha_learned`` (BWO ``scale``: ``alpha`` is a trained parameter, not ``mean|W|``).
    """

    weight: nn.Parameter

    def _init_binary(self, binarizer: Binarizer | None) -> None:
        self.binarizer = binarizer if binarizer is not None else Binarizer()
        shape = self.binarizer.alpha_shape(self.weight)
        self.alpha = nn.Parameter(torch.ones(shape), requires_grad=False)
        self.register_buffer("binary", torch.tensor(False))
        self.register_buffer("alpha_learned", torch.tensor(False))
        # Python mirrors of the buffers: reading a CUDA buffer in every forward would sync the device.
        self._is_binary = False
        self._alpha_learned = False
        self.register_load_state_dict_post_hook(_sync_binary_flag)

    @property
    def is_binary(self) -> bool:
        return self._is_binary

    @property
    def precision(self) -> int:
        return self.binarizer.precision if self.is_binary else 32

    def set_binary(self, flag: bool) -> None:
        self.binary.fill_(bool(flag))
        self._is_binary = bool(flag)

    def current_alpha(self) -> torch.Tensor:
        if self._alpha_learned:
            return self.alpha
        return compute_alpha(self.weight, self.binarizer.alpha)

    def learn_alpha(self) -> None:
        """Turn ``alpha`` into a trained parameter, starting from its current ``mean|W|`` value."""
        with torch.no_grad():
            self.alpha.copy_(compute_alpha(self.weight, self.binarizer.alpha))
        self.mark_alpha_learned()

    def mark_alpha_learned(self) -> None:
        """``alpha`` as it is now becomes the trained scale (buffer, its Python mirror, gradient)."""
        self.alpha_learned.fill_(True)
        self._alpha_learned = True
        self.alpha.requires_grad_(True)

    def binarized_weight(self) -> torch.Tensor:
        """``W_b`` whatever the current mode (the estimators compare it with ``W``)."""
        return self.binarizer(self.weight, self.current_alpha())

    def effective_weight(self) -> torch.Tensor:
        return self.binarized_weight() if self.is_binary else self.weight


def _sync_binary_flag(module: BinaryLayer, incompatible_keys) -> None:
    module._is_binary = bool(module.binary)
    module._alpha_learned = bool(module.alpha_learned)


class BinaryConv2d(nn.Conv2d, BinaryLayer):
    """``nn.Conv2d`` whose weight can be binarized; same constructor plus ``binarizer``."""

    def __init__(self, *args, binarizer: Binarizer | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._init_binary(binarizer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(x, self.effective_weight(), self.bias)


class BinaryLinear(nn.Linear, BinaryLayer):
    """``nn.Linear`` whose weight can be binarized; same constructor plus ``binarizer``."""

    def __init__(self, *args, binarizer: Binarizer | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._init_binary(binarizer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.effective_weight(), self.bias)


def binary_layers(model: nn.Module) -> dict[str, BinaryLayer]:
    """Every switchable layer of ``model`` by module name, in definition order."""
    return {name: m for name, m in model.named_modules() if isinstance(m, BinaryLayer)}
