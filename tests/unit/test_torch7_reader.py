"""The restricted Torch7 reader (baselines.stackgan.torch7) on files written here in the Torch7 binary layout
(File.lua writeObject, Tensor/Storage write): get_embedding.lua's {raw_txt, fea_txt}, shared references, strided
tensors, and refusal of everything that is not a number, string, table or numeric tensor."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from baselines.stackgan.checkpoints import load_char_cnn_rnn_t7
from baselines.stackgan.torch7 import lua_list, read_t7
from cgmbench.errors import CgmbenchError


class T7Writer:
    """A minimal Torch7 binary serializer (little-endian, 4-byte int, 8-byte long), as torch.save writes."""

    STORAGE = {np.dtype("float32"): "Float", np.dtype("float64"): "Double", np.dtype("int64"): "Long",
               np.dtype("uint8"): "Byte"}

    def __init__(self):
        self.out = bytearray()
        self.index = 0
        self.seen: dict[int, int] = {}

    def int(self, v):
        self.out += struct.pack("<i", v)

    def long(self, v):
        self.out += struct.pack("<q", v)

    def string(self, s: bytes):
        self.int(len(s))
        self.out += s

    def _ref(self, obj) -> bool:
        if id(obj) in self.seen:
            self.int(self.seen[id(obj)])
            return True
        self.index += 1
        self.seen[id(obj)] = self.index
        self.int(self.index)
        return False

    def obj(self, o):
        if o is None:
            self.int(0)
        elif isinstance(o, bool):
            self.int(5)
            self.int(int(o))
        elif isinstance(o, (int, float)):
            self.int(1)
            self.out += struct.pack("<d", float(o))
        elif isinstance(o, str):
            self.int(2)
            self.string(o.encode())
        elif isinstance(o, (list, dict)):
            self.int(3)
            if self._ref(o):
                return
            items = list(enumerate(o, 1)) if isinstance(o, list) else list(o.items())
            self.int(len(items))
            for k, v in items:
                self.obj(k)
                self.obj(v)
        elif isinstance(o, Storage):
            self.int(4)
            if self._ref(o):
                return
            self.string(b"V 1")
            self.string(f"torch.{self.STORAGE[o.data.dtype]}Storage".encode())
            self.long(o.data.size)
            self.out += o.data.astype(o.data.dtype.newbyteorder("<")).tobytes()
        elif isinstance(o, Tensor):
            self.int(4)
            if self._ref(o):
                return
            self.string(b"V 1")
            self.string(f"torch.{self.STORAGE[o.storage.data.dtype]}Tensor".encode())
            self.int(len(o.sizes))
            for v in list(o.sizes) + list(o.strides):
                self.long(v)
            self.long(o.offset + 1)
            self.obj(o.storage)
        elif isinstance(o, Foreign):
            self.int(4)
            self._ref(o)
            self.string(b"V 1")
            self.string(o.class_name.encode())
            self.out += b"\0" * 16
        else:
            raise TypeError(o)


class Storage:
    def __init__(self, data):
        self.data = np.ascontiguousarray(data).reshape(-1)


class Tensor:
    def __init__(self, storage, sizes, strides=None, offset=0):
        self.storage, self.sizes, self.offset = storage, list(sizes), offset
        if strides is None:
            strides, acc = [], 1
            for s in reversed(self.sizes):
                strides.insert(0, acc)
                acc *= s
        self.strides = list(strides)

    @classmethod
    def of(cls, array):
        array = np.ascontiguousarray(array)
        return cls(Storage(array), array.shape)


class Foreign:
    def __init__(self, class_name):
        self.class_name = class_name


def _write(path, obj):
    w = T7Writer()
    w.obj(obj)
    path.write_bytes(bytes(w.out))
    return path


def test_get_embedding_lua_layout(tmp_path):
    rng = np.random.default_rng(0)
    feats = [rng.standard_normal((1, 1024)).astype(np.float32) for _ in range(3)]
    captions = ["this bird is red with a black beak", "a small yellow bird", "the bird has white wings"]
    path = _write(tmp_path / "example_captions.t7",
                  {"raw_txt": captions, "fea_txt": [Tensor.of(f) for f in feats]})
    emb, texts = load_char_cnn_rnn_t7(path)
    assert emb.dtype == np.float32 and emb.shape == (3, 1024) and texts == captions
    assert np.array_equal(emb, np.concatenate(feats))
    # a bare (N, 1024) tensor: no captions
    emb2, none = load_char_cnn_rnn_t7(_write(tmp_path / "bare.t7", Tensor.of(np.concatenate(feats))))
    assert none is None and np.array_equal(emb2, emb)


def test_references_strides_offsets_and_scalars(tmp_path):
    base = np.arange(24, dtype=np.float64)
    storage = Storage(base)
    # a transposed view (strides 1, 4) starting at element 2, sharing the storage with a second tensor
    view = Tensor(storage, sizes=[4, 3], strides=[1, 4], offset=2)
    whole = Tensor(storage, sizes=[24])
    shared = [1, 2]
    obj = {"view": view, "whole": whole, "n": 3, "x": 0.5, "flag": True, "none": None, "a": shared, "b": shared,
           "bytes": Tensor.of(np.array([[1, 2], [3, 250]], np.uint8)), "ids": Tensor.of(np.array([7, -1], np.int64))}
    got = read_t7(_write(tmp_path / "mixed.t7", obj))
    want = np.lib.stride_tricks.as_strided(base[2:], shape=(4, 3), strides=(8, 32))
    assert np.array_equal(got["view"], want) and np.array_equal(got["whole"], base)
    assert got["n"] == 3 and got["x"] == 0.5 and got["flag"] is True and "none" not in got or got["none"] is None
    assert got["a"] is got["b"] and lua_list(got["a"]) == [1, 2]  # one table referenced twice
    assert got["bytes"].dtype == np.uint8 and got["bytes"][1, 1] == 250 and got["ids"].tolist() == [7, -1]


def test_foreign_objects_functions_and_damage_are_refused(tmp_path):
    with pytest.raises(CgmbenchError, match=r"refusing .*an object of class 'nn.Linear'") as info:
        read_t7(_write(tmp_path / "module.t7", {"net": Foreign("nn.Linear")}))
    assert "\n" not in str(info.value)
    w = T7Writer()
    w.int(6)  # a serialized Lua function
    (tmp_path / "fn.t7").write_bytes(bytes(w.out) + b"\0" * 8)
    with pytest.raises(CgmbenchError, match="serialized Lua function"):
        read_t7(tmp_path / "fn.t7")
    good = _write(tmp_path / "good.t7", {"fea_txt": [Tensor.of(np.zeros((1, 1024), np.float32))]})
    (tmp_path / "cut.t7").write_bytes(good.read_bytes()[:-10])
    with pytest.raises(CgmbenchError, match="truncated file"):
        read_t7(tmp_path / "cut.t7")
    (tmp_path / "tail.t7").write_bytes(good.read_bytes() + b"junk")
    with pytest.raises(CgmbenchError, match="4 bytes after the object"):
        read_t7(tmp_path / "tail.t7")
    bad = Tensor(Storage(np.zeros(4, np.float32)), sizes=[3, 3])  # reaches past its 4-element storage
    with pytest.raises(CgmbenchError, match="reaches past its storage"):
        read_t7(_write(tmp_path / "oob.t7", bad))
    with pytest.raises(CgmbenchError, match="not get_embedding.lua's"):
        load_char_cnn_rnn_t7(_write(tmp_path / "other.t7", {"txt": 1}))
    with pytest.raises(CgmbenchError, match="raw_txt holds 2 entries for 1 embeddings"):
        load_char_cnn_rnn_t7(_write(tmp_path / "mismatch.t7", {"raw_txt": ["a", "b"], "fea_txt": [
            Tensor.of(np.zeros((1, 1024), np.float32))]}))
