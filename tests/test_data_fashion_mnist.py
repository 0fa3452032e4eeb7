"""Fashion-MNIST: the real canonical files, and damaged copies of them."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import pytest
import torch

from albsnn.data import load_dataset
from albsnn.data.fashion_mnist import FashionMNIST, read_idx
from albsnn.data.files import md5sum
from albsnn.errors import DataError


@pytest.fixture(scope="module")
def fmnist(shared_data: Path):
    return load_dataset("fashion-mnist", shared_data, val_fraction=None)


def _copy_root(shared_data: Path, tmp_path: Path) -> Path:
    """A data root whose fashion-mnist/ links to the real files, ready to have one replaced."""
    folder = tmp_path / "root" / FashionMNIST.folder
    folder.mkdir(parents=True)
    for spec in FashionMNIST.files:
        (folder / spec.name).symlink_to(shared_data / FashionMNIST.folder / spec.name)
    return folder.parent


def _replace(root: Path, name: str, data: bytes) -> None:
    target = root / FashionMNIST.folder / name
    target.unlink()
    target.write_bytes(data)


def test_real_files_have_the_canonical_md5s(shared_data: Path):
    for spec in FashionMNIST.files:
        assert md5sum(shared_data / FashionMNIST.folder / spec.name) == spec.md5


def test_real_shapes_dtypes_and_label_counts(fmnist):
    # 60,000 + 10,000 images, 6,000 / 1,000 per class, kept as uint8 until prepare()
    assert fmnist.train_x.shape == (60_000, 1, 28, 28) and fmnist.train_x.dtype == torch.uint8
    assert fmnist.test_x.shape == (10_000, 1, 28, 28)
    assert fmnist.train_y.bincount().tolist() == [6000] * 10
    assert fmnist.test_y.bincount().tolist() == [1000] * 10
    # first labels as listed in the shared copy's SOURCE.md
    assert fmnist.train_y[:10].tolist() == [9, 0, 0, 3, 0, 2, 7, 2, 5, 5]
    assert fmnist.test_y[:10].tolist() == [9, 2, 1, 1, 6, 1, 4, 6, 5, 7]
    assert fmnist.info.suggested_arch == "fmnist" and fmnist.info.input_shape == (1, 28, 28)


def test_prepare_normalises_to_zero_mean_unit_std(fmnist):
    x = fmnist.prepare(fmnist.train_x[:5000], train=True)
    assert x.dtype == torch.float32 and x.shape == (5000, 1, 28, 28)
    assert abs(x.mean().item()) < 0.02 and abs(x.std().item() - 1) < 0.02


def test_limits_keep_class_balance(shared_data: Path):
    s = load_dataset("fashion-mnist", shared_data, limit_train=500, limit_test=100, seed=3, val_fraction=None)
    assert s.train_y.bincount().tolist() == [50] * 10
    assert s.test_y.bincount().tolist() == [10] * 10


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda raw: raw[: len(raw) // 2], "has md5"),  # truncated copy
        (lambda raw: raw[:100] + bytes([raw[100] ^ 0xFF]) + raw[101:], "has md5"),  # one byte flipped
    ],
    ids=["truncated", "byte-flipped"],
)
def test_damaged_copy_fails_the_md5_check(shared_data, tmp_path, damage, message):
    root = _copy_root(shared_data, tmp_path)
    raw = (shared_data / FashionMNIST.folder / FashionMNIST.train_labels.name).read_bytes()
    _replace(root, FashionMNIST.train_labels.name, damage(raw))
    before = sorted(p.name for p in root.rglob("*"))
    with pytest.raises(DataError, match=message) as e:
        load_dataset("fashion-mnist", root, val_fraction=None)
    assert FashionMNIST.train_labels.name in str(e.value) and FashionMNIST.train_labels.md5 in str(e.value)
    assert sorted(p.name for p in root.rglob("*")) == before  # nothing cached or written
    assert "\n" not in str(e.value)


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda raw: raw[: len(raw) // 2], "not a readable gzip"),
        (lambda raw: raw[:-12] + bytes([raw[-12] ^ 0xFF]) + raw[-11:], "not a readable gzip"),  # CRC breaks
        (lambda raw: gzip.compress(gzip.decompress(raw)[:-3]), "truncated"),  # valid gzip, short payload
        (lambda raw: gzip.compress(struct.pack(">I", 2051) + gzip.decompress(raw)[4:]), "magic number 2051"),
    ],
    ids=["truncated-gzip", "flipped-byte", "short-payload", "wrong-magic"],
)
def test_decoder_catches_damage_even_without_md5_check(shared_data, tmp_path, damage, message):
    # verify=False skips the md5s: the IDX reader itself must still refuse the file
    root = _copy_root(shared_data, tmp_path)
    raw = (shared_data / FashionMNIST.folder / FashionMNIST.train_labels.name).read_bytes()
    _replace(root, FashionMNIST.train_labels.name, damage(raw))
    with pytest.raises(DataError, match=message):
        load_dataset("fashion-mnist", root, verify=False, val_fraction=None)


def test_missing_folder_names_every_file_its_md5_and_the_folder(tmp_path):
    with pytest.raises(DataError) as e:
        load_dataset("fashion-mnist", tmp_path, val_fraction=None)
    text = str(e.value)
    assert str(tmp_path / "fashion-mnist") in text and "\n" not in text
    for spec in FashionMNIST.files:
        assert spec.name in text and spec.md5 in text
    assert not any(tmp_path.iterdir())  # nothing created


def test_one_missing_file_is_named(shared_data, tmp_path):
    root = _copy_root(shared_data, tmp_path)
    (root / FashionMNIST.folder / FashionMNIST.test_images.name).unlink()
    with pytest.raises(DataError, match="missing 1 file.*t10k-images-idx3-ubyte.gz"):
        load_dataset("fashion-mnist", root, val_fraction=None)


def test_read_idx_checks_the_item_shape(tmp_path):
    path = tmp_path / "x.gz"
    path.write_bytes(gzip.compress(struct.pack(">IIII", 2051, 2, 27, 28) + bytes(2 * 27 * 28)))
    with pytest.raises(DataError, match=r"shape \(2, 27, 28\), expected \(2, 28, 28\)"):
        read_idx(path, 2051, (2, 28, 28))


def test_read_idx_returns_what_was_written(tmp_path):
    pixels = bytes(range(256)) * 7  # 2 x 28 x 32 bytes
    path = tmp_path / "x.gz"
    path.write_bytes(gzip.compress(struct.pack(">IIII", 2051, 2, 28, 32) + pixels))
    x = read_idx(path, 2051, (2, 28, 32))
    assert x.tobytes() == pixels
