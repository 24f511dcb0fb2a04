"""Issue 12, part A: untrusted inputs. Only regular files and folders are read, with size limits; high-bit-depth
images are scaled, never clipped; task names, ``[data]`` keys and shard names are checked; the leaderboard never
ranks non-finite numbers or inverted intervals. Faults are injected: FIFOs, /dev/zero, oversized files."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cgmbench.errors import CgmbenchError, IntegrityError
from cgmbench import safe_paths


@contextlib.contextmanager
def no_hang(seconds: int = 10):
    """Fail (instead of hanging the suite) if the block blocks for ``seconds``."""
    def alarm(*_):
        raise TimeoutError("blocked: the code under test waited on a FIFO or read without end")

    old = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


@pytest.fixture
def fifo(tmp_path):
    def make(name: str) -> Path:
        path = tmp_path / name
        os.mkfifo(path)
        return path
    return make


# -- safe_paths ------------------------------------------------------------------------------------


def test_fifo_and_devices_are_refused_before_any_read(fifo):
    pipe = fifo("x.json")
    for path in (pipe, Path("/dev/zero")):
        with no_hang(), pytest.raises(CgmbenchError, match="only regular files are read") as e:
            safe_paths.read_bytes(path, "record")
        assert "\n" not in str(e.value)
    with no_hang(), pytest.raises(CgmbenchError, match="FIFO"):
        safe_paths.read_json(pipe)
    with no_hang(), pytest.raises(CgmbenchError, match="character device"):
        safe_paths.open_file("/dev/zero", "checkpoint")


def test_size_limits_are_checked_before_reading(tmp_path):
    big = tmp_path / "big.toml"
    big.write_bytes(b"#" * (safe_paths.LIMITS["task file"] + 1))
    with pytest.raises(CgmbenchError, match="over the 1048576-byte task file limit"):
        safe_paths.read_bytes(big, "task file")
    small = tmp_path / "ok.json"
    small.write_text('{"a": 1}')
    assert safe_paths.read_json(small) == {"a": 1}
    assert safe_paths.read_bytes(small, "record", max_bytes=8) == b'{"a": 1}'
    with pytest.raises(CgmbenchError, match="over the 7-byte"):
        safe_paths.read_bytes(small, "record", max_bytes=7)
    small.write_text('{"a": NaN}')
    with pytest.raises(CgmbenchError, match="NaN is not valid JSON"):
        safe_paths.read_json(small)
    assert safe_paths.read_json(small, strict=False)["a"] != safe_paths.read_json(small, strict=False)["a"]


def test_links_to_regular_files_are_followed_and_folders_checked(tmp_path):
    target = tmp_path / "t.json"
    target.write_text("[1]")
    (tmp_path / "link.json").symlink_to(target)
    assert safe_paths.read_json(tmp_path / "link.json") == [1]
    assert safe_paths.check_folder(tmp_path) == tmp_path
    with pytest.raises(CgmbenchError, match="is a regular file, not a folder"):
        safe_paths.check_folder(target)
    with pytest.raises(CgmbenchError, match="does not exist"):
        safe_paths.check_file(tmp_path / "nope", "record")


# -- images: 16-bit and float ------------------------------------------------------------------------


def _png(path: Path, arr: np.ndarray, color_type: int) -> None:
    """A 16-bit PNG written by hand (PIL cannot write 16-bit RGB): grey (0) or RGB (2)."""
    h, w = arr.shape[:2]
    raw = b"".join(b"\x00" + arr[y].astype(">u2").tobytes() for y in range(h))

    def chunk(tag, data):
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, color_type, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def test_16_bit_png_is_scaled_not_saturated(tmp_path):
    from cgmbench.images import read_image

    rng = np.random.default_rng(0)
    grey = rng.integers(0, 65536, (16, 20)).astype(np.uint16)
    _png(tmp_path / "g.png", grey, 0)
    got = read_image(tmp_path / "g.png")
    expected = (grey >> 8).astype(np.uint8)  # the high byte: 65535 -> 255, 256 -> 1, 255 -> 0
    assert got.shape == (3, 16, 20) and all((got[c] == expected).all() for c in range(3))
    assert (got == 255).mean() < 0.05  # before the fix: ~100 % of pixels were 255
    rgb = np.stack([grey, 65535 - grey, grey // 3], -1)
    _png(tmp_path / "rgb.png", rgb, 2)
    got_rgb = read_image(tmp_path / "rgb.png")
    assert (got_rgb[0] == expected).all() and (got_rgb[1] == ((65535 - grey) >> 8)).all()
    # the same picture as 8-bit grey and as 16-bit grey read the same
    Image.fromarray(expected).save(tmp_path / "g8.png")
    assert (read_image(tmp_path / "g8.png") == got).all()


def test_float_tiff_in_unit_range_is_scaled_others_refused(tmp_path):
    from cgmbench.images import read_image

    x = np.linspace(0, 1, 12 * 10, dtype=np.float32).reshape(12, 10)
    Image.fromarray(x).save(tmp_path / "f.tif")
    got = read_image(tmp_path / "f.tif")
    assert (got[1] == np.rint(x.astype(np.float64) * 255).astype(np.uint8)).all()
    assert got.max() == 255 and got.min() == 0 and len(np.unique(got)) > 100
    Image.fromarray(x * 255).save(tmp_path / "f255.tif")
    with pytest.raises(CgmbenchError, match=r"float samples in \[0, 255\].*only float images in \[0, 1\]"):
        read_image(tmp_path / "f255.tif")
    Image.fromarray((x * 70000).astype(np.int32)).save(tmp_path / "i32.tif")
    with pytest.raises(CgmbenchError, match="32-bit integer samples"):
        read_image(tmp_path / "i32.tif")


def test_fid_of_16_bit_folder_equals_its_8_bit_version(tmp_path):
    """Before the fix `cgmbench fid` exited 0 with the FID of saturated images."""
    import cgmbench

    rng = np.random.default_rng(1)
    for folder in ("a16", "a8", "b"):
        (tmp_path / folder).mkdir()
    for i in range(6):
        grey = rng.integers(0, 65536, (32, 32)).astype(np.uint16)
        _png(tmp_path / "a16" / f"{i}.png", grey, 0)
        Image.fromarray((grey >> 8).astype(np.uint8)).convert("RGB").save(tmp_path / "a8" / f"{i}.png")
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(tmp_path / "b" / f"{i}.png")
    f16 = cgmbench.fid(tmp_path / "a16", tmp_path / "b", extractor="shapes-cnn")["fid"]
    f8 = cgmbench.fid(tmp_path / "a8", tmp_path / "b", extractor="shapes-cnn")["fid"]
    assert f16 == f8


def test_image_folder_with_a_fifo_is_refused(tmp_path):
    from cgmbench.images import list_images

    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / "a.png")
    os.mkfifo(tmp_path / "b.png")
    with no_hang(), pytest.raises(CgmbenchError, match="b.png is not a regular file"):
        list_images(tmp_path)


def test_image_fifo_and_oversized_file_refused(tmp_path, monkeypatch):
    from cgmbench import images

    os.mkfifo(tmp_path / "p.png")
    with no_hang(), pytest.raises(CgmbenchError, match="FIFO"):
        images.read_image(tmp_path / "p.png")
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(tmp_path / "x.png")
    monkeypatch.setattr(images, "MAX_FILE_BYTES", 10)
    with pytest.raises(CgmbenchError, match="over the 10-byte image limit"):
        images.read_image(tmp_path / "x.png")


# -- task files ------------------------------------------------------------------------------------------


def _task_text(name: str, data_extra: str = "") -> str:
    return f"""name = "{name}"
kind = "class-conditional"
resolution = 32
num_samples = 8
[conditions]
source = "shapes"
[reference]
source = "shapes"
[metrics]
compute = ["judge"]
[data]
license = "CC0-1.0"
attribution = "test"
obtain = "generated"
{data_extra}"""


def test_task_names_never_leave_the_task_folders(tmp_path, monkeypatch):
    from cgmbench.spec.task import load_task

    (tmp_path / "evil.toml").write_text(_task_text("evil"))
    monkeypatch.chdir(tmp_path / "..")
    for name in (f"../{tmp_path.name}/evil", f"{tmp_path.name}/evil", "..", "a/b", "shapes-cc/../shapes-cc"):
        with pytest.raises(CgmbenchError, match="neither a task name nor a path to a .toml"):
            load_task(name)
    assert load_task(str(tmp_path / "evil.toml")).name == "evil"  # an explicit .toml path is a path
    assert load_task("shapes-cc").name == "shapes-cc"


def test_unknown_data_keys_are_errors(tmp_path):
    from cgmbench.spec.task import load_task

    (tmp_path / "typo.toml").write_text(_task_text("typo", 'licence = "MIT"\n'))
    with pytest.raises(CgmbenchError, match=r"\[data\]: unknown key\(s\) \['licence'\]"):
        load_task(str(tmp_path / "typo.toml"))


def test_task_file_fifo_and_oversize_refused(tmp_path):
    from cgmbench.spec.task import load_task

    os.mkfifo(tmp_path / "pipe.toml")
    with no_hang(), pytest.raises(CgmbenchError, match="FIFO"):
        load_task(str(tmp_path / "pipe.toml"))
    (tmp_path / "huge.toml").write_text(_task_text("huge") + "#" * (2 << 20))
    with pytest.raises(CgmbenchError, match="task file limit"):
        load_task(str(tmp_path / "huge.toml"))


# -- checkpoints and extractor weights ---------------------------------------------------------------------


def test_checkpoint_and_weights_fifo_refused(tmp_path):
    from cgmbench.extractors.weights import WeightsSpec, resolve_weights
    from cgmbench.models.registry import load_model
    from cgmbench.spec.task import load_task
    from cgmbench.weights import sha256_file

    pipe = tmp_path / "model.safetensors"
    os.mkfifo(pipe)
    task = load_task("shapes-cc")
    with no_hang(), pytest.raises(CgmbenchError, match="--checkpoint .* FIFO"):
        load_model("noise", task, checkpoint=str(pipe))
    with no_hang(), pytest.raises(CgmbenchError, match="FIFO"):
        sha256_file(pipe)
    with no_hang(), pytest.raises(CgmbenchError, match="character device"):
        sha256_file("/dev/zero")
    spec = WeightsSpec("inception-v3")
    with no_hang(), pytest.raises(CgmbenchError, match="weights file .* FIFO"):
        resolve_weights(spec, pipe)


# -- leaderboard garbage ------------------------------------------------------------------------------------


def _record(value, ci, model="m"):
    return {"schema": "cgmbench.run/1", "task": {"name": "t", "kind": "class-conditional", "spec_sha256": "x"},
            "model": {"spec": model, "knobs": {}}, "n": 10, "seed": 0,
            "metrics": {"judge": {"overall": {"value": value, "ci95": ci, "n": 10}}}}


def test_leaderboard_refuses_nan_inf_and_inverted_intervals():
    from cgmbench.results.leaderboard import build

    recs = [(Path("good"), _record(0.5, [0.4, 0.6], "good")),
            (Path("inf"), _record(float("inf"), [0.4, 0.6], "inf")),
            (Path("nan"), _record(float("nan"), [0.4, 0.6], "nan")),
            (Path("ninf-ci"), _record(0.7, [float("-inf"), 0.8], "ninf-ci")),
            (Path("inverted"), _record(0.9, [0.95, 0.85], "inverted"))]
    lb = build("t", "judge", records=recs)
    assert lb.df["model"].tolist() == ["good"]  # before the fix inf ranked first on a [0, 1] metric
    text = "\n".join(lb.excluded)
    assert "inf: judge value inf is not a finite number" in text
    assert "nan: judge value nan is not a finite number" in text
    assert "ninf-ci: judge interval [-inf, 0.8] is not finite" in text
    assert "inverted: judge interval [0.95, 0.85] is inverted" in text


def test_leaderboard_runs_folder_with_a_fifo_json_does_not_hang(tmp_path):
    from cgmbench.results.leaderboard import collect_records

    (tmp_path / "good").mkdir()
    (tmp_path / "good" / "run.json").write_text(json.dumps(_record(0.5, [0.4, 0.6])))
    os.mkfifo(tmp_path / "evil.json")
    warnings = []
    with no_hang():
        found = collect_records("t", [tmp_path], warn=warnings.append)
    assert [p.parent.name for p, _ in found] == ["good"]
    assert any("evil.json" in w and "FIFO" in w for w in warnings)
    with no_hang():  # a FIFO given directly as --runs
        assert collect_records("t", [tmp_path / "evil.json"], warn=warnings.append) == []


# -- submit --samples ----------------------------------------------------------------------------------------


def _no_temp_left(before: set) -> None:
    import tempfile

    after = {p for p in os.listdir(tempfile.gettempdir()) if p.startswith("cgmbench-submit-")}
    assert after <= before, f"temporary folders left behind: {after - before}"


@pytest.mark.parametrize("kind", ["fifo", "dev-zero"])
def test_submit_samples_fifo_or_dev_zero_refused_at_once(tmp_path, kind, monkeypatch):
    import tempfile

    from cgmbench.results import submit as sub

    monkeypatch.setattr(sub, "load_result", lambda p: {"n": 4})
    monkeypatch.setattr(sub, "validate_record", lambda rec, where="", submission=False: None)
    monkeypatch.setattr(sub, "check_provenance", lambda rec: None)
    samples = Path("/dev/zero")
    if kind == "fifo":
        samples = tmp_path / "samples.zip"
        os.mkfifo(samples)
    before = {p for p in os.listdir(tempfile.gettempdir()) if p.startswith("cgmbench-submit-")}
    with no_hang(), pytest.raises(CgmbenchError, match="FIFO|character device") as e:
        sub.submit(tmp_path / "r.json", samples=samples, leaderboards=tmp_path / "lb")
    assert "only regular files are read" in str(e.value)
    _no_temp_left(before)


def test_extract_archive_reads_a_regular_file_only(tmp_path):
    from cgmbench.results.submit import extract_archive

    os.mkfifo(tmp_path / "a.tar")
    with no_hang(), pytest.raises(CgmbenchError, match="FIFO"):
        extract_archive(tmp_path / "a.tar", tmp_path / "out")


# -- sample index: shard names -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["../../x.npy", "/etc/passwd", "sub/00000000-00000004.npy", "..", 7,
                                  "00000000-00000004.npy/../../x.npy"])
def test_shard_names_that_leave_the_run_folder_are_refused(tmp_path, name):
    from cgmbench.run.samples import SampleStore

    store = SampleStore.create(tmp_path / "samples", {"k": 1}, (3, 4, 4))
    store.write_shard(0, np.zeros((4, 3, 4, 4), np.uint8))
    (tmp_path / "x.npy").write_bytes(b"outside")
    index = json.loads((tmp_path / "samples" / "index.json").read_text())
    index["shards"][0]["file"] = name
    (tmp_path / "samples" / "index.json").write_text(json.dumps(index))
    with pytest.raises(IntegrityError, match="not a shard name") as e:
        SampleStore.open(tmp_path / "samples")
    assert "\n" not in str(e.value)
    with pytest.raises(IntegrityError, match="not a shard name"):  # also when the index is given in memory
        list(SampleStore(tmp_path / "samples", index).iter_batches())


def test_shard_that_is_a_fifo_reads_as_missing(tmp_path):
    from cgmbench.run.samples import SampleStore

    store = SampleStore.create(tmp_path / "samples", {"k": 1}, (3, 4, 4))
    store.write_shard(0, np.zeros((4, 3, 4, 4), np.uint8))
    shard = tmp_path / "samples" / "00000000-00000004.npy"
    shard.unlink()
    os.mkfifo(shard)
    with no_hang(), pytest.raises(IntegrityError, match="missing or corrupt"):
        list(store.iter_batches())
