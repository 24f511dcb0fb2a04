"""instruct-pix2pix: the cgmbench file format (strict), dual CFG sampling, knobs; the shipped tiny checkpoint."""

import pytest
import torch

from baselines.common.shipped import read_shipped, save_shipped
from baselines.common.text_encoders import ShapesWordEncoder, ShapesWordEncoderConfig
from baselines.editing import ip2p
from baselines.editing.ip2p import InstructPix2PixGenerator, _base_ldm, base_config_unet
from baselines.ldm.unet import UNetModel
from cgmbench.errors import CgmbenchError
from cgmbench.generator import CheckpointInfo
from cgmbench.spec.task import load_task
from cgmbench.worlds.sources import ShapesSource

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def random_file(tmp_path_factory):
    base, sha = _base_ldm()
    ucfg = dict(base_config_unet(base), in_channels=16)
    torch.manual_seed(0)
    unet = UNetModel(**ucfg)
    for q in unet.parameters():  # the official init zeroes the output layers: make every input matter
        q.data.add_(torch.randn(q.shape) * 0.05)
    text = ShapesWordEncoder(base.text_encoder.config)
    tensors = {f"model.diffusion_model.{k}": v for k, v in unet.state_dict().items()}
    tensors.update({f"cond_stage_model.{k}": v for k, v in text.state_dict().items()})
    cfg = {"model": "instruct-pix2pix", "name": "tiny", "unet": ucfg, "text_encoder": base.text_encoder.config.to_dict(),
           "defaults": ip2p.TINY["defaults"], "base_sha256": sha, "resolution": [32, 32]}
    path = save_shipped(tmp_path_factory.mktemp("ip2p") / "ip2p-test.safetensors", tensors, cfg, {"model": "x"})
    return path, tensors, cfg


def test_file_round_trip_and_generation(random_file):
    path, _, _ = random_file
    model = InstructPix2PixGenerator.from_file(path, CheckpointInfo("t", None, str(path), "file"))
    task = load_task("shapes-edit")
    cond = ShapesSource(task, {"size": 1000}).conditions([0, 1])
    a = model.generate(cond, [5, 6], steps=5)
    b = model.generate(ShapesSource(task, {"size": 1000}).conditions([1]), [6], steps=5)
    assert a.shape == (2, 3, 32, 32) and a.dtype == torch.uint8 and torch.equal(a[1:], b)
    plain = model.generate(cond, [5, 6], steps=5, guidance_scale=1.0, image_guidance_scale=1.0)
    other = model.generate(cond, [5, 6], steps=5, guidance_scale=1.0, image_guidance_scale=3.0)
    assert not torch.equal(plain, other)
    assert "dual CFG" in model.checkpoint.extra["guidance"]
    with pytest.raises(CgmbenchError, match="out of range"):
        model.generate(cond, [5, 6], image_guidance_scale=-1)


def test_strictness(random_file, tmp_path):
    path, tensors, cfg = random_file
    bad = dict(tensors)
    bad.pop(next(k for k in bad if k.startswith("model.diffusion_model.")))
    p = save_shipped(tmp_path / "missing.safetensors", bad, cfg, {"model": "x"})
    with pytest.raises(CgmbenchError, match="missing"):
        InstructPix2PixGenerator.from_file(p, CheckpointInfo("t", None, str(p), "file"))
    p = save_shipped(tmp_path / "sha.safetensors", tensors, dict(cfg, base_sha256="0" * 64), {"model": "x"})
    with pytest.raises(CgmbenchError, match="trained on the autoencoder"):
        InstructPix2PixGenerator.from_file(p, CheckpointInfo("t", None, str(p), "file"))
    with pytest.raises(CgmbenchError, match="not a cgmbench instruct-pix2pix checkpoint"):
        InstructPix2PixGenerator.load(load_task("shapes-edit"), checkpoint=str(tmp_path / "nope.ckpt"))
