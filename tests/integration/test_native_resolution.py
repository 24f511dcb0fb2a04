"""Models sample at their own resolution; the harness resizes for scoring with a named, recorded protocol.

A tiny SD3 checkpoint in the official single-file format (``model.diffusion_model.`` MM-DiT +
``first_stage_model.`` VAE, as ``sd3_medium.safetensors``) is run end to end as ``sd3:medium`` on the 32x32
``shapes-t2i`` task at 64x64 (downsampled) and 16x16 (upsampled). The store keeps the native samples; the
recorded FID equals an FID computed here from the stored samples resized with PIL bicubic.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file
from scipy import linalg

from baselines.common.kl_vae import AutoencoderKL
from baselines.sd3 import generator as sd3_generator
from baselines.sd3.models import MMDiT
from cgmbench.errors import CgmbenchError
from cgmbench.extractors import get_extractor
from cgmbench.models.reference import NoiseModel
from cgmbench.models.registry import load_model, register_model
from cgmbench.paths import weights_dir
from cgmbench.run.config import RunConfig
from cgmbench.run.record import identity_digest
from cgmbench.run.runner import run
from cgmbench.run.samples import SampleStore
from cgmbench.scoring.reference_stats import reference_stats
from cgmbench.scoring.resize import ResizedStore, for_scoring, resize_samples
from cgmbench.spec.task import load_task

# native side -> (VAE ch_mult, vae_factor); MM-DiT patch 2 on the latent
NATIVE = {64: ((1, 2, 2), 4), 16: ((1, 2), 2)}


class StubTextEncoders:
    """Stands in for CLIP-L + bigG + T5 (no download): deterministic per prompt."""

    def __init__(self, device="cpu"):
        pass

    @staticmethod
    def required_files(what):
        return []  # nothing to read from the Hugging Face cache

    def encode(self, texts):
        rows = [torch.Generator().manual_seed(sum(map(ord, t)) + len(t)) for t in texts]
        tokens = torch.stack([torch.randn(5, 16, generator=g) for g in rows])
        pooled = torch.stack([torch.randn(8, generator=g) for g in rows])
        return tokens, pooled, {"truncated": 0}


def write_tiny_sd3_medium(monkeypatch, side: int):
    """A tiny official-format ``sd3_medium.safetensors`` making ``side`` x ``side`` images."""
    ch_mult, factor = NATIVE[side]
    torch.manual_seed(0)
    mmdit = MMDiT(patch_size=2, in_channels=16, hidden_size=32, depth=2, num_heads=2, adm_in_channels=8,
                  context_dim=16, pos_embed_max_size=8)
    ddconfig = dict(double_z=True, z_channels=16, resolution=side, in_channels=3, out_ch=3, ch=32,
                    ch_mult=ch_mult, num_res_blocks=1, attn_resolutions=(), dropout=0.0)
    vae = AutoencoderKL(ddconfig, embed_dim=16)
    sd = {f"model.diffusion_model.{k}": v for k, v in mmdit.state_dict().items()}
    sd.update({f"first_stage_model.decoder.{k}": v for k, v in vae.decoder.state_dict().items()})
    sd.update({f"first_stage_model.encoder.{k}": v for k, v in vae.encoder.state_dict().items()})
    path = weights_dir() / "sd3_medium.safetensors"
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in sd.items()}, str(path))
    monkeypatch.setitem(sd3_generator.SD3_VARIANTS, "medium",
                        dict(sd3_generator.SD3_VARIANTS["medium"], vae_ddconfig=ddconfig, resolution=side,
                             vae_factor=factor))
    monkeypatch.setattr(sd3_generator, "SD3TextEncoders", StubTextEncoders)
    return path


def pil_bicubic(samples: np.ndarray, side: int) -> np.ndarray:
    """The ``clean`` protocol written out independently: PIL bicubic on each uint8 RGB image."""
    return np.stack([np.asarray(Image.fromarray(s.transpose(1, 2, 0)).resize((side, side), Image.BICUBIC))
                     .transpose(2, 0, 1) for s in samples])


def frechet(mu1, s1, mu2, s2) -> float:
    covmean = linalg.sqrtm(s1 @ s2).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


@pytest.mark.parametrize("side, direction", [(64, "down"), (16, "up")])
@pytest.mark.slow
def test_sd3_at_its_own_resolution_end_to_end(side, direction, tmp_path, monkeypatch):
    write_tiny_sd3_medium(monkeypatch, side)
    out = tmp_path / "run"
    rec = run(RunConfig(task="shapes-t2i", model="sd3:medium", num_samples=12, batch_size=5, knobs={"steps": 2},
                        out=str(out), progress=False), log=lambda m: None)

    # the store keeps the native samples, losslessly
    store = SampleStore.open(out / "samples")
    assert store.sample_shape == (3, side, side)
    native = store.read(0, 12)
    assert native.shape == (12, 3, side, side) and native.dtype == np.uint8
    assert store.config["native_resolution"] == [side, side] and store.config["eval_resolution"] == [32, 32]
    assert store.config["resize"] == "clean"

    # the record names both resolutions and the protocol, and its identity covers them
    samples = rec["samples"]
    assert samples["native_resolution"] == [side, side] and samples["eval_resolution"] == [32, 32]
    assert samples["resize"] == "clean" and samples["resize_direction"] == direction
    assert samples["sample_shape"] == [3, side, side]
    assert json.loads((out / "run.json").read_text())["samples"] == samples
    for field, other in (("resize", "nearest"), ("native_resolution", [32, 32])):
        edited = json.loads(json.dumps(rec))
        edited["samples"][field] = other
        assert identity_digest(edited) != rec["identity_sha256"]

    # FID computed independently on the samples resized by the protocol equals the recorded one
    task = load_task("shapes-t2i")
    resized = pil_bicubic(native, 32)
    extractor = get_extractor("shapes-cnn", protocol="clean")
    feats = extractor(torch.from_numpy(resized), batch_size=256).double().numpy()
    ref = reference_stats(task, extractor, "clean")
    fid = frechet(feats.mean(0), np.cov(feats, rowvar=False), ref.mu, ref.sigma)
    assert rec["metrics"]["fid"]["value"] == pytest.approx(fid, rel=1e-5, abs=1e-6)
    assert rec["metrics"]["fid"]["n"] == 12
    # every other metric saw 32x32 samples too: the judge scored all 12, the CLIP score as well
    assert rec["metrics"]["judge"]["overall"]["n"] == 12
    assert rec["metrics"]["clip_score"]["n"] == 12

    # resuming the finished run is recognised as the same run
    again = run(RunConfig(task="shapes-t2i", model="sd3:medium", num_samples=12, batch_size=7, knobs={"steps": 2},
                          out=str(out), resume=True, progress=False), log=lambda m: None)
    assert again["identity_sha256"] == rec["identity_sha256"]


def test_sd3_medium_passes_the_registry_on_a_256_task(monkeypatch):
    """1024x1024 SD3-medium on the 256x256 coco-t2i task: allowed now (it used to be refused)."""
    write_tiny_sd3_medium(monkeypatch, 64)
    monkeypatch.setitem(sd3_generator.SD3_VARIANTS, "medium",
                        dict(sd3_generator.SD3_VARIANTS["medium"], resolution=1024))
    model = load_model("sd3:medium", load_task("coco-t2i"))
    assert model.resolution == (1024, 1024)


def test_cli_run_of_sd3_medium_offline_names_its_missing_file(capsys):
    from cgmbench.cli.main import main

    rc = main(["run", "--task", "coco-t2i", "--model", "sd3:medium", "--device", "cpu"])
    err = capsys.readouterr().err
    assert rc != 0
    assert str(weights_dir() / "sd3_medium.safetensors") in err and "stable-diffusion-3-medium" in err
    assert "needs 256x256" not in err and "aspect ratio" not in err


class Sized(NoiseModel):
    side: tuple[int, int] = (64, 64)

    @classmethod
    def load(cls, task, variant=None, checkpoint=None, device="cpu"):
        model = super().load(task, variant, checkpoint, device)
        model.resolution = cls.side
        return model


@pytest.mark.parametrize("task_name, side, message", [
    ("facades", (64, 64), "needs exactly"),          # paired translation: scored pixel-wise against targets
    ("shapes-t2i", (64, 48), "aspect ratio differs"),
])
def test_registry_refuses_what_cannot_be_resized(task_name, side, message, monkeypatch):
    monkeypatch.setattr(Sized, "side", side)
    register_model("sized-test", Sized)
    with pytest.raises(CgmbenchError, match=message) as info:
        load_model("sized-test", load_task(task_name))
    assert info.value.hint


def test_noise_model_at_another_resolution_runs_and_is_scored_resized(tmp_path, monkeypatch):
    monkeypatch.setattr(Sized, "side", (64, 64))
    register_model("sized-test", Sized)
    rec = run(RunConfig(task="shapes-t2i", model="sized-test", num_samples=6, batch_size=4, out=str(tmp_path / "r"),
                        progress=False), log=lambda m: None)
    assert rec["samples"]["resize_direction"] == "down"
    assert SampleStore.open(tmp_path / "r" / "samples").sample_shape == (3, 64, 64)


def test_resize_protocols():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (2, 3, 8, 8), dtype=np.uint8)
    # nearest 2x decimation keeps PIL's pixel centres: source pixel 2i+1
    np.testing.assert_array_equal(resize_samples(x, 4, "nearest"), x[:, :, 1::2, 1::2])
    np.testing.assert_array_equal(resize_samples(x, 4, "clean"), pil_bicubic(x, 4))
    flat = np.full((1, 3, 8, 8), 77, np.uint8)
    assert (resize_samples(flat, 3) == 77).all() and (resize_samples(flat, 13) == 77).all()
    video = rng.integers(0, 256, (2, 3, 3, 8, 8), dtype=np.uint8)
    out = resize_samples(video, 4, "nearest")
    assert out.shape == (2, 3, 3, 4, 4)
    np.testing.assert_array_equal(out, video[..., 1::2, 1::2])
    assert resize_samples(x, 8) is x  # same size: untouched
    with pytest.raises(CgmbenchError, match="unknown resize protocol"):
        resize_samples(x, 4, "lanczos-ish")
    with pytest.raises(CgmbenchError, match="uint8"):
        resize_samples(x.astype(np.float32), 4)


def test_a_store_of_another_size_without_a_protocol_is_refused(tmp_path):
    task = load_task("shapes-t2i")
    store = SampleStore.create(tmp_path / "s", {"task": "shapes-t2i"}, (3, 64, 64))
    with pytest.raises(CgmbenchError, match="names no resize protocol"):
        for_scoring(store, task)
    store = SampleStore.create(tmp_path / "t", {"task": "shapes-t2i", "resize": "nearest"}, (3, 64, 64))
    x = np.random.default_rng(1).integers(0, 256, (3, 3, 64, 64), dtype=np.uint8)
    store.write_shard(0, x)
    view = for_scoring(store, task)
    assert isinstance(view, ResizedStore) and view.sample_shape == (3, 32, 32)
    np.testing.assert_array_equal(np.concatenate([a for _, a in view.iter_batches(3)]), x[..., 1::2, 1::2])
    same = SampleStore.create(tmp_path / "u", {"task": "shapes-t2i"}, (3, 32, 32))
    assert for_scoring(same, task) is same


def _reidentified(rec: dict, edit) -> dict:
    rec = json.loads(json.dumps(rec))
    edit(rec)
    rec["identity_sha256"] = identity_digest(rec)
    return rec


@pytest.mark.slow  # two runs of the verifier over the FID/CLIP passes
def test_verifier_rescores_native_resolution_samples_by_the_recorded_protocol(tmp_path, monkeypatch):
    """A 64x64 model on the 32x32 shapes-t2i (StackGAN/AttnGAN's case): the verifier accepts the native samples
    because the record names the resize protocol, re-scores them resized exactly as the run did, and refuses a
    record whose resize block does not match the samples or the task."""
    from cgmbench.images import save_png
    from cgmbench.results.submit import SubmissionRejected, verify

    monkeypatch.setattr(Sized, "side", (64, 64))
    register_model("sized-test", Sized)
    out = tmp_path / "r"
    rec = run(RunConfig(task="shapes-t2i", model="sized-test", num_samples=6, batch_size=4, out=str(out),
                        progress=False), log=lambda m: None)
    checked = verify(out / "run.json", samples=out)
    assert checked["rescored"]["fid"] == pytest.approx(rec["metrics"]["fid"]["value"], rel=1e-9)
    assert {"judge", "fid", "clip_score"} <= set(checked["rescored"])
    # the same samples as 64x64 PNG files
    pngs = tmp_path / "pngs"
    pngs.mkdir()
    for i, img in enumerate(SampleStore.open(out / "samples").read(0, 6)):
        save_png(img, pngs / f"{i}.png")
    assert verify(out / "run.json", samples=pngs)["rescored"]["fid"] == checked["rescored"]["fid"]

    def rejected(edit, match):
        path = tmp_path / "edited.json"
        path.write_text(json.dumps(_reidentified(rec, edit)))
        with pytest.raises(SubmissionRejected, match=match):
            verify(path, samples=out)

    def no_resize(r):
        r["samples"].update(resize="none", native_resolution=[32, 32], sample_shape=[3, 32, 32])
    rejected(no_resize, r"is uint8 \(4, 3, 64, 64\); expected uint8 \(4, 3, 32, 32\)")  # task size claimed
    rejected(lambda r: r["samples"].update(resize="lanczos"), "unknown resize protocol 'lanczos'")
    rejected(lambda r: r["samples"].update(eval_resolution=[64, 64]), r"scored at \[32, 32\]")
    rejected(lambda r: r["samples"].update(native_resolution=[64, 48]), "aspect ratio differs")
    rejected(lambda r: r["samples"].update(native_resolution=[99999, 99999]), r"each 1\.\.4096")
    rejected(lambda r: r["samples"].update(native_resolution=[48, 48]), r"sample_shape: \[3, 64, 64\]")
