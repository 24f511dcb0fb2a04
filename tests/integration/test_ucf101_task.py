"""ucf101-cc end to end on tiny files in the official UCF-101 layout: the source (frame folders, split lists,
labels, short videos, corrupt files), the offline error naming the files, and a run that records FVD under
StyleGAN-V's fvd2048_16f with a scripted stand-in of the TorchScript I3D at the registry's path."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cgmbench.errors import CgmbenchError, IntegrityError
from cgmbench.spec.task import load_task

torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parents[2]
CLASSES = ["ApplyEyeMakeup", "ApplyLipstick", "Archery"]


class _StandInI3D(torch.nn.Module):
    """Same call convention as StyleGAN-V's i3d_torchscript.pt: uint8 [B, 3, T, H, W] -> [B, 400]."""

    def __init__(self, dim: int = 400):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.proj = torch.nn.Parameter(torch.randn(48, dim, generator=g), requires_grad=False)

    def forward(self, x: torch.Tensor, rescale: bool = False, resize: bool = False,
                return_features: bool = False) -> torch.Tensor:
        x = x.float()
        if rescale:
            x = x / 127.5 - 1.0
        if resize:
            b, c, t, h, w = x.shape
            x = torch.nn.functional.interpolate(x.reshape(b, c * t, h, w), size=(224, 224), mode="bilinear",
                                                align_corners=False).reshape(b, c, t, 224, 224)
        # 3 channels x 2 time halves x 2x2 spatial cells, then a fixed random projection
        b, c, t, h, w = x.shape
        pooled = x.reshape(b, c, 2, t // 2, 2, h // 2, 2, w // 2).mean(dim=(3, 5, 7)).reshape(b, -1)
        feats = torch.cat([pooled, pooled ** 2], dim=1)
        out = feats @ self.proj
        return out if return_features else out.softmax(dim=1)


def _frame(rng: np.random.Generator, h=240, w=320) -> np.ndarray:
    base = rng.integers(0, 256, (1, 1, 3))
    img = np.broadcast_to(base, (h, w, 3)).copy()
    y, x = rng.integers(0, h - 40), rng.integers(0, w - 40)
    img[y:y + 40, x:x + 40] = rng.integers(0, 256, 3)
    return img.astype(np.uint8)


def make_ucf101(root: Path, frames=(18, 17, 10, 20, 16, 19), with_lists: bool = True) -> Path:
    """Frame folders UCF-101/<Class>/v_<Class>_gGG_c01/NNNNN.png (+ ucfTrainTestlist/) with the given lengths."""
    rng = np.random.default_rng(0)
    vids = []
    for k, n in enumerate(frames):
        cls = CLASSES[k % len(CLASSES)]
        name = f"v_{cls}_g{k + 1:02d}_c01"
        folder = root / "UCF-101" / cls / name
        folder.mkdir(parents=True)
        for t in range(n):
            Image.fromarray(_frame(rng)).save(folder / f"{t:05d}.png")
        vids.append(f"{cls}/{name}.avi")
    if with_lists:
        lists = root / "ucfTrainTestlist"
        lists.mkdir()
        (lists / "classInd.txt").write_text("".join(f"{i + 1} {c}\n" for i, c in enumerate(CLASSES)))
        train, test = vids[::2], vids[1::2]
        (lists / "trainlist01.txt").write_text("".join(f"{v} {CLASSES.index(v.split('/')[0]) + 1}\n" for v in train))
        (lists / "testlist01.txt").write_text("".join(f"{v}\n" for v in test))
    return root


def _task(tmp_path: Path, data: Path, extra: str = "") -> Path:
    text = (ROOT / "tasks" / "ucf101-cc.toml").read_text()
    text = text.replace('path = "${CGMBENCH_DATA}/ucf101"', f'path = "{data}"').replace("num_samples = 2048",
                                                                                         "num_samples = 2")
    text = text.replace('compute = ["fvd", "clip_frame_consistency", "first_frame_consistency", '
                        '"temporal_flickering", "dynamic_degree"]',
                        'compute = ["fvd", "temporal_flickering", "dynamic_degree"]' + extra)
    path = tmp_path / "ucf101-cc.toml"
    path.write_text(text)
    return path


def test_source_reads_the_official_layout(tmp_path):
    from cgmbench.sources.base import open_source

    data = make_ucf101(tmp_path / "ucf")
    task = load_task(str(_task(tmp_path, data)))
    src = open_source(task, "reference")
    # split "all" = trainlist01 then testlist01, labels from classInd.txt minus one
    assert len(src) == 6
    assert [e[0].split("/")[1] for e in src.entries] == [
        "v_ApplyEyeMakeup_g01_c01.avi", "v_Archery_g03_c01.avi", "v_ApplyLipstick_g05_c01.avi",
        "v_ApplyLipstick_g02_c01.avi", "v_ApplyEyeMakeup_g04_c01.avi", "v_Archery_g06_c01.avi"]
    assert src.labels(range(6)) == [0, 2, 1, 1, 0, 2]
    assert src.video_lengths() == [18, 10, 16, 17, 20, 19]
    v = src.video(0)
    assert v.dtype == torch.uint8 and tuple(v.shape) == (18, 3, 256, 256)
    # the centre square crop + PIL bicubic of the first stored frame
    first = np.asarray(Image.open(data / "UCF-101/ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01/00000.png"))
    want = np.asarray(Image.fromarray(first[:, 40:280]).resize((256, 256), Image.BICUBIC)).transpose(2, 0, 1)
    assert np.array_equal(v[0].numpy(), want)
    train = open_source(load_task(str(_task(tmp_path, data))), "reference")
    assert train.describe()["split"] == "all"


def test_source_without_lists_and_bad_input(tmp_path):
    from cgmbench.sources.base import open_source

    data = make_ucf101(tmp_path / "ucf", frames=(16, 17), with_lists=False)
    task = load_task(str(_task(tmp_path, data)))
    src = open_source(task, "reference")
    assert [e[1] for e in src.entries] == [0, 1] and src.classes == CLASSES[:2]
    # a corrupt frame image is an IntegrityError naming the file
    bad = data / "UCF-101/ApplyLipstick/v_ApplyLipstick_g02_c01/00003.png"
    bad.write_bytes(b"\x89PNG broken")
    with pytest.raises(IntegrityError, match="corrupt video frame .*00003.png"):
        src.video(1)
    # an .avi that cannot be decoded (no PyAV here, or a corrupt file) is one line
    (data / "UCF-101/Archery").mkdir()
    (data / "UCF-101/Archery/v_Archery_g09_c01.avi").write_bytes(b"RIFF garbage")
    src = open_source(load_task(str(_task(tmp_path, data))), "reference")
    with pytest.raises(CgmbenchError) as info:
        src.video(2)
    assert "\n" not in str(info.value) and "v_Archery_g09_c01.avi" in str(info.value)
    # a missing dataset names where to put it
    task = load_task(str(_task(tmp_path, tmp_path / "nowhere")))
    with pytest.raises(CgmbenchError, match="UCF-101 dataset not found under .*nowhere.*UCF101.rar"):
        open_source(task, "reference")


def test_offline_run_names_the_files(tmp_path, monkeypatch, capsys):
    from baselines.latte.generator import LatteGenerator
    from cgmbench.cli import main
    from cgmbench.models.registry import register_model

    import baselines.latte.weights  # noqa: F401  (the entry point of an installed cgmbench registers them)

    register_model("latte", LatteGenerator)
    monkeypatch.setenv("CGMBENCH_HOME", str(tmp_path / "home"))
    rc = main(["run", "--task", "ucf101-cc", "--model", "latte", "--num-samples", "2", "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert rc != 0
    assert "latte-ucf101.pt" in err and "huggingface.co/maxin-cn/Latte/resolve/main/ucf101.pt" in err
    assert "sd-vae-ft-ema.safetensors" in err
    # the scoring side, in the same message: FVD's I3D (the task's styleganv protocol), the real UCF-101 videos and
    # the CLIP extractor of the frame-consistency metrics
    assert "i3d_torchscript.pt" in err and "cgmbench weights fetch i3d-styleganv" in err
    assert str(tmp_path / "home" / "data" / "ucf101") in err and "UCF101.rar" in err
    assert "clip-vit-l-14 (clip_frame_consistency)" in err
    assert "needs 5 file(s)" in err


def _tiny_class_latte(tmp_path: Path) -> Path:
    from baselines.common.shipped import save_shipped
    from baselines.latte.sampling import build_latte

    config = dict(resolution=256, model="latte", name="test", clip_denoised=True,
                  latte=dict(input_size=256, patch_size=32, in_channels=3, hidden_size=32, depth=2, num_heads=2,
                             num_frames=16, num_classes=101, learn_sigma=True, extras=2),
                  defaults=dict(guidance_scale=2.0, steps=2, sampler="ddpm"))
    model, _ = build_latte(config)
    return save_shipped(tmp_path / "latte-ucf-test.safetensors", {f"model.{k}": v for k, v in model.state_dict().items()},
                        config, {"command": "test"})


@pytest.mark.slow
def test_run_end_to_end_records_fvd_under_the_named_protocol(tmp_path, monkeypatch):
    from baselines.latte.generator import LatteGenerator
    from cgmbench.cli import main
    from cgmbench.models.registry import register_model

    register_model("latte", LatteGenerator)
    home = tmp_path / "home"
    (home / "weights").mkdir(parents=True)
    torch.jit.save(torch.jit.script(_StandInI3D()), str(home / "weights" / "i3d_torchscript.pt"))
    monkeypatch.setenv("CGMBENCH_HOME", str(home))
    data = make_ucf101(tmp_path / "ucf")
    task = _task(tmp_path, data)
    ckpt = _tiny_class_latte(tmp_path)
    out = tmp_path / "run"
    rc = main(["run", "--task", str(task), "--model", "latte", "--checkpoint", str(ckpt), "--num-samples", "3",
               "--out", str(out)])
    assert rc == 0
    record = json.loads((out / "run.json").read_text())
    samples = np.load(sorted((out / "samples").glob("*.npy"))[0])
    assert samples.dtype == np.uint8 and samples.shape == (3, 16, 3, 256, 256)
    fvd = record["metrics"]["fvd"]
    assert fvd["protocol"] == "styleganv_fvd2048_16f" and fvd["extractor"] == "i3d_tfhub_ts"
    assert fvd["protocol_details"]["num_frames"] == 16 and fvd["protocol_details"]["real_clip_start"] == "random"
    assert fvd["real_clips"]["num_discarded"] == 1  # the 10-frame video
    assert fvd["n_reference"] == 5 and fvd["n"] == 3
    assert fvd["comparable"] is False
    assert fvd["deviations"] == {"num_fake": {"protocol": 2048, "used": 3}, "num_real": {"protocol": 2048, "used": 5}}
    assert np.isfinite(fvd["value"]) and fvd["ci95"][0] <= fvd["value"] <= fvd["ci95"][1]
    assert len(fvd["weights_sha256"]) == 64
    for m in ("temporal_flickering", "dynamic_degree"):
        assert record["metrics"][m]["n"] == 3
