"""The TensorFlow-free checkpoint reader (cgmbench.extractors.tf_checkpoint): exact values from tiny V1 and V2
files that TensorFlow wrote (tests/fixtures/tf_checkpoint), and from tables written here in the same format
(several blocks, prefix-compressed keys, a snappy block, a tensor saved in two slices, tensor_content)."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

from cgmbench.extractors.errors import ExtractorError
from cgmbench.extractors.tf_checkpoint import TABLE_MAGIC, read_tf_checkpoint

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "tf_checkpoint"


# ------------------------------------------------------------------ a minimal writer of the same format


def varint(n: int) -> bytes:
    n &= (1 << 64) - 1
    out = bytearray()
    while True:
        out.append((n & 0x7F) | (0x80 if n > 0x7F else 0))
        n >>= 7
        if not n:
            return bytes(out)


def field(number: int, payload: bytes | int) -> bytes:
    if isinstance(payload, int):
        return varint(number << 3) + varint(payload)
    return varint((number << 3) | 2) + varint(len(payload)) + payload


def shape_proto(shape) -> bytes:
    return b"".join(field(2, field(1, d)) for d in shape)


def snappy_literal_then_copy(raw: bytes) -> bytes:
    """Snappy: the first 8 bytes as a literal, then (when the rest repeats them) 1-byte-offset copies."""
    out = bytearray(varint(len(raw)))
    head, pos = raw[:8], 8
    out += bytes([(len(head) - 1) << 2]) + head
    while pos < len(raw):
        n = min(8, len(raw) - pos)
        if raw[pos:pos + n] == raw[pos - 8:pos - 8 + n] and n >= 4:
            out += bytes([((n - 4) << 2) | 1, 8])  # copy, 1-byte offset 8
        else:
            chunk = raw[pos:pos + n]
            out += bytes([(len(chunk) - 1) << 2]) + chunk
        pos += n
    return bytes(out)


def table(entries: list[tuple[bytes, bytes]], per_block: int = 2, snappy_first: bool = False) -> bytes:
    """A TF/LevelDB table: sorted entries, ``per_block`` entries a block, prefix-compressed keys."""
    out = bytearray()
    index = []
    blocks = [entries[i:i + per_block] for i in range(0, len(entries), per_block)]
    for b, chunk in enumerate(blocks):
        body, prev = bytearray(), b""
        for key, value in chunk:
            shared = 0
            while shared < min(len(prev), len(key)) and prev[shared] == key[shared]:
                shared += 1
            body += varint(shared) + varint(len(key) - shared) + varint(len(value)) + key[shared:] + value
            prev = key
        body += struct.pack("<II", 0, 1)  # one restart point at 0
        kind = 0
        if snappy_first and b == 0:
            body, kind = bytearray(snappy_literal_then_copy(bytes(body))), 1
        index.append((chunk[-1][0], len(out), len(body)))
        out += body + bytes([kind]) + b"\0\0\0\0"  # CRC not checked by the reader
    def plain_block(items):
        body = bytearray()
        for key, value in items:
            body += varint(0) + varint(len(key)) + varint(len(value)) + key + value
        return bytes(body + struct.pack("<II", 0, 1))
    meta_off = len(out)
    meta = plain_block([])
    out += meta + b"\0" * 5
    idx_off = len(out)
    idx = plain_block([(k, varint(o) + varint(s)) for k, o, s in index])
    out += idx + b"\0" * 5
    footer = varint(meta_off) + varint(len(meta)) + varint(idx_off) + varint(len(idx))
    out += footer + b"\0" * (40 - len(footer)) + struct.pack("<Q", TABLE_MAGIC)
    return bytes(out)


def v1_checkpoint(tensors: dict[str, np.ndarray], split: str | None = None, content: bool = False,
                  **table_kw) -> bytes:
    """V1 (SavedTensorSlices) with float32 tensors; ``split`` is saved as two slices along dim 0."""
    meta = b"".join(field(1, field(1, n.encode()) + field(2, shape_proto(a.shape)) + field(3, 1))
                    for n, a in tensors.items())
    entries = [(b"", field(1, meta))]
    for name, a in sorted(tensors.items()):
        parts = [(0, a)] if name != split else [(0, a[:1]), (1, a[1:])]
        for start, part in parts:
            extents = b"".join(field(1, field(1, start if d == 0 else 0) + field(2, part.shape[d]))
                               for d in range(a.ndim))
            values = field(4, part.astype("<f4").tobytes()) if content else field(5, part.astype("<f4").tobytes())
            key = b"\x00" + name.encode() + bytes([start])
            entries.append((key, field(2, field(1, name.encode()) + field(2, extents) + field(3, values))))
    return table(sorted(entries), **table_kw)


# ------------------------------------------------------------------ tests


def test_reads_the_checkpoints_tensorflow_wrote():
    values = {k.replace("|", "/"): v for k, v in np.load(FIXTURES / "values.npz").items()}
    for path in (FIXTURES / "v1" / "model.ckpt-5000", FIXTURES / "v2" / "model.ckpt-5000",
                 FIXTURES / "v2" / "model.ckpt-5000.index"):
        got = read_tf_checkpoint(path)
        assert got.keys() == values.keys()
        for name, want in values.items():
            assert got[name].dtype == want.dtype and np.array_equal(got[name], want), (path, name)


def test_blocks_prefix_keys_snappy_slices_and_content(tmp_path):
    rng = np.random.default_rng(0)
    tensors = {f"mixed/branch{i}/Conv/weights": rng.standard_normal((3, 2, 4)).astype(np.float32) for i in range(5)}
    tensors["repeat"] = np.tile(np.float32([1.5, -2.0]), 40)
    for kw in (dict(per_block=2), dict(per_block=3, snappy_first=True), dict(per_block=100, content=True)):
        path = tmp_path / "model.ckpt-1"
        path.write_bytes(v1_checkpoint(tensors, split="mixed/branch3/Conv/weights", **kw))
        got = read_tf_checkpoint(path)
        assert got.keys() == tensors.keys()
        assert all(np.array_equal(got[k], v) for k, v in tensors.items()), kw


def test_snappy_copies():
    from cgmbench.extractors.tf_checkpoint import _snappy

    raw = bytes(range(8)) * 5
    packed = snappy_literal_then_copy(raw)
    assert len(packed) < len(raw) and _snappy(packed) == raw  # literals and overlapping 1-byte-offset copies


def test_damaged_files_are_one_line(tmp_path):
    good = v1_checkpoint({"a": np.zeros((2, 2), np.float32)})
    meta_only = table([(b"", field(1, field(1, field(1, b"a") + field(2, shape_proto((2, 2))) + field(3, 1))))])
    for name, data, message in (("magic", good[:-8] + b"\0" * 8, "no TensorFlow table magic"),
                                ("short", good[:20], "shorter than a table footer"),
                                ("slices", meta_only, "the slices of 'a' cover 0 of its 4 values")):
        (tmp_path / name).write_bytes(data)
        with pytest.raises(ExtractorError, match=message) as info:
            read_tf_checkpoint(tmp_path / name)
        assert "\n" not in str(info.value) and name in str(info.value)
    with pytest.raises(ExtractorError, match="does not exist"):
        read_tf_checkpoint(tmp_path / "nothing")
