"""``albsnn datasets``: which datasets are on disk, where, how big, and whether they are intact."""

from __future__ import annotations

import argparse

from albsnn.cli import Command
from albsnn.data import (
    DatasetStatus,
    data_root,
    dataset_info,
    dataset_status,
    download_dataset,
    list_datasets,
)

__all__ = ["Datasets"]

_COLUMNS = ("name", "status", "size", "md5", "arch", "input", "where")


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def _row(s: DatasetStatus) -> tuple[str, ...]:
    info = dataset_info(s.name)
    where = "(embedded in the package)" if s.folder is None else str(s.folder)
    size = _size(s.size_bytes) if s.size_bytes else "-"
    return (s.name, s.state, size, s.md5, info.suggested_arch, "x".join(map(str, info.input_shape)), where)


def _table(rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(_COLUMNS))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows)


class Datasets(Command):
    """List the datasets with their status: present / partial / missing, folder, size, md5.

    Data root: --data-dir > $ALBSNN_DATA > ~/.cache/albsnn; one folder per dataset (docs/data.md).
    Nothing is downloaded unless --download names a dataset (then the network is needed).

    Examples:
        albsnn datasets --data-dir ../shared/data
        albsnn datasets --data-dir ../shared/data --verify
        albsnn datasets --download fashion-mnist
    """

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--data-dir", default=None, help="data root (default: $ALBSNN_DATA or ~/.cache/albsnn)"
        )
        parser.add_argument(
            "--verify", action="store_true", help="compute md5s of the canonical files (slower)"
        )
        parser.add_argument(
            "--download", metavar="NAME", action="append", default=[],
            help="fetch this dataset's missing files from its canonical URL, md5-checked (repeatable)",
        )  # fmt: skip

    def take_action(self, args: argparse.Namespace) -> int:
        root = data_root(args.data_dir)
        for name in args.download:
            dataset_info(name)  # an unknown name fails before anything is fetched
        for name in args.download:
            print(f"downloading {name} into {root} ...", flush=True)
            download_dataset(name, root)
        statuses = [dataset_status(name, root, verify=args.verify) for name in list_datasets()]
        print(f"data root: {root}")
        print(_table([_COLUMNS, *map(_row, statuses)]))
        notes = [f"  {s.name}: {s.detail}" for s in statuses if s.detail and s.folder is not None]
        if notes:
            print("\n".join(["details:", *notes]))
        return 0
