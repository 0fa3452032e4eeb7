"""Model files: one self-describing file per network, bit-packed, no pickle.

Layout (all integers little-endian)::

    offset  size  content
    0       7     magic b"ALBSNN\\0"
    7       1     format version (1)
    8       4     N = length of the compressed header (uint32)
    12      N     header: zlib-compressed JSON
    12+N    ...   data: the tensors back to back, in table order

The header JSON holds ``format``, ``config`` (:meth:`ModelConfig.to_dict`), ``metadata`` (the
caller's JSON-able dict: the trainer puts ``estimates``, ``dataset``, ``train_config`` there),
``tensors`` (a table of ``{"name", "kind", "shape", "offset"}``, offsets from the data start),
``data_bytes`` and ``data_crc32`` (so a damaged payload is caught at load, not as wrong logits).

The file stores exactly what :mod:`albsnn.storage` counts: a binary layer's weight as
``numpy.packbits(W >= 0)`` (kind ``packed``, 1 bit per weight, padded to a whole byte per tensor)
plus its alpha, the value ``current_alpha()`` gives at export (float32); every other tensor as
float32 (kind ``f32``). BN ``num_batches_tracked`` is not stored (a loaded model starts at 0).

Size: ``file bytes <= storage_bytes(model) * 1.01 + FIXED_OVERHEAD_BYTES`` (4 KiB: the 12-byte
prefix, the compressed header and at most 1 padding byte per packed tensor). Measured (CPU, torch
2.13, metadata = dataset + a small train_config + an estimate per binary layer, as in
``tests/test_export.py``): 636 to 687 bytes over ``storage_bytes`` for ``tiny`` and ``fmnist``
with GAP or FC heads (a 624 to 675-byte header for 24 to 27 tensors), 885 for ``cifar``. Metadata
beyond that grows the header by its own compressed size.

Loading rebuilds the network with :func:`~albsnn.models.build_model` and restores every tensor. A
binary layer gets latent weight ``|alpha| * sign`` and its exported alpha as a learned parameter
(``alpha_learned``), so its forward computes ``alpha * sign`` from the very same float32 numbers
and the logits are bit-identical to the exported model's (eval mode).

Example:
    >>> import tempfile, torch
    >>> from albsnn.models import build_model
    >>> net = build_model(arch="tiny").eval()
    >>> net.conv2.set_binary(True)
    >>> path = save_model(net, tempfile.mkdtemp() + "/tiny.albsnn", metadata={"dataset": "digits"})
    >>> loaded, meta = load_model(path)
    >>> x = torch.rand(2, 1, 8, 8)
    >>> torch.equal(loaded(x), net(x)), meta
    (True, {'dataset': 'digits'})
"""

from __future__ import annotations

import json
import struct
import zlib
from collections.abc import Iterable
from os import PathLike
from pathlib import Path

import numpy as np
import torch
from torch import nn

from albsnn.atomic import write_atomic
from albsnn.binarize import BinaryLayer
from albsnn.errors import ConfigError, ModelFileError
from albsnn.models import ModelConfig, SpikingNet, build_model
from albsnn.storage import LayerProfile, WeightProfile, profile_model

__all__ = ["MAGIC", "FORMAT_VERSION", "FIXED_OVERHEAD_BYTES", "save_model", "load_model"]

MAGIC = b"ALBSNN\0"
FORMAT_VERSION = 1
FIXED_OVERHEAD_BYTES = 4096
_PREFIX = struct.Struct("<7sBI")  # magic, version, header length
_KINDS = {"packed", "f32"}


# ---------------------------------------------------------------- writing


def _value(module: nn.Module, weight: WeightProfile) -> torch.Tensor:
    # alpha is whatever the forward uses now (mean|W| or the learned one), not the unused parameter.
    t = module.current_alpha() if weight.name == "alpha" else getattr(module, weight.name)
    return t.detach().cpu()


def _encode(t: torch.Tensor, bitwidth: int) -> bytes:
    if bitwidth == 1:
        return np.packbits((t >= 0).reshape(-1).numpy()).tobytes()
    return t.to(torch.float32).numpy().astype("<f4", copy=False).tobytes()


def _encode_layer(model: nn.Module, layer: LayerProfile) -> Iterable[tuple[str, str, list[int], bytes]]:
    module = model.get_submodule(layer.name)
    for weight in layer.weights:
        t = _value(module, weight)
        kind = "packed" if weight.bitwidth == 1 else "f32"
        yield f"{layer.name}.{weight.name}", kind, list(t.shape), _encode(t, weight.bitwidth)


def _encode_model(model: nn.Module) -> tuple[list[dict], list[bytes]]:
    table, blobs, offset = [], [], 0
    for layer in profile_model(model).layers:
        for name, kind, shape, blob in _encode_layer(model, layer):
            table.append({"name": name, "kind": kind, "shape": shape, "offset": offset})
            blobs.append(blob)
            offset += len(blob)
    return table, blobs


def _header_bytes(header: dict) -> bytes:
    try:
        text = json.dumps(header, separators=(",", ":"))
    except (TypeError, ValueError) as e:
        raise TypeError(f"model file metadata must be JSON-serialisable: {e}") from e
    return zlib.compress(text.encode("utf-8"), 9)


def save_model(model: SpikingNet, path: str | PathLike, *, metadata: dict | None = None) -> Path:
    """Write ``model`` (its config, weights, binary layers bit-packed) and ``metadata`` to ``path``.

    Args:
        model: a network built by :func:`~albsnn.models.build_model` (it carries ``.config``).
        path: destination; parent folders are created, an existing file is replaced atomically.
        metadata: JSON-serialisable dict returned by :func:`load_model` (``TypeError`` otherwise).

    Returns:
        The path written.
    """
    path = Path(path)
    table, blobs = _encode_model(model)
    data_bytes = sum(len(b) for b in blobs)
    crc = 0
    for blob in blobs:
        crc = zlib.crc32(blob, crc)
    header = {
        "format": FORMAT_VERSION,
        "config": model.config.to_dict(),
        "metadata": dict(metadata or {}),
        "tensors": table,
        "data_bytes": data_bytes,
        "data_crc32": crc,
    }
    compressed = _header_bytes(header)
    write_atomic(path, [_PREFIX.pack(MAGIC, FORMAT_VERSION, len(compressed)), compressed, *blobs])
    return path


# ---------------------------------------------------------------- reading


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise ModelFileError(f"model file {path} does not exist") from None
    except OSError as e:
        raise ModelFileError(f"cannot read model file {path}: {e.strerror or e}") from None


def _check_prefix(path: Path, raw: bytes) -> int:
    head = raw[: len(MAGIC)]
    if head != MAGIC:
        if MAGIC.startswith(head):
            raise ModelFileError(f"model file {path} is truncated: {len(raw)} bytes, no complete header")
        raise ModelFileError(f"{path} is not an ALBSNN model file: it starts with {head!r}, not {MAGIC!r}")
    if len(raw) < _PREFIX.size:
        raise ModelFileError(f"model file {path} is truncated: {len(raw)} bytes, no complete header")
    _, version, header_len = _PREFIX.unpack_from(raw)
    if version != FORMAT_VERSION:
        raise ModelFileError(
            f"model file {path} has format version {version}; this albsnn reads version {FORMAT_VERSION}"
        )
    if _PREFIX.size + header_len > len(raw):
        raise ModelFileError(
            f"model file {path} is truncated: its header needs {_PREFIX.size + header_len} bytes, "
            f"the file has {len(raw)}"
        )
    return header_len


def _decode_header(path: Path, compressed: bytes) -> dict:
    try:
        header = json.loads(zlib.decompress(compressed).decode("utf-8"))
    except (zlib.error, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ModelFileError(f"model file {path} has a corrupted header ({e})") from None
    expected = {"config": dict, "metadata": dict, "tensors": list, "data_bytes": int, "data_crc32": int}
    if not isinstance(header, dict):
        raise ModelFileError(f"model file {path} has a corrupted header (not a JSON object)")
    bad = [k for k, kind in expected.items() if not isinstance(header.get(k), kind)]
    if bad:
        raise ModelFileError(
            f"model file {path} has a corrupted header (missing or invalid: {', '.join(bad)})"
        )
    return header


def _check_data(path: Path, header: dict, data: bytes) -> None:
    need = header["data_bytes"]
    if len(data) < need:
        raise ModelFileError(f"model file {path} is truncated: {need} data bytes expected, {len(data)} found")
    if len(data) > need:
        extra = len(data) - need
        raise ModelFileError(f"model file {path} is corrupted: {extra} unexpected bytes after the data")
    if zlib.crc32(data) != header["data_crc32"]:
        raise ModelFileError(f"model file {path} is corrupted: the tensor data fails its CRC32 check")


def _parse(path: Path, raw: bytes) -> tuple[dict, bytes]:
    header_len = _check_prefix(path, raw)
    start = _PREFIX.size + header_len
    header = _decode_header(path, raw[_PREFIX.size : start])
    data = raw[start:]
    _check_data(path, header, data)
    return header, data


def _build(path: Path, config: dict) -> SpikingNet:
    try:
        return build_model(ModelConfig.from_dict(config))
    except (ConfigError, TypeError) as e:
        raise ModelFileError(
            f"model file {path} holds a model config this albsnn cannot build: {e}"
        ) from None


class _Tensors:
    """The tensor table of one file, decoded on demand with every entry checked against the data."""

    def __init__(self, path: Path, table: list, data: bytes) -> None:
        self.path, self.data = path, data
        self.entries = {e.get("name"): e for e in table if isinstance(e, dict)}
        if len(self.entries) != len(table) or not all(isinstance(n, str) for n in self.entries):
            self._fail("a malformed or duplicate tensor table entry")

    def _fail(self, what: str) -> None:
        raise ModelFileError(f"model file {self.path} has a corrupted header ({what})")

    def kind(self, name: str) -> str | None:
        entry = self.entries.get(name)
        return entry.get("kind") if entry else None

    def get(self, name: str, shape: torch.Size) -> torch.Tensor:
        entry = self.entries[name]
        kind, stored = entry.get("kind"), entry.get("shape")
        if stored != list(shape) or kind not in _KINDS:
            self._fail(f"tensor {name} is {kind} {stored}, the model needs {list(shape)}")
        n = shape.numel()
        size = -(-n // 8) if entry["kind"] == "packed" else 4 * n
        offset = entry.get("offset")
        if not isinstance(offset, int) or offset < 0 or offset + size > len(self.data):
            self._fail(f"tensor {name} lies outside the data")
        buf = self.data[offset : offset + size]
        if entry["kind"] == "packed":
            bits = np.unpackbits(np.frombuffer(buf, dtype=np.uint8), count=n).astype(np.float32)
            return torch.from_numpy(bits * 2 - 1).reshape(shape)  # +-1
        return torch.from_numpy(np.frombuffer(buf, dtype="<f4").astype(np.float32)).reshape(shape)


def _mark_binary(model: nn.Module, tensors: _Tensors) -> None:
    # The file says which layers are binary: their weight is packed. Set that before profiling,
    # so the profile of the rebuilt model lists exactly the tensors the file should hold.
    for name, module in model.named_modules():
        if isinstance(module, BinaryLayer):
            module.set_binary(tensors.kind(f"{name}.weight") == "packed")


def _check_table(path: Path, layers: tuple[LayerProfile, ...], tensors: _Tensors) -> None:
    wanted = {f"{layer.name}.{w.name}" for layer in layers for w in layer.weights}
    missing, extra = sorted(wanted - set(tensors.entries)), sorted(set(tensors.entries) - wanted)
    if missing or extra:
        raise ModelFileError(
            f"model file {path} does not match its model config: "
            f"missing tensors {missing}, unexpected {extra}"
        )


def _restore_binary(module: BinaryLayer, prefix: str, tensors: _Tensors) -> None:
    alpha = tensors.get(f"{prefix}.alpha", module.alpha.shape)
    signs = tensors.get(f"{prefix}.weight", module.weight.shape)
    # |alpha| keeps sign(latent) == stored sign even if a learned alpha went negative.
    module.weight.copy_(alpha.abs() * signs)
    module.alpha.copy_(alpha)
    module.mark_alpha_learned()  # as learn_alpha() leaves it, so fine-tuning keeps training alpha


def _restore(path: Path, model: nn.Module, tensors: _Tensors) -> None:
    _mark_binary(model, tensors)
    layers = profile_model(model).layers
    _check_table(path, layers, tensors)
    with torch.no_grad():
        for layer in layers:
            module = model.get_submodule(layer.name)
            if isinstance(module, BinaryLayer) and module.is_binary:
                _restore_binary(module, layer.name, tensors)
            for w in layer.weights:
                if w.binary_only or w.bitwidth == 1:
                    continue  # alpha and the packed signs: restored together above
                target = getattr(module, w.name)
                target.copy_(tensors.get(f"{layer.name}.{w.name}", target.shape))


def load_model(path: str | PathLike) -> tuple[SpikingNet, dict]:
    """Read a file written by :func:`save_model`.

    Returns:
        ``(model, metadata)``: the rebuilt network in eval mode, and the metadata dict.

    Raises:
        ModelFileError: the file is missing, not an ALBSNN model file, truncated or corrupted;
            the message names the file and says which.
    """
    path = Path(path)
    header, data = _parse(path, _read(path))
    model = _build(path, header["config"])
    _restore(path, model, _Tensors(path, header["tensors"], data))
    return model.eval(), header["metadata"]
