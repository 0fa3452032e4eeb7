"""Fashion-MNIST from its four canonical IDX ``.gz`` files (Xiao, Rasul & Vollgraf 2017).

Layout: ``<data root>/fashion-mnist/{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz``. The md5 of
each ``.gz`` is checked (the values torchvision checks), then the IDX header: magic number
(2051 images, 2049 labels), counts and sizes, and that the payload has exactly that many bytes.
Pixels stay uint8 ``[N, 1, 28, 28]`` (47 MB for the training set) and are normalised per batch on
the device with the published training-set statistics, so a ``limit_train`` subset is normalised
exactly like the full set.

Augmentation is off by default (the committed Fashion-MNIST results were trained without it). With
``augment=True`` each training batch gets, per image, a random 28x28 crop of the image padded with
``pad`` black pixels (default 2) and, with ``flip=True``, a random horizontal flip: the usual augmentation
the field uses for Fashion-MNIST. It is drawn from the generator the trainer passes per (seed, epoch,
step), so a resumed run sees the same crops. Evaluation batches are never augmented. On the command
line: ``--data-option augment=true --data-option pad=2 --data-option flip=false``.
"""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path

import numpy as np
import torch

from albsnn.data.files import Archive, FileSpec, fetch_archive, folder_size, md5sum, require_files
from albsnn.data.registry import DatasetInfo, DatasetSplits, DatasetStatus, register_dataset
from albsnn.data.transforms import ImageTransform
from albsnn.errors import ConfigError, DataError

__all__ = ["FashionMNIST", "read_idx", "load_fashion_mnist"]


class FashionMNIST:
    """Metadata of the canonical files."""

    folder = "fashion-mnist"
    base_url = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
    train_images = FileSpec("train-images-idx3-ubyte.gz", "8d4fb7e6c68d591d4c3dfef9ec88bf0d")
    train_labels = FileSpec("train-labels-idx1-ubyte.gz", "25c81989df183df01b3e8a0aad5dffbe")
    test_images = FileSpec("t10k-images-idx3-ubyte.gz", "bef4ecab320f06d8554ea6380940ec79")
    test_labels = FileSpec("t10k-labels-idx1-ubyte.gz", "bb300cfdad3c16e7a12a480ee83cd310")
    files = (train_images, train_labels, test_images, test_labels)
    sizes = {"train": 60_000, "test": 10_000}
    image_magic, label_magic = 2051, 2049
    mean, std = (0.2860,), (0.3530,)  # training set, pixels in [0, 1] (SOURCE.md of the shared copy)
    classes = (
        "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
        "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
    )  # fmt: skip

    @classmethod
    def archives(cls) -> tuple[Archive, ...]:
        return tuple(
            Archive(cls.base_url + f.name, f.name, f.md5, cls.folder, extract=False) for f in cls.files
        )


INFO = DatasetInfo(
    name="fashion-mnist",
    input_shape=(1, 28, 28),
    num_classes=10,
    class_names=FashionMNIST.classes,
    suggested_arch="fmnist",
    folder=FashionMNIST.folder,
    description="Fashion-MNIST, 60,000 + 10,000 28x28 grey images (canonical IDX .gz files)",
)


def read_idx(path: Path, magic: int, shape: tuple[int, ...]) -> np.ndarray:
    """Read a gzipped IDX file of uint8 with the given magic number and per-item ``shape``.

    ``shape[0]`` is the expected item count. Every mismatch is a :class:`DataError` naming the file.
    """
    try:
        with gzip.open(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError, zlib.error) as e:  # bad gzip header, CRC error, truncated stream
        raise DataError(
            f"{path} is not a readable gzip file ({e}); replace it with the canonical file"
        ) from e
    ndim = len(shape)
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path} is truncated: {len(raw)} bytes, not even an IDX header")
    found = struct.unpack(">I", raw[:4])[0]
    if found != magic:
        raise DataError(f"{path} has magic number {found}, expected {magic}; is it the right IDX file?")
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    if dims != shape:
        raise DataError(f"{path} holds shape {dims}, expected {shape}")
    expected = header + int(np.prod(shape))
    if len(raw) != expected:
        raise DataError(f"{path} has {len(raw)} bytes after decompression, expected {expected} (truncated?)")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def _read_split(
    folder: Path, images: FileSpec, labels: FileSpec, n: int
) -> tuple[torch.Tensor, torch.Tensor]:
    x = read_idx(folder / images.name, FashionMNIST.image_magic, (n, 28, 28))
    y = read_idx(folder / labels.name, FashionMNIST.label_magic, (n,))
    if y.max() >= 10:
        raise DataError(f"{folder / labels.name} holds label {int(y.max())}; Fashion-MNIST labels are 0..9")
    return torch.from_numpy(x.copy()).unsqueeze(1), torch.from_numpy(y.astype(np.int64))


def status(root: Path, verify: bool) -> DatasetStatus:
    folder = root / FashionMNIST.folder
    present = [f for f in FashionMNIST.files if (folder / f.name).is_file()]
    size, count = folder_size(folder) if folder.is_dir() else (0, 0)
    if not present:
        return DatasetStatus(INFO.name, "missing", folder)
    if len(present) < len(FashionMNIST.files):
        missing = [f.name for f in FashionMNIST.files if f not in present]
        return DatasetStatus(INFO.name, "partial", folder, size, count, "-", f"missing {', '.join(missing)}")
    if not verify:
        return DatasetStatus(INFO.name, "present", folder, size, count, "not checked")
    bad = [f.name for f in FashionMNIST.files if md5sum(folder / f.name) != f.md5]
    state = "corrupt" if bad else "present"
    return DatasetStatus(INFO.name, state, folder, size, count, f"BAD {', '.join(bad)}" if bad else "ok")


def fetch(root: Path) -> None:
    """Download the missing files (each md5-checked, written atomically)."""
    for archive in FashionMNIST.archives():
        target = root / archive.dest / archive.filename
        if not target.is_file():
            fetch_archive(root, archive)


@register_dataset(INFO, status=status, fetch=fetch)
def load_fashion_mnist(
    root: Path,
    *,
    time_steps: int = 1,
    verify: bool = True,
    download: bool = False,
    augment: bool = False,
    pad: int = 2,
    flip: bool = True,
) -> DatasetSplits:
    """Train/test uint8 images; ``verify``: check the md5s; ``download``: fetch missing files first.

    ``augment``: random crop of the ``pad``-padded image (zero padding; ``pad=0``: no crop) and, with
    ``flip``, a random horizontal flip, on training batches only.
    """
    if pad < 0:
        raise ConfigError(f"fashion-mnist: option pad must be >= 0, but got pad={pad}")
    folder = root / FashionMNIST.folder
    if download:
        fetch(root)
    require_files(INFO.name, folder, FashionMNIST.files, verify=verify)
    f = FashionMNIST
    train_x, train_y = _read_split(folder, f.train_images, f.train_labels, f.sizes["train"])
    test_x, test_y = _read_split(folder, f.test_images, f.test_labels, f.sizes["test"])
    return DatasetSplits(
        info=INFO,
        train_x=train_x,
        train_y=train_y,
        test_x=test_x,
        test_y=test_y,
        transform=ImageTransform(mean=f.mean, std=f.std, augment=augment, pad=pad, flip=flip),
        meta={"folder": str(folder), "md5_checked": verify, "augment": augment, "pad": pad, "flip": flip},
    )
