"""Preflight (issue 18): a run names every missing file at once, before sampling; ``cgmbench fetch`` gets them."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import zipfile
from dataclasses import replace
from pathlib import Path

import pytest

from cgmbench import weights
from cgmbench.cli.main import main
from cgmbench.errors import CgmbenchError
from cgmbench.paths import weights_dir
from cgmbench.requirements import data_path, fetch, hub_files
from cgmbench.run.preflight import MissingFiles, check
from cgmbench.spec.task import load_task


def _one_line_error(capsys, argv) -> str:
    rc = main(argv)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert rc == 2 and len(lines) == 1 and lines[0].startswith("cgmbench: error: "), err
    return lines[0]


def _hf_cache(monkeypatch, tmp_path) -> Path:
    """An empty Hugging Face cache of this test (HF_HUB_CACHE)."""
    cache = tmp_path / "hf-cache"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    return cache


def _put_in_hf_cache(cache: Path, repo: str, files: dict[str, bytes], revision: str = "0" * 40) -> None:
    """The hub cache layout huggingface_hub reads: models--org--name/{refs/main, snapshots/<rev>/<file>}."""
    root = cache / f"models--{repo.replace('/', '--')}"
    (root / "refs").mkdir(parents=True, exist_ok=True)
    (root / "refs" / "main").write_text(revision)
    for name, data in files.items():
        path = root / "snapshots" / revision / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def _touch(path: Path, data: bytes = b"x") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


# ------------------------------------------------------------------------------------------ runs


@pytest.mark.parametrize("task,model,needles", [
    ("coco-t2i", "ldm", ["ldm-txt2img-f8-large.ckpt", "cgmbench weights fetch ldm:txt2img-f8-large",
                         "LDM-BERT tokenizer", "bert-base-uncased", "hf download bert-base-uncased vocab.txt",
                         "weights-inception-2015-12-05-6726825d.pth", "open_clip_vit-l-14_openai.safetensors",
                         "coco2014/val2014", "val2014.zip"]),
    ("coco-t2i", "sd3:medium", ["sd3_medium.safetensors",
                                "https://huggingface.co/stabilityai/stable-diffusion-3-medium",
                                "openai/clip-vit-large-patch14", "laion/CLIP-ViT-bigG-14-laion2B-39B-b160k",
                                "google/t5-v1_1-xxl", "inception-v3", "clip-vit-l-14", "coco2014/val2014"]),
    ("imagenet256-cc", "dit", ["DiT-XL-2-256x256.pt", "cgmbench weights fetch dit:xl-2-256",
                               "cgmbench weights fetch sd-vae-ft-ema", "cgmbench weights fetch inception-v3",
                               "VIRTUAL_imagenet256_labeled.npz", "cgmbench weights fetch adm:ref-imagenet256"]),
])
def test_headline_runs_list_every_missing_file_before_sampling(task, model, needles, tmp_path, monkeypatch, capsys):
    _hf_cache(monkeypatch, tmp_path)
    out = tmp_path / "run"
    line = _one_line_error(capsys, ["run", "--task", task, "--model", model, "--out", str(out), "--device", "cpu"])
    counts = {"ldm": 5, "sd3:medium": 7, "dit": 4}
    assert f"needs {counts[model]} file(s)" in line
    for needle in needles:
        assert needle in line, (needle, line)
    assert f"cgmbench fetch --task {task} --model {model}" in line
    assert not out.exists()  # nothing was sampled, no folder written


def test_only_the_files_still_missing_are_listed(tmp_path, monkeypatch, capsys):
    """ldm on coco-t2i with the checkpoint, the tokenizer (in the hub cache) and the COCO images present: the
    extractor weights remain."""
    cache = _hf_cache(monkeypatch, tmp_path)
    task = load_task("coco-t2i")
    with pytest.raises(MissingFiles) as e:
        check(task, "ldm")
    assert len(e.value.missing) == 5
    _touch(weights_dir() / "ldm-txt2img-f8-large.ckpt")
    _put_in_hf_cache(cache, "bert-base-uncased", {"vocab.txt": b"[PAD]\n[UNK]\n"})
    _touch(weights_dir().parent / "data" / "coco2014" / "val2014" / "COCO_val2014_000000000042.jpg")
    with pytest.raises(MissingFiles) as e:
        check(task, "ldm")
    assert sorted(r.name for r in e.value.missing) == ["clip-vit-l-14", "inception-v3"]
    line = _one_line_error(capsys, ["run", "--task", "coco-t2i", "--model", "ldm", "--out", str(tmp_path / "o")])
    assert "needs 2 file(s)" in line and "--allow-pending-metrics" in line  # nothing could be scored
    # CLIP may also sit in the Hugging Face cache, where the extractor looks too: clip_score can be computed, so
    # the run goes on; FID will be pending and a warning names what it lacks
    _put_in_hf_cache(cache, "timm/vit_large_patch14_clip_224.openai", {"open_clip_model.safetensors": b"w"})
    logs = []
    assert [r.name for r in check(task, "ldm", log=logs.append)] == ["inception-v3"]
    assert len(logs) == 1 and "fid will be recorded as pending" in logs[0]
    assert "cgmbench weights fetch inception-v3" in logs[0] and "cgmbench score" in logs[0]


def test_noise_on_coco_names_the_metric_weights_instead_of_sampling(tmp_path, monkeypatch, capsys):
    _hf_cache(monkeypatch, tmp_path)
    out = tmp_path / "noise"
    line = _one_line_error(capsys, ["run", "--task", "coco-t2i", "--model", "noise", "--num-samples", "3",
                                    "--out", str(out)])
    assert "needs 3 file(s)" in line and "inception-v3" in line and "clip-vit-l-14" in line and "val2014" in line
    assert not out.exists()
    # opting in: the run samples and records the metrics as pending, saying what to fetch
    assert main(["run", "--task", "coco-t2i", "--model", "noise", "--num-samples", "3", "--out", str(out),
                 "--allow-pending-metrics"]) == 0
    rec = json.loads((out / "run.json").read_text())
    assert rec["metrics"] == {} and len(rec["metrics_pending"]) == 2
    assert "cgmbench weights fetch inception-v3" in " ".join(rec["metrics_pending"])


def test_sweep_runs_the_preflight_before_any_point(tmp_path, monkeypatch, capsys):
    _hf_cache(monkeypatch, tmp_path)
    out = tmp_path / "sweep"
    line = _one_line_error(capsys, ["sweep", "--task", "coco-t2i", "--model", "noise", "--num-samples", "2",
                                    "--out", str(out)])
    assert "needs 3 file(s)" in line and not out.exists()


def test_required_files_refuse_unknown_variants_and_declare_nothing_for_shipped_models():
    from baselines.dit.generator import DiTGenerator
    from baselines.ldm.generator import LDMGenerator
    from baselines.parti.generator import PartiGenerator
    from baselines.sd3.generator import SD3Generator

    t2i, cc = load_task("shapes-t2i"), load_task("shapes-cc")
    assert LDMGenerator.required_files(t2i, "shapes-t2i-tiny") == []
    assert SD3Generator.required_files(t2i, "shapes-t2i-tiny") == []
    assert DiTGenerator.required_files(cc, None) == []
    assert PartiGenerator.required_files(t2i, "shapes-t2i-tiny") == []
    with pytest.raises(CgmbenchError, match="unknown ldm checkpoint 'nope'"):
        LDMGenerator.required_files(t2i, "nope")
    names = [r.name for r in PartiGenerator.required_files(load_task("coco-t2i"), "llamagen-t2i-xl")]
    assert names == ["llamagen:vq_ds16_t2i", "llamagen:t2i_XL_stage1_256", "google/flan-t5-xl"]
    # an official-format DiT file given as --checkpoint at 256: read as DiT-XL/2, so it needs the SD VAE
    reqs = DiTGenerator.required_files(load_task("imagenet256-cc"), None, checkpoint="/nowhere/my-dit.pt")
    assert [r.name for r in reqs] == ["sd-vae-ft-ema"]


# ------------------------------------------------------------------------------------------ fetch


def _zip(path: Path, members: dict[str, bytes]) -> None:
    with zipfile.ZipFile(path, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)


def _tar(path: Path, members: dict[str, bytes]) -> None:
    with tarfile.open(path, "w:gz") as t:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))


def test_fetch_gets_every_file_of_a_task_into_the_paths_read(tmp_path, monkeypatch, capsys):
    """A task whose references come as a .zip and whose extractor file has a pinned digest, both at file:// URLs:
    `cgmbench fetch` downloads, verifies and unpacks them where the run reads them; the run's preflight passes."""
    from PIL import Image

    _hf_cache(monkeypatch, tmp_path)
    png = io.BytesIO()
    Image.new("RGB", (8, 8), (10, 20, 30)).save(png, format="PNG")
    archive = tmp_path / "mini.zip"
    _zip(archive, {"mini/a.png": png.getvalue(), "mini/b.png": png.getvalue()})
    spec = tmp_path / "mini-t2i.toml"
    spec.write_text(f"""
name = "mini-t2i"
kind = "text-to-image"
resolution = 32
num_samples = 2
[conditions]
source = "prompts"
suite = "drawbench"
[reference]
source = "image-folder"
path = "${{CGMBENCH_DATA}}/mini"
url = "{archive.as_uri()}"
[metrics]
compute = ["fid"]
extractor = "inception-v3"
[data]
license = "test"
attribution = "test"
obtain = "test"
""")
    blob = b"pretend inception weights"
    source = tmp_path / "inception.pth"
    source.write_bytes(blob)
    kf = weights.known_file("inception-v3")
    monkeypatch.setitem(weights._REGISTRY, "inception-v3", replace(kf, url=source.as_uri(),
                                                                   sha256=hashlib.sha256(blob).hexdigest(), size=None))
    with pytest.raises(MissingFiles) as e:
        check(load_task(str(spec)), "noise")
    assert len(e.value.missing) == 2 and all(r.fetchable for r in e.value.missing)
    assert main(["fetch", "--task", str(spec), "--model", "noise", "--dry-run"]) == 0
    assert capsys.readouterr().out.count("missing") == 2
    assert main(["fetch", "--task", str(spec), "--model", "noise"]) == 0
    assert (weights_dir() / kf.filename).read_bytes() == blob
    assert sorted(p.name for p in (weights_dir().parent / "data" / "mini").iterdir()) == ["a.png", "b.png"]
    assert check(load_task(str(spec)), "noise") == []
    # a file whose digest is not the registry's is refused, and listed, not kept
    (weights_dir() / kf.filename).unlink()
    monkeypatch.setitem(weights._REGISTRY, "inception-v3", replace(kf, url=source.as_uri(), sha256="0" * 64,
                                                                   size=None))
    assert main(["fetch", "--task", str(spec), "--model", "noise"]) == 2
    assert "failed:" in capsys.readouterr().err and not (weights_dir() / kf.filename).exists()


def test_archives_unpack_inside_their_folder_only(tmp_path):
    good = tmp_path / "facades.tar.gz"
    _tar(good, {"facades/test/1.jpg": b"a", "facades/train/2.jpg": b"b"})
    req = data_path(tmp_path / "data" / "facades" / "test", "facades", url=good.as_uri(),
                    root=tmp_path / "data" / "facades")
    assert req.fetchable and not req.present()
    fetch(req, progress=False)
    assert req.present() and (tmp_path / "data" / "facades" / "train" / "2.jpg").read_bytes() == b"b"
    evil = tmp_path / "evil.zip"
    _zip(evil, {"x/ok.png": b"1", "../escaped.png": b"2"})
    bad = data_path(tmp_path / "data2" / "x", "x", url=evil.as_uri())
    with pytest.raises(CgmbenchError, match="points outside its folder"):
        fetch(bad, progress=False)
    assert not (tmp_path / "escaped.png").exists() and not (tmp_path / "data2" / "x").exists()
    wrong = tmp_path / "other.zip"
    _zip(wrong, {"other/a.png": b"1"})
    with pytest.raises(CgmbenchError, match="not to a folder 'x'"):
        fetch(data_path(tmp_path / "data3" / "x", "x", url=wrong.as_uri()), progress=False)


def test_hub_requirements_are_read_from_the_cache_the_command_writes(tmp_path, monkeypatch):
    cache = _hf_cache(monkeypatch, tmp_path)
    req = hub_files("org/enc", ("config.json", "model.safetensors|pytorch_model.bin"), "test encoder")
    assert req.path == str(cache) and req.get == "hf download org/enc" and not req.present()
    _put_in_hf_cache(cache, "org/enc", {"config.json": b"{}"})
    assert not req.present()
    _put_in_hf_cache(cache, "org/enc", {"pytorch_model.bin": b"w"})
    assert req.present()
    exact = hub_files("org/tok", ("vocab.txt",), "tokenizer", fetch_files=("vocab.txt", "tokenizer.json"))
    assert exact.get == "hf download org/tok vocab.txt tokenizer.json"
