"""Atomic file writes: a reader sees the old file or the new one, never a half-written one.

Every file the package writes that another process (or a resumed run) reads goes through here:
checkpoints, exported models, ``sweep.json``, the spool's counters, downloads. The data is written to
a temporary file in the same folder (so the final rename stays on one file system), flushed to disk,
then renamed over the target; a crash at any point leaves the previous file, or none.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

FILE_MODE = 0o644  # mkstemp makes files owner-only; results, models and records are for sharing


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, mode: int = FILE_MODE, *, durable: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on a clean exit it replaces ``path``, else it is removed.

    For writers that need a file name (``torch.save``, a download); :func:`write_atomic` covers text and
    bytes. ``durable=False`` skips the flush to disk (milliseconds per file): a reader still never sees
    a torn file, but a power cut may lose the update, so only for what a crash may roll back (the
    spool's sent counter, whose replays are harmless).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.chmod(tmp, mode)
        if durable:
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)  # gone already after os.replace; after a failure it must go


def write_atomic(
    path: str | os.PathLike,
    data: str | bytes | Iterable[bytes],
    mode: int = FILE_MODE,
    *,
    durable: bool = True,
) -> Path:
    """Write ``data`` (text as UTF-8, bytes, or an iterable of byte chunks) to ``path`` atomically."""
    path = Path(path)
    with atomic_path(path, mode, durable=durable) as tmp, open(tmp, "wb") as f:
        if isinstance(data, str):
            f.write(data.encode())
        elif isinstance(data, bytes | bytearray):
            f.write(data)
        else:
            for chunk in data:
                f.write(chunk)
    return path
