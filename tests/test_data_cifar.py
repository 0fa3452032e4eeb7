"""CIFAR-10/100: small files in the exact on-disk format (Python pickles with bytes keys)."""

from __future__ import annotations

import collections
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from albsnn.data import load_dataset
from albsnn.data.cifar import CIFAR10, CIFAR100, read_cifar_pickle
from albsnn.data.files import FileSpec, md5sum
from albsnn.data.transforms import random_crop_flip
from albsnn.errors import DataError

N_PER_BATCH = 12


def _batch(rng: np.random.Generator, n: int, labels_key: bytes, num_classes: int) -> dict:
    # what the canonical files hold: bytes keys, uint8 [N, 3072] rows (R, G, B planes), int labels
    return {
        b"batch_label": b"fixture batch",
        labels_key: [int(v) for v in rng.integers(0, num_classes, n)],
        b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
        b"filenames": [f"img_{i}.png".encode() for i in range(n)],
    }


def _write(path: Path, obj: object, protocol: int = 2) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=protocol)  # the originals are protocol-2 pickles


@pytest.fixture(params=[2, 4, 5], ids=lambda p: f"protocol{p}")
def cifar10_root(tmp_path: Path, request) -> tuple[Path, dict[str, dict]]:
    # protocol 2 as in the canonical files; 4 and 5 as a re-pickled copy would be
    rng = np.random.default_rng(0)
    written = {}
    for spec in CIFAR10.train_files + CIFAR10.test_files:
        written[spec.name] = _batch(rng, N_PER_BATCH, b"labels", 10)
        _write(tmp_path / CIFAR10.folder / spec.name, written[spec.name], request.param)
    return tmp_path, written


@pytest.fixture()
def cifar100_root(tmp_path: Path) -> tuple[Path, dict[str, dict]]:
    rng = np.random.default_rng(1)
    written = {}
    for name in ("train", "test"):
        written[name] = _batch(rng, 30, b"fine_labels", 100)
        written[name][b"coarse_labels"] = [v // 5 for v in written[name][b"fine_labels"]]
        _write(tmp_path / CIFAR100.folder / name, written[name])
    names = {b"fine_label_names": [c.encode() for c in CIFAR100.classes], b"coarse_label_names": []}
    _write(tmp_path / CIFAR100.folder / "meta", names)
    return tmp_path, written


def _with_fixture_md5s(monkeypatch, meta: type[CIFAR10], root: Path) -> None:
    # The canonical md5s cannot match fixtures: point the table at the fixture files instead,
    # so the md5-checking path itself runs.
    def redo(specs):
        return tuple(FileSpec(s.name, md5sum(root / meta.folder / s.name)) for s in specs)

    for attr in ("train_files", "test_files", "other_files"):
        monkeypatch.setattr(meta, attr, redo(getattr(meta, attr)))


def test_cifar10_decodes_the_pixels_and_labels_written(cifar10_root, monkeypatch):
    root, written = cifar10_root
    _with_fixture_md5s(monkeypatch, CIFAR10, root)
    s = load_dataset("cifar10", root, val_fraction=None)
    order = [f.name for f in CIFAR10.train_files]
    data = np.concatenate([written[n][b"data"] for n in order])
    labels = sum((written[n][b"labels"] for n in order), [])
    assert s.train_x.dtype == torch.uint8 and s.train_x.shape == (5 * N_PER_BATCH, 3, 32, 32)
    assert np.array_equal(s.train_x.numpy(), data.reshape(-1, 3, 32, 32))
    assert s.train_y.tolist() == labels
    assert s.test_y.tolist() == written["test_batch"][b"labels"]
    # pixel (channel 1, row 2, col 3) of image 0 is byte 1024 + 2 * 32 + 3 of its row
    assert s.test_x[0, 1, 2, 3].item() == written["test_batch"][b"data"][0, 1024 + 67]
    assert s.info.suggested_arch == "cifar" and s.info.num_classes == 10


def test_cifar100_uses_the_fine_labels(cifar100_root, monkeypatch):
    root, written = cifar100_root
    _with_fixture_md5s(monkeypatch, CIFAR100, root)
    s = load_dataset("cifar100", root, val_fraction=None)
    assert s.train_y.tolist() == written["train"][b"fine_labels"]
    assert np.array_equal(s.test_x.numpy(), written["test"][b"data"].reshape(-1, 3, 32, 32))
    assert s.info.num_classes == 100 and len(s.info.class_names) == 100


def test_canonical_md5s_are_checked_by_default(cifar10_root):
    root, _ = cifar10_root
    with pytest.raises(DataError, match=f"data_batch_1 has md5 .*expected {CIFAR10.train_files[0].md5}"):
        load_dataset("cifar10", root, val_fraction=None)


def test_missing_files_are_named_with_md5s_and_folder(tmp_path):
    with pytest.raises(DataError) as e:
        load_dataset("cifar100", tmp_path, val_fraction=None)
    text = str(e.value)
    assert str(tmp_path / "cifar-100-python") in text
    for spec in CIFAR100.train_files + CIFAR100.test_files + CIFAR100.other_files:
        assert f"{spec.name} (md5 {spec.md5})" in text


def test_codecs_encode_is_allowed_only_for_latin1(tmp_path):
    path = tmp_path / "batch"
    _write(path, {b"k": b"\xff"})
    assert read_cifar_pickle(path) == {"k": b"\xff"}
    path.write_bytes(pickle.dumps(b"x", protocol=2).replace(b"latin1", b"rot_13"))
    with pytest.raises(DataError, match="unexpected object"):
        read_cifar_pickle(path)


class _RunsCode:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


@pytest.mark.parametrize(
    "payload",
    [
        {b"data": _RunsCode()},  # would run a shell command while loading
        collections.OrderedDict(data=1),  # harmless class, still not an expected type
    ],
    ids=["os.system", "OrderedDict"],
)
def test_a_pickle_holding_an_unexpected_object_is_refused(tmp_path, monkeypatch, payload):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "data_batch_1"
    _write(path, payload)
    with pytest.raises(DataError, match="unexpected object"):
        read_cifar_pickle(path)
    assert not (tmp_path / "pwned").exists()


def test_refused_pickle_stops_the_load(cifar10_root):
    root, _ = cifar10_root
    _write(root / CIFAR10.folder / "test_batch", {b"data": _RunsCode(), b"labels": []})
    with pytest.raises(DataError, match="test_batch holds an unexpected object"):
        load_dataset("cifar10", root, verify=False, val_fraction=None)


@pytest.mark.parametrize(
    "change, message",
    [
        ({b"data": np.zeros((3, 3072), np.float32)}, "expected a uint8 array"),
        ({b"data": np.zeros((3, 1024), np.uint8)}, "expected a uint8 array"),
        ({b"labels": [0, 1, 10]}, "labels in 0..9"),
        ({b"labels": [0, 1]}, "must be 3 labels"),
    ],
)
def test_wrong_content_is_refused(cifar10_root, change, message):
    root, _ = cifar10_root
    batch = {b"data": np.zeros((3, 3072), np.uint8), b"labels": [0, 1, 2], **change}
    _write(root / CIFAR10.folder / "test_batch", batch)
    with pytest.raises(DataError, match=message):
        load_dataset("cifar10", root, verify=False, val_fraction=None)


def test_truncated_pickle_is_a_clear_error(cifar10_root):
    root, _ = cifar10_root
    path = root / CIFAR10.folder / "data_batch_3"
    path.write_bytes(path.read_bytes()[:500])
    with pytest.raises(DataError, match="data_batch_3 is not a readable CIFAR pickle"):
        load_dataset("cifar10", root, verify=False, val_fraction=None)


def test_training_batches_are_cropped_and_flipped_test_batches_are_not(cifar10_root):
    root, _ = cifar10_root
    s = load_dataset("cifar10", root, verify=False, val_fraction=None)
    x = s.train_x[:8]
    torch.manual_seed(0)
    train = s.prepare(x, train=True)
    assert train.shape == (8, 3, 32, 32) and train.dtype == torch.float32
    assert not torch.equal(train, s.prepare(x, train=False))
    assert torch.equal(s.prepare(x, train=False), s.prepare(x, train=False))  # evaluation is deterministic


def _is_crop_of(out: torch.Tensor, img: torch.Tensor, pad: int) -> bool:
    padded = torch.nn.functional.pad(img, (pad, pad, pad, pad))
    h, w = img.shape[-2:]
    crops = [padded[:, i : i + h, j : j + w] for i in range(2 * pad + 1) for j in range(2 * pad + 1)]
    return any(torch.equal(out, c) or torch.equal(out, c.flip(-1)) for c in crops)


def test_random_crop_flip_gives_a_window_of_the_padded_image():
    # the vectorised crop must equal some per-image crop (+ optional flip) of the zero-padded input
    g = torch.Generator().manual_seed(1)
    x = torch.randint(1, 256, (16, 3, 32, 32), dtype=torch.uint8)
    out = random_crop_flip(x, pad=4, generator=g)
    assert out.dtype == torch.uint8 and out.shape == x.shape
    assert all(_is_crop_of(out[i], x[i], 4) for i in range(len(x)))
    # with 16 images some crop must be shifted (shows black border pixels)
    assert (out == 0).any()


def test_flip_only_mirrors_or_keeps_each_image():
    x = torch.rand(32, 3, 8, 8)
    out = random_crop_flip(x, pad=0, generator=torch.Generator().manual_seed(0))
    kept = [torch.equal(o, i) for o, i in zip(out, x, strict=True)]
    mirrored = [torch.equal(o, i.flip(-1)) for o, i in zip(out, x, strict=True)]
    assert all(k or m for k, m in zip(kept, mirrored, strict=True)) and any(kept) and any(mirrored)
