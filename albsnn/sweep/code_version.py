"""The version of the albsnn code a process runs: what each trial records, wherever it runs.

On a cluster the workers may run code shipped by ``runtime_env`` (no git checkout there) or an
installed copy that differs from the driver's. :func:`code_version` names the code itself:
``<git commit>[+dirty]:<sha256 of the package's .py files, 12 hex>``, with ``nogit`` where the
package is not in a git checkout. Two processes with the same hash run the same albsnn code.

    code_version()   # "0fd40cc1e2...:3fa9c0d1b2e4"
"""

from __future__ import annotations

import functools
import hashlib
import subprocess
from pathlib import Path

__all__ = ["code_version", "source_hash"]

_PACKAGE = Path(__file__).resolve().parents[1]


def source_hash(package: Path = _PACKAGE) -> str:
    """sha256 over the relative paths and bytes of ``package``'s .py files (12 hex digits)."""
    digest = hashlib.sha256()
    for path in sorted(package.rglob("*.py")):
        digest.update(path.relative_to(package).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


@functools.cache
def code_version() -> str:
    return f"{_git_commit(_PACKAGE)}:{source_hash()}"


def _git_commit(folder: Path) -> str:
    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", *args], cwd=folder, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.SubprocessError):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if not commit:
        return "nogit"
    dirty = git("status", "--porcelain", "--", ".")
    return commit + ("+dirty" if dirty else "")
