"""Leaky integrate-and-fire neurons over time-major sequences.

Shapes: every spiking tensor is ``[T, B, ...]`` (time first). Convolutions and batch norm see the
same data folded to ``[T*B, ...]`` (see :class:`albsnn.models.Folded`), so they run as one big
batch and only the neuron loops over time.

One step of the neuron, for input current ``x[t]`` and membrane ``v[t-1]``::

    h[t] = decay * v[t-1] + x[t]                 # charge
    s[t] = H(h[t] - V_th)                        # fire (surrogate gradient in backward)
    v[t] = h[t] * (1 - s[t])                     # hard reset, or
    v[t] = h[t] - V_th * s[t]                    # soft reset

with ``v[-1] = 0``. At T = 1 there is nothing to carry, so the module skips the loop and the reset.
For T > 1 the module runs the whole sequence as one autograd function (:mod:`albsnn.fused_lif`,
``backend`` ``"auto"``/``"fused"``/``"triton"``) or, with ``backend="loop"``, :func:`lif_step` in a Python
loop under autograd (the reference the fused function is tested against).
"""

from __future__ import annotations

import torch
from torch import nn

from albsnn.errors import ConfigError
from albsnn.fused_lif import LIF_BACKENDS, lif_sequence
from albsnn.surrogate import ATan, Surrogate

__all__ = ["RESETS", "LIF_BACKENDS", "lif_step", "LIF", "firing_rates", "reset_firing_rates"]

RESETS = ("hard", "soft")


def lif_step(
    x: torch.Tensor,
    v: torch.Tensor | float,
    *,
    decay: float,
    v_threshold: float,
    reset: str,
    surrogate: Surrogate,
    detach_reset: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One LIF step: returns ``(spike, v_next)``. Pure: no module state is touched."""
    h = decay * v + x
    spike = surrogate(h, v_threshold)
    s = spike.detach() if detach_reset else spike
    v_next = h * (1 - s) if reset == "hard" else h - v_threshold * s
    return spike, v_next


class LIF(nn.Module):
    """Multi-step LIF layer: ``[T, B, ...]`` currents in, ``[T, B, ...]`` spikes out.

    Args:
        decay: membrane leak factor in ``[0, 1]`` (1 = no leak, i.e. IF neuron).
        v_threshold: firing threshold ``V_th``.
        reset: ``"hard"`` (v -> 0) or ``"soft"`` (v -> v - V_th) after a spike.
        surrogate: gradient stand-in for the step function; a new ``ATan()`` when None.
        detach_reset: cut the gradient through the reset term (often trains more stably).
        backend: how T > 1 runs, one of :data:`~albsnn.fused_lif.LIF_BACKENDS`: ``"auto"`` (Triton
            kernel on CUDA when Triton imports, else the fused PyTorch function), ``"fused"``,
            ``"triton"`` or ``"loop"`` (autograd over :func:`lif_step`). All compute the same spikes.

    Spike counts since the last :func:`reset_firing_rates` are kept in non-persistent buffers,
    so ``firing_rate`` is the mean spikes per neuron per time step over whatever ran since.

    Example:
        >>> lif = LIF(decay=0.5, v_threshold=1.0)
        >>> lif(torch.tensor([[0.6], [0.6], [0.6]])).flatten().tolist()
        [0.0, 0.0, 1.0]
    """

    def __init__(
        self,
        decay: float = 0.5,
        v_threshold: float = 1.0,
        reset: str = "hard",
        surrogate: Surrogate | None = None,
        detach_reset: bool = False,
        backend: str = "auto",
    ) -> None:
        super().__init__()
        if not 0.0 <= decay <= 1.0:
            raise ConfigError(f"LIF decay must be in [0, 1], but got {decay=}")
        if not v_threshold > 0:
            raise ConfigError(f"LIF v_threshold must be > 0, but got {v_threshold=}")
        if reset not in RESETS:
            raise ConfigError(f"LIF reset must be one of {RESETS}, but got {reset=}")
        if backend not in LIF_BACKENDS:
            raise ConfigError(f"unknown lif_backend {backend!r}; choose one of {list(LIF_BACKENDS)}")
        self.decay = float(decay)
        self.v_threshold = float(v_threshold)
        self.reset = reset
        self.surrogate = surrogate if surrogate is not None else ATan()
        self.detach_reset = detach_reset
        self.backend = backend
        self.register_buffer("spike_count", torch.zeros((), dtype=torch.float64), persistent=False)
        self.register_buffer("neuron_steps", torch.zeros((), dtype=torch.float64), persistent=False)

    def extra_repr(self) -> str:
        return f"decay={self.decay}, v_threshold={self.v_threshold}, reset={self.reset}"

    def forward(self, x_seq: torch.Tensor) -> torch.Tensor:
        # The membrane is integrated in fp32 even under bf16 autocast (bf16 loses small currents).
        x_seq = x_seq.float()
        if x_seq.shape[0] == 1:
            # T = 1: v starts at 0, so h = x and the reset never matters.
            spikes = self.surrogate(x_seq, self.v_threshold)
        elif self.backend == "loop":
            spikes = self._loop(x_seq)
        else:
            spikes = lif_sequence(
                x_seq,
                decay=self.decay,
                v_threshold=self.v_threshold,
                reset=self.reset,
                surrogate=self.surrogate,
                detach_reset=self.detach_reset,
                backend=self.backend,
            )
        # fp32 partial sums of 0/1 are exact to 2^24 per call; a float64 sum costs ~15% of the layer.
        self.spike_count += spikes.detach().sum()
        self.neuron_steps += spikes.numel()
        return spikes

    def _loop(self, x_seq: torch.Tensor) -> torch.Tensor:
        v: torch.Tensor | float = 0.0
        out = []
        for x in x_seq:
            s, v = lif_step(
                x,
                v,
                decay=self.decay,
                v_threshold=self.v_threshold,
                reset=self.reset,
                surrogate=self.surrogate,
                detach_reset=self.detach_reset,
            )
            out.append(s)
        return torch.stack(out)

    @property
    def firing_rate(self) -> float:
        steps = float(self.neuron_steps)
        return float(self.spike_count) / steps if steps else 0.0

    def reset_rate(self) -> None:
        self.spike_count.zero_()
        self.neuron_steps.zero_()


def firing_rates(model: nn.Module) -> dict[str, float]:
    """Mean firing rate of every LIF layer in ``model``, by module name."""
    return {name: m.firing_rate for name, m in model.named_modules() if isinstance(m, LIF)}


def reset_firing_rates(model: nn.Module) -> None:
    for m in model.modules():
        if isinstance(m, LIF):
            m.reset_rate()
