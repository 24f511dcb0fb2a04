"""A reader of TensorFlow checkpoints that needs no TensorFlow: variable name -> NumPy array.

For converting released TF1 checkpoints (StackGAN's fine-tuned Inception, ``model.ckpt-5000``) into cgmbench's
safetensors once; nothing here runs at scoring time. Two formats, both built on TF's immutable sorted table
(``tensorflow/core/lib/io/table*``, the LevelDB table format):

* **V1** (``tf.train.Saver`` before TF 1.0; one file ``model.ckpt-N`` next to ``model.ckpt-N.meta``): a table
  whose values are ``SavedTensorSlices`` protos. The entry with the empty key holds the ``meta`` (name, shape,
  dtype of every tensor); every other entry holds one ``SavedSlice`` (a tensor name, the slice's extents and a
  ``TensorProto`` with the values in ``float_val``/``double_val``/``int_val``/``int64_val`` or
  ``tensor_content``). Slices are assembled into whole tensors.
* **V2** (``model.ckpt-N.index`` + ``model.ckpt-N.data-00000-of-00001``): a table from tensor names to
  ``BundleEntryProto`` (dtype, shape, shard, offset, size); the bytes live in the data shard, little-endian.

The table: blocks of prefix-compressed entries (``shared``, ``non_shared``, ``value_length`` varints, key
delta, value) ending in the restart array; each block is followed by a compression byte (0 none, 1 snappy,
decoded here) and a masked CRC-32C, which is **not** verified (the converted file is checked by its SHA-256
instead); the 48-byte footer holds the meta-index and index block handles and the magic ``0xdb4775248b80fb57``.
The protobuf messages are decoded from their wire format with only the fields listed above; unknown fields are
skipped. Any structural inconsistency is a :class:`~cgmbench.extractors.errors.ExtractorError` naming the file.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path
from typing import Iterator

import numpy as np

from cgmbench.extractors.errors import ExtractorError

__all__ = ["read_tf_checkpoint", "TABLE_MAGIC"]

TABLE_MAGIC = 0xDB4775248B80FB57
FOOTER_BYTES = 48
#: TF DataType enum -> NumPy dtype (the numeric types a checkpoint of a vision network holds)
DTYPES = {1: np.float32, 2: np.float64, 3: np.int32, 4: np.uint8, 5: np.int16, 6: np.int8, 9: np.int64,
          10: np.bool_, 19: np.float16}


class _Bad(Exception):
    """Internal: a structural error, turned into one ExtractorError naming the file."""


# ------------------------------------------------------------------------------------------- wire format


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise _Bad("truncated varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise _Bad("varint longer than 10 bytes")


def _fields(buf: bytes) -> Iterator[tuple[int, int, object]]:
    """``(field number, wire type, value)`` of a protobuf message: ints for varints, bytes for length-delimited,
    raw 4/8-byte strings for fixed32/fixed64."""
    pos = 0
    while pos < len(buf):
        tag, pos = _varint(buf, pos)
        number, wire = tag >> 3, tag & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 2:
            length, pos = _varint(buf, pos)
            if pos + length > len(buf):
                raise _Bad("truncated length-delimited field")
            value, pos = buf[pos:pos + length], pos + length
        elif wire == 5:
            value, pos = buf[pos:pos + 4], pos + 4
        elif wire == 1:
            value, pos = buf[pos:pos + 8], pos + 8
        else:
            raise _Bad(f"unsupported protobuf wire type {wire}")
        yield number, wire, value


def _signed(v: int) -> int:
    return v - (1 << 64) if v >= 1 << 63 else v


def _shape(msg: bytes) -> list[int]:
    """TensorShapeProto -> dims."""
    dims = []
    for number, _, value in _fields(msg):
        if number == 2:
            size = 0
            for n2, _, v2 in _fields(value):
                if n2 == 1:
                    size = _signed(v2)
            dims.append(size)
    return dims


def _slice(msg: bytes) -> list[tuple[int, int | None]]:
    """TensorSliceProto -> ``[(start, length or None = the whole dimension)]``."""
    extents = []
    for number, _, value in _fields(msg):
        if number == 1:
            start, length = 0, None
            for n2, _, v2 in _fields(value):
                if n2 == 1:
                    start = _signed(v2)
                elif n2 == 2:
                    length = _signed(v2)
            extents.append((start, length))
    return extents


def _repeated(wire: int, value, fmt: str) -> list:
    if wire == 2:  # packed
        if fmt in "fd":
            return list(np.frombuffer(value, dtype="<f4" if fmt == "f" else "<f8"))
        out, pos = [], 0
        while pos < len(value):
            v, pos = _varint(value, pos)
            out.append(_signed(v))
        return out
    if wire == 5:
        return [struct.unpack("<f", value)[0]]
    if wire == 1:
        return [struct.unpack("<d", value)[0]]
    return [_signed(value)]


def _tensor_proto(msg: bytes, default_dtype: int | None = None) -> tuple[int | None, list[int] | None, np.ndarray]:
    """TensorProto -> ``(dtype, shape, flat values)``; V1 slices leave ``dtype`` to the tensor's meta entry."""
    dtype, shape, content, values = default_dtype, None, None, []
    for number, wire, value in _fields(msg):
        if number == 1:
            dtype = value
        elif number == 2:
            shape = _shape(value)
        elif number == 4:
            content = value
        elif number == 5:
            values += _repeated(wire, value, "f")
        elif number == 6:
            values += _repeated(wire, value, "d")
        elif number in (7, 10):  # int_val, int64_val
            values += _repeated(wire, value, "i")
    if dtype not in DTYPES:
        raise _Bad(f"tensor of unsupported dtype enum {dtype}")
    np_dtype = np.dtype(DTYPES[dtype]).newbyteorder("<")
    if content is not None:
        flat = np.frombuffer(content, dtype=np_dtype)
    else:
        flat = np.asarray(values, dtype=np_dtype)
    return dtype, shape, flat


# ------------------------------------------------------------------------------------------- the table


def _snappy(data: bytes) -> bytes:
    """Raw snappy decompression (varint length, then literal and copy elements)."""
    length, pos = _varint(data, 0)
    out = bytearray()
    while pos < len(data):
        tag = data[pos]
        pos += 1
        kind = tag & 3
        if kind == 0:
            n = tag >> 2
            if n >= 60:
                extra = n - 59
                n = int.from_bytes(data[pos:pos + extra], "little")
                pos += extra
            n += 1
            out += data[pos:pos + n]
            pos += n
            continue
        if kind == 1:
            n, offset = ((tag >> 2) & 7) + 4, ((tag >> 5) << 8) | data[pos]
            pos += 1
        elif kind == 2:
            n, offset = (tag >> 2) + 1, int.from_bytes(data[pos:pos + 2], "little")
            pos += 2
        else:
            n, offset = (tag >> 2) + 1, int.from_bytes(data[pos:pos + 4], "little")
            pos += 4
        if offset == 0 or offset > len(out):
            raise _Bad("corrupt snappy block")
        for _ in range(n):  # byte by byte: the copy may overlap its own output
            out.append(out[-offset])
    if len(out) != length:
        raise _Bad("corrupt snappy block (length mismatch)")
    return bytes(out)


def _block(data: bytes, offset: int, size: int) -> bytes:
    if offset + size + 5 > len(data):
        raise _Bad("block handle points past the end of the file")
    contents, kind = data[offset:offset + size], data[offset + size]
    if kind == 0:
        return contents
    if kind == 1:
        return _snappy(contents)
    raise _Bad(f"unknown block compression type {kind}")


def _entries(block: bytes) -> Iterator[tuple[bytes, bytes]]:
    if len(block) < 4:
        raise _Bad("block shorter than its restart count")
    num_restarts = struct.unpack_from("<I", block, len(block) - 4)[0]
    end = len(block) - 4 - 4 * num_restarts
    if end < 0:
        raise _Bad("block restart array larger than the block")
    pos, key = 0, b""
    while pos < end:
        shared, pos = _varint(block, pos)
        non_shared, pos = _varint(block, pos)
        value_length, pos = _varint(block, pos)
        if shared > len(key) or pos + non_shared + value_length > end:
            raise _Bad("corrupt block entry")
        key = key[:shared] + block[pos:pos + non_shared]
        pos += non_shared
        yield key, block[pos:pos + value_length]
        pos += value_length


def _handle(buf: bytes, pos: int = 0) -> tuple[int, int, int]:
    offset, pos = _varint(buf, pos)
    size, pos = _varint(buf, pos)
    return offset, size, pos


def _table(data: bytes) -> Iterator[tuple[bytes, bytes]]:
    """Every ``(key, value)`` of a TF/LevelDB table, in key order."""
    if len(data) < FOOTER_BYTES:
        raise _Bad("file shorter than a table footer")
    footer = data[-FOOTER_BYTES:]
    if struct.unpack_from("<Q", footer, 40)[0] != TABLE_MAGIC:
        raise _Bad("no TensorFlow table magic number at the end")
    _, _, pos = _handle(footer)  # the meta-index block (no filters in checkpoints)
    index_offset, index_size, _ = _handle(footer, pos)
    for _, handle in _entries(_block(data, index_offset, index_size)):
        offset, size, _ = _handle(handle)
        yield from _entries(_block(data, offset, size))


# ------------------------------------------------------------------------------------------- formats


def _read_v1(data: bytes) -> dict[str, np.ndarray]:
    metas: dict[str, tuple[int, list[int]]] = {}
    slices: dict[str, list[tuple[list[tuple[int, int | None]], bytes | None]]] = {}
    for key, value in _table(data):
        for number, _, msg in _fields(value):
            if number == 1:  # SavedTensorSliceMeta
                for n2, _, tensor in _fields(msg):
                    if n2 != 1:
                        continue
                    name, shape, dtype = "", [], None
                    for n3, _, v3 in _fields(tensor):
                        if n3 == 1:
                            name = v3.decode("utf-8")
                        elif n3 == 2:
                            shape = _shape(v3)
                        elif n3 == 3:
                            dtype = v3
                    metas[name] = (dtype, shape)
            elif number == 2:  # SavedSlice
                name, extents, flat = "", [], None
                for n2, _, v2 in _fields(msg):
                    if n2 == 1:
                        name = v2.decode("utf-8")
                    elif n2 == 2:
                        extents = _slice(v2)
                    elif n2 == 3:
                        flat = v2  # decoded below, with the dtype of the tensor's meta entry
                slices.setdefault(name, []).append((extents, flat))
    if not metas:
        raise _Bad("no tensor metadata (the entry with the empty key) in a V1 checkpoint table")
    out = {}
    for name, (dtype, shape) in metas.items():
        if dtype not in DTYPES:
            raise _Bad(f"tensor {name!r} has unsupported dtype enum {dtype}")
        full = np.zeros(shape, dtype=DTYPES[dtype])
        covered = 0
        for extents, proto in slices.get(name, []):
            flat = None if proto is None else _tensor_proto(proto, dtype)[2]
            index, sub = [], []
            for d, size in enumerate(shape):
                start, length = extents[d] if d < len(extents) else (0, None)
                length = size - start if length is None else length
                index.append(slice(start, start + length))
                sub.append(length)
            if flat is None or flat.size != int(np.prod(sub, dtype=np.int64)):
                raise _Bad(f"slice of {name!r} holds {0 if flat is None else flat.size} values for extents {sub}")
            full[tuple(index)] = flat.reshape(sub)
            covered += flat.size
        if covered != full.size:
            raise _Bad(f"the slices of {name!r} cover {covered} of its {full.size} values")
        out[name] = full
    return out


def _read_v2(index: bytes, prefix: str) -> dict[str, np.ndarray]:
    shards: dict[int, bytes] = {}
    out = {}
    num_shards = 1
    for key, value in _table(index):
        if key == b"":  # BundleHeaderProto
            for number, _, v in _fields(value):
                if number == 1:
                    num_shards = v
            continue
        dtype, shape, shard, offset, size = None, [], 0, 0, 0
        for number, _, v in _fields(value):
            if number == 1:
                dtype = v
            elif number == 2:
                shape = _shape(v)
            elif number == 3:
                shard = v
            elif number == 4:
                offset = v
            elif number == 5:
                size = v
            elif number == 7:
                raise _Bad(f"tensor {key.decode('utf-8', 'replace')!r} is stored in slices (partitioned variable)")
        if dtype not in DTYPES:
            raise _Bad(f"tensor {key.decode('utf-8', 'replace')!r} has unsupported dtype enum {dtype}")
        if shard not in shards:
            shard_path = f"{prefix}.data-{shard:05d}-of-{num_shards:05d}"
            if not os.path.isfile(shard_path):
                raise _Bad(f"data shard {shard_path} is missing")
            shards[shard] = Path(shard_path).read_bytes()
        buf = shards[shard]
        if offset + size > len(buf):
            raise _Bad(f"tensor {key.decode()!r} points past the end of its data shard")
        arr = np.frombuffer(buf, dtype=np.dtype(DTYPES[dtype]).newbyteorder("<"), count=size // np.dtype(DTYPES[dtype]).itemsize,
                            offset=offset)
        if arr.size != int(np.prod(shape, dtype=np.int64)):
            raise _Bad(f"tensor {key.decode()!r}: {arr.size} values for shape {shape}")
        out[key.decode("utf-8")] = arr.reshape(shape).astype(DTYPES[dtype])
    return out


def read_tf_checkpoint(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """All variables of a TF checkpoint as ``{name: array}`` (TF layouts: conv kernels HWIO, dense [in, out]).

    ``path`` is the V1 file (``model.ckpt-5000``), or a V2 prefix (``model.ckpt-5000``, with ``.index`` and
    ``.data-*`` beside it), or the V2 ``.index`` file itself.
    """
    path = os.fspath(path)
    prefix = path[: -len(".index")] if path.endswith(".index") else path
    try:
        if os.path.isfile(prefix + ".index"):
            return _read_v2(Path(prefix + ".index").read_bytes(), prefix)
        if not os.path.isfile(path):
            raise ExtractorError(f"TensorFlow checkpoint {path} does not exist (neither a V1 file nor a V2 "
                                 f"{prefix}.index)", "pass the checkpoint path, e.g. .../model.ckpt-5000")
        return _read_v1(Path(path).read_bytes())
    except _Bad as error:
        raise ExtractorError(f"{path} is not a readable TensorFlow checkpoint: {error}") from None
