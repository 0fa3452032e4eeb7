"""``albsnn train``: one training run, flags generated from :class:`albsnn.train.TrainConfig`."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
import typing
from pathlib import Path

from albsnn._typing import scalar_type
from albsnn.cli import Command
from albsnn.errors import ConfigError


def parse_option(text: str) -> tuple[str, object]:
    """``KEY=VALUE`` -> ``(key, value)``, the value read as JSON when it parses, else as text."""
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    key, value = text.split("=", 1)
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


class _Progress:
    def __init__(self, stream) -> None:
        self.stream = stream

    def on_fit_start(self, trainer) -> None:
        c, m = trainer.config, trainer.model.config
        print(
            f"training {m.arch} (width {c.width}, T={c.time_steps}) on {c.dataset}: "
            f"{len(trainer.splits.train_y)} train / {len(trainer.splits.val_y)} val / "
            f"{len(trainer.splits.test_y)} test, "
            f"{c.epochs} epochs, device {trainer.device}",
            file=self.stream,
            flush=True,
        )

    def on_epoch_end(self, trainer, m: dict) -> None:
        bwo = f"  BWO fired at {m['bwo_epoch']}" if m["bwo_epoch"] == m["epoch"] else ""
        print(
            f"epoch {m['epoch']:3d}/{trainer.config.epochs}  loss {m['train_loss']:.4f}  "
            f"train {m['train_accuracy']:.4f}  val {m['val_accuracy']:.4f}  test {m['test_accuracy']:.4f}  "
            f"{m['storage_bytes'] / 1024:.1f} KiB (-{m['storage_reduction']:.1%})  "
            f"binary {m['num_binarized']}  {m['epoch_seconds']:.1f}s{bwo}",
            file=self.stream,
            flush=True,
        )

    def on_fit_end(self, trainer, result: dict) -> None:
        pass


def _help(f: dataclasses.Field) -> str:
    valid = f"range {f.metadata['range']}; " if "range" in f.metadata else ""
    return f"{valid}default: {f.default}"


class Train(Command):
    """Train one ALBSNN model, export it bit-packed, print the result.

    Example:
        albsnn train --dataset digits --epochs 8 --time-steps 2 --json
        albsnn train --dataset fashion-mnist --data-dir ../shared/data --limit-train 5000 \\
            --limit-test 1000 --width 0.25 --epochs 3 --time-steps 1
    """

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        from albsnn.train import TrainConfig

        hints = typing.get_type_hints(TrainConfig)
        for f in dataclasses.fields(TrainConfig):
            flag = "--" + f.name.replace("_", "-")
            if f.name == "data_options":
                parser.add_argument(
                    "--data-option",
                    dest="data_options",
                    action="append",
                    type=parse_option,
                    metavar="KEY=VALUE",
                    help="option for the dataset loader (repeatable), e.g. --data-option test_fraction=0.2",
                )
                continue
            kind = scalar_type(hints[f.name])
            if kind is bool:
                parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, dest=f.name)
            else:
                parser.add_argument(
                    flag,
                    type=kind,
                    choices=f.metadata.get("choices"),
                    default=None,
                    dest=f.name,
                    help=_help(f),
                )
        parser.add_argument(
            "--resume", action="store_true", help="continue from OUT/checkpoint.pt if it exists"
        )
        parser.add_argument(
            "--progress-every",
            type=float,
            default=10.0,
            metavar="SECONDS",
            help="seconds between progress lines inside an epoch when not on a terminal (default: 10)",
        )
        parser.add_argument(
            "--json",
            action="store_true",
            help="last stdout line: the result as JSON (progress lines go to stderr)",
        )

    def take_action(self, args: argparse.Namespace) -> int:
        from albsnn.cli.progress import StepProgress
        from albsnn.train import CHECKPOINT, TrainConfig, fit

        values = {
            f.name: getattr(args, f.name)
            for f in dataclasses.fields(TrainConfig)
            if getattr(args, f.name, None) is not None
        }
        if "data_options" in values:
            values["data_options"] = dict(values["data_options"])
        values.setdefault("out", str(Path("runs") / f"train-{time.strftime('%Y%m%d-%H%M%S')}"))
        config = TrainConfig.from_dict(values)
        checkpoint = Path(config.out) / CHECKPOINT
        if args.resume and not checkpoint.exists():
            raise ConfigError(f"--resume: no checkpoint at {checkpoint}; run without --resume first")
        # Progress goes to stdout, or to stderr with --json (stdout's last line is then the result).
        # Inside an epoch: a tqdm bar on a terminal; plain periodic lines otherwise and with --json.
        stream = sys.stderr if args.json else sys.stdout
        bar = False if args.json else None
        callbacks = [StepProgress(stream, bar=bar, every_s=args.progress_every), _Progress(stream)]
        result = fit(config, callbacks, resume_from=checkpoint if args.resume else None)
        if args.json:
            print(json.dumps(result))
        else:
            print(
                f"val accuracy {result['val_accuracy']:.4f} (best {result['best_val_accuracy']:.4f} at epoch "
                f"{result['best_epoch']}), test accuracy {result['test_accuracy']:.4f}, "
                f"storage {result['storage_bytes']} B "
                f"of {result['fp32_bytes']} B FP32 (-{result['storage_reduction']:.1%}), "
                f"binarized {result['binarized_layers']}, BWO epoch {result['bwo_epoch']}\n"
                f"model: {result['model_path']}"
            )
        return 0
