"""``cgmbench submit``: valid submissions land; malformed and hostile ones are refused, writing nothing."""

from __future__ import annotations

import argparse
import copy
import io
import json
import os
import shutil
import struct
import tarfile
import threading
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest

import cgmbench.results.submit as sm
from cgmbench.cli.results import COMMANDS, register
from cgmbench.errors import CgmbenchError
from cgmbench.images import save_png
from cgmbench.run.record import finalize
from cgmbench.run.runner import RunConfig, run
from cgmbench.run.samples import SampleStore

TASK = "shapes-t2i"
N = 12


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    recs = {}
    for model in ("oracle", "noise"):
        recs[model] = run(RunConfig(task=TASK, model=model, num_samples=N, batch_size=8, out=str(root / model),
                                    progress=False), log=lambda m: None)
    return root, recs


@pytest.fixture
def lb(tmp_path):
    return tmp_path / "leaderboards"


def write_json(path: Path, obj) -> Path:
    path.write_text(json.dumps(obj))
    return path


def png_folder(run_dir: Path, dest: Path) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    store = SampleStore.open(run_dir / "samples")
    for i, img in enumerate(store.read(0, N)):
        save_png(img, dest / f"{i:05d}.png")
    return dest


def nothing_written(lb: Path) -> bool:
    return not lb.exists() or not any(lb.rglob("*"))


@pytest.mark.slow
def test_valid_submissions_with_store_and_png_zip(runs, lb, tmp_path):
    root, recs = runs
    res = sm.submit(root / "oracle" / "run.json", samples=root / "oracle", leaderboards=lb, log=lambda m: None)
    assert res["rescored"]["judge"] == pytest.approx(1.0) and {"fid", "clip_score"} <= set(res["rescored"])
    stored = json.loads(res["path"].read_text())
    assert res["path"].parent == lb / TASK and stored["submission"]["samples_verified"] is True
    assert stored["identity_sha256"] == recs["oracle"]["identity_sha256"]
    with pytest.raises(CgmbenchError, match="already on the leaderboard"):
        sm.submit(root / "oracle" / "run.json", leaderboards=lb, log=lambda m: None)
    # noise: PNG files in a zip archive
    pngs = png_folder(root / "noise", tmp_path / "pngs")
    with zipfile.ZipFile(tmp_path / "noise.zip", "w") as zf:
        for p in sorted(pngs.iterdir()):
            zf.write(p, f"samples/{p.name}")
    res = sm.submit(root / "noise" / "run.json", samples=tmp_path / "noise.zip", leaderboards=lb, log=lambda m: None)
    assert res["rescored"]["judge"] == pytest.approx(recs["noise"]["metrics"]["judge"]["overall"]["value"])
    assert len(list((lb / TASK).glob("*.json"))) == 2


def test_cli_submit_and_dry_run(runs, lb, capsys):
    root, _ = runs
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["submit", str(root / "noise" / "run.json"), "--samples", str(root / "noise"),
                              "--leaderboards", str(lb), "--dry-run"])
    assert COMMANDS["submit"](args) == 0
    assert "valid; would be written" in capsys.readouterr().out and nothing_written(lb)


@pytest.mark.slow
def test_concurrent_submissions_both_land(runs, lb):
    root, _ = runs
    barrier = threading.Barrier(2)
    results, errors = [], []

    def go(model):
        barrier.wait()
        try:
            results.append(sm.submit(root / model / "run.json", samples=root / model, leaderboards=lb,
                                     log=lambda m: None))
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=go, args=(m,)) for m in ("oracle", "noise")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    files = sorted((lb / TASK).glob("*.json"))
    assert len(files) == 2 and {json.loads(f.read_text())["model"]["spec"] for f in files} == {"oracle", "noise"}
    assert not list((lb / TASK).glob(".*"))  # no temporary files left behind


def _edit(rec, fn, reidentify=True):
    rec = copy.deepcopy(rec)
    fn(rec)
    if reidentify:
        rec.pop("identity_sha256", None)
        finalize(rec)
    return rec


def _tiny_png_header(w: int, h: int) -> bytes:
    """A PNG claiming ``w x h`` pixels in a few hundred bytes (a decompression bomb)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 1024)) + \
        chunk(b"IEND", b"")


def _hostile_cases(root: Path, recs: dict, tmp: Path):
    """``(name, result path, samples or None, expected message part)``."""
    oracle = recs["oracle"]
    ok = root / "oracle" / "run.json"
    cases = []

    def result(name, obj):
        return write_json(tmp / f"{name}.json", obj)

    (tmp / "bad.json").write_text("{\"schema\": ")
    cases.append(("not json", tmp / "bad.json", None, "is not valid JSON"))
    (tmp / "big.json").write_text(" " * (sm.MAX_JSON_BYTES + 1) + "{}")
    cases.append(("too large", tmp / "big.json", None, "-byte limit"))
    (tmp / "nan.json").write_text(json.dumps(oracle).replace('"value": 1.0', '"value": NaN', 1))
    cases.append(("NaN", tmp / "nan.json", None, "contains NaN"))
    (tmp / "dup.json").write_text('{"schema": "cgmbench.run/1", "schema": "x"}')
    cases.append(("duplicate key", tmp / "dup.json", None, "key 'schema' twice"))
    cases.append(("array", result("arr", [oracle]), None, "$: a result must be a JSON object"))
    cases.append(("n as string", result("nstr", _edit(oracle, lambda r: r.update(n="12"))), None,
                  "$.n: expected an integer, got a string"))
    cases.append(("missing metrics", result("nomet", _edit(oracle, lambda r: r.pop("metrics"))), None,
                  "$.metrics: missing"))
    cases.append(("ci misses value", result("ci", _edit(oracle, lambda r: r["metrics"]["judge"]["overall"].update(
        ci95=[0.1, 0.2]))), None, "$.metrics.judge.overall.ci95: [0.1, 0.2] does not contain"))
    fid = {"value": 10.0, "ci95": [9.0, 11.0], "n": N, "extractor": "shapes-cnn", "weights_sha256": "a" * 64,
           "reference_stats_sha256": "b" * 64}
    cases.append(("missing provenance", result("prov", _edit(oracle, lambda r: r["metrics"].update(fid=fid))), None,
                  "$.metrics.fid.protocol: missing"))
    cases.append(("wrong protocol", result("proto", _edit(oracle, lambda r: r["metrics"].update(
        fid={**fid, "protocol": "tf-exact"}))), None, "$.metrics.fid.protocol: 'tf-exact', but task shapes-t2i"))
    cases.append(("bad hash", result("hash", _edit(oracle, lambda r: r.update(samples_sha256="XYZ"))), None,
                  "$.samples_sha256: expected a 64-digit lower-case hex SHA-256"))
    cases.append(("task path", result("tpath", _edit(oracle, lambda r: r["task"].update(name="../../etc/x"))), None,
                  "$.task.name: '../../etc/x' is not a task name"))
    cases.append(("spec mismatch", result("spec", _edit(oracle, lambda r: r["task"].update(spec_sha256="d" * 64))),
                  None, "$.task.spec_sha256: the result was made with another spec"))
    cases.append(("old version", result("ver", _edit(oracle, lambda r: r["environment"].update(cgmbench="0.0.3"))),
                  None, "$.environment.cgmbench: made with cgmbench version '0.0.3'"))
    cases.append(("judge version", result("jv", _edit(oracle, lambda r: r["metrics"]["judge"].update(
        version="shapes-judge/0"))), None, "$.metrics.judge.version: judge version 'shapes-judge/0'"))
    cases.append(("tampered", result("tamp", _edit(oracle, lambda r: r.update(seed=5), reidentify=False)), None,
                  "$.identity_sha256 does not match"))
    cases.append(("unknown field", result("unk", _edit(oracle, lambda r: r.update(extra=1))), None,
                  "$.extra: unknown field"))
    cases.append(("metric n", result("mn", _edit(oracle, lambda r: r["metrics"]["judge"]["overall"].update(n=5))),
                  None, "$.metrics.judge.overall.n: 5 samples scored, the run has 12"))
    # claims that disagree with the samples
    claim = result("claim", _edit(oracle, lambda r: r["metrics"]["judge"]["overall"].update(value=0.5,
                                                                                           ci95=[0.4, 0.6])))
    cases.append(("mismatched claim", claim, root / "oracle", "$.metrics.judge.overall.value: claimed 0.5 but "
                                                              "re-scoring the samples gives 1.0"))
    cases.append(("other samples", ok, root / "noise", "$.samples_sha256 does not match the submitted samples"))
    # hostile archives and folders
    with zipfile.ZipFile(tmp / "slip.zip", "w") as zf:
        zf.writestr("../evil.png", b"x")
    cases.append(("zip slip", ok, tmp / "slip.zip", "'../evil.png' points outside"))
    with tarfile.open(tmp / "abs.tar", "w") as tf:
        data = b"x"
        info = tarfile.TarInfo("/tmp/cgmbench-abs.png")
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))
    cases.append(("absolute tar path", ok, tmp / "abs.tar", "has an absolute or non-POSIX path"))
    with tarfile.open(tmp / "link.tar.gz", "w:gz") as tf:
        info = tarfile.TarInfo("samples/00000.png")
        info.type = tarfile.SYMTYPE
        info.linkname = "/etc/passwd"
        tf.addfile(info)
    cases.append(("symlink in tar", ok, tmp / "link.tar.gz", "is a link; links are refused"))
    with zipfile.ZipFile(tmp / "zlink.zip", "w") as zf:
        info = zipfile.ZipInfo("samples/link")
        info.external_attr = (0o120777 << 16)
        zf.writestr(info, "/etc/passwd")
    cases.append(("symlink in zip", ok, tmp / "zlink.zip", "is a symlink; links are refused"))
    bomb = png_folder(root / "oracle", tmp / "bomb")
    (bomb / "00003.png").write_bytes(_tiny_png_header(30000, 30000))
    cases.append(("decompression bomb", ok, bomb, "00003.png is too large to decode safely"))
    big = png_folder(root / "oracle", tmp / "bigimg")
    save_png(np.zeros((3, 64, 64), np.uint8), big / "00002.png")
    cases.append(("wrong image size", ok, big, "over the 1024-pixel limit"))
    pk = tmp / "pk"
    shutil.copytree(root / "oracle", pk)
    (pk / "model.pt").write_bytes(b"\x80\x04K\x01.")
    cases.append(("pickle checkpoint", ok, pk, "model.pt looks like a pickle or checkpoint file"))
    pk2 = tmp / "pk2"
    shutil.copytree(root / "oracle", pk2)
    (pk2 / "notes.txt").write_bytes(b"\x80\x04\x95\x05\x00.")
    cases.append(("disguised pickle", ok, pk2, "notes.txt is a Python pickle"))
    obj = tmp / "obj"
    shutil.copytree(root / "oracle", obj)
    shard = sorted((obj / "samples").glob("*.npy"))[0]
    np.save(shard, np.array([{"a": 1}] * 8, dtype=object), allow_pickle=True)
    cases.append(("object npy", ok, obj, "holds a pickled object array"))
    trav = tmp / "trav"
    shutil.copytree(root / "oracle", trav)
    idx = json.loads((trav / "samples" / "index.json").read_text())
    idx["shards"][0]["file"] = "../../../etc/passwd"
    (trav / "samples" / "index.json").write_text(json.dumps(idx))
    cases.append(("index path traversal", ok, trav, "is not a shard name"))
    with zipfile.ZipFile(tmp / "many.zip", "w") as zf:
        for i in range(30):
            zf.writestr(f"samples/{i}.png", b"x")
    cases.append(("too many members", ok, tmp / "many.zip", "more than 20 members"))
    return cases


def test_hostile_and_malformed_submissions_are_rejected(runs, lb, tmp_path, monkeypatch):
    root, recs = runs
    monkeypatch.setattr(sm, "MAX_MEMBERS", 20)
    cases = _hostile_cases(root, recs, tmp_path)
    assert len(cases) >= 15
    for name, result, samples, expected in cases:
        with pytest.raises(CgmbenchError) as err:
            sm.submit(result, samples=samples, leaderboards=lb, log=lambda m: None)
        assert expected in str(err.value), f"{name}: {err.value}"
        assert str(err.value).startswith("submission rejected:"), name
        assert nothing_written(lb), name
    assert not (tmp_path.parent / "evil.png").exists() and not Path("/tmp/cgmbench-abs.png").exists()
    assert not [p for p in Path(os.environ.get("TMPDIR", "/tmp")).glob("cgmbench-submit-*")]


def _record_with(metrics: dict, task: str = "shapes-edit", kind: str = "editing") -> dict:
    return {"schema": "cgmbench.run/1", "identity_sha256": "a" * 64,
            "task": {"name": task, "kind": kind, "spec_sha256": "c" * 64},
            "model": {"name": "m", "spec": "m", "knobs": {}}, "n": 10, "seed": 0, "samples_sha256": "d" * 64,
            "metrics": metrics, "environment": {"cgmbench": "0.1.0"}, "timings": {}}


def test_only_metrics_compared_with_reference_statistics_must_name_them():
    """Editing and video records: masked, temporal and judge-based metrics have no reference statistics, so a
    submission is not asked for their digest; FID (and FVD's real clips) still must name theirs."""
    from cgmbench.run.record import RecordInvalid, validate_record

    masked = {"value": 30.0, "ci95": [29.0, 31.0], "n": 10, "protocol": "masked_mean", "extractor": None,
              "weights_sha256": None, "reference_stats_sha256": None}
    edit = {"psnr_bg": masked, "edit_success": {**masked, "value": 0.5, "ci95": [0.2, 0.8], "protocol": "shapes-judge"},
            "clip_direction_shapes_clip": {"value": 0.3, "ci95": [0.1, 0.5], "n": 8, "left_out_same_captions": 2,
                                           "protocol": "clean", "extractor": "shapes-clip", "weights_sha256": "e" * 64,
                                           "reference_stats_sha256": None}}
    validate_record(_record_with(edit), "$", submission=True)
    video = {"motion_accuracy": {"value": 0.4, "ci95": [0.1, 0.7], "n": 10, "protocol": None, "extractor": None,
                                 "weights_sha256": None, "reference_stats_sha256": None},
             "temporal_flickering": {"value": 0.9, "ci95": None, "n": 10},
             "clip_frame_consistency": {"value": 0.9, "ci95": None, "n": 10, "extractor": "shapes-clip",
                                        "weights_sha256": "e" * 64},
             "fvd": {"value": 700.0, "ci95": [600.0, 900.0], "n": 10, "protocol": "shapes_fvd_8f",
                     "extractor": "shapes-cnn-video", "weights_sha256": "e" * 64, "real_clip_starts_sha256": "f" * 64}}
    validate_record(_record_with(video, "shapes-t2v", "text-to-video"), "$", submission=True)

    def refused(metrics, match, task="shapes-edit", kind="editing"):
        with pytest.raises(RecordInvalid, match=match):
            validate_record(_record_with(metrics, task, kind), "$", submission=True)

    fid = {"value": 10.0, "ci95": [9.0, 11.0], "n": 10, "protocol": "clean", "extractor": "shapes-cnn",
           "weights_sha256": "a" * 64, "reference_stats_sha256": None}
    refused({**edit, "fid": fid}, r"\$\.metrics\.fid\.reference_stats_sha256: expected a 64-digit")
    refused({**video, "fvd": {k: v for k, v in video["fvd"].items() if k != "real_clip_starts_sha256"}},
            r"\$\.metrics\.fvd\.real_clip_starts_sha256: missing", "shapes-t2v", "text-to-video")
    refused({**video, "clip_frame_consistency": {"value": 0.9, "ci95": None, "n": 10, "extractor": "shapes-clip"}},
            r"\$\.metrics\.clip_frame_consistency\.weights_sha256: missing", "shapes-t2v", "text-to-video")
    refused({"psnr_bg": {k: v for k, v in masked.items() if k != "n"}}, r"\$\.metrics\.psnr_bg\.n: missing")
    refused({"psnr_bg": {**masked, "reference_stats_sha256": "xyz"}},
            r"\$\.metrics\.psnr_bg\.reference_stats_sha256: expected a 64-digit")  # optional, but never garbage
