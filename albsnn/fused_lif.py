"""The LIF recursion over a whole ``[T, ...]`` sequence as one autograd function (the fused LIF).

:func:`albsnn.neuron.lif_step` in a Python loop leaves autograd to record every elementwise op of
every step and to save their inputs. :class:`FusedLIF` instead runs the forward recursion itself,
saves only the charged membrane ``h[t]`` (``s[t] = h[t] >= V_th`` is recomputed from it), and its
backward runs the recursion in reverse with the same arithmetic autograd would have done::

    gs[t] = grad_out[t] - gv[t] * h[t]   (hard reset)  |  grad_out[t] - gv[t] * V_th   (soft reset)
    gh[t] = gs[t] * sg(h[t] - V_th) + gv[t] * (1 - s[t])  (hard)  |  ... + gv[t]   (soft)
    grad_x[t] = gh[t],   gv[t-1] = decay * gh[t],   gv[T-1] = 0

(``sg`` the surrogate's derivative; with ``detach_reset`` the reset term of ``gs`` is dropped). The
operations and their order are the loop's, so spikes are bit-identical and gradients equal the loop's
autograd gradients (``tests/test_fused_lif.py`` checks both, and float64).

Two implementations of that function: pure PyTorch (:func:`lif_forward` / :func:`lif_backward`,
any device, ``torch.compile`` traces it) and a Triton kernel per direction
(:mod:`albsnn.lif_triton`, CUDA, used by ``backend="auto"`` when Triton imports).
"""

from __future__ import annotations

import torch

from albsnn.errors import ConfigError
from albsnn.surrogate import Surrogate

__all__ = ["LIF_BACKENDS", "FusedLIF", "lif_forward", "lif_backward", "lif_sequence", "resolve_backend"]

# auto: Triton on CUDA when it imports (and knows the surrogate), else fused; loop: the reference.
LIF_BACKENDS = ("auto", "fused", "triton", "loop")


def empty_sequence(x: torch.Tensor) -> torch.Tensor:
    """An uninitialised ``[T, ...]`` tensor like ``x`` whose steps keep ``x[0]``'s memory format.

    ``x`` may be expanded over T (a static input's current); channels_last steps stay channels_last,
    so the next convolution gets the layout it asked for without a copy.
    """
    step = x[0]
    if step.dim() == 4 and step.is_contiguous(memory_format=torch.channels_last) and not step.is_contiguous():
        flat = torch.empty(
            (x.shape[0] * step.shape[0], *step.shape[1:]),
            dtype=x.dtype,
            device=x.device,
            memory_format=torch.channels_last,
        )
        return flat.unflatten(0, x.shape[:2])
    return torch.empty(x.shape, dtype=x.dtype, device=x.device)


def lif_forward(
    x: torch.Tensor, decay: float, v_threshold: float, hard: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(spikes, h)`` over ``x[T, ...]``; ``h[t]`` is the membrane before firing (what backward needs)."""
    spikes, charged = empty_sequence(x), empty_sequence(x)
    v = None
    for t in range(x.shape[0]):
        # decay * v + x[t] as the loop computes it (two roundings; an FMA would change spikes)
        h = x[t] if v is None else decay * v + x[t]
        fired = h >= v_threshold
        s = fired.to(x.dtype)
        v = h.masked_fill(fired, 0.0) if hard else torch.sub(h, s, alpha=v_threshold)
        spikes[t] = s
        charged[t] = h
    return spikes, charged


def lif_backward(
    grad: torch.Tensor,
    h: torch.Tensor,
    decay: float,
    v_threshold: float,
    hard: bool,
    surrogate: Surrogate,
    detach_reset: bool,
) -> torch.Tensor:
    """``dL/dx`` from ``dL/dspikes`` and the saved ``h``: the time recursion in reverse."""
    grad_x = empty_sequence(h)
    gv = None  # dL/dv[t]; v[T-1] feeds nothing
    for t in reversed(range(h.shape[0])):
        ht = h[t]
        gs = grad[t]
        if gv is not None and not detach_reset:
            gs = gs + (gv * -ht if hard else gv * -v_threshold)
        gh = surrogate.backward(gs, ht - v_threshold)
        if gv is not None:
            gh = gh + (gv.masked_fill(ht >= v_threshold, 0.0) if hard else gv)
        grad_x[t] = gh
        gv = gh * decay
    return grad_x


class FusedLIF(torch.autograd.Function):
    """``FusedLIF.apply(x, decay, v_threshold, hard, surrogate, detach_reset, use_triton) -> spikes``."""

    @staticmethod
    def forward(ctx, x, decay, v_threshold, hard, surrogate, detach_reset, use_triton):
        if use_triton:
            from albsnn.lif_triton import triton_lif_forward

            spikes, h = triton_lif_forward(x, decay, v_threshold, hard)
        else:
            spikes, h = lif_forward(x, decay, v_threshold, hard)
        ctx.save_for_backward(h)
        ctx.args = (decay, v_threshold, hard, surrogate, detach_reset)
        ctx.use_triton = use_triton
        return spikes

    @staticmethod
    def backward(ctx, grad):
        (h,) = ctx.saved_tensors
        if ctx.use_triton:
            from albsnn.lif_triton import triton_lif_backward

            grad_x = triton_lif_backward(grad, h, *ctx.args)
        else:
            grad_x = lif_backward(grad, h, *ctx.args)
        return grad_x, None, None, None, None, None, None


def resolve_backend(backend: str, x: torch.Tensor, surrogate: Surrogate) -> bool:
    """Whether ``backend`` runs the Triton kernel for ``x`` (True) or the PyTorch path (False)."""
    if backend not in LIF_BACKENDS:
        raise ConfigError(f"unknown lif_backend {backend!r}; choose one of {list(LIF_BACKENDS)}")
    if backend in ("fused", "loop"):
        return False
    from albsnn import lif_triton

    if backend == "triton":
        lif_triton.check_usable(x, surrogate)
        return True
    return x.is_cuda and lif_triton.usable(x, surrogate)


def lif_sequence(
    x: torch.Tensor,
    *,
    decay: float,
    v_threshold: float,
    reset: str,
    surrogate: Surrogate,
    detach_reset: bool = False,
    backend: str = "auto",
) -> torch.Tensor:
    """Spikes ``[T, ...]`` of a LIF layer fed ``x[T, ...]`` (fp32), by the fused function."""
    use_triton = resolve_backend(backend, x, surrogate)
    return FusedLIF.apply(x, decay, v_threshold, reset == "hard", surrogate, detach_reset, use_triton)
