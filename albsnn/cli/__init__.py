"""``albsnn`` command line: one class per command, registered in :data:`COMMANDS`.

A command subclasses :class:`Command` (``add_arguments`` + ``take_action`` returning an exit code)
and takes its help from its docstring. A user error (:class:`~albsnn.errors.AlbsnnError`) prints
one line naming the problem plus a pointer to that command's help and exits 2; ``--debug``
shows the traceback instead.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import traceback
from collections.abc import Sequence
from inspect import cleandoc

from albsnn.errors import AlbsnnError

__all__ = ["Command", "COMMANDS", "main"]


class Command:
    """Base of every subcommand."""

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        """Declare this command's arguments (none by default)."""

    def take_action(self, args: argparse.Namespace) -> int:
        raise NotImplementedError


# name -> "module:Class", imported only when used so `albsnn train` never loads Ray or MLflow.
COMMANDS: dict[str, str] = {
    "train": "albsnn.cli.train:Train",
    "inspect": "albsnn.cli.inspect:Inspect",
    "datasets": "albsnn.cli.datasets:Datasets",
    "report": "albsnn.cli.report:Report",
    "sweep": "albsnn.cli.sweep:Sweep",
    "ui": "albsnn.cli.ui:Ui",
}


def _load(spec: str) -> type[Command]:
    module, cls = spec.split(":")
    return getattr(importlib.import_module(module), cls)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse's own errors: the message first, then where to look
        print(f"{self.prog}: error: {message}\n(see: {self.prog} --help)", file=sys.stderr)
        raise SystemExit(2)


def _build_parser(argv: Sequence[str]) -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    parser = _Parser(prog="albsnn", description="ALBSNN Lab: binary spiking networks and their sweeps.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of user errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    wanted = next((a for a in argv if a in COMMANDS), None)
    subparsers = {}
    for name, spec in COMMANDS.items():
        if wanted and name != wanted:
            sub.add_parser(name, help="")
            continue
        cls = _load(spec)
        doc = cleandoc(cls.__doc__ or "")
        p = sub.add_parser(
            name,
            help=doc.splitlines()[0] if doc else "",
            description=doc,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        p.set_defaults(command_class=cls)
        cls().add_arguments(p)
        subparsers[name] = p
    return parser, subparsers


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser, subparsers = _build_parser(argv)
    args = parser.parse_args(argv)
    if not getattr(args, "command_class", None):
        parser.print_help()
        return 2
    try:
        return int(args.command_class().take_action(args) or 0)
    except AlbsnnError as e:
        if args.debug:
            traceback.print_exc()
        print(f"albsnn {args.command}: error: {e}\n(see: albsnn {args.command} --help)", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
