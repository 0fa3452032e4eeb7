"""Neuromorphic datasets through tonic, turned into event frames and cached on disk.

==============  ==================================================  ============  =====================
name            layout under the data root                          sensor        split
==============  ==================================================  ============  =====================
``nmnist``      ``nmnist/{Train,Test}/<digit>/*.bin``               34x34x2       Train / Test folders
``cifar10-dvs`` ``cifar10-dvs/<class>/*.aedat4`` (needs ``aedat``)  128x128x2     stratified 9:1, seed 0
``dvs-gesture`` ``dvs-gesture/{ibmGestureTrain,ibmGestureTest}/``   128x128x2     Train / Test folders
                ``user<NN>_<lighting>/<label>.npy`` (tonic's)
==============  ==================================================  ============  =====================

Reading is tonic's (its dataset classes and ``tonic.io`` readers); this module only points them at an
already-extracted folder and keeps them offline: tonic's classes look for their archive and download
it when it is absent, so :func:`offline_tonic_class` makes a subclass that reads the given folder as is
and refuses to download. Frames come from ``tonic.transforms.ToFrame(n_time_bins=T)``, optionally
after ``Denoise`` and a spatial ``Downsample`` (DVS 128 -> 64 or 48).

Frames are cached as one ``.npz`` per split under ``<cache dir>/frames/``, named by a hash of every
parameter that changes them (:class:`FrameSpec`, the reader options, tonic's version) and of the file
list (relative path, size, mtime, label). tonic's own ``DiskCachedDataset`` keys by sample index only,
so it serves stale frames after a transform change; here a changed T or size is a different file.
Cache dir: ``cache_dir`` option > ``$ALBSNN_CACHE`` > ``<data root>/.cache`` (when writable) >
``~/.cache/albsnn/.cache``. Files are written to a temporary name and renamed when complete.

Measured (docs/data.md): the 1,000 real N-MNIST samples, T=8, 2-core AMD EPYC CPU: first load
1.04-1.42 s (tonic read + ToFrame + write), second load 0.053-0.086 s from the cache (15-20x).
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import time
import zipfile
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch

from albsnn.atomic import atomic_path
from albsnn.data.files import Archive, fetch_archive, folder_size, safe_extract
from albsnn.data.registry import (
    TEST_SUBSET_SEED,
    DatasetInfo,
    DatasetSplits,
    DatasetStatus,
    register_dataset,
    stratified_subset,
)
from albsnn.data.transforms import EventTransform
from albsnn.errors import ConfigError, DataError

__all__ = [
    "EventDataset",
    "NMNIST",
    "CIFAR10DVS",
    "DVSGesture",
    "FrameSpec",
    "FrameCache",
    "offline_tonic_class",
    "default_cache_dir",
    "holdout_split",
    "load_nmnist",
    "load_cifar10_dvs",
    "load_dvs_gesture",
]

_log = logging.getLogger(__name__)
CACHE_FORMAT = 1  # bump when the stored layout changes, so old cache files are never read
SPLIT_SEED = 0  # held-out test sets do not depend on the run seed: every run tests on the same samples


class EventDataset:
    """Metadata of one event dataset; subclasses fill in the class attributes."""

    name: str
    folder: str  # under the data root
    tonic_class: str  # name in tonic.datasets
    sensor_size: tuple[int, int, int]  # (W, H, P), tonic's order
    suffix: str  # event file extension
    split_folders: dict[str, str] | None  # {"train": ..., "test": ...}; None: one pool, split by us
    expected: dict[str, int]  # file counts of the complete dataset
    archives: dict[str, Archive]  # per split ("all" for a single pool)
    classes: tuple[str, ...]


class NMNIST(EventDataset):
    name, folder, tonic_class = "nmnist", "nmnist", "NMNIST"
    sensor_size = (34, 34, 2)
    suffix = ".bin"
    split_folders = {"train": "Train", "test": "Test"}
    expected = {"train": 60_000, "test": 10_000}
    _url = "https://data.mendeley.com/public-files/datasets/468j46mzdv/files/"
    archives = {
        "train": Archive(
            _url + "39c25547-014b-4137-a934-9d29fa53c7a0/file_downloaded",
            "train.zip", "20959b8e626244a1b502305a9e6e2031", "nmnist",
        ),
        "test": Archive(
            _url + "05a4d654-7e03-4c15-bdfa-9bb2bcbea494/file_downloaded",
            "test.zip", "69ca8762b2fe404d9b9bad1103e97832", "nmnist",
        ),
    }  # fmt: skip
    classes = tuple(str(d) for d in range(10))


class CIFAR10DVS(EventDataset):
    name, folder, tonic_class = "cifar10-dvs", "cifar10-dvs", "CIFAR10DVS"
    sensor_size = (128, 128, 2)
    suffix = ".aedat4"
    split_folders = None
    expected = {"all": 10_000}
    archives = {
        "all": Archive(
            "https://figshare.com/ndownloader/files/38023437",
            "CIFAR10DVS.zip", "ce3a4a0682dc0943703bd8f749a7701c", "cifar10-dvs",
        )
    }  # fmt: skip
    classes = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
    test_fraction = 0.1


class DVSGesture(EventDataset):
    name, folder, tonic_class = "dvs-gesture", "dvs-gesture", "DVSGesture"
    sensor_size = (128, 128, 2)
    suffix = ".npy"
    split_folders = {"train": "ibmGestureTrain", "test": "ibmGestureTest"}
    expected = {"train": 1_077, "test": 264}
    archives = {
        "train": Archive(
            "https://figshare.com/ndownloader/files/38022171",
            "ibmGestureTrain.tar.gz", "3a8f0d4120a166bac7591f77409cb105", "dvs-gesture",
        ),
        "test": Archive(
            "https://figshare.com/ndownloader/files/38020584",
            "ibmGestureTest.tar.gz", "56070e45dadaa85fff82e0fbfbc06de5", "dvs-gesture",
        ),
    }  # fmt: skip
    classes = (
        "hand clap", "right hand wave", "left hand wave", "right arm clockwise",
        "right arm counter-clockwise", "left arm clockwise", "left arm counter-clockwise",
        "arm roll", "air drums", "air guitar", "other",
    )  # fmt: skip


# --------------------------------------------------------------------------- frames


@dataclass(frozen=True)
class FrameSpec:
    """Every parameter that changes the frames of one sample (all of it goes into the cache key)."""

    time_steps: int  # T: ToFrame(n_time_bins=T)
    sensor_size: tuple[int, int, int]  # native (W, H, P)
    size: int | None = None  # output side after spatial downsampling; None = native
    denoise_us: float | None = None  # tonic Denoise(filter_time) in microseconds; None = off

    def __post_init__(self) -> None:
        w, h, _ = self.sensor_size
        if self.time_steps < 1:
            raise ConfigError(f"time_steps must be >= 1, but got time_steps={self.time_steps}")
        if self.size is not None and not 1 <= self.size <= min(w, h):
            raise ConfigError(
                f"size must be in 1..{min(w, h)} (the sensor is {w}x{h}), but got size={self.size}"
            )
        if self.denoise_us is not None and self.denoise_us <= 0:
            raise ConfigError(f"denoise_us must be > 0 (or none), but got denoise_us={self.denoise_us}")

    @property
    def out_sensor(self) -> tuple[int, int, int]:
        w, h, p = self.sensor_size
        return (w, h, p) if self.size is None else (self.size, round(h * self.size / w), p)

    @property
    def frame_shape(self) -> tuple[int, int, int, int]:
        """(T, P, H, W) of one sample."""
        w, h, p = self.out_sensor
        return (self.time_steps, p, h, w)

    def transform(self):
        """tonic's transforms, in order: denoise at native resolution, downsample, bin into frames."""
        import tonic.transforms as tt

        steps = []
        if self.denoise_us is not None:
            steps.append(tt.Denoise(filter_time=self.denoise_us))
        if self.size is not None:
            steps.append(tt.Downsample(spatial_factor=self.size / self.sensor_size[0]))
        steps.append(tt.ToFrame(sensor_size=self.out_sensor, n_time_bins=self.time_steps))
        return tt.Compose(steps)


def default_cache_dir(root: Path) -> Path:
    """``$ALBSNN_CACHE`` > ``<root>/.cache`` if it can be written > ``~/.cache/albsnn/.cache``."""
    if os.environ.get("ALBSNN_CACHE"):
        return Path(os.environ["ALBSNN_CACHE"]).expanduser()
    if _writable(root / ".cache"):
        return root / ".cache"
    # a read-only data root (a shared mount) still gets a cache, in the user's own folder
    return Path.home() / ".cache" / "albsnn" / ".cache"


def _writable(path: Path) -> bool:
    while not path.exists():
        if path.parent == path:
            return False
        path = path.parent
    # The mode bits count too: root may write anywhere, but a folder marked r-x for everyone
    # (a shared, read-only data copy) is not meant to receive a cache.
    return path.is_dir() and os.access(path, os.W_OK | os.X_OK) and bool(path.stat().st_mode & 0o222)


class FrameCache:
    """Frames of a list of samples, stored as ``<folder>/frames/<dataset>-<split>-<key>.npz``."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder) / "frames"

    def key(self, dataset: str, split: str, spec: FrameSpec, reader: dict, files: list[tuple]) -> str:
        import tonic

        params = {
            "format": CACHE_FORMAT,
            "dataset": dataset,
            "split": split,
            "frames": {"method": "ToFrame(n_time_bins)", **asdict(spec)},
            "reader": reader,
            "tonic": tonic.__version__,
            "files": hashlib.sha256(json.dumps(files).encode()).hexdigest(),
        }
        return hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:24]

    def path(self, dataset: str, split: str, key: str) -> Path:
        return self.folder / f"{dataset}-{split}-{key}.npz"

    def read(self, path: Path, n: int, frame_shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray] | None:
        """Cached ``(x, y)``, or ``None`` when absent or unreadable (it is then rebuilt)."""
        if not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as z:
                x, y = z["x"], z["y"]
        except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError):
            return None
        return (x, y) if x.shape == (n, *frame_shape) and y.shape == (n,) else None

    def write(self, path: Path, x: np.ndarray, y: np.ndarray) -> None:
        # a file object: np.savez would append ".npz" to the temporary name
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            np.savez(f, x=x, y=y)


@functools.cache
def offline_tonic_class(name: str) -> type:
    """tonic's dataset class ``name``, reading ``folder`` as it is and never downloading.

    tonic stores a dataset under ``save_to/<ClassName>`` and downloads its archive whenever the
    archive file itself is absent, even if the extracted files are all there. The subclass takes the
    dataset folder itself (``folder=``), trusts it (the loader has checked it) and turns a download
    attempt into a :class:`DataError`.
    """
    import tonic.datasets

    base = getattr(tonic.datasets, name)

    class Offline(base):
        def __init__(self, folder: str | os.PathLike, **kwargs) -> None:
            self._folder = str(folder)
            super().__init__(save_to=self._folder, **kwargs)

        @property
        def location_on_system(self) -> str:
            return self._folder

        @location_on_system.setter
        def location_on_system(self, value: str) -> None:
            pass  # tonic's base class sets save_to/<ClassName>; our layout has the folder itself

        def _check_exists(self) -> bool:
            return True

        def download(self) -> None:
            raise DataError(f"{self._folder}: {name} files are missing and albsnn never lets tonic download")

    Offline.__name__ = Offline.__qualname__ = f"Offline{name}"
    return Offline


def holdout_split(
    targets: np.ndarray, fraction: float, seed: int = SPLIT_SEED
) -> tuple[np.ndarray, np.ndarray]:
    """Stratified ``(train, test)`` indices with ``fraction`` of each class in test; fixed by ``seed``."""
    from sklearn.model_selection import train_test_split

    idx = np.arange(len(targets))
    _, counts = np.unique(targets, return_counts=True)
    n_test = int(round(fraction * len(targets)))
    stratify = targets if counts.min() >= 2 and n_test >= len(counts) else None
    train, test = train_test_split(idx, test_size=fraction, random_state=seed, stratify=stratify)
    return np.sort(train), np.sort(test)


# --------------------------------------------------------------------------- loading


@dataclass
class _Source:
    """Which samples of which tonic dataset make one split."""

    dataset: object  # a tonic dataset
    indices: np.ndarray
    origin: str  # for meta / messages


def _check_fraction(value: float | None) -> None:
    if value is not None and not 0 < value < 1:
        raise ConfigError(f"test_fraction must be in (0, 1), but got test_fraction={value}")


def _count(folder: Path, suffix: str) -> int:
    return sum(1 for _ in folder.rglob(f"*{suffix}")) if folder.is_dir() else 0


def _require_folder(meta: type[EventDataset], folder: Path) -> None:
    if folder.exists() and not folder.is_dir():
        raise DataError(
            f"{meta.name}: {folder} is a file, not a folder; move it away and put the dataset there"
        )
    if not folder.is_dir():
        raise DataError(
            f"{meta.name}: folder {folder} is missing; put the extracted dataset there "
            f"(layout in docs/data.md), or fetch it when online with "
            f"`albsnn datasets --download {meta.name} --data-dir {folder.parent}`"
        )


def _open(meta: type[EventDataset], folder: Path, split: str | None, reader: dict, spec: FrameSpec):
    kwargs = dict(reader)
    if split is not None:
        kwargs["train"] = split == "train"
    ds = offline_tonic_class(meta.tonic_class)(folder, transform=spec.transform(), **kwargs)
    if len(ds) == 0:
        where = folder / meta.split_folders[split] if split else folder
        raise DataError(
            f"{meta.name}: no {meta.suffix} files under {where}; check the layout in docs/data.md"
        )
    return ds


def _sources(
    meta: type[EventDataset], folder: Path, test_fraction: float | None, reader: dict, spec: FrameSpec
) -> tuple[_Source, _Source]:
    if meta.split_folders is None:  # one pool: always split here
        ds = _open(meta, folder, None, reader, spec)
        train, test = holdout_split(np.asarray(ds.targets), test_fraction)
        origin = f"stratified {1 - test_fraction:.0%}/{test_fraction:.0%} split, seed {SPLIT_SEED}"
        return _Source(ds, train, origin), _Source(ds, test, origin)
    train_dir, test_dir = (folder / meta.split_folders[s] for s in ("train", "test"))
    if not train_dir.is_dir():
        raise DataError(
            f"{meta.name}: training split {train_dir} is missing; put the {train_dir.name} folder there"
        )
    train_ds = _open(meta, folder, "train", reader, spec)
    if test_fraction is not None:  # asked for: hold out part of Train, even where a Test folder exists
        train, test = holdout_split(np.asarray(train_ds.targets), test_fraction)
        origin = f"held out {test_fraction:.0%} of {train_dir.name}, stratified, seed {SPLIT_SEED}"
        return _Source(train_ds, train, origin), _Source(train_ds, test, origin)
    if not test_dir.is_dir():
        raise DataError(
            f"{meta.name}: no test split: {test_dir} is missing ({train_dir.name}/ has "
            f"{len(train_ds):,} {meta.suffix} files); put the {test_dir.name} folder there, or hold out part "
            f"of {train_dir.name} with the option test_fraction=0.2 (CLI: --data-option test_fraction=0.2)"
        )
    test_ds = _open(meta, folder, "test", reader, spec)
    all_train, all_test = np.arange(len(train_ds)), np.arange(len(test_ds))
    return _Source(train_ds, all_train, train_dir.name), _Source(test_ds, all_test, test_dir.name)


def _limit(source: _Source, n: int | None, seed: int) -> _Source:
    if not n:
        return source
    targets = torch.as_tensor(np.asarray(source.dataset.targets)[source.indices])
    keep = stratified_subset(targets, n, seed).numpy()
    return replace(source, indices=source.indices[keep])


def _fingerprint(folder: Path, source: _Source) -> list[tuple]:
    rows = []
    for i in source.indices:
        path = Path(source.dataset.data[i])
        st = path.stat()
        rows.append(
            (str(path.relative_to(folder)), st.st_size, st.st_mtime_ns, int(source.dataset.targets[i]))
        )
    return rows


def _build(meta: type[EventDataset], source: _Source, spec: FrameSpec) -> tuple[np.ndarray, np.ndarray]:
    x = np.zeros((len(source.indices), *spec.frame_shape), dtype=np.int16)  # ToFrame's own dtype
    y = np.asarray(source.dataset.targets, dtype=np.int64)[source.indices]
    for j, i in enumerate(source.indices):
        try:
            frames, _ = source.dataset[i]
        except Exception as e:  # noqa: BLE001 - tonic's readers raise anything on a damaged file
            raise DataError(
                f"{meta.name}: cannot read {source.dataset.data[i]} ({type(e).__name__}: {e}); "
                f"replace or delete that file"
            ) from e
        if frames.shape != spec.frame_shape:
            raise DataError(
                f"{meta.name}: {source.dataset.data[i]} gave frames {frames.shape}, not {spec.frame_shape}"
            )
        x[j] = frames
    # Counts per pixel and bin are small; uint8 halves memory where that loses nothing.
    return (x.astype(np.uint8) if x.size and x.min() >= 0 and x.max() <= 255 else x), y


def _frames(
    meta: type[EventDataset],
    folder: Path,
    split: str,
    source: _Source,
    spec: FrameSpec,
    reader: dict,
    cache: FrameCache | None,
) -> tuple[torch.Tensor, torch.Tensor, dict]:
    t0 = time.perf_counter()
    path = None
    if cache is not None:
        key = cache.key(meta.name, split, spec, reader, _fingerprint(folder, source))
        path = cache.path(meta.name, split, key)
        hit = cache.read(path, len(source.indices), spec.frame_shape)
        if hit is not None:
            x, y = hit
            return torch.from_numpy(x), torch.from_numpy(y), _record("hit", path, t0, source)
    _log.info(
        "%s %s: converting %d files to frames (%s)", meta.name, split, len(source.indices), path or "no cache"
    )
    x, y = _build(meta, source, spec)
    if cache is not None:
        cache.write(path, x, y)
    return torch.from_numpy(x), torch.from_numpy(y), _record("miss" if cache else "off", path, t0, source)


def _record(state: str, path: Path | None, t0: float, source: _Source) -> dict:
    return {
        "cache": state,
        "cache_file": str(path) if path else None,
        "seconds": round(time.perf_counter() - t0, 4),
        "samples": len(source.indices),
        "source": source.origin,
    }


def _load(
    meta: type[EventDataset],
    info: DatasetInfo,
    root: Path,
    *,
    time_steps: int,
    size: int | None,
    denoise_us: float | None,
    test_fraction: float | None,
    cache_dir: Path | None,
    cache: bool,
    download: bool,
    limit_train: int | None,
    limit_test: int | None,
    seed: int,
    reader: dict,
) -> DatasetSplits:
    spec = FrameSpec(time_steps, meta.sensor_size, size, denoise_us)
    _check_fraction(test_fraction)
    folder = root / meta.folder
    if download:
        fetch(meta, root)
    _require_folder(meta, folder)
    train, test = _sources(meta, folder, test_fraction, reader, spec)
    train, test = _limit(train, limit_train, seed), _limit(test, limit_test, TEST_SUBSET_SEED)
    store = FrameCache(cache_dir or default_cache_dir(root)) if cache else None
    train_x, train_y, train_meta = _frames(meta, folder, "train", train, spec, reader, store)
    test_x, test_y, test_meta = _frames(meta, folder, "test", test, spec, reader, store)
    w, h, p = spec.out_sensor
    return DatasetSplits(
        info=replace(info, input_shape=(p, h, w)),
        train_x=train_x,
        train_y=train_y,
        test_x=test_x,
        test_y=test_y,
        transform=EventTransform(),
        meta={"folder": str(folder), "frames": asdict(spec), "train": train_meta, "test": test_meta},
    )


def fetch(meta: type[EventDataset], root: Path) -> None:
    """Download and unpack the archives of the splits whose folder is absent."""
    folder = root / meta.folder
    for split, archive in meta.archives.items():
        sub = folder / meta.split_folders[split] if meta.split_folders else folder
        if _count(sub, meta.suffix):
            continue
        fetch_archive(root, archive)
        if meta.split_folders is None:  # CIFAR10DVS.zip holds one zip per class
            for inner in sorted(folder.glob("*.zip")):
                safe_extract(inner, folder)
                inner.unlink()


def status(meta: type[EventDataset], root: Path, verify: bool = False) -> DatasetStatus:
    """File counts per split; ``verify`` has nothing to check (no md5s exist for extracted files)."""
    folder = root / meta.folder
    if not folder.is_dir():
        return DatasetStatus(meta.name, "missing", folder)
    size, _ = folder_size(folder)
    parts, complete, total = [], True, 0
    for split, expected in meta.expected.items():
        sub = folder / meta.split_folders[split] if meta.split_folders else folder
        n = _count(sub, meta.suffix)
        total += n
        complete &= n >= expected
        label = sub.name if meta.split_folders else "all"
        parts.append(f"{label} {n:,}/{expected:,} {meta.suffix}" if sub.is_dir() else f"{label} missing")
    state = "present" if complete else ("partial" if total else "missing")
    md5 = "n/a (extracted)"  # md5s exist only for the archives, checked on download
    return DatasetStatus(meta.name, state, folder, size, total, md5, "; ".join(parts))


def _info(meta: type[EventDataset], description: str) -> DatasetInfo:
    w, h, p = meta.sensor_size
    return DatasetInfo(
        name=meta.name,
        input_shape=(p, h, w),
        num_classes=len(meta.classes),
        class_names=meta.classes,
        suggested_arch="dvs",
        events=True,
        folder=meta.folder,
        description=description,
    )


NMNIST_INFO = _info(NMNIST, "N-MNIST, 60,000 + 10,000 saccade recordings of MNIST digits, 34x34 (.bin)")
CIFAR10DVS_INFO = _info(
    CIFAR10DVS, "CIFAR10-DVS, 10,000 DVS recordings of CIFAR-10 images, 128x128 (.aedat4)"
)
DVSGESTURE_INFO = _info(
    DVSGesture, "DVS128 Gesture, 1,077 + 264 recordings of 11 gestures, 128x128 (tonic .npy)"
)


@register_dataset(
    NMNIST_INFO, status=functools.partial(status, NMNIST), fetch=functools.partial(fetch, NMNIST)
)
def load_nmnist(
    root: Path,
    *,
    time_steps: int = 1,
    size: int | None = None,
    denoise_us: float | None = None,
    first_saccade_only: bool = False,
    test_fraction: float | None = None,
    cache_dir: Path | None = None,
    cache: bool = True,
    download: bool = False,
    limit_train: int | None = None,
    limit_test: int | None = None,
    seed: int = 0,
) -> DatasetSplits:
    """N-MNIST frames ``[N, T, 2, 34, 34]``.

    ``test_fraction``: hold out that stratified part of ``Train/`` as the test set (fixed seed)
    instead of reading ``Test/``; ``first_saccade_only``: tonic's option (about a third of the events).
    """
    return _load(
        NMNIST, NMNIST_INFO, root, time_steps=time_steps, size=size, denoise_us=denoise_us,
        test_fraction=test_fraction, cache_dir=cache_dir, cache=cache, download=download,
        limit_train=limit_train, limit_test=limit_test, seed=seed,
        reader={"first_saccade_only": first_saccade_only},
    )  # fmt: skip


@register_dataset(
    CIFAR10DVS_INFO, status=functools.partial(status, CIFAR10DVS), fetch=functools.partial(fetch, CIFAR10DVS)
)
def load_cifar10_dvs(
    root: Path,
    *,
    time_steps: int = 1,
    size: int | None = None,
    denoise_us: float | None = None,
    test_fraction: float = CIFAR10DVS.test_fraction,
    cache_dir: Path | None = None,
    cache: bool = True,
    download: bool = False,
    limit_train: int | None = None,
    limit_test: int | None = None,
    seed: int = 0,
) -> DatasetSplits:
    """CIFAR10-DVS frames ``[N, T, 2, size, size]``; no official split: stratified 9:1, seed 0."""
    return _load(
        CIFAR10DVS, CIFAR10DVS_INFO, root, time_steps=time_steps, size=size, denoise_us=denoise_us,
        test_fraction=test_fraction, cache_dir=cache_dir, cache=cache, download=download,
        limit_train=limit_train, limit_test=limit_test, seed=seed, reader={},
    )  # fmt: skip


@register_dataset(
    DVSGESTURE_INFO, status=functools.partial(status, DVSGesture), fetch=functools.partial(fetch, DVSGesture)
)
def load_dvs_gesture(
    root: Path,
    *,
    time_steps: int = 1,
    size: int | None = None,
    denoise_us: float | None = None,
    test_fraction: float | None = None,
    cache_dir: Path | None = None,
    cache: bool = True,
    download: bool = False,
    limit_train: int | None = None,
    limit_test: int | None = None,
    seed: int = 0,
) -> DatasetSplits:
    """DVS128 Gesture frames ``[N, T, 2, size, size]`` from tonic's preprocessed ``.npy`` files."""
    return _load(
        DVSGesture, DVSGESTURE_INFO, root, time_steps=time_steps, size=size, denoise_us=denoise_us,
        test_fraction=test_fraction, cache_dir=cache_dir, cache=cache, download=download,
        limit_train=limit_train, limit_test=limit_test, seed=seed, reader={},
    )  # fmt: skip
