"""``albsnn inspect``: what a model file stores, layer by layer."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from albsnn.cli import Command
from albsnn.export import load_model
from albsnn.storage import profile_model, summary

__all__ = ["Inspect"]


def _estimates(metadata: dict) -> dict[str, float]:
    # Older or hand-made files may lack estimates or hold odd values: show "-" rather than fail.
    raw = metadata.get("estimates")
    if not isinstance(raw, dict):
        return {}
    return {
        str(k): float(v) for k, v in raw.items() if isinstance(v, int | float) and not isinstance(v, bool)
    }


def _json_safe(x: float | None) -> float | None:
    # NaN/inf are not JSON; a consumer such as jq would reject the whole line.
    return x if x is None or math.isfinite(x) else None


class Inspect(Command):
    """Print a model file's per-layer storage table and totals.

    Columns: layer, type, shape of the main weight, bits per weight (1 = binary), bits, bytes,
    size, and the layer's last estimate from the file's metadata ("-" when there is none).
    Totals: storage bytes, FP32 bytes, reduction, parameters.

    Examples:
        albsnn inspect runs/fmnist/model.albsnn
        albsnn inspect runs/fmnist/model.albsnn --json | jq .totals.reduction
    """

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("model", metavar="MODEL", type=Path, help="a file written by save_model / train")
        parser.add_argument(
            "--json", action="store_true", help="print one JSON object (layers + totals) instead of the table"
        )

    def take_action(self, args: argparse.Namespace) -> int:
        model, metadata = load_model(args.model)
        profile = profile_model(model, estimates=_estimates(metadata))
        if not args.json:
            print(f"{args.model}: {model.config.arch}, T={model.config.time_steps}, head={model.config.head}")
            summary(profile)
            return 0
        record = profile.to_dict()
        for layer in record["layers"]:
            layer["estimate"] = _json_safe(layer["estimate"])
        record["config"] = model.config.to_dict()
        print(json.dumps(record))
        return 0
