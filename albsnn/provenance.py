"""Where a number came from: the commit and the machine (CPU model, ISA, torch, threads).

Every committed result file carries :func:`provenance`, so a reader (and a check) knows which code
and which CPU kernels made it: the same code and seeds give other numbers on another CPU
(docs/results.md, "Numbers that regenerate").

    >>> sorted(provenance())[:3]
    ['command', 'commit', 'cpu']
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path

__all__ = ["provenance", "commit", "cpu_model", "ISA_VARIABLES"]

# Environment variables that choose CPU kernels (and so the last bits of every result).
ISA_VARIABLES = ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "MKL_CBWR", "OMP_NUM_THREADS")


def commit(repo: str | os.PathLike | None = None) -> str:
    """``git rev-parse HEAD`` of ``repo`` (default: this checkout), ``+dirty`` with uncommitted changes."""
    cwd = Path(repo) if repo else Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=cwd,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"
    return head + ("+dirty" if dirty else "")


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def provenance() -> dict:
    """The commit, command line and machine of this process (call it after setting torch's threads)."""
    import torch

    return {
        "commit": commit(),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "cpu": cpu_model(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "env": {k: os.environ[k] for k in ISA_VARIABLES if k in os.environ},
    }
