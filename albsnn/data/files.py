"""Files on disk: md5 checks, atomic downloads and safe archive extraction.

Everything here fails with a :class:`~albsnn.errors.DataError` whose one line says which file, where,
and what to do. Nothing is ever left half-written: a download streams into a hidden temporary file
beside its target and is renamed into place only once its md5 matches; an archive is extracted into
a temporary folder whose entries are moved into place only when every member was written.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from albsnn.atomic import atomic_path
from albsnn.errors import DataError

__all__ = [
    "FileSpec",
    "Archive",
    "md5sum",
    "folder_size",
    "missing_files_message",
    "require_files",
    "download",
    "fetch_archive",
    "safe_extract",
]

_CHUNK = 1 << 20
DOWNLOAD_TIMEOUT_S = 30.0  # per socket operation; a dead mirror fails instead of hanging a run


@dataclass(frozen=True)
class FileSpec:
    """One canonical file, relative to its dataset folder."""

    name: str
    md5: str


@dataclass(frozen=True)
class Archive:
    """A canonical download: fetched to ``dest/filename`` and, if ``extract``, unpacked into ``dest``.

    ``dest`` is relative to the data root.
    """

    url: str
    filename: str
    md5: str
    dest: str
    extract: bool = True


def md5sum(path: str | os.PathLike) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def folder_size(folder: Path) -> tuple[int, int]:
    """(bytes, files) under ``folder``, skipping hidden entries such as our own ``.cache``."""
    total = count = 0
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        for name in filenames:
            if not name.startswith("."):
                total += os.path.getsize(os.path.join(dirpath, name))
                count += 1
    return total, count


def missing_files_message(dataset: str, folder: Path, specs: Sequence[FileSpec]) -> str:
    names = ", ".join(f"{s.name} (md5 {s.md5})" for s in specs)
    return (
        f"{dataset}: missing {len(specs)} file(s) in {folder}: {names}; put them there, or fetch them "
        f"when online with `albsnn datasets --download {dataset} --data-dir {folder.parent}`"
    )


def require_files(dataset: str, folder: Path, specs: Sequence[FileSpec], *, verify: bool = True) -> None:
    """Raise :class:`DataError` unless every file exists (and, with ``verify``, has its md5)."""
    if folder.exists() and not folder.is_dir():
        raise DataError(
            f"{dataset}: {folder} is a file, not a folder; move it away and put the dataset there"
        )
    missing = [s for s in specs if not (folder / s.name).is_file()]
    if missing:
        raise DataError(missing_files_message(dataset, folder, missing))
    if not verify:
        return
    for spec in specs:
        actual = md5sum(folder / spec.name)
        if actual != spec.md5:
            raise DataError(
                f"{dataset}: {folder / spec.name} has md5 {actual}, expected {spec.md5} (truncated or "
                f"corrupt copy?); replace it with the canonical file"
            )


def _urlopen(url: str, timeout: float):
    # One seam for tests (which never touch the network) to serve bytes from memory.
    request = urllib.request.Request(url, headers={"User-Agent": "albsnn"})
    return urllib.request.urlopen(request, timeout=timeout)  # noqa: S310 - canonical https/http URLs only


def download(url: str, target: Path, md5: str, *, timeout: float = DOWNLOAD_TIMEOUT_S) -> Path:
    """Fetch ``url`` to ``target``; the file appears only complete and with the expected md5.

    The connection is opened before anything is created, so an offline machine is left untouched.
    """
    try:
        with _urlopen(url, timeout) as response:
            target.parent.mkdir(parents=True, exist_ok=True)
            _stream_verified(response, target, md5, url)
    except (urllib.error.URLError, OSError) as e:
        raise DataError(
            f"cannot download {url} ({getattr(e, 'reason', e)}); put {target.name} (md5 {md5}) into "
            f"{target.parent} by hand"
        ) from e
    return target


def _stream_verified(response, target: Path, md5: str, url: str) -> None:
    # a wrong md5 raises inside the block, so the temporary file goes and the target never appears
    with atomic_path(target) as tmp, open(tmp, "wb") as out:
        digest = hashlib.md5()
        for chunk in iter(lambda: response.read(_CHUNK), b""):
            digest.update(chunk)
            out.write(chunk)
        if digest.hexdigest() != md5:
            raise DataError(
                f"download of {url} has md5 {digest.hexdigest()}, expected {md5}; nothing was written to "
                f"{target.parent} - retry, or fetch the file by hand and put it there"
            )


def fetch_archive(root: Path, archive: Archive) -> Path:
    """Download ``archive`` under ``root`` and, if it is one, unpack it in place (then drop it)."""
    target = root / archive.dest / archive.filename
    download(archive.url, target, archive.md5)
    if archive.extract:
        safe_extract(target, target.parent)
        target.unlink()  # loaders read the extracted files; keeping the archive too doubles the disk use
    return target


def _check_member(name: str, target: Path) -> None:
    dest = (target / name).resolve()
    if dest != target and target not in dest.parents:
        raise DataError(f"archive member {name!r} would be written outside {target}; refusing to extract it")


def _members(archive: Path, target: Path) -> Iterable[str]:
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as z:
            return z.namelist()
    with tarfile.open(archive) as t:
        for m in t.getmembers():
            if m.issym() or m.islnk():
                # A link may point anywhere; datasets have no reason to ship one.
                raise DataError(f"archive {archive} holds a link {m.name!r}; refusing to extract it")
            if not (m.isfile() or m.isdir()):
                raise DataError(f"archive {archive} holds a special file {m.name!r}; refusing to extract it")
        return t.getnames()


def safe_extract(archive: Path, target: Path) -> list[Path]:
    """Unpack ``archive`` (zip or tar[.gz]) into ``target``; returns the top-level entries created.

    Every member path is checked first: one that would land outside ``target`` (``../x``, an
    absolute path, a link) refuses the whole archive. Members go to a temporary folder inside
    ``target`` and are moved into place at the end, so an interrupted run leaves no partial tree.
    """
    target = target.resolve()
    target.mkdir(parents=True, exist_ok=True)
    try:
        names = list(_members(archive, target))
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError) as e:
        raise DataError(f"cannot read archive {archive}: {e}; delete it and download it again") from e
    for name in names:
        _check_member(name, target)
    staging = Path(tempfile.mkdtemp(prefix=".extract-", dir=target))
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as z:
                z.extractall(staging)
        else:
            with tarfile.open(archive) as t:
                t.extractall(staging, filter="data")
        created = []
        for entry in sorted(staging.iterdir()):
            dest = target / entry.name
            if dest.exists():
                raise DataError(f"{dest} already exists; move it away before extracting {archive.name} again")
            os.replace(entry, dest)
            created.append(dest)
        return created
    except (tarfile.TarError, zipfile.BadZipFile, EOFError) as e:
        raise DataError(f"cannot extract {archive}: {e}; delete it and download it again") from e
    finally:
        shutil.rmtree(staging, ignore_errors=True)
