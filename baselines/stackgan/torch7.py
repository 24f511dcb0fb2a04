"""A restricted reader of Torch7's binary serialization (``torch.save`` in Lua), for the char-CNN-RNN ``.t7`` files.

The text embeddings StackGAN conditions on come from reedscot/icml2016's Lua code; its ``get_embedding.lua``
(StackGAN ``demo/``) writes ``torch.save(file, {raw_txt = {caption, ...}, fea_txt = {FloatTensor(1, 1024), ...}})``.
This module reads such files **without Lua and without building arbitrary objects**: only numbers, strings,
booleans, nil, tables of those, and numeric tensors/storages (``torch.{Float,Double,Long,Int,Short,Char,Byte}
{Tensor,Storage}``) are admitted. A file holding anything else (an ``nn`` module, a function, another class) is
refused with one :class:`~cgmbench.errors.CgmbenchError` naming the class, before anything is built from it.

The format (torch7 ``File.lua`` ``writeObject``, ``generic/Tensor.c`` / ``generic/Storage.c`` ``write``), binary
mode, little-endian, ``int`` = 4 bytes, ``long`` = 8 bytes (64-bit Linux, the machines these files were written on):

* every object starts with an ``int`` type: 0 nil, 1 number (``double``), 2 string (``int`` length + bytes),
  3 table, 4 torch object, 5 boolean (``int``), 6/7/8 functions (refused);
* tables and torch objects continue with an ``int`` reference index; an index seen before is a reference to the
  same object (shared or recursive structure), otherwise the object follows;
* a table: ``int`` n, then n (key, value) object pairs;
* a torch object: its version string (``int`` length + ``"V 1"``; a string not starting with ``"V "`` is a
  version-0 class name) and class name (``int`` length + bytes), then the class's own ``write``:
  a tensor writes ``int`` nDimension, nDimension ``long`` sizes, nDimension ``long`` strides, ``long``
  storageOffset (1-based), then its storage as an object (or nil); a storage writes ``long`` n and n raw elements.

Tensors come back as NumPy arrays (a copy, with the tensor's sizes, strides and offset applied); tables as dicts
whose Lua array part (keys 1..n) is also available through :func:`lua_list`.
"""

from __future__ import annotations

import os
import struct
from typing import Any

import numpy as np

from cgmbench.errors import CgmbenchError

__all__ = ["read_t7", "lua_list", "T7_TENSOR_DTYPES"]

NIL, NUMBER, STRING, TABLE, TORCH, BOOLEAN = 0, 1, 2, 3, 4, 5
FUNCTIONS = (6, 7, 8)
#: the admitted torch classes: element type of each tensor and storage
T7_TENSOR_DTYPES = {"Double": "<f8", "Float": "<f4", "Long": "<i8", "Int": "<i4", "Short": "<i2", "Char": "i1",
                    "Byte": "u1"}
MAX_DEPTH = 64


class _Refused(Exception):
    pass


class _Reader:
    def __init__(self, data: bytes, long_size: int = 8):
        self.data, self.pos = data, 0
        self.long = "<q" if long_size == 8 else "<i"
        self.long_size = long_size
        self.memo: dict[int, Any] = {}

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise _Refused(f"truncated file (needs {n} bytes at offset {self.pos})")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def int(self) -> int:
        return struct.unpack("<i", self.take(4))[0]

    def long_(self) -> int:
        return struct.unpack(self.long, self.take(self.long_size))[0]

    def string(self) -> str:
        return self.take(self.int()).decode("utf-8", errors="replace")

    def object(self, depth: int = 0) -> Any:
        if depth > MAX_DEPTH:
            raise _Refused(f"nesting deeper than {MAX_DEPTH}")
        kind = self.int()
        if kind == NIL:
            return None
        if kind == NUMBER:
            value = struct.unpack("<d", self.take(8))[0]
            return int(value) if value.is_integer() and abs(value) < 2 ** 53 else value
        if kind == STRING:
            return self.string()
        if kind == BOOLEAN:
            return self.int() == 1
        if kind in FUNCTIONS:
            raise _Refused("a serialized Lua function (only numbers, strings, tables and numeric tensors are read)")
        if kind not in (TABLE, TORCH):
            raise _Refused(f"unknown object type {kind} at offset {self.pos - 4}")
        index = self.int()
        if index in self.memo:
            return self.memo[index]
        if kind == TABLE:
            table: dict = {}
            self.memo[index] = table
            n = self.int()
            if n < 0:
                raise _Refused(f"table with {n} entries")
            for _ in range(n):
                key = self.object(depth + 1)
                if isinstance(key, (dict, np.ndarray)) or key is None:
                    raise _Refused("a table key that is not a number, string or boolean")
                table[key] = self.object(depth + 1)
            return table
        version = self.string()
        class_name = self.string() if version.startswith("V ") else version
        value = self.torch_object(class_name, depth)
        self.memo[index] = value
        return value

    def torch_object(self, class_name: str, depth: int) -> Any:
        prefix, _, rest = class_name.partition(".")
        for elem, dtype in T7_TENSOR_DTYPES.items():
            if prefix == "torch" and rest == f"{elem}Storage":
                n = self.long_()
                if n < 0:
                    raise _Refused(f"{class_name} of {n} elements")
                size = np.dtype(dtype).itemsize
                return np.frombuffer(self.take(n * size), dtype=dtype).copy()
            if prefix == "torch" and rest == f"{elem}Tensor":
                ndim = self.int()
                if not 0 <= ndim <= 32:
                    raise _Refused(f"{class_name} with {ndim} dimensions")
                sizes = [self.long_() for _ in range(ndim)]
                strides = [self.long_() for _ in range(ndim)]
                offset = self.long_() - 1
                storage = self.object(depth + 1)
                if ndim == 0 or storage is None:
                    return np.zeros([0] * max(ndim, 1), dtype=dtype)
                if not isinstance(storage, np.ndarray) or storage.dtype != np.dtype(dtype):
                    raise _Refused(f"{class_name} whose storage is not a {elem}Storage")
                if min(sizes) < 0 or offset < 0:
                    raise _Refused(f"{class_name} with sizes {sizes} and offset {offset + 1}")
                last = offset + sum((s - 1) * st for s, st in zip(sizes, strides)) if min(sizes) > 0 else offset
                if min(strides) < 0 or last >= len(storage) and min(sizes) > 0:
                    raise _Refused(f"{class_name} reaches past its storage ({len(storage)} elements)")
                item = storage.itemsize
                view = np.lib.stride_tricks.as_strided(storage[offset:], shape=sizes,
                                                       strides=[st * item for st in strides], writeable=False)
                return np.array(view)
        raise _Refused(f"an object of class {class_name!r}")


def read_t7(path: str | os.PathLike, long_size: int = 8) -> Any:
    """The object in a Torch7 binary ``.t7`` file: dicts, strings, numbers, booleans, None and NumPy arrays.

    ``long_size``: 8 (64-bit Linux/macOS, default) or 4 (files written on Windows). Anything else in the file is
    refused with a :class:`CgmbenchError`; so is trailing data after the object."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise CgmbenchError(f"Torch7 file {path} does not exist")
    with open(path, "rb") as f:
        data = f.read()
    reader = _Reader(data, long_size)
    try:
        obj = reader.object()
        if reader.pos != len(data):
            raise _Refused(f"{len(data) - reader.pos} bytes after the object (a Torch7 ascii file, or not .t7)")
    except _Refused as why:
        raise CgmbenchError(f"refusing to read {path} as a Torch7 file: {why}",
                            "only Torch7 binary files of tables, strings, numbers and numeric tensors are read") from None
    except (struct.error, ValueError) as error:
        raise CgmbenchError(f"cannot read {path} as a Torch7 binary file: {error}") from None
    return obj


def lua_list(table: Any, what: str = "table") -> list:
    """The array part of a Lua table read by :func:`read_t7` (keys 1..n, in order) as a list."""
    if isinstance(table, list):
        return table
    if not isinstance(table, dict):
        raise CgmbenchError(f"{what} is a {type(table).__name__}, not a Lua table")
    n = len(table)
    if set(table) != set(range(1, n + 1)):
        raise CgmbenchError(f"{what} is not a Lua list (keys are not 1..{n})")
    return [table[i] for i in range(1, n + 1)]
