"""Downloads and archives: md5-checked, atomic, offline-clear, and never writing outside the target."""

from __future__ import annotations

import hashlib
import io
import tarfile
import zipfile
from pathlib import Path

import pytest

from albsnn.data import download_dataset, load_dataset
from albsnn.data import files as files_module
from albsnn.data.fashion_mnist import FashionMNIST
from albsnn.data.files import download, safe_extract
from albsnn.errors import DataError

PAYLOAD = b"event data " * 1000
MD5 = hashlib.md5(PAYLOAD).hexdigest()


class _Response(io.BytesIO):
    """What urlopen returns, served from memory; ``fail_after`` cuts the stream like a dropped link."""

    def __init__(self, data: bytes, fail_after: int | None = None) -> None:
        super().__init__(data)
        self.fail_after = fail_after

    def read(self, n: int = -1) -> bytes:
        if self.fail_after is not None and self.tell() >= self.fail_after:
            raise ConnectionResetError("connection reset by peer")
        return super().read(min(n, 4096) if self.fail_after is not None and n > 0 else n)


def _serve(monkeypatch, data: bytes, fail_after: int | None = None) -> list[str]:
    urls: list[str] = []

    def fake_urlopen(url, timeout):
        urls.append(url)
        return _Response(data, fail_after)

    monkeypatch.setattr(files_module, "_urlopen", fake_urlopen)
    return urls


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*")) if folder.exists() else []


def test_download_writes_the_verified_file(monkeypatch, tmp_path):
    urls = _serve(monkeypatch, PAYLOAD)
    target = download("https://example.org/f.bin", tmp_path / "d" / "f.bin", MD5)
    assert target.read_bytes() == PAYLOAD and urls == ["https://example.org/f.bin"]
    assert _leftovers(tmp_path / "d") == ["f.bin"]


def test_wrong_md5_leaves_nothing(monkeypatch, tmp_path):
    _serve(monkeypatch, PAYLOAD[:-1] + b"!")
    with pytest.raises(DataError, match=f"expected {MD5}"):
        download("https://example.org/f.bin", tmp_path / "f.bin", MD5)
    assert _leftovers(tmp_path) == []


def test_interrupted_download_leaves_nothing(monkeypatch, tmp_path):
    _serve(monkeypatch, PAYLOAD, fail_after=5000)
    with pytest.raises(DataError, match="connection reset"):
        download("https://example.org/f.bin", tmp_path / "f.bin", MD5)
    assert _leftovers(tmp_path) == []


def test_ctrl_c_during_download_leaves_nothing(monkeypatch, tmp_path):
    def interrupted(url, timeout):
        raise KeyboardInterrupt

    monkeypatch.setattr(files_module, "_urlopen", interrupted)
    with pytest.raises(KeyboardInterrupt):
        download("https://example.org/f.bin", tmp_path / "f.bin", MD5)
    assert _leftovers(tmp_path) == []


def test_offline_download_names_the_file_its_md5_and_the_folder(tmp_path):
    # the real urlopen: the session's socket guard plays the part of a machine without network
    with pytest.raises(DataError) as e:
        download_dataset("fashion-mnist", tmp_path)
    text = str(e.value)
    spec = FashionMNIST.files[0]
    assert spec.name in text and spec.md5 in text and str(tmp_path / "fashion-mnist") in text
    assert "\n" not in text and _leftovers(tmp_path) == []


def test_loader_download_option_fetches_missing_files(monkeypatch, shared_data, tmp_path):
    # serve the real files from disk as if from the canonical URL; the loader then reads them
    def fake_urlopen(url, timeout):
        return _Response((shared_data / "fashion-mnist" / url.rsplit("/", 1)[1]).read_bytes())

    monkeypatch.setattr(files_module, "_urlopen", fake_urlopen)
    s = load_dataset("fashion-mnist", tmp_path, download=True, limit_train=10, limit_test=10)
    assert s.train_x.shape == (10, 1, 28, 28)
    assert sorted(_leftovers(tmp_path / "fashion-mnist")) == sorted(f.name for f in FashionMNIST.files)


def _tar(path: Path, members: dict[str, bytes], link: tuple[str, str] | None = None) -> Path:
    with tarfile.open(path, "w:gz") as t:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
        if link:
            info = tarfile.TarInfo(link[0])
            info.type, info.linkname = tarfile.SYMTYPE, link[1]
            t.addfile(info)
    return path


def _zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
    return path


@pytest.mark.parametrize("make", [_tar, _zip], ids=["tar.gz", "zip"])
def test_safe_extract_unpacks_into_the_target(tmp_path, make):
    archive = make(
        tmp_path / "a", {"cifar-10-batches-py/data_batch_1": b"x", "cifar-10-batches-py/test_batch": b"y"}
    )
    created = safe_extract(archive, tmp_path / "root")
    assert [p.name for p in created] == ["cifar-10-batches-py"]
    assert (tmp_path / "root" / "cifar-10-batches-py" / "test_batch").read_bytes() == b"y"
    assert _leftovers(tmp_path / "root") == ["cifar-10-batches-py", "data_batch_1", "test_batch"]


@pytest.mark.parametrize("make", [_tar, _zip], ids=["tar.gz", "zip"])
@pytest.mark.parametrize("name", ["../escape.txt", "ok/../../escape.txt", "/tmp/escape.txt"])
def test_safe_extract_refuses_paths_outside_the_target(tmp_path, make, name):
    archive = make(tmp_path / "a", {"fine.txt": b"ok", name: b"evil"})
    with pytest.raises(DataError, match="outside"):
        safe_extract(archive, tmp_path / "root")
    assert _leftovers(tmp_path / "root") == [] and not (tmp_path / "escape.txt").exists()


def test_safe_extract_refuses_links(tmp_path):
    archive = _tar(tmp_path / "a.tgz", {"fine.txt": b"ok"}, link=("data", "/etc"))
    with pytest.raises(DataError, match="link"):
        safe_extract(archive, tmp_path / "root")
    assert _leftovers(tmp_path / "root") == []


def test_safe_extract_of_a_damaged_archive_is_a_clear_error(tmp_path):
    archive = tmp_path / "a.tgz"
    archive.write_bytes(_tar(tmp_path / "b.tgz", {"f": b"x" * 1000}).read_bytes()[:30])
    with pytest.raises(DataError, match="cannot read archive"):
        safe_extract(archive, tmp_path / "root")
