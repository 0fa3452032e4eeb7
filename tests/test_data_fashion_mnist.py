"""Fashion-MNIST: the real canonical files, damaged copies of them, and training-batch augmentation."""

from __future__ import annotations

import dataclasses
import gzip
import struct
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from albsnn.data import load_dataset
from albsnn.data.fashion_mnist import FashionMNIST, read_idx
from albsnn.data.files import md5sum
from albsnn.errors import ConfigError, DataError
from albsnn.train import Callback, TrainConfig, Trainer, fit

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: a second thread only waits


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


# ---- augmentation (issue 18): random crop of the zero-padded image + horizontal flip ------------------
def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.fixture(scope="module")
def augmented(shared_data: Path):
    return load_dataset("fashion-mnist", shared_data, val_fraction=None, augment=True)


def test_augment_options_come_from_text_as_data_options_give_them(shared_data: Path, fmnist):
    # --data-option augment=true pad=3 flip=false arrive as text and reach the transform typed
    s = load_dataset("fashion-mnist", shared_data, val_fraction=None, augment="true", pad="3", flip="false")
    assert (s.transform.augment, s.transform.pad, s.transform.flip) == (True, 3, False)
    # defaults: off; when turned on, pad 2 and flip
    assert (fmnist.transform.augment, fmnist.transform.pad, fmnist.transform.flip) == (False, 2, True)


def test_negative_pad_is_a_config_error(shared_data: Path):
    with pytest.raises(ConfigError, match="pad=-1"):
        load_dataset("fashion-mnist", shared_data, val_fraction=None, augment=True, pad=-1)


def test_augmented_batch_keeps_shape_and_dtype(augmented):
    x = augmented.prepare(augmented.train_x[:64], train=True, generator=_gen(0))
    assert x.shape == (64, 1, 28, 28) and x.dtype == torch.float32


@pytest.mark.parametrize("seed_a, seed_b, same", [(7, 7, True), (7, 8, False)])
def test_the_generator_alone_decides_the_batch(augmented, seed_a, seed_b, same):
    # same generator seed -> the same crops and flips; another seed -> other ones
    xb = augmented.train_x[:64]
    a = augmented.prepare(xb, train=True, generator=_gen(seed_a))
    b = augmented.prepare(xb, train=True, generator=_gen(seed_b))
    assert torch.equal(a, b) is same


def _variants(transform, xb: torch.Tensor, pad: int, mirror: bool) -> torch.Tensor:
    """Every crop of the zero-padded batch (and, with ``mirror``, of its mirror), normalised: [K, B, ...]."""
    sources = [xb, xb.flip(-1)] if mirror else [xb]
    out = []
    for src in sources:
        padded = F.pad(src, (pad, pad, pad, pad))
        for dy in range(2 * pad + 1):
            for dx in range(2 * pad + 1):
                out.append(transform(padded[..., dy : dy + 28, dx : dx + 28], False))
    return torch.stack(out)


@pytest.mark.parametrize("flip", [True, False])
def test_each_image_is_a_shift_of_the_original_and_mirrored_only_with_flip(augmented, flip):
    # Rule: output = a 28x28 window of the image padded with `pad` black pixels, mirrored at most when
    # flip=True. With flip=False no image may need the mirror to be explained.
    t = dataclasses.replace(augmented.transform, flip=flip)
    xb = augmented.train_x[:200]
    plain, both = _variants(t, xb, t.pad, mirror=False), _variants(t, xb, t.pad, mirror=True)
    mirrored_only = 0
    for seed in range(3):
        x = t(xb, True, _gen(seed))
        in_plain = (plain == x).flatten(2).all(-1).any(0)  # [B]: some unmirrored window equals it
        in_both = (both == x).flatten(2).all(-1).any(0)
        assert in_both.all()
        if not flip:
            assert in_plain.all()
        mirrored_only += int((~in_plain).sum())
    assert (mirrored_only > 0) is flip  # flip=True mirrors some (asymmetric) images; off mirrors none


def test_pad_zero_without_flip_changes_nothing(augmented):
    t = dataclasses.replace(augmented.transform, pad=0, flip=False)
    xb = augmented.train_x[:64]
    assert torch.equal(t(xb, True, _gen(0)), t(xb, False))


@pytest.mark.parametrize("which", ["augment off, training batch", "augment on, evaluation batch"])
def test_unaugmented_input_is_the_evaluation_input(fmnist, augmented, which):
    # augment=False (the default): training input == evaluation input; evaluation is never augmented
    xb = fmnist.train_x[:64]
    splits, train = (fmnist, True) if which.startswith("augment off") else (augmented, False)
    assert torch.equal(splits.prepare(xb, train=train, generator=_gen(0)), fmnist.prepare(xb, train=False))


# A tiny but real run: 600 training images, 1,200 validation, 200 test, width 0.25, augmentation on.
_TINY = dict(
    dataset="fashion-mnist",
    arch="fmnist_fast",
    width=0.25,
    time_steps=1,
    spike_after_pool=True,
    limit_train=600,
    limit_test=200,
    val_fraction=0.02,
    data_options={"augment": True},
    binarize="all",
    estimator="weight-error",
    bwo="off",
    batch_size=64,
    lr=4e-3,
    schedule="onecycle",
    epochs=2,
)


@pytest.fixture(scope="module")
def tiny_splits(shared_data: Path):
    c = _TINY
    return load_dataset(
        c["dataset"], shared_data, limit_train=c["limit_train"], limit_test=c["limit_test"], seed=0,
        val_fraction=c["val_fraction"], **c["data_options"],
    )  # fmt: skip


def _tiny(shared_data: Path, out: Path, **kw) -> TrainConfig:
    return TrainConfig(**{**_TINY, "data_dir": str(shared_data), "out": str(out), **kw})


def test_trainer_augments_training_batches_per_step(shared_data, tmp_path, tiny_splits):
    trainer = Trainer(_tiny(shared_data, tmp_path / "t"), splits=tiny_splits)
    xb = tiny_splits.train_x[:64]
    first = trainer._inputs(xb, train=True, generator=trainer._augment_generator())
    assert not torch.equal(first, trainer._eval_inputs(xb))
    again = trainer._inputs(xb, train=True, generator=trainer._augment_generator())
    trainer.step += 1  # the generator is seeded by (seed, epoch, step): the next step crops differently
    later = trainer._inputs(xb, train=True, generator=trainer._augment_generator())
    assert torch.equal(first, again) and not torch.equal(first, later)


class _StopAfter(Callback):
    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_epoch_end(self, trainer, metrics) -> bool:
        return metrics["epoch"] >= self.epoch


def test_resume_with_augmentation_ends_with_the_weights_of_an_uninterrupted_run(
    shared_data, tmp_path, tiny_splits
):
    # 2 epochs straight == 1 epoch, stop, resume from the checkpoint for the second: same crops, same weights
    fit(_tiny(shared_data, tmp_path / "full"), splits=tiny_splits)
    fit(_tiny(shared_data, tmp_path / "split"), [_StopAfter(1)], splits=tiny_splits)
    fit(
        _tiny(shared_data, tmp_path / "split"),
        resume_from=tmp_path / "split" / "checkpoint.pt",
        splits=tiny_splits,
    )
    a = torch.load(tmp_path / "full" / "checkpoint.pt", weights_only=True)
    b = torch.load(tmp_path / "split" / "checkpoint.pt", weights_only=True)
    assert a["epoch"] == b["epoch"] == 2
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key
    assert [h["train_loss"] for h in a["history"]] == [h["train_loss"] for h in b["history"]]
