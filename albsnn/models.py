"""Spiking network architectures, registered by name.

An architecture is data: a list of conv widths with ``"M"`` for a 2x2 max pool (as timm's VGG
configs). :func:`build_model` reads it once into a flat :class:`SpikingNet` of layers named
``conv1, bn1, lif1, pool1, ..., classifier``, taking the conv, neuron and head types from
:class:`ModelConfig`. Every conv is a :class:`~albsnn.binarize.BinaryConv2d` (full precision until
the estimator binarizes it); the classifier is too, so ablations can binarize it.

Parameter counts at width 1.0 (``albsnn inspect`` prints them for any width), GAP head:

======  ======================================  =========  ==========  ==========
name    layers                                  input      classes     parameters
======  ======================================  =========  ==========  ==========
tiny    16C3-32C3-P2-64C3-64C3-GAP              1x8x8      10          61,402
fmnist  64C3-128C3-P2-256C3-256C3-P2-GAP        1x28x28    10          964,426
fmnist  64C3-128C3-P2-256C3-256C3-P2-256C3-     1x28x28    10          2,146,122
_deep   256C3-GAP
cifar   64C3-128C3-P2-256C3-256C3-P2-512C3-     3x32x32    10          9,233,866
        512C3-P2-512C3-512C3-GAP
dvs     64C3-P2-128C3-P2-256C3-P2-256C3-P2-GAP  2x34x34    10          965,002
fmnist  64C3-P2-128C3-P2-256C3-256C3-P2-GAP     1x28x28    10          964,426
_fast
fmnist  128C3-128C3-P2-128C3-128C3-P2-128C3-    1x28x28    10          742,794
_const  128C3-GAP
======  ======================================  =========  ==========  ==========

(BN parameters and running statistics included; ``tests/test_models.py`` checks these numbers.)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from albsnn.binarize import ALPHA_MODES, Binarizer, BinaryConv2d, BinaryLinear
from albsnn.errors import ConfigError
from albsnn.fused_lif import LIF_BACKENDS
from albsnn.interval import check_in_range
from albsnn.neuron import LIF, RESETS
from albsnn.surrogate import SURROGATES, get_surrogate

__all__ = [
    "HEADS",
    "READOUTS",
    "ModelConfig",
    "SpikingNet",
    "register_model",
    "list_models",
    "build_model",
    "count_parameters",
    "GlobalAvgPool",
]

HEADS = ("gap", "fc")
READOUTS = ("membrane", "rate")

_ARCHS: dict[str, list[int | str]] = {
    "tiny": [16, 32, "M", 64, 64],
    "fmnist": [64, 128, "M", 256, 256, "M"],
    "fmnist_deep": [64, 128, "M", 256, 256, "M", 256, 256],
    "cifar": [64, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512],
    "dvs": [64, "M", 128, "M", 256, "M", 256, "M"],
    "fmnist_fast": [64, "M", 128, "M", 256, 256, "M"],
    "fmnist_const": [128, 128, "M", 128, 128, "M", 128, 128],
}


def _choice(default: str, choices: Sequence[str]) -> str:
    """A field whose value is one of ``choices`` (field metadata: validation, CLI flags, sweeps)."""
    return field(default=default, metadata={"choices": tuple(choices)})


def _number(default, interval: str):
    """A numeric field valid in ``interval`` (:class:`~albsnn.interval.Interval` syntax; None passes)."""
    return field(default=default, metadata={"range": interval})


@dataclass
class ModelConfig:
    """Everything needed to rebuild a network (it is stored inside exported model files).

    The model fields' defaults and choices live here, not in :class:`~albsnn.train.TrainConfig`,
    which reads them: a model file must load with this module alone.
    """

    arch: str = "tiny"
    in_channels: int = 1
    num_classes: int = 10
    input_size: tuple[int, int] = (8, 8)
    width: float = _number(1.0, "(0, inf)")  # channel multiplier on every conv
    time_steps: int = _number(2, "[1, inf)")  # T: the network runs T steps and averages the readout
    head: str = _choice("gap", HEADS)  # "gap": 1x1 conv + global average pool; "fc": flatten + FC
    fc_hidden: int = _number(256, "[0, inf)")  # hidden units of the FC head (0 = a single linear layer)
    readout: str = _choice("membrane", READOUTS)  # logits = mean over T of classifier output or spikes
    decay: float = _number(0.5, "[0, 1]")  # LIF leak factor
    v_threshold: float = _number(1.0, "(0, inf)")
    reset: str = _choice("hard", RESETS)
    detach_reset: bool = False
    surrogate: str = _choice("atan", tuple(SURROGATES))
    # atan/sigmoid alpha, rectangular width; None = the surrogate's default
    surrogate_param: float | None = _number(None, "(0, inf)")
    alpha_mode: str = _choice("channel", ALPHA_MODES)  # binary scale alpha per output channel or per layer
    clip_value: float = _number(1.0, "(0, inf)")  # straight-through gradient is zero where |W| > clip_value
    # how LIF layers run T > 1 (same spikes every way; speed only): auto | fused | triton | loop
    lif_backend: str = _choice("auto", LIF_BACKENDS)
    # conv-BN-pool-LIF instead of conv-BN-LIF-pool where a pool follows a conv. At T = 1 the spikes are
    # the same (max commutes with the step function) on 4x fewer neurons; the surrogate gradient then
    # reaches each window's largest potential instead of its first spike. At T > 1 a different network.
    spike_after_pool: bool = False

    def __post_init__(self) -> None:
        self.input_size = tuple(int(s) for s in self.input_size)
        self.validate()

    def validate(self) -> None:
        if self.arch not in _REGISTRY:
            raise ConfigError(f"unknown architecture {self.arch!r}; choose one of {list_models()}")
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if "choices" in f.metadata:
                _check_choice(f.name, value, f.metadata["choices"])
            if "range" in f.metadata and value is not None:
                check_in_range(f.name, value, f.metadata["range"])

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["input_size"] = list(self.input_size)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> ModelConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"unknown model config keys {unknown}; known keys: {sorted(known)}")
        return cls(**d)


def _check_choice(name: str, value: str, allowed: Sequence[str]) -> None:
    if value not in allowed:
        raise ConfigError(f"unknown {name} {value!r}; choose one of {list(allowed)}")


class SpikingNet(nn.Module):
    """A flat stack of layers run in order over ``[T, B, ...]`` spike tensors.

    Input is a static image batch ``[B, C, H, W]`` (direct encoding: the first conv + BN run once
    and their output feeds every time step, which equals repeating the image T times) or an event
    frame batch ``[T, B, C, H, W]``. Output is ``[B, num_classes]`` logits averaged over T.

    Layers other than :class:`~albsnn.neuron.LIF` see the sequence folded to ``[T*B, ...]``.
    """

    def __init__(self, config: ModelConfig, layers: dict[str, nn.Module]) -> None:
        super().__init__()
        self.config = config
        for name, layer in layers.items():
            self.add_module(name, layer)
        self.first_layer = "conv1"
        self.classifier_layer = "classifier"

    @property
    def time_steps(self) -> int:
        return self.config.time_steps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        T = self.time_steps
        if x.dim() == 4:
            x = x.unsqueeze(0)
        elif x.shape[0] != T:
            raise ValueError(f"event input has {x.shape[0]} time bins but the model runs T={T}")
        steps = x.shape[0]
        h = x.flatten(0, 1)
        for layer in self.children():
            if isinstance(layer, LIF):
                h = h.unflatten(0, (steps, -1))
                if steps != T:  # static input reaches the first neuron: same current at every step
                    h, steps = h.expand(T, *h.shape[1:]), T
                h = layer(h).flatten(0, 1)
            else:
                h = layer(h)
        logits = h.unflatten(0, (steps, -1))
        return logits.mean(0)


class GlobalAvgPool(nn.Module):
    """``[N, C, H, W] -> [N, C]`` as a mean: its backward is deterministic on CUDA, unlike
    ``AdaptiveAvgPool2d``'s (an atomic-add kernel that ``torch.use_deterministic_algorithms`` refuses)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean((-2, -1))


def _make_lif(c: ModelConfig) -> LIF:
    return LIF(
        decay=c.decay,
        v_threshold=c.v_threshold,
        reset=c.reset,
        surrogate=get_surrogate(c.surrogate, c.surrogate_param),
        detach_reset=c.detach_reset,
        backend=c.lif_backend,
    )


def _build(c: ModelConfig, cfg: list[int | str]) -> SpikingNet:
    binarizer = Binarizer(alpha=c.alpha_mode, clip_value=c.clip_value)
    layers: dict[str, nn.Module] = {}
    channels, (height, width) = c.in_channels, c.input_size
    n_conv = n_pool = 0
    deferred_lif = None  # spike_after_pool: the LIF that goes after the next pool
    for i, v in enumerate(cfg):
        if v == "M":
            n_pool += 1
            layers[f"pool{n_pool}"] = nn.MaxPool2d(2)
            height, width = height // 2, width // 2
            if deferred_lif:
                layers[deferred_lif], deferred_lif = _make_lif(c), None
            continue
        n_conv += 1
        out = max(1, round(int(v) * c.width))
        layers[f"conv{n_conv}"] = BinaryConv2d(channels, out, 3, padding=1, bias=False, binarizer=binarizer)
        layers[f"bn{n_conv}"] = nn.BatchNorm2d(out)
        if c.spike_after_pool and cfg[i + 1 : i + 2] == ["M"]:
            deferred_lif = f"lif{n_conv}"
        else:
            layers[f"lif{n_conv}"] = _make_lif(c)
        channels = out
    if height < 1 or width < 1:
        raise ConfigError(f"input {c.input_size} is too small for architecture {c.arch!r} ({n_pool} pools)")
    if c.head == "gap":
        # GAP then 1x1 conv equals 1x1 conv then GAP (both linear) and is cheaper.
        layers["gap"] = GlobalAvgPool()
        layers["classifier"] = BinaryLinear(channels, c.num_classes, binarizer=binarizer)
    else:
        layers["flatten"] = nn.Flatten()
        features = channels * height * width
        if c.fc_hidden:
            layers["fc1"] = BinaryLinear(features, c.fc_hidden, binarizer=binarizer)
            layers["lif_fc1"] = _make_lif(c)
            features = c.fc_hidden
        layers["classifier"] = BinaryLinear(features, c.num_classes, binarizer=binarizer)
    if c.readout == "rate":
        layers["lif_out"] = _make_lif(c)
    return SpikingNet(c, layers)


_REGISTRY: dict[str, Callable[[ModelConfig], SpikingNet]] = {}


def register_model(fn: Callable[[ModelConfig], SpikingNet]) -> Callable[[ModelConfig], SpikingNet]:
    """Register an architecture entrypoint under its function name; duplicates are an error."""
    name = fn.__name__
    if name in _REGISTRY:
        raise ValueError(f"architecture {name!r} is already registered")
    _REGISTRY[name] = fn
    return fn


def list_models() -> list[str]:
    return sorted(_REGISTRY)


def build_model(config: ModelConfig | None = None, **overrides) -> SpikingNet:
    """Build the network a :class:`ModelConfig` describes (keyword overrides are applied first).

    Example:
        >>> net = build_model(arch="tiny", time_steps=2)
        >>> net(torch.zeros(4, 1, 8, 8)).shape
        torch.Size([4, 10])
    """
    config = dataclasses.replace(config, **overrides) if config else ModelConfig(**overrides)
    return _REGISTRY[config.arch](config)


def count_parameters(model: nn.Module) -> int:
    """Parameters and BN running statistics: every number the model needs at inference."""
    n = sum(p.numel() for name, p in model.named_parameters() if not name.endswith(".alpha"))
    n += sum(b.numel() for name, b in model.named_buffers() if name.endswith(("running_mean", "running_var")))
    return n


@register_model
def tiny(c: ModelConfig) -> SpikingNet:
    """For 8x8 or 16x16 inputs (the embedded digits default)."""
    return _build(c, _ARCHS["tiny"])


@register_model
def fmnist(c: ModelConfig) -> SpikingNet:
    """64C3-128C3-P2-256C3-256C3-P2-GAP, the paper's Fashion-MNIST network as we read it."""
    return _build(c, _ARCHS["fmnist"])


@register_model
def fmnist_deep(c: ModelConfig) -> SpikingNet:
    """``fmnist`` plus two 256C3 layers at 7x7: three candidates of equal size (conv4-conv6).

    Why: ``fmnist``'s three candidates all differ in size, so no two layer subsets have the same
    storage and a storage-matched random control has nothing to choose from. Here it has.
    """
    return _build(c, _ARCHS["fmnist_deep"])


@register_model
def fmnist_fast(c: ModelConfig) -> SpikingNet:
    """``fmnist``'s convs with the first pool moved up behind conv1: 4x fewer multiply-adds.

    Why: on a 2-core CPU a Fashion-MNIST epoch of ``fmnist`` is compute-bound; at the same width this
    net trains about 4x faster and, wider, reaches more accuracy per second (docs/performance.md,
    "Time to accuracy"). Ours, for that budget; not the paper's network.
    """
    return _build(c, _ARCHS["fmnist_fast"])


@register_model
def fmnist_const(c: ModelConfig) -> SpikingNet:
    """128C3-128C3-P2-128C3-128C3-P2-128C3-128C3-GAP: five candidates of one size at 28/14/7 px.

    Why: a layer-choice study needs a storage-matched family of many *different* subsets. Here every
    candidate (conv2-conv6) has the same storage, so a budget of two layers matches ten subsets that
    differ in depth and resolution, and "which layers" is the only thing that varies. Ours, for the
    study (docs/results.md); not the paper's network.
    """
    return _build(c, _ARCHS["fmnist_const"])


@register_model
def cifar(c: ModelConfig) -> SpikingNet:
    """VGG-style, 8 convs, for 32x32x3 inputs."""
    return _build(c, _ARCHS["cifar"])


@register_model
def dvs(c: ModelConfig) -> SpikingNet:
    """For 2-channel event frames (34x34 N-MNIST, 48x48 / 64x64 downsampled DVS)."""
    return _build(c, _ARCHS["dvs"])
