"""CIFAR-10 and CIFAR-100 from the "python version" pickles, read without torchvision.

Layout: ``<data root>/cifar-10-batches-py/{data_batch_1..5,test_batch}`` and
``<data root>/cifar-100-python/{train,test,meta}`` (the folders the canonical ``.tar.gz`` archives
unpack to). Each file's md5 is checked (the values torchvision checks).

A pickle can run code while it loads, so these files go through :class:`SafeUnpickler`: it builds
only dicts, lists, strings, numbers and the NumPy arrays that hold the pixels, and refuses any other
class or function by name before it is created. The decoded content is then checked: a ``data``
array of uint8 ``[N, 3072]`` and ``N`` integer labels in range.

Pixels stay uint8 ``[N, 3, 32, 32]`` (150 MB for 50,000 images) and are turned into input per batch
on the device: random crop (padding 4) + horizontal flip on training batches, then normalisation
with the usual per-channel training-set mean and std.
"""

from __future__ import annotations

import codecs
import functools
import pickle
from pathlib import Path

import numpy as np
import torch

from albsnn.data.files import Archive, FileSpec, fetch_archive, folder_size, md5sum, require_files
from albsnn.data.registry import DatasetInfo, DatasetSplits, DatasetStatus, register_dataset
from albsnn.data.transforms import ImageTransform
from albsnn.errors import DataError

__all__ = [
    "CIFAR10",
    "CIFAR100",
    "SafeUnpickler",
    "RefusedObject",
    "read_cifar_pickle",
    "load_cifar10",
    "load_cifar100",
]


class RefusedObject(pickle.UnpicklingError):
    """A pickle names a class or function outside the allowed set."""


def _latin1_encode(text: str, encoding: str = "utf-8", errors: str = "strict") -> bytes:
    # Protocol-2 pickles store bytes as _codecs.encode(text, "latin1"); any other codec is refused.
    if encoding not in ("latin1", "latin-1"):
        raise RefusedObject(f"refusing to load _codecs.encode with encoding {encoding!r}")
    return codecs.encode(text, encoding, errors)


def _numpy_reconstructors() -> dict[tuple[str, str], object]:
    # Pickles written by NumPy 1.x name numpy.core.*, NumPy 2.x numpy._core.*; both mean the same
    # functions. Resolving them here (not by import) avoids NumPy 2's numpy.core deprecation.
    try:
        from numpy._core.multiarray import _reconstruct
        from numpy._core.numeric import _frombuffer
    except ImportError:  # NumPy < 2
        from numpy.core.multiarray import _reconstruct
        from numpy.core.numeric import _frombuffer
    allowed: dict[tuple[str, str], object] = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): _latin1_encode,  # how Python 3 writes bytes into protocol-2 pickles
    }
    for core in ("numpy.core", "numpy._core"):
        allowed[(f"{core}.multiarray", "_reconstruct")] = _reconstruct
        allowed[(f"{core}.numeric", "_frombuffer")] = _frombuffer
    return allowed


class SafeUnpickler(pickle.Unpickler):
    """An unpickler that resolves only NumPy's array and dtype constructors.

    Every other global (``os.system``, ``builtins.eval``, any class) is refused with
    :class:`RefusedObject` before it can be called.
    """

    allowed = _numpy_reconstructors()

    def find_class(self, module: str, name: str) -> object:
        try:
            return self.allowed[(module, name)]
        except KeyError:
            raise RefusedObject(f"refusing to load {module}.{name}") from None


def read_cifar_pickle(path: Path) -> dict[str, object]:
    """The dict stored in one CIFAR pickle, keys decoded to ``str``; anything unexpected raises."""
    try:
        with open(path, "rb") as f:
            # encoding="bytes": the original files are Python 2 pickles whose keys are byte strings.
            obj = SafeUnpickler(f, encoding="bytes").load()
    except RefusedObject as e:
        raise DataError(
            f"{path} holds an unexpected object ({e}); a pickle can run code, so it was not loaded"
        ) from e
    except (
        pickle.UnpicklingError,
        EOFError,
        ValueError,
        TypeError,
        AttributeError,
        IndexError,
        KeyError,
        MemoryError,
    ) as e:
        raise DataError(f"{path} is not a readable CIFAR pickle ({type(e).__name__}: {e}); replace it") from e
    if not isinstance(obj, dict):
        raise DataError(f"{path} holds a {type(obj).__name__}, expected a dict of CIFAR arrays")
    return {k.decode("latin1") if isinstance(k, bytes) else str(k): v for k, v in obj.items()}


def _decode(path: Path, labels_key: str, num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    entry = read_cifar_pickle(path)
    data, labels = entry.get("data"), entry.get(labels_key)
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        what = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise DataError(f"{path}: 'data' is {what}, expected a uint8 array [N, 3072]")
    try:
        y = np.asarray(labels, dtype=np.int64)
    except (TypeError, ValueError) as e:
        raise DataError(f"{path}: {labels_key!r} is not a list of integer labels ({e})") from e
    if y.shape != (len(data),) or (len(y) and (y.min() < 0 or y.max() >= num_classes)):
        raise DataError(f"{path}: {labels_key!r} must be {len(data)} labels in 0..{num_classes - 1}")
    # rows are 1024 red, 1024 green, 1024 blue values, each row-major 32x32
    x = torch.from_numpy(data.reshape(-1, 3, 32, 32).copy())
    return x, torch.from_numpy(y)


class CIFAR10:
    """Metadata of the canonical files."""

    folder = "cifar-10-batches-py"
    archive = Archive(
        "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
        "cifar-10-python.tar.gz",
        "c58f30108f718f92721af3b95e74349a",
        dest=".",
    )
    train_files = (
        FileSpec("data_batch_1", "c99cafc152244af753f735de768cd75f"),
        FileSpec("data_batch_2", "d4bba439e000b95fd0a9bffe97cbabec"),
        FileSpec("data_batch_3", "54ebc095f3ab1f0389bbae665268c751"),
        FileSpec("data_batch_4", "634d18415352ddfa80567beed471001a"),
        FileSpec("data_batch_5", "482c414d41f54cd18b22e5b47cb7c3cb"),
    )
    test_files = (FileSpec("test_batch", "40351d587109b95175f43aff81a1287e"),)
    other_files: tuple[FileSpec, ...] = ()
    labels_key = "labels"
    mean = (0.4914, 0.4822, 0.4465)
    std = (0.2470, 0.2435, 0.2616)
    classes = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


class CIFAR100(CIFAR10):
    folder = "cifar-100-python"
    archive = Archive(
        "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
        "cifar-100-python.tar.gz",
        "eb9058c3a382ffc7106e4002c42a8d85",
        dest=".",
    )
    train_files = (FileSpec("train", "16019d7e3df5f24257cddd939b257f8d"),)
    test_files = (FileSpec("test", "f0ef6b0ae62326f3e7ffdfab6717acfc"),)
    other_files = (FileSpec("meta", "7973b15100ade9c7d40fb424638fde48"),)
    labels_key = "fine_labels"
    mean = (0.5071, 0.4865, 0.4409)
    std = (0.2673, 0.2564, 0.2762)
    classes = (
        "apple", "aquarium_fish", "baby", "bear", "beaver", "bed", "bee", "beetle", "bicycle", "bottle",
        "bowl", "boy", "bridge", "bus", "butterfly", "camel", "can", "castle", "caterpillar", "cattle",
        "chair", "chimpanzee", "clock", "cloud", "cockroach", "couch", "crab", "crocodile", "cup",
        "dinosaur", "dolphin", "elephant", "flatfish", "forest", "fox", "girl", "hamster", "house",
        "kangaroo", "keyboard", "lamp", "lawn_mower", "leopard", "lion", "lizard", "lobster", "man",
        "maple_tree", "motorcycle", "mountain", "mouse", "mushroom", "oak_tree", "orange", "orchid",
        "otter", "palm_tree", "pear", "pickup_truck", "pine_tree", "plain", "plate", "poppy", "porcupine",
        "possum", "rabbit", "raccoon", "ray", "road", "rocket", "rose", "sea", "seal", "shark", "shrew",
        "skunk", "skyscraper", "snail", "snake", "spider", "squirrel", "streetcar", "sunflower",
        "sweet_pepper", "table", "tank", "telephone", "television", "tiger", "tractor", "train", "trout",
        "tulip", "turtle", "wardrobe", "whale", "willow_tree", "wolf", "woman", "worm",
    )  # fmt: skip


def _info(meta: type[CIFAR10], name: str, description: str) -> DatasetInfo:
    return DatasetInfo(
        name=name,
        input_shape=(3, 32, 32),
        num_classes=len(meta.classes),
        class_names=meta.classes,
        suggested_arch="cifar",
        folder=meta.folder,
        description=description,
    )


INFO10 = _info(CIFAR10, "cifar10", "CIFAR-10, 50,000 + 10,000 32x32 colour images (python-version pickles)")
INFO100 = _info(CIFAR100, "cifar100", "CIFAR-100, 50,000 + 10,000 32x32 colour images, 100 fine labels")


def _all_files(meta: type[CIFAR10]) -> tuple[FileSpec, ...]:
    return meta.train_files + meta.test_files + meta.other_files


def _status(meta: type[CIFAR10], info: DatasetInfo, root: Path, verify: bool) -> DatasetStatus:
    folder = root / meta.folder
    files = _all_files(meta)
    present = [f for f in files if (folder / f.name).is_file()]
    size, count = folder_size(folder) if folder.is_dir() else (0, 0)
    if not present:
        return DatasetStatus(info.name, "missing", folder)
    if len(present) < len(files):
        missing = ", ".join(f.name for f in files if f not in present)
        return DatasetStatus(info.name, "partial", folder, size, count, "-", f"missing {missing}")
    if not verify:
        return DatasetStatus(info.name, "present", folder, size, count, "not checked")
    bad = [f.name for f in files if md5sum(folder / f.name) != f.md5]
    state = "corrupt" if bad else "present"
    return DatasetStatus(info.name, state, folder, size, count, f"BAD {', '.join(bad)}" if bad else "ok")


def _fetch(meta: type[CIFAR10], root: Path) -> None:
    if not all((root / meta.folder / f.name).is_file() for f in _all_files(meta)):
        fetch_archive(root, meta.archive)


def _load(meta: type[CIFAR10], info: DatasetInfo, root: Path, verify: bool, download: bool) -> DatasetSplits:
    folder = root / meta.folder
    if download:
        _fetch(meta, root)
    require_files(info.name, folder, _all_files(meta), verify=verify)
    parts = {
        split: [_decode(folder / f.name, meta.labels_key, info.num_classes) for f in files]
        for split, files in (("train", meta.train_files), ("test", meta.test_files))
    }
    (train_x, train_y), (test_x, test_y) = (
        (torch.cat([x for x, _ in p]), torch.cat([y for _, y in p])) for p in (parts["train"], parts["test"])
    )
    return DatasetSplits(
        info=info,
        train_x=train_x,
        train_y=train_y,
        test_x=test_x,
        test_y=test_y,
        transform=ImageTransform(mean=meta.mean, std=meta.std, augment=True),
        meta={"folder": str(folder), "md5_checked": verify},
    )


def status10(root: Path, verify: bool) -> DatasetStatus:
    return _status(CIFAR10, INFO10, root, verify)


def status100(root: Path, verify: bool) -> DatasetStatus:
    return _status(CIFAR100, INFO100, root, verify)


@register_dataset(INFO10, status=status10, fetch=functools.partial(_fetch, CIFAR10))
def load_cifar10(
    root: Path, *, time_steps: int = 1, verify: bool = True, download: bool = False
) -> DatasetSplits:
    """uint8 images, crop+flip on training batches; ``verify``: check md5s; ``download``: fetch first."""
    return _load(CIFAR10, INFO10, root, verify, download)


@register_dataset(INFO100, status=status100, fetch=functools.partial(_fetch, CIFAR100))
def load_cifar100(
    root: Path, *, time_steps: int = 1, verify: bool = True, download: bool = False
) -> DatasetSplits:
    """Fine labels (100 classes); otherwise as :func:`load_cifar10`."""
    return _load(CIFAR100, INFO100, root, verify, download)
