"""Paths in a report are relative: a committed report must not carry the folders of the machine that made it.

Sweeps record absolute paths (the pipeline file, ``sqlite:////…/mlflow.db``, the command line), because
Ray workers run in other folders. A report shows them relative to the folder it is generated from
(the repository root for ``make demo`` and every documented command): ``/home/me/albsnn/pipelines/
demo.yaml`` becomes ``pipelines/demo.yaml``, ``sqlite:////home/me/albsnn/runs/mlflow.db`` becomes
``sqlite:///runs/mlflow.db`` (a relative SQLite URI), a path outside it ``../data/mlflow.db``.

    >>> relative_paths("albsnn sweep /repo/p.yaml --tracking-uri sqlite:////repo/runs/m.db", "/repo")
    'albsnn sweep p.yaml --tracking-uri sqlite:///runs/m.db'
"""

from __future__ import annotations

import os
import re
from pathlib import Path

__all__ = ["relative_paths"]

# An absolute path: at the start, after a space, '=', a bracket or quote, or after sqlite:///.
_ABSOLUTE = re.compile(r"(?:^|(?<=[\s=\[(\"'])|(?<=sqlite:///))/[^\s\"'\])]+")


def relative_paths(text: str | None, root: str | os.PathLike | None = None) -> str | None:
    """``text`` with every absolute path in it made relative to ``root`` (default: the working folder)."""
    if not text:
        return text
    base = os.path.abspath(root or Path.cwd())
    return _ABSOLUTE.sub(lambda m: os.path.relpath(m.group(0), base), text)
