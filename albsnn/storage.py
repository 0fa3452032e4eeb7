"""Storage accounting: the exact number of bits a network needs at inference, layer by layer.

A layer is every module that owns parameters or BatchNorm statistics (``conv1``, ``bn1``, ...,
``classifier``, named as ``model.named_modules()`` names them). What each stores:

=========================  ==============  ===================================================
tensor                     bits / number   counted when
=========================  ==============  ===================================================
binary layer ``weight``    1               the layer is binary now (``layer.is_binary``)
binary layer ``alpha``     32              the layer is binary: ``C_out`` numbers, or 1 when
                                           its ``binarizer.alpha == "layer"``
full-precision ``weight``  32              otherwise
``bias``                   32              the layer has one
BN ``weight``, ``bias``    32              affine BatchNorm
BN ``running_mean/var``    32              tracked statistics: eval-mode BN normalises with them
=========================  ==============  ===================================================

Not counted: BN ``num_batches_tracked`` (only used to pick the momentum while training), the
``alpha`` of a full-precision layer (its forward never reads it), the ``binary`` /
``alpha_learned`` flags (the model file keeps them in its header), and LIF neurons (no parameters;
decay and threshold are config). This is exactly what :func:`albsnn.export.save_model` writes.

Rounding: bits are exact. A layer's ``bytes`` is ``ceil(bits / 8)``; the model's ``bytes`` is
``ceil(total bits / 8)``, not the sum of layer bytes (that sum can be larger by under one byte per
layer). ``fp32_bytes`` is the same layers with every number at 32 bits and no alpha, so
``reduction = 1 - bytes / fp32_bytes`` is in ``[0, 1)`` and exactly 0 for an all-FP model.

Counting (the profiles) is separate from formatting (:func:`summary`,
:func:`memory_as_readable_str`). The convenience functions only read shapes and flags, never copy
a tensor, so the trainer can call them every epoch.

Example:
    >>> from albsnn.models import build_model
    >>> net = build_model(arch="tiny")
    >>> storage_bytes(net), fp32_bytes(net)  # 61,402 numbers x 4 bytes, all FP so far
    (245608, 245608)
    >>> net.conv4.set_binary(True)  # 64*64*9 one-bit weights + 64 alphas instead of 36,864 floats
    >>> storage_bytes(net)
    103016
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from albsnn.binarize import BinaryLayer

__all__ = [
    "WeightProfile",
    "LayerProfile",
    "ModelProfile",
    "profile_model",
    "storage_bytes",
    "fp32_bytes",
    "reduction",
    "memory_as_readable_str",
    "format_summary",
    "summary",
]

FP_BITS = 32
_BN_TENSORS = ("weight", "bias", "running_mean", "running_var")


def _bits_to_bytes(bits: int) -> int:
    return -(-bits // 8)  # ceil without floats


@dataclass(frozen=True)
class WeightProfile:
    """One stored tensor of a layer, named by its attribute on the module (``weight``, ``alpha``...).

    ``binary_only`` marks numbers that exist only because the layer is binary (its alpha scales):
    the FP32 equivalent of the model drops them.
    """

    name: str
    count: int
    bitwidth: int
    binary_only: bool = False

    @property
    def memory(self) -> int:
        """Bits this tensor takes."""
        return self.count * self.bitwidth

    @property
    def fp32_memory(self) -> int:
        """Bits it takes in the all-FP32 model."""
        return 0 if self.binary_only else self.count * FP_BITS


@dataclass(frozen=True)
class LayerProfile:
    """The stored tensors of one layer.

    Attributes:
        name: module name in ``model.named_modules()``.
        type: class name (``BinaryConv2d``, ``BatchNorm2d``...).
        shape: shape of the main weight (BN: its channel vector).
        precision: bits per main weight, 1 (binary now) or 32.
        weights: every tensor counted for the layer.
        estimate: the estimator's last score for the layer, if one was given.
    """

    name: str
    type: str
    shape: tuple[int, ...]
    precision: int
    weights: tuple[WeightProfile, ...]
    estimate: float | None = None

    @property
    def count(self) -> int:
        """Numbers stored (alpha included)."""
        return sum(w.count for w in self.weights)

    @property
    def parameters(self) -> int:
        """Numbers of the FP32 model (no alpha): what ``count_parameters`` counts."""
        return sum(w.count for w in self.weights if not w.binary_only)

    @property
    def memory(self) -> int:
        """Bits stored."""
        return sum(w.memory for w in self.weights)

    @property
    def bitwidth(self) -> float:
        """Mean bits per stored number (a binary conv with per-channel alpha: just above 1)."""
        return self.memory / self.count if self.count else 0.0

    @property
    def bytes(self) -> int:
        """``ceil(memory / 8)``."""
        return _bits_to_bytes(self.memory)

    @property
    def fp32_memory(self) -> int:
        return sum(w.fp32_memory for w in self.weights)


@dataclass(frozen=True)
class ModelProfile:
    """Every layer's profile and the model totals."""

    layers: tuple[LayerProfile, ...]

    @property
    def count(self) -> int:
        return sum(layer.count for layer in self.layers)

    @property
    def parameters(self) -> int:
        return sum(layer.parameters for layer in self.layers)

    @property
    def memory(self) -> int:
        """Total bits."""
        return sum(layer.memory for layer in self.layers)

    @property
    def bytes(self) -> int:
        """``ceil(total bits / 8)``."""
        return _bits_to_bytes(self.memory)

    @property
    def fp32_memory(self) -> int:
        return sum(layer.fp32_memory for layer in self.layers)

    @property
    def fp32_bytes(self) -> int:
        return _bits_to_bytes(self.fp32_memory)

    @property
    def reduction(self) -> float:
        """``1 - bytes / fp32_bytes``: 0 for an all-FP model, near 31/32 for an all-binary one."""
        return 1.0 - self.bytes / self.fp32_bytes if self.fp32_bytes else 0.0

    def to_dict(self) -> dict:
        """Plain JSON-able record: ``{"layers": [...], "totals": {...}}``."""
        layers = [
            {
                "name": layer.name,
                "type": layer.type,
                "shape": list(layer.shape),
                "precision": layer.precision,
                "bits": layer.memory,
                "bytes": layer.bytes,
                "estimate": layer.estimate,
            }
            for layer in self.layers
        ]
        totals = {
            "bits": self.memory,
            "bytes": self.bytes,
            "fp32_bytes": self.fp32_bytes,
            "reduction": self.reduction,
            "parameters": self.parameters,
        }
        return {"layers": layers, "totals": totals}


def _binary_layer_weights(module: BinaryLayer) -> list[WeightProfile]:
    w = module.weight
    if not module.is_binary:
        return [WeightProfile("weight", w.numel(), FP_BITS)]
    n_alpha = w.shape[0] if module.binarizer.alpha == "channel" else 1
    return [
        WeightProfile("weight", w.numel(), module.precision),
        WeightProfile("alpha", n_alpha, FP_BITS, binary_only=True),
    ]


def _layer_weights(module: nn.Module) -> list[WeightProfile]:
    if isinstance(module, BinaryLayer):
        profiles = _binary_layer_weights(module)
        if module.bias is not None:
            profiles.append(WeightProfile("bias", module.bias.numel(), FP_BITS))
        return profiles
    if isinstance(module, _BatchNorm):
        tensors = [(n, getattr(module, n)) for n in _BN_TENSORS]
        return [WeightProfile(n, t.numel(), FP_BITS) for n, t in tensors if t is not None]
    return [WeightProfile(n, p.numel(), FP_BITS) for n, p in module.named_parameters(recurse=False)]


def _main_shape(module: nn.Module) -> tuple[int, ...]:
    for name in ("weight", "running_mean"):
        t = getattr(module, name, None)
        if t is not None:
            return tuple(t.shape)
    first = next(module.parameters(recurse=False), None)
    return tuple(first.shape) if first is not None else ()


def _stores_numbers(module: nn.Module) -> bool:
    return isinstance(module, _BatchNorm) or next(module.parameters(recurse=False), None) is not None


def _profile_layer(name: str, module: nn.Module, estimate: float | None) -> LayerProfile:
    return LayerProfile(
        name=name,
        type=type(module).__name__,
        shape=_main_shape(module),
        precision=module.precision if isinstance(module, BinaryLayer) else FP_BITS,
        weights=tuple(_layer_weights(module)),
        estimate=estimate,
    )


def profile_model(model: nn.Module, estimates: Mapping[str, float] | None = None) -> ModelProfile:
    """Count every stored number of ``model`` (see the module docstring for the rules).

    Args:
        model: any module; binary layers are :class:`~albsnn.binarize.BinaryLayer`.
        estimates: optional ``{layer name: last estimator score}`` copied into the profiles.
    """
    estimates = estimates or {}
    modules = [(name, m) for name, m in model.named_modules() if _stores_numbers(m)]
    layers = tuple(_profile_layer(name, m, estimates.get(name)) for name, m in modules)
    return ModelProfile(layers)


def storage_bytes(model: nn.Module) -> int:
    """Bytes the model needs at inference with its current binary layers (``ceil(bits / 8)``)."""
    return profile_model(model).bytes


def fp32_bytes(model: nn.Module) -> int:
    """Bytes the same model needs with every number in FP32."""
    return profile_model(model).fp32_bytes


def reduction(model: nn.Module) -> float:
    """``1 - storage_bytes / fp32_bytes`` in ``[0, 1)``."""
    return profile_model(model).reduction


def memory_as_readable_str(num_bits: int) -> str:
    """``num_bits`` in the largest binary unit that keeps the number >= 1: ``"4.50 KiB"``.

    Binary prefixes (1 KiB = 1024 B) so nobody wonders whether a "KB" is 1000 or 1024 bytes.
    """
    value = num_bits / 8
    for unit in ("B", "KiB", "MiB"):
        if value < 1024:
            return f"{value:.2f} {unit}"
        value /= 1024
    return f"{value:.2f} GiB"


_HEADER = ("layer", "type", "shape", "bits/w", "bits", "bytes", "size", "estimate")


def _format_row(layer: LayerProfile) -> list[str]:
    estimate = "-" if layer.estimate is None else f"{layer.estimate:.4g}"
    shape = "x".join(str(s) for s in layer.shape)
    return [
        layer.name,
        layer.type,
        shape,
        str(layer.precision),
        f"{layer.memory:,}",
        f"{layer.bytes:,}",
        memory_as_readable_str(layer.memory),
        estimate,
    ]


def _render_table(rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    # Names and types read left to right; numbers line up on the right.
    left = {0, 1, 2}
    aligned = [
        [c.ljust(w) if i in left else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))]
        for row in rows
    ]
    lines = ["  ".join(cells).rstrip() for cells in aligned]
    width = max(len(line) for line in lines)
    rule = "-" * width
    return [lines[0], rule, *lines[1:-1], rule, lines[-1]]


def _totals_lines(profile: ModelProfile) -> list[str]:
    return [
        f"storage:    {profile.bytes:,} bytes ({memory_as_readable_str(profile.memory)})",
        f"fp32:       {profile.fp32_bytes:,} bytes ({memory_as_readable_str(profile.fp32_memory)})",
        f"reduction:  {profile.reduction:.2%}",
        f"parameters: {profile.parameters:,}",
    ]


def format_summary(profile: ModelProfile) -> str:
    """The text :func:`summary` prints."""
    total = ["total", "", "", "", f"{profile.memory:,}", f"{profile.bytes:,}"]
    total += [memory_as_readable_str(profile.memory), ""]
    rows = [list(_HEADER), *(_format_row(layer) for layer in profile.layers), total]
    return "\n".join([*_render_table(rows), "", *_totals_lines(profile)])


def summary(
    model_or_profile: nn.Module | ModelProfile, print_fn: Callable[[str], object] | None = None
) -> None:
    """Print a per-layer table (layer, type, shape, bits per weight, bits, bytes, size, estimate)
    followed by the totals (storage, FP32 equivalent, reduction, parameters).

    Args:
        model_or_profile: a model (profiled without estimates) or a :class:`ModelProfile`.
        print_fn: called once with the whole text; ``print`` when None (pass ``logger.info`` or a
            list's ``append`` to capture it).
    """
    profile = model_or_profile
    if not isinstance(profile, ModelProfile):
        profile = profile_model(profile)
    (print_fn or print)(format_summary(profile))
