"""Datasets by name, as tensors ready to be batched on the training device.

A loader is a plain function ``fn(root, *, time_steps, **options) -> DatasetSplits`` registered with
:func:`register_dataset`; :func:`load_dataset` resolves the data root, checks and converts the
options against the loader's signature, calls it, and applies the stratified ``limit_train`` /
``limit_test`` subsets. A loader that takes ``limit_train``/``limit_test``/``seed`` itself gets them
too, so it can skip work on samples that would be dropped (event datasets convert only those).
Small datasets are held whole as tensors and sliced by index (see :mod:`albsnn.data.loader`): no
per-sample Python work per batch.

Data root: ``data_dir`` argument > ``$ALBSNN_DATA`` > ``~/.cache/albsnn``; one folder per dataset
under it (``docs/data.md`` lists the layout).

Example::

    >>> from albsnn.data import load_dataset
    >>> splits = load_dataset("digits", limit_train=100)
    >>> splits.train_x.shape, splits.info.suggested_arch
    (torch.Size([100, 1, 8, 8]), 'tiny')
"""

from __future__ import annotations

import inspect
import math
import os
import typing
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from albsnn._typing import split_optional
from albsnn.data.registry import (
    _FETCH,
    _REGISTRY,
    _STATUS,
    TEST_SUBSET_SEED,
    DatasetInfo,
    DatasetSplits,
    DatasetStatus,
    register_dataset,
    stratified_subset,
)
from albsnn.errors import ConfigError, DataError
from albsnn.interval import check_in_range

__all__ = [
    "TEST_SUBSET_SEED",
    "DatasetInfo",
    "DatasetSplits",
    "DatasetStatus",
    "register_dataset",
    "list_datasets",
    "dataset_info",
    "dataset_options",
    "check_options",
    "dataset_status",
    "download_dataset",
    "load_dataset",
    "data_root",
    "stratified_subset",
    "split_validation",
    "check_val_fraction",
    "DEFAULT_VAL_FRACTION",
    "VAL_FRACTION_RANGE",
]


_PASSED_THROUGH = ("limit_train", "limit_test", "seed")  # given to loaders that declare them
VAL_SPLIT_SEED = 0  # one validation split per dataset, whatever the run's seed: runs stay paired
DEFAULT_VAL_FRACTION = 0.1
VAL_FRACTION_RANGE = "(0, 0.5]"  # at most half of train is held out


def list_datasets() -> list[str]:
    _load_builtin()
    return sorted(_REGISTRY)


def dataset_info(name: str) -> DatasetInfo:
    _load_builtin()
    if name not in _REGISTRY:
        raise ConfigError(f"unknown dataset {name!r}; choose one of {sorted(_REGISTRY)}")
    return _REGISTRY[name][0]


def data_root(data_dir: str | os.PathLike | None = None) -> Path:
    """``data_dir`` > ``$ALBSNN_DATA`` > ``~/.cache/albsnn``; a path that is a file is an error."""
    root = Path(data_dir or os.environ.get("ALBSNN_DATA") or Path.home() / ".cache" / "albsnn").expanduser()
    if root.exists() and not root.is_dir():
        raise DataError(f"data dir {root} is a file, not a folder; pass --data-dir FOLDER")
    return root.resolve()


def dataset_status(
    name: str, data_dir: str | os.PathLike | None = None, *, verify: bool = False
) -> DatasetStatus:
    """Where ``name``'s files are and whether they are complete (``verify``: and md5-exact)."""
    info = dataset_info(name)
    root = data_root(data_dir)
    if name in _STATUS:
        return _STATUS[name](root, verify)
    return DatasetStatus(name, "embedded", None, detail=info.description)


def download_dataset(name: str, data_dir: str | os.PathLike | None = None) -> DatasetStatus:
    """Fetch ``name``'s missing canonical files into the data root (needs the network)."""
    dataset_info(name)
    if name not in _FETCH:
        raise ConfigError(f"dataset {name!r} has nothing to download (it ships with the package)")
    root = data_root(data_dir)
    _FETCH[name](root)
    return dataset_status(name, root)


def check_val_fraction(val_fraction: float) -> None:
    check_in_range("val_fraction", val_fraction, VAL_FRACTION_RANGE)


def split_validation(splits: DatasetSplits, val_fraction: float) -> DatasetSplits:
    """Move a stratified ``val_fraction`` of the training samples to ``val_x``/``val_y``.

    The split depends only on the labels and :data:`VAL_SPLIT_SEED`, so every run on the same data
    (any seed, any hyperparameters) validates on the same samples, disjoint from train and test.
    """
    from sklearn.model_selection import train_test_split

    check_val_fraction(val_fraction)
    y = splits.train_y.numpy()
    classes = len(np.unique(y))
    n_val = int(round(val_fraction * len(y)))
    if n_val < classes or len(y) - n_val < classes:
        raise ConfigError(
            f"{splits.info.name}: val_fraction={val_fraction} of {len(y)} training samples gives "
            f"{n_val} validation samples, fewer than its {classes} classes; raise val_fraction or limit_train"
        )
    train, val = train_test_split(np.arange(len(y)), test_size=n_val, random_state=VAL_SPLIT_SEED, stratify=y)
    train, val = torch.from_numpy(np.sort(train)), torch.from_numpy(np.sort(val))
    return replace(
        splits,
        train_x=splits.train_x[train],
        train_y=splits.train_y[train],
        val_x=splits.train_x[val],
        val_y=splits.train_y[val],
    )


def dataset_options(name: str) -> dict[str, tuple[object, object]]:
    """``{option: (type, default)}`` that ``load_dataset(name, **options)`` accepts."""
    dataset_info(name)
    fn = _REGISTRY[name][1]
    hints = typing.get_type_hints(fn)
    return {
        p.name: (hints.get(p.name, object), p.default)
        for p in inspect.signature(fn).parameters.values()
        if p.kind is p.KEYWORD_ONLY and p.name not in ("time_steps", *_PASSED_THROUGH)
    }


def load_dataset(
    name: str,
    data_dir: str | os.PathLike | None = None,
    *,
    time_steps: int = 1,
    limit_train: int | None = None,
    limit_test: int | None = None,
    seed: int = 0,
    val_fraction: float | None = DEFAULT_VAL_FRACTION,
    **options,
) -> DatasetSplits:
    """Load a registered dataset; ``limit_*`` keep a stratified subset of that many samples.

    A stratified ``val_fraction`` of the training data becomes the validation split (see
    :func:`split_validation`) before ``limit_train`` subsets what is left for training;
    ``val_fraction=None`` returns the loader's splits as they are (``val_x`` None), for readers' tests.

    ``options`` are the loader's own (:func:`dataset_options` lists them); values given as text
    (``"0.2"``, ``"true"``, ``"none"``) are converted to the declared type, so CLI pairs pass as is.
    """
    dataset_info(name)  # unknown name -> ConfigError before any file is touched
    if val_fraction is not None:
        check_val_fraction(val_fraction)
    for key, value in (("limit_train", limit_train), ("limit_test", limit_test), ("time_steps", time_steps)):
        if value is not None and value < 1:
            raise ConfigError(f"{key} must be >= 1, but got {key}={value}")
    fn = _REGISTRY[name][1]
    kwargs = check_options(name, options)
    params = inspect.signature(fn).parameters
    # A loader that subsets train itself keeps enough for the validation split to come out of it.
    own_limit = limit_train and math.ceil(limit_train / (1 - (val_fraction or 0)))
    passed = {"limit_train": own_limit, "limit_test": limit_test, "seed": seed}
    kwargs.update({k: v for k, v in passed.items() if k in params})
    splits = fn(data_root(data_dir), time_steps=time_steps, **kwargs)
    if val_fraction is not None:
        splits = split_validation(splits, val_fraction)
    if limit_train:
        keep = stratified_subset(splits.train_y, limit_train, seed)
        splits = replace(splits, train_x=splits.train_x[keep], train_y=splits.train_y[keep])
    if limit_test:
        keep = stratified_subset(splits.test_y, limit_test, TEST_SUBSET_SEED)
        splits = replace(splits, test_x=splits.test_x[keep], test_y=splits.test_y[keep])
    return splits


def check_options(name: str, options: dict) -> dict:
    """``options`` converted to the types ``name``'s loader declares; unknown keys -> ConfigError.

    Text (``"0.2"``, ``"true"``, ``"none"``) is converted, so ``--data-option KEY=VALUE`` pairs pass as
    they are; call it early to reject a typo before any file is read.
    """
    known = dataset_options(name)
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise ConfigError(
            f"unknown option(s) {unknown} for dataset {name!r}; it accepts {sorted(known) or 'none'}"
        )
    return {key: _coerce(name, key, value, known[key][0]) for key, value in options.items()}


def _coerce(dataset: str, key: str, value: object, hint: object) -> object:
    """Convert ``value`` to ``hint`` (``int``, ``float``, ``bool``, ``Path``, ``str`` or ``X | None``)."""
    kinds, optional = split_optional(hint)
    if value is None or (isinstance(value, str) and value.strip().lower() in ("none", "null", "")):
        if optional:
            return None
        raise ConfigError(f"{dataset}: option {key} cannot be empty; expected {_name(hint)}")
    for kind in kinds:
        converted = _convert(value, kind)
        if converted is not _FAIL:
            return converted
    raise ConfigError(f"{dataset}: option {key} expects {_name(hint)}, but got {key}={value!r}")


_FAIL = object()
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def _convert(value: object, kind: object) -> object:
    if kind is bool:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        return True if text in _TRUE else False if text in _FALSE else _FAIL
    if kind in (int, float):
        if isinstance(value, bool):
            return _FAIL
        try:
            number = kind(value)
        except (TypeError, ValueError):
            return _FAIL
        # an int option given 2.5 must not silently become 2
        return number if kind is float or float(value) == number else _FAIL
    if kind is Path:
        return Path(value).expanduser() if isinstance(value, (str, os.PathLike)) else _FAIL
    if kind is str:
        return value if isinstance(value, str) else _FAIL
    return value


def _name(hint: object) -> str:
    return getattr(hint, "__name__", None) or str(hint)


def _load_builtin() -> None:
    # Importing the modules registers their loaders; deferred so `import albsnn` stays light.
    from albsnn.data import cifar, digits, events, fashion_mnist  # noqa: F401
