"""Triton kernels of the fused LIF: one launch forward, one backward, for a whole ``[T, ...]`` sequence.

Each program owns ``BLOCK`` neurons and walks the time steps in registers: forward reads ``x[t]`` and
writes ``s[t]`` and ``h[t]``; backward reads ``h[t]`` and ``dL/ds[t]`` from ``t = T-1`` down to 0 and
writes ``dL/dx[t]``. The arithmetic is :func:`albsnn.fused_lif.lif_forward` / ``lif_backward``'s (see
there for the recursion). On a GPU the compiler may contract ``decay * v + x`` into one FMA, so a
spike can differ from the PyTorch path where ``h`` lands within one rounding of ``V_th``.

Known surrogates only (the three in :mod:`albsnn.surrogate`, by class); anything else runs the
PyTorch path. Tested on CPU under Triton's interpreter (``TRITON_INTERPRET=1``) when Triton is
installed; it has not yet run on a GPU (no GPU was available to the project).
"""

from __future__ import annotations

import math

import torch

from albsnn.errors import ConfigError
from albsnn.surrogate import ATan, Rectangular, Sigmoid, Surrogate

try:  # optional: the PyTorch path needs no Triton
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - depends on the environment
    triton = None

__all__ = ["available", "usable", "check_usable", "triton_lif_forward", "triton_lif_backward"]

_SURROGATE_IDS = {Rectangular: 0, Sigmoid: 1, ATan: 2}
_BLOCK = 1024
_MAX_ELEMENTS = 2**31 - 1  # the kernels index with int32


def available() -> bool:
    return triton is not None


def _surrogate_args(surrogate: Surrogate) -> tuple[int, float, float] | None:
    """``(kind, P1, P2)``: the constants folded on the host as :mod:`albsnn.surrogate` folds them."""
    kind = _SURROGATE_IDS.get(type(surrogate))
    if kind is None:
        return None
    if kind == 0:
        return kind, surrogate.width / 2, surrogate.width
    if kind == 1:
        return kind, surrogate.alpha, surrogate.alpha
    return kind, surrogate.alpha / 2, math.pi / 2 * surrogate.alpha


def _problem(x: torch.Tensor, surrogate: Surrogate) -> str | None:
    """Why the kernel cannot run on ``x`` (None: it can)."""
    if triton is None:
        return "Triton is not installed (pip install triton; it needs a CUDA GPU)"
    if _surrogate_args(surrogate) is None:
        return (
            f"surrogate {type(surrogate).__name__} has no Triton kernel (known: rectangular, sigmoid, atan)"
        )
    if x.dtype != torch.float32:
        return f"the kernel takes float32 currents, got {x.dtype}"
    if x.numel() > _MAX_ELEMENTS:
        return f"{x.numel()} elements exceed the kernel's int32 indexing"
    return None


def usable(x: torch.Tensor, surrogate: Surrogate) -> bool:
    return _problem(x, surrogate) is None


def check_usable(x: torch.Tensor, surrogate: Surrogate) -> None:
    problem = _problem(x, surrogate)
    if problem is not None:
        raise ConfigError(f"lif_backend 'triton' cannot run: {problem}; use lif_backend 'auto' or 'fused'")


def _dense_time_major(x: torch.Tensor) -> bool:
    """True when element ``(t, j)`` of every step lies at ``t * N + j`` in one dense block (any layout)."""
    n = x[0].numel()
    if x.shape[0] > 1 and x.stride(0) != n:
        return False
    dims = sorted((x.stride(d), x.shape[d]) for d in range(1, x.dim()) if x.shape[d] != 1)
    expected = 1
    for stride, size in dims:
        if stride != expected:
            return False
        expected *= size
    return True


def _like(x: torch.Tensor) -> torch.Tensor:
    """``x`` itself if its memory is time-major dense (channels_last stays channels_last), else a copy."""
    return x if _dense_time_major(x) else x.contiguous()


if triton is not None:

    @triton.jit
    def _surrogate_grad(z, P1, P2, SURROGATE: tl.constexpr):
        if SURROGATE == 0:  # rectangular: P1 = width / 2, P2 = width
            d = tl.where(tl.abs(z) < P1, 1.0, 0.0) / P2
        elif SURROGATE == 1:  # sigmoid: P1 = P2 = alpha
            sig = tl.sigmoid(P1 * z)
            d = P2 * sig * (1.0 - sig)
        else:  # atan: P1 = alpha / 2, P2 = pi / 2 * alpha
            u = P2 * z
            d = P1 / (1.0 + u * u)
        return d

    @triton.jit
    def _forward_kernel(x_ptr, s_ptr, h_ptr, N, T, decay, v_th, HARD: tl.constexpr, BLOCK: tl.constexpr):
        offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        mask = offs < N
        v = tl.zeros([BLOCK], dtype=tl.float32)
        for t in range(T):
            x = tl.load(x_ptr + t * N + offs, mask=mask, other=0.0)
            h = decay * v + x
            s = (h >= v_th).to(tl.float32)
            tl.store(h_ptr + t * N + offs, h, mask=mask)
            tl.store(s_ptr + t * N + offs, s, mask=mask)
            if HARD:
                v = h * (1.0 - s)
            else:
                v = h - v_th * s

    @triton.jit
    def _backward_kernel(
        g_ptr,
        h_ptr,
        gx_ptr,
        N,
        T,
        decay,
        v_th,
        P1,
        P2,
        HARD: tl.constexpr,
        DETACH: tl.constexpr,
        SURROGATE: tl.constexpr,
        BLOCK: tl.constexpr,
    ):
        offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        mask = offs < N
        gv = tl.zeros([BLOCK], dtype=tl.float32)
        for i in range(T):
            t = T - 1 - i
            h = tl.load(h_ptr + t * N + offs, mask=mask, other=0.0)
            gs = tl.load(g_ptr + t * N + offs, mask=mask, other=0.0)
            s = (h >= v_th).to(tl.float32)
            if not DETACH:
                if HARD:
                    gs = gs - gv * h
                else:
                    gs = gs - gv * v_th
            gh = gs * _surrogate_grad(h - v_th, P1, P2, SURROGATE)
            if HARD:
                gh = gh + gv * (1.0 - s)
            else:
                gh = gh + gv
            tl.store(gx_ptr + t * N + offs, gh, mask=mask)
            gv = gh * decay


def triton_lif_forward(
    x: torch.Tensor, decay: float, v_threshold: float, hard: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(spikes, h)`` like :func:`albsnn.fused_lif.lif_forward`, one kernel launch."""
    x = _like(x)
    spikes, h = torch.empty_like(x), torch.empty_like(x)
    n = x[0].numel()
    grid = (math.ceil(n / _BLOCK),)
    _forward_kernel[grid](x, spikes, h, n, x.shape[0], float(decay), float(v_threshold), hard, _BLOCK)
    return spikes, h


def triton_lif_backward(
    grad: torch.Tensor,
    h: torch.Tensor,
    decay: float,
    v_threshold: float,
    hard: bool,
    surrogate: Surrogate,
    detach_reset: bool,
) -> torch.Tensor:
    """``dL/dx`` like :func:`albsnn.fused_lif.lif_backward`, one kernel launch."""
    if grad.stride() != h.stride():  # same memory order as h, element for element
        grad = torch.empty_like(h).copy_(grad)
    grad_x = torch.empty_like(h)
    kind, p1, p2 = _surrogate_args(surrogate)
    n = h[0].numel()
    grid = (math.ceil(n / _BLOCK),)
    _backward_kernel[grid](
        grad,
        h,
        grad_x,
        n,
        h.shape[0],
        float(decay),
        float(v_threshold),
        p1,
        p2,
        hard,
        detach_reset,
        kind,
        _BLOCK,
    )
    return grad_x
