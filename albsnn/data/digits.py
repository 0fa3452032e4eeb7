"""scikit-learn's ``load_digits``: 1,797 real 8x8 handwritten digits shipped inside the package.

The embedded default dataset: no download, no data root. Fixed stratified split, 80/20 with
``random_state=0``, so every run and every machine sees the same 1,437 train / 360 test images.
Pixels (0..16) are scaled to [0, 1] and standardised with the training mean and std.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from albsnn.data.registry import DatasetInfo, DatasetSplits, register_dataset

INFO = DatasetInfo(
    name="digits",
    input_shape=(1, 8, 8),
    num_classes=10,
    class_names=tuple(str(d) for d in range(10)),
    suggested_arch="tiny",
    folder="",
    description="scikit-learn load_digits, 1,797 8x8 digits (embedded, no files needed)",
)
SPLIT_SEED = 0
TEST_FRACTION = 0.2


@register_dataset(INFO)
def load_digits(root: Path, *, time_steps: int = 1) -> DatasetSplits:
    from sklearn.datasets import load_digits as sk_load_digits
    from sklearn.model_selection import train_test_split

    bunch = sk_load_digits()
    x = (bunch.images.astype(np.float32) / 16.0)[:, None]
    y = bunch.target.astype(np.int64)
    x_tr, x_te, y_tr, y_te = train_test_split(
        x, y, test_size=TEST_FRACTION, random_state=SPLIT_SEED, stratify=y
    )
    mean, std = float(x_tr.mean()), float(x_tr.std())
    return DatasetSplits(
        info=INFO,
        train_x=torch.from_numpy((x_tr - mean) / std),
        train_y=torch.from_numpy(y_tr),
        test_x=torch.from_numpy((x_te - mean) / std),
        test_y=torch.from_numpy(y_te),
        meta={"mean": mean, "std": std, "split_seed": SPLIT_SEED},
    )
