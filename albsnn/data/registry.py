"""The dataset registry and the types every loader shares: what ``albsnn.data`` and each dataset module
both import (the package imports the dataset modules to register them, so the types cannot live in the
package itself without a cycle).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

TEST_SUBSET_SEED = 0  # one `limit_test` subset whatever the run's seed: every seed is scored on it


@dataclass(frozen=True)
class DatasetInfo:
    """What a dataset is, before any file is read."""

    name: str
    input_shape: tuple[int, int, int]  # (C, H, W) of one frame / image
    num_classes: int
    class_names: tuple[str, ...]
    suggested_arch: str
    events: bool = False  # True: samples are [T, C, H, W] event frames, not static images
    folder: str = ""  # sub-folder of the data root that holds the files
    description: str = ""


@dataclass
class DatasetSplits:
    """Train, validation and test tensors plus the on-device transform that turns a stored batch into input.

    ``train_x``/``test_x`` may be stored compactly (uint8 pixels, uint8/int16 event counts);
    ``transform`` (``fn(x, train, generator=None) -> float tensor``) runs per batch on the device:
    normalisation, augmentation (drawn from ``generator`` when one is given). Static:
    ``[B, C, H, W]``; events: ``[B, T, C, H, W]``. ``info`` reflects the options used (e.g. the
    downsampled ``input_shape`` of DVS frames).
    """

    info: DatasetInfo
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    transform: Callable[[torch.Tensor, bool], torch.Tensor] | None = None
    meta: dict = field(default_factory=dict)
    val_x: torch.Tensor | None = None  # carved from the training data by load_dataset
    val_y: torch.Tensor | None = None

    def prepare(self, x: torch.Tensor, train: bool, generator: torch.Generator | None = None) -> torch.Tensor:
        """Model input from a stored batch; ``generator`` (on ``x``'s device) drives any augmentation."""
        if self.transform is None:
            return x.float()
        return self.transform(x, train, generator) if generator is not None else self.transform(x, train)


@dataclass(frozen=True)
class DatasetStatus:
    """What ``albsnn datasets`` prints for one dataset."""

    name: str
    state: str  # "present" | "partial" | "missing" | "corrupt" | "embedded"
    folder: Path | None
    size_bytes: int = 0
    files: int = 0
    md5: str = "-"  # "ok" | "BAD <file>" | "not checked" | "n/a ..." | "-"
    detail: str = ""


Loader = Callable[..., DatasetSplits]
StatusFn = Callable[[Path, bool], DatasetStatus]
FetchFn = Callable[[Path], None]
_REGISTRY: dict[str, tuple[DatasetInfo, Loader]] = {}
_STATUS: dict[str, StatusFn] = {}
_FETCH: dict[str, FetchFn] = {}


def register_dataset(
    info: DatasetInfo, *, status: StatusFn | None = None, fetch: FetchFn | None = None
) -> Callable[[Loader], Loader]:
    """Register ``fn(root: Path, *, time_steps: int, **options) -> DatasetSplits`` under ``info.name``.

    ``status(root, verify) -> DatasetStatus`` reports the files without loading them;
    ``fetch(root)`` downloads the missing canonical files (md5-checked, atomically).
    """

    def wrap(fn: Loader) -> Loader:
        if info.name in _REGISTRY:
            raise ValueError(f"dataset {info.name!r} is already registered")
        _REGISTRY[info.name] = (info, fn)
        if status is not None:
            _STATUS[info.name] = status
        if fetch is not None:
            _FETCH[info.name] = fetch
        return fn

    return wrap


def stratified_subset(y: torch.Tensor, n: int, seed: int) -> torch.Tensor:
    """Indices of ``n`` samples with class proportions kept (deterministic for a seed)."""
    from sklearn.model_selection import train_test_split

    if n >= len(y):
        return torch.arange(len(y))
    idx = np.arange(len(y))
    labels = y.numpy()
    _, counts = np.unique(labels, return_counts=True)
    stratify = labels if n >= len(counts) and counts.min() >= 2 else None
    keep, _ = train_test_split(idx, train_size=n, random_state=seed, stratify=stratify)
    return torch.from_numpy(np.sort(keep))
