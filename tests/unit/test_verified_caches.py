"""Issue 12, item 3: reference-statistics cache entries are verified by content hash on read; one that does not
verify (truncated, bit-flipped, half-written) is an IntegrityError line for a direct read, and is recomputed,
never turned into "not computed", when a run needs it. Faults injected: truncation, bit flips, a lone file."""

from __future__ import annotations

import numpy as np
import pytest

from cgmbench.errors import CgmbenchError, IntegrityError
from cgmbench.scoring import reference_stats as rs


def _stats(key="k" * 64, d=4, n=10, seed=0):
    rng = np.random.default_rng(seed)
    feats = rng.normal(size=(n, d))
    return rs.ReferenceStats(key, feats.mean(0), np.cov(feats, rowvar=False), n, feats.astype(np.float32),
                             {"extractor": "x", "protocol": "clean"})


@pytest.fixture
def saved(tmp_path):
    stats = _stats()
    path = rs.save_stats(stats, tmp_path)
    return stats, path


def test_round_trip_verifies(saved, tmp_path):
    stats, path = saved
    back = rs.load_stats(stats.key, tmp_path)
    assert back.content_sha256() == stats.content_sha256()
    assert np.array_equal(back.sigma, stats.sigma) and back.n == 10


@pytest.mark.parametrize("cut", [0, 10, 100, -50, -1])
def test_truncated_npz_is_an_integrity_error_line(saved, tmp_path, cut):
    stats, path = saved
    data = path.read_bytes()
    path.write_bytes(data[:cut] if cut >= 0 else data[:len(data) + cut])
    with pytest.raises(IntegrityError) as e:  # before: zipfile.BadZipFile traceback
        rs.load_stats(stats.key, tmp_path)
    assert "\n" not in str(e.value) and str(path) in str(e.value)


def test_every_bit_flip_in_the_arrays_is_detected(saved, tmp_path):
    stats, path = saved
    data = bytearray(path.read_bytes())
    rng = np.random.default_rng(0)
    detected = 0
    positions = rng.choice(len(data), size=40, replace=False)
    for pos in positions:
        flipped = bytearray(data)
        flipped[pos] ^= 1 << int(rng.integers(8))
        path.write_bytes(bytes(flipped))
        try:
            back = rs.load_stats(stats.key, tmp_path)
        except IntegrityError:
            detected += 1
            continue
        # a flip in zip metadata that numpy ignores (timestamps, ...) leaves the arrays intact: still verified
        assert back.content_sha256() == stats.content_sha256()
    assert detected >= 30


def test_edited_meta_and_lone_files_are_integrity_errors(saved, tmp_path):
    stats, path = saved
    meta = path.with_suffix(".json")
    text = meta.read_text()
    meta.write_text(text.replace('"n": 10', '"n": 11').replace(stats.content_sha256(), "0" * 64))
    with pytest.raises(IntegrityError, match="records 0000"):
        rs.load_stats(stats.key, tmp_path)
    meta.write_text("{ torn")
    with pytest.raises(IntegrityError, match="not valid JSON"):
        rs.load_stats(stats.key, tmp_path)
    meta.unlink()  # killed between writing the .npz and its .json
    with pytest.raises(IntegrityError, match="only one of"):
        rs.load_stats(stats.key, tmp_path)
    path.unlink()
    assert rs.load_stats(stats.key, tmp_path) is None  # absent: computed, not an error


class _FakeExtractor:
    name, weights_sha256, is_official_weights, feature_dim = "fake", "w" * 64, False, 3

    def __init__(self):
        self.calls = 0

    def prepare(self, images, batch_size=None):
        return [images]

    def features_of_prepared(self, chunks):
        import torch

        self.calls += 1
        x = torch.cat(chunks).to(torch.float64)
        return torch.stack([x.mean((1, 2, 3)), x[:, 0].mean((1, 2)), x[:, 1].std((1, 2))], 1)

    def describe(self):
        return {"name": self.name}


def test_reference_stats_recomputes_a_corrupt_cache_entry(tmp_path, monkeypatch):
    """Before: a corrupt cache made a 'complete' run with FID/KID/PR listed as not computed."""
    from cgmbench.spec.task import load_task

    monkeypatch.setenv("CGMBENCH_HOME", str(tmp_path))
    task = load_task("shapes-cc")
    ext = _FakeExtractor()
    first = rs.reference_stats(task, ext, "clean", batch_size=64, max_images=40)
    assert ext.calls > 0
    calls = ext.calls
    again = rs.reference_stats(task, ext, "clean", batch_size=64, max_images=40)
    assert ext.calls == calls and again.content_sha256() == first.content_sha256()  # served from the cache
    path = rs.stats_dir() / f"{first.key}.npz"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    logged = []
    fixed = rs.reference_stats(task, ext, "clean", batch_size=64, max_images=40, log=logged.append)
    assert ext.calls > calls, "the corrupt entry was recomputed"
    assert fixed.content_sha256() == first.content_sha256()
    assert any("recomputing" in m for m in logged)
    assert rs.load_stats(first.key).content_sha256() == first.content_sha256()  # the cache is whole again
    path.write_bytes(path.read_bytes()[:64])  # truncated
    assert rs.reference_stats(task, ext, "clean", batch_size=64, max_images=40).n == first.n


def test_fid_of_a_truncated_statistics_file_is_one_line(tmp_path):
    import cgmbench

    np.savez(tmp_path / "s.npz", mu=np.zeros(3), sigma=np.eye(3))
    (tmp_path / "t.npz").write_bytes((tmp_path / "s.npz").read_bytes()[:40])
    with pytest.raises(IntegrityError) as e:
        cgmbench.fid(tmp_path / "s.npz", tmp_path / "t.npz")
    assert "t.npz" in str(e.value) and "\n" not in str(e.value)
    np.savez(tmp_path / "bad.npz", mu=np.zeros(3), sigma=np.eye(4))
    with pytest.raises(CgmbenchError, match="do not fit together"):
        cgmbench.fid(tmp_path / "s.npz", tmp_path / "bad.npz")
    assert cgmbench.fid(tmp_path / "s.npz", tmp_path / "s.npz")["fid"] == pytest.approx(0.0, abs=1e-12)
