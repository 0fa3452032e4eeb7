"""CIFAR10-DVS and DVS128 Gesture from small files in their exact on-disk formats.

``.aedat4`` files are written byte by byte to the AEDAT 4.0 layout (magic line, size-prefixed
IOHeader flatbuffer with the XML stream description, then size-prefixed ``EVTS`` packets) and read
back by the real decoder (the ``aedat`` package, through tonic); DVS Gesture files are ``.npy``
arrays ``[N, 4]`` of (x, y, p, t in ms) in tonic's ``user<NN>_<lighting>/<label>.npy`` folders.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from albsnn.data import dataset_status, load_dataset
from albsnn.data.events import CIFAR10DVS
from albsnn.errors import DataError

T = 4
PER_CLASS = 10
_DESCRIPTION = (
    '<dv version="2.0"><node name="outInfo"><node name="0">'
    '<attr key="typeIdentifier" type="string">EVTS</attr><node name="info">'
    '<attr key="sizeX" type="int">128</attr><attr key="sizeY" type="int">128</attr>'
    "</node></node></node></dv>"
)
_EVENT = np.dtype({"names": ["t", "x", "y", "on"], "formats": ["<i8", "<i2", "<i2", "?"],
                   "offsets": [0, 8, 10, 12], "itemsize": 16})  # fmt: skip  # flatbuffers struct Event


def _ioheader() -> bytes:
    # table Ioheader {compression = None; file_data_position = -1; description: string}, id "IOHE"
    text = _DESCRIPTION.encode()
    body = struct.pack("<I4s", 20, b"IOHE") + struct.pack("<5H", 10, 8, 0, 0, 4) + b"\0\0"
    body += struct.pack("<iII", 12, 4, len(text)) + text + b"\0"
    body += b"\0" * (-len(body) % 4)
    return struct.pack("<I", len(body)) + body


def _packet(events: np.ndarray) -> bytes:
    # table EventPacket {elements: [Event]}, id "EVTS"; size-prefixed, vector 8-byte aligned
    ev = np.zeros(len(events), _EVENT)
    ev["t"], ev["x"], ev["y"], ev["on"] = events["t"], events["x"], events["y"], events["p"]
    body = struct.pack("<I4s", 16, b"EVTS") + struct.pack("<3H", 6, 8, 4) + b"\0\0"
    body += struct.pack("<iII", 8, 4, len(ev)) + ev.tobytes()
    payload = struct.pack("<I", len(body)) + body
    return struct.pack("<II", 0, len(payload)) + payload  # stream id 0, packet size


def write_aedat4(path: Path, events: np.ndarray) -> None:
    half = len(events) // 2  # two packets, as a recording has many
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"#!AER-DAT4.0\r\n" + _ioheader() + _packet(events[:half]) + _packet(events[half:]))


def _events(rng: np.random.Generator, n: int = 400) -> np.ndarray:
    ev = np.zeros(n, [("x", int), ("y", int), ("p", int), ("t", int)])
    ev["x"], ev["y"], ev["p"] = rng.integers(0, 128, n), rng.integers(0, 128, n), rng.integers(0, 2, n)
    ev["t"] = np.sort(rng.integers(0, 1_000_000, n))
    ev["t"][0], ev["t"][-1] = 0, 1_000_000 - 1  # a fixed span: bins of exactly 250 ms for T=4
    return ev


def _frames(ev: np.ndarray, size: int = 128) -> np.ndarray:
    """Reference frames: T equal bins over [t0, t0 + T*window), pixel coordinates scaled down."""
    t = ev["t"]
    window = (t[-1] - t[0]) // T
    inside = t < t[0] + T * window
    out = np.zeros((T, 2, size, size), np.int64)
    x, y = (ev["x"] * size // 128), (ev["y"] * size // 128)
    np.add.at(out, (((t - t[0]) // window)[inside], ev["p"][inside], y[inside], x[inside]), 1)
    return out


def _in_us(ev: np.ndarray) -> np.ndarray:
    out = ev.copy()
    out["t"] *= 1000
    return out


@pytest.fixture(scope="module")
def cifar10_dvs_root(tmp_path_factory) -> tuple[Path, dict[str, np.ndarray]]:
    root = tmp_path_factory.mktemp("data")
    rng = np.random.default_rng(0)
    written = {}
    for name in CIFAR10DVS.classes:
        for i in range(PER_CLASS):
            path = root / "cifar10-dvs" / name / f"cifar10_{name}_{i}.aedat4"
            written[str(path)] = _events(rng)
            write_aedat4(path, written[str(path)])
    return root, written


@pytest.fixture(scope="module")
def gesture_root(tmp_path_factory) -> tuple[Path, dict[str, np.ndarray]]:
    root = tmp_path_factory.mktemp("data")
    rng = np.random.default_rng(1)
    written = {}
    users = {"ibmGestureTrain": ("user01_fluorescent", "user02_led"), "ibmGestureTest": ("user24_led",)}
    for split, folders in users.items():
        for user in folders:
            for label in range(11):
                ev = _events(rng)
                ev["t"] //= 1000  # tonic's .npy files store milliseconds
                path = root / "dvs-gesture" / split / user / f"{label}.npy"
                path.parent.mkdir(parents=True, exist_ok=True)
                np.save(path, np.stack([ev["x"], ev["y"], ev["p"], ev["t"]], axis=1))
                written[str(path)] = ev
    return root, written


def test_aedat4_fixture_reads_back_through_tonic(cifar10_dvs_root):
    from tonic.io import read_aedat4

    _, written = cifar10_dvs_root
    path, ev = next(iter(written.items()))
    back = read_aedat4(path)
    for ours, theirs in (("t", "t"), ("x", "x"), ("y", "y"), ("p", "on")):
        assert np.array_equal(back[theirs].astype(int), ev[ours])


def test_cifar10_dvs_frames_and_labels(cifar10_dvs_root, tmp_path):
    root, written = cifar10_dvs_root
    s = load_dataset("cifar10-dvs", root, time_steps=T, cache_dir=tmp_path, val_fraction=None)
    assert s.train_x.shape == (90, T, 2, 128, 128) and s.test_x.shape == (10, T, 2, 128, 128)
    assert s.info.input_shape == (2, 128, 128) and s.info.suggested_arch == "dvs"
    # every sample is the reference binning of the events written to one file of its class folder
    class_of = {
        _frames(ev).tobytes(): CIFAR10DVS.classes.index(Path(p).parent.name) for p, ev in written.items()
    }
    got = torch.cat([s.train_x, s.test_x]).numpy().astype(np.int64)
    labels = torch.cat([s.train_y, s.test_y]).tolist()
    assert [class_of.get(x.tobytes()) for x in got] == labels
    assert len({x.tobytes() for x in got}) == 100  # each file once


def test_cifar10_dvs_split_is_stratified_9_to_1_and_stable(cifar10_dvs_root, tmp_path):
    root, _ = cifar10_dvs_root
    a = load_dataset("cifar10-dvs", root, time_steps=T, cache_dir=tmp_path, seed=0, val_fraction=None)
    b = load_dataset(
        "cifar10-dvs", root, time_steps=T, cache_dir=tmp_path / "other", seed=7, val_fraction=None
    )
    assert a.train_y.bincount().tolist() == [9] * 10 and a.test_y.bincount().tolist() == [1] * 10
    assert torch.equal(a.test_x, b.test_x)  # the run seed does not move samples between splits
    assert "seed 0" in a.meta["test"]["source"]


def test_cifar10_dvs_downsampled_to_64(cifar10_dvs_root, tmp_path):
    root, written = cifar10_dvs_root
    s = load_dataset(
        "cifar10-dvs", root, time_steps=T, size=64, cache_dir=tmp_path, limit_train=10, val_fraction=None
    )
    assert s.train_x.shape == (10, T, 2, 64, 64) and s.info.input_shape == (2, 64, 64)
    refs = {_frames(ev, 64).tobytes() for ev in written.values()}
    assert all(x.tobytes() in refs for x in s.train_x.numpy().astype(np.int64))


def test_dvs_gesture_frames_and_labels(gesture_root, tmp_path):
    root, written = gesture_root
    s = load_dataset("dvs-gesture", root, time_steps=T, cache_dir=tmp_path, val_fraction=None)
    assert s.train_x.shape == (22, T, 2, 128, 128) and s.test_x.shape == (11, T, 2, 128, 128)
    assert sorted(s.train_y.tolist()) == sorted(list(range(11)) * 2)  # label = file name
    assert sorted(s.test_y.tolist()) == list(range(11))
    # tonic turns the stored milliseconds back into microseconds before binning
    test_refs = {int(Path(p).stem): _frames(_in_us(ev)) for p, ev in written.items() if "ibmGestureTest" in p}
    for x, y in zip(s.test_x.numpy().astype(np.int64), s.test_y.tolist(), strict=True):
        assert np.array_equal(x, test_refs[y])


def test_dvs_gesture_downsample_to_48(gesture_root, tmp_path):
    root, _ = gesture_root
    s = load_dataset(
        "dvs-gesture", root, time_steps=T, size=48, cache_dir=tmp_path, limit_train=11, val_fraction=None
    )
    assert s.train_x.shape == (11, T, 2, 48, 48) and s.info.input_shape == (2, 48, 48)
    assert sorted(s.train_y.tolist()) == list(range(11))


def test_dvs_gesture_without_test_folder_needs_test_fraction(gesture_root, tmp_path):
    root, _ = gesture_root
    partial = tmp_path / "partial"
    (partial / "dvs-gesture").mkdir(parents=True)
    (partial / "dvs-gesture" / "ibmGestureTrain").symlink_to(root / "dvs-gesture" / "ibmGestureTrain")
    with pytest.raises(DataError, match="no test split: .*ibmGestureTest is missing"):
        load_dataset("dvs-gesture", partial, time_steps=T, cache_dir=tmp_path / "c", val_fraction=None)
    s = load_dataset(
        "dvs-gesture", partial, time_steps=T, cache_dir=tmp_path / "c", test_fraction=0.5, val_fraction=None
    )
    assert len(s.train_y) == 11 and len(s.test_y) == 11


def test_status_counts_the_files(cifar10_dvs_root, gesture_root):
    c = dataset_status("cifar10-dvs", cifar10_dvs_root[0])
    g = dataset_status("dvs-gesture", gesture_root[0])
    assert c.state == "partial" and c.files == 100 and "100/10,000" in c.detail
    assert g.state == "partial" and g.files == 33 and "ibmGestureTest 11/264" in g.detail


def test_truncated_aedat4_is_named(cifar10_dvs_root, tmp_path):
    root, written = cifar10_dvs_root
    copy = tmp_path / "root" / "cifar10-dvs" / "cat"
    copy.mkdir(parents=True)
    for i, path in enumerate(p for p in written if "/cat/" in p):
        data = Path(path).read_bytes()
        (copy / Path(path).name).write_bytes(data[:60] if i == 0 else data)
    with pytest.raises(DataError, match="cannot read .*cifar10_cat_0.aedat4"):
        load_dataset(
            "cifar10-dvs", tmp_path / "root", time_steps=T, cache_dir=tmp_path / "cache", val_fraction=None
        )
    assert not list((tmp_path / "cache").rglob("*.npz"))
