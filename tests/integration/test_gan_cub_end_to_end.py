"""``cgmbench run --task cub200-t2i --model attngan`` (issue 13): offline it names the files to fetch; with tiny
files in the official layouts (AttnGAN generator, DAMSM encoders, captions.pickle, CUB metadata and images) it runs
end to end and reports DAMSM R-precision, and IS and FID once scored with an Inception file, all with intervals."""

from __future__ import annotations

import pickle
import sys
from pathlib import Path

import pytest
import torch

import cgmbench
from baselines.attngan.generator import AttnGANGenerator
from baselines.attngan.models import CNN_ENCODER, G_NET, RNN_ENCODER
from cgmbench.errors import CgmbenchError
from cgmbench.models.registry import register_model

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "unit"))
from inception_helpers import random_fid_inception_state_dict, write_cub_inception_safetensors  # noqa: E402
from test_gan_t2i_source import make_birds  # noqa: E402

import baselines.attngan.weights  # noqa: E402,F401  (the family's entries, as its entry point would load them)


@pytest.fixture(autouse=True)
def _models():
    register_model("attngan", AttnGANGenerator)


def test_offline_run_names_exactly_the_files_to_fetch(tmp_path, monkeypatch):
    monkeypatch.setenv("CGMBENCH_DATA", str(tmp_path / "data"))
    with pytest.raises(CgmbenchError) as err:
        cgmbench.run("cub200-t2i", "attngan", num_samples=4, out=str(tmp_path / "run"))
    msg = str(err.value)
    # the preflight, at once: the generator's three official files, the CUB data, the FID Inception, the IS
    # classifier (StackGAN's CUB-fine-tuned Inception) and R-precision's DAMSM image encoder
    assert "needs 7 file(s)" in msg
    for name in ("bird_AttnGAN2.pth", "text_encoder200.pth", "bird-captions.pickle", str(tmp_path / "data" / "birds"),
                 "cgmbench weights fetch inception-v3)", "inception-v3-cub-finetuned (is)", "image_encoder200.pth"):
        assert name in msg
    assert "(8)" not in msg  # the DAMSM text encoder and vocabulary, shared by generator and R-precision: listed once


@pytest.mark.slow
def test_tiny_official_files_run_end_to_end(tmp_path, monkeypatch):
    home = Path(__import__("os").environ["CGMBENCH_HOME"])
    weights = home / "weights"
    weights.mkdir(parents=True, exist_ok=True)
    words = ["<end>", "bird", "caption"] + [str(i) for i in range(10)]
    ixtoword = dict(enumerate(words))
    with open(weights / "bird-captions.pickle", "wb") as f:
        pickle.dump([[], [], ixtoword, {w: i for i, w in ixtoword.items()}], f, protocol=2)
    torch.manual_seed(0)
    torch.save(G_NET(branch_num=3, gf_dim=2, z_dim=4, condition_dim=2, r_num=1, embedding_dim=8).state_dict(),
               weights / "bird_AttnGAN2.pth")
    torch.save(RNN_ENCODER(len(words), ninput=6, nhidden=8).state_dict(), weights / "text_encoder200.pth")
    torch.save(CNN_ENCODER(8).state_dict(), weights / "image_encoder200.pth")
    make_birds(tmp_path / "data" / "birds")
    monkeypatch.setenv("CGMBENCH_DATA", str(tmp_path / "data"))
    inception = tmp_path / "inception.pth"
    torch.save(random_fid_inception_state_dict(seed=3), inception)
    # the CUB IS classifier, converted (official TF names, random weights), where the registry expects it
    write_cub_inception_safetensors(weights / "inception_v3_cub_finetuned.safetensors", seed=5)
    rec = cgmbench.run("cub200-t2i", "attngan", num_samples=6, out=str(tmp_path / "run"), batch_size=3)
    assert "r_precision" in rec["metrics"] and any(p.startswith("fid:") for p in rec["metrics_pending"])
    # offline there is no Inception file: score the run with the test's (random, FID-layout) Inception weights,
    # as `cgmbench score RUN --extractor-weights FILE` does
    from cgmbench.scoring.evaluate import score_run

    rec = score_run(tmp_path / "run", batch_size=3, extractor_weights=str(inception), log=lambda m: None)
    assert rec["model"]["checkpoint"]["name"] == "attngan:bird"
    assert rec["samples"]["native_resolution"] == [256, 256]
    m = rec["metrics"]
    assert set(m) >= {"is", "fid", "r_precision"}, rec["metrics_pending"]
    for name in ("is", "fid", "r_precision"):
        lo, hi = m[name]["ci95"]
        assert lo <= m[name]["value"] <= hi or name == "fid"
    assert m["is"]["extractor"] == "inception-v3-cub-finetuned" and m["fid"]["extractor"] == "inception-v3"
    assert m["fid"]["fid_protocol"]["name"] == "dmgan" and m["fid"]["comparable"] is True
    rp = m["r_precision"]
    assert rp["protocol"] == "dmgan" and rp["extractor"] == "damsm-bird" and rp["num_negatives"] == 29
    assert rp["bank_size"] == 30 and 0.0 <= rp["value"] <= 100.0
