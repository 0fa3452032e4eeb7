"""Per-batch transforms that run on the training device (the ``DatasetSplits.transform`` hook).

Stored batches stay compact (uint8 pixels, integer event counts); these frozen dataclasses turn a
batch into float input where it is used, so a GPU does the work and no per-sample Python runs.
Each ``__call__(x, train)`` calls a plain tensor function below it.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import torch
import torch.nn.functional as F

__all__ = ["ImageTransform", "EventTransform", "normalize", "random_crop_flip"]


def normalize(x: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...], scale: float) -> torch.Tensor:
    """``(x * scale - mean) / std`` per channel of ``[B, C, H, W]``, as float32."""
    m, s = _channel_stats(tuple(mean), tuple(std), x.device)
    return (x.float() * scale - m) / s


@lru_cache(maxsize=32)
def _channel_stats(
    mean: tuple[float, ...], std: tuple[float, ...], device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """Made once per device: building them per batch copies host memory to the GPU and waits for it."""
    m = torch.tensor(mean, dtype=torch.float32, device=device).view(1, -1, 1, 1)
    s = torch.tensor(std, dtype=torch.float32, device=device).view(1, -1, 1, 1)
    return m, s


def random_crop_flip(
    x: torch.Tensor, pad: int = 4, flip: bool = True, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Random ``H x W`` crop of the zero-padded batch plus a random horizontal flip, per sample.

    One gather for the whole batch: offsets are drawn per sample and turned into row/column index
    grids, so cost does not depend on Python loops (as torchvision's ``RandomCrop(padding=4)`` +
    ``RandomHorizontalFlip`` applied image by image, but vectorised).
    """
    b, _, h, w = x.shape
    dev = x.device
    if pad > 0:
        padded = F.pad(x, (pad, pad, pad, pad))
        dy = torch.randint(0, 2 * pad + 1, (b,), device=dev, generator=generator)
        dx = torch.randint(0, 2 * pad + 1, (b,), device=dev, generator=generator)
        rows = (dy[:, None] + torch.arange(h, device=dev))[:, None, :, None]  # [B,1,H,1]
        cols = (dx[:, None] + torch.arange(w, device=dev))[:, None, None, :]  # [B,1,1,W]
        batch = torch.arange(b, device=dev)[:, None, None, None]
        chans = torch.arange(x.shape[1], device=dev)[None, :, None, None]
        x = padded[batch, chans, rows, cols]
    if flip:
        mirror = torch.rand(b, device=dev, generator=generator) < 0.5
        x = torch.where(mirror[:, None, None, None], x.flip(-1), x)
    return x


@dataclass(frozen=True)
class ImageTransform:
    """Normalise ``[B, C, H, W]`` pixels; on training batches, optionally crop (and flip) first.

    Evaluation batches (``train=False``) are only normalised, whatever ``augment`` says.
    """

    mean: tuple[float, ...]
    std: tuple[float, ...]
    scale: float = 1 / 255  # uint8 pixels -> [0, 1]
    augment: bool = False  # random crop (zero padding `pad`) + optional horizontal flip on training batches
    pad: int = 4  # pixels of zero padding around the image before the random crop (0: no crop)
    flip: bool = True  # mirror each training image left-right with probability 1/2 (CIFAR: on)

    def __call__(
        self, x: torch.Tensor, train: bool, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        if train and self.augment:
            # Padding before normalising pads with black pixels, as torchvision's RandomCrop does.
            x = random_crop_flip(x, pad=self.pad, flip=self.flip, generator=generator)
        return normalize(x, self.mean, self.std, self.scale)


@dataclass(frozen=True)
class EventTransform:
    """Event counts ``[B, T, C, H, W]`` to float; ``clip`` caps counts per pixel and bin (0 = off)."""

    clip: float = 0.0

    def __call__(
        self, x: torch.Tensor, train: bool, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        x = x.float()
        return x.clamp_(max=self.clip) if self.clip > 0 else x
