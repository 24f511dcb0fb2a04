"""videomae_v2_g_ssv2 (content-debiased FVD): a reduced-depth VideoMAE-v2 in the official state-dict layout gives
the features of an independent implementation (transformers' VideoMAE with the same weights, fc_norm of the token
mean) on cd-fvd's preprocessing (x/255, no mean/std, bilinear to 224); strict loading and the released layouts."""

from __future__ import annotations

import argparse

import pytest
import torch
import torch.nn.functional as F

from cgmbench.errors import CgmbenchError
from cgmbench.extractors.videomae import (
    VIDEOMAE_V2_G,
    VideoMAEv2,
    VideoMAEv2Config,
    VideoMAEv2Extractor,
    sinusoid_table,
)

torch.set_num_threads(1)
SMALL = VideoMAEv2Config(patch_size=56, embed_dim=64, depth=2, num_heads=4, mlp_ratio=1.5, num_classes=7,
                         all_frames=4, tubelet_size=2)


def _official_state(cfg: VideoMAEv2Config, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {k: 0.2 * torch.randn(v.shape, generator=g) + (1.0 if k.endswith("norm1.weight") else 0.0)
            for k, v in VideoMAEv2(cfg).state_dict().items()}


def _hf_features(state: dict[str, torch.Tensor], cfg: VideoMAEv2Config, videos: torch.Tensor) -> torch.Tensor:
    """transformers' VideoMAE on the same weights (q/k/v split from qkv; k without bias) and cd-fvd's input."""
    from transformers import VideoMAEConfig, VideoMAEForVideoClassification

    hf = VideoMAEForVideoClassification(VideoMAEConfig(
        image_size=cfg.img_size, patch_size=cfg.patch_size, num_frames=cfg.all_frames, tubelet_size=cfg.tubelet_size,
        hidden_size=cfg.embed_dim, num_hidden_layers=cfg.depth, num_attention_heads=cfg.num_heads,
        intermediate_size=int(cfg.embed_dim * cfg.mlp_ratio), hidden_act="gelu", qkv_bias=True,
        use_mean_pooling=True, layer_norm_eps=cfg.norm_eps, num_labels=cfg.num_classes,
        attn_implementation="eager")).eval()
    mapped = {"videomae.embeddings.patch_embeddings.projection.weight": state["patch_embed.proj.weight"],
              "videomae.embeddings.patch_embeddings.projection.bias": state["patch_embed.proj.bias"],
              "fc_norm.weight": state["fc_norm.weight"], "fc_norm.bias": state["fc_norm.bias"],
              "classifier.weight": state["head.weight"], "classifier.bias": state["head.bias"]}
    for i in range(cfg.depth):
        o, h = f"blocks.{i}.", f"videomae.encoder.layer.{i}."
        q, k, v = state[o + "attn.qkv.weight"].chunk(3)
        mapped.update({h + "attention.attention.query.weight": q, h + "attention.attention.key.weight": k,
                       h + "attention.attention.value.weight": v,
                       h + "attention.attention.query.bias": state[o + "attn.q_bias"],
                       h + "attention.attention.value.bias": state[o + "attn.v_bias"],
                       h + "attention.output.dense.weight": state[o + "attn.proj.weight"],
                       h + "attention.output.dense.bias": state[o + "attn.proj.bias"],
                       h + "intermediate.dense.weight": state[o + "mlp.fc1.weight"],
                       h + "intermediate.dense.bias": state[o + "mlp.fc1.bias"],
                       h + "output.dense.weight": state[o + "mlp.fc2.weight"],
                       h + "output.dense.bias": state[o + "mlp.fc2.bias"],
                       h + "layernorm_before.weight": state[o + "norm1.weight"],
                       h + "layernorm_before.bias": state[o + "norm1.bias"],
                       h + "layernorm_after.weight": state[o + "norm2.weight"],
                       h + "layernorm_after.bias": state[o + "norm2.bias"]})
    missing, unexpected = hf.load_state_dict(mapped, strict=False)
    assert not unexpected and all("position" in m for m in missing), (missing, unexpected)
    b, t, c, h_, w = videos.shape
    x = videos.float().reshape(b * t, c, h_, w) / 255  # cd-fvd: /255, bilinear per frame, no mean/std
    x = F.interpolate(x, size=(224, 224), mode="bilinear", align_corners=False).reshape(b, t, c, 224, 224)
    with torch.no_grad():
        tokens = hf.videomae(pixel_values=x).last_hidden_state
        return hf.fc_norm(tokens.mean(1))


@pytest.mark.slow
def test_features_equal_an_independent_implementation(tmp_path):
    state = _official_state(SMALL)
    path = tmp_path / "vit_g_hybrid_pt_1200e_ssv2_ft.pth"
    torch.save({"module": state, "epoch": 7, "args": argparse.Namespace(model="vit_giant_patch14_224")}, path)
    extractor = VideoMAEv2Extractor(path, config=SMALL)
    assert extractor.weights_sha256 and extractor.feature_dim == 64
    g = torch.Generator().manual_seed(1)
    videos = torch.randint(0, 256, (3, 4, 3, 40, 56), generator=g, dtype=torch.uint8)
    got = extractor(videos, batch_size=2)
    want = _hf_features(state, SMALL, videos).double()
    assert got.dtype == torch.float64 and got.shape == (3, 64)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    # the released layout with "model" and a bare state dict load too
    assert torch.equal(VideoMAEv2Extractor({"model": state}, config=SMALL)(videos), got)


def test_released_configuration_and_position_table():
    assert VIDEOMAE_V2_G.grid == (8, 16, 16) and int(VIDEOMAE_V2_G.embed_dim * VIDEOMAE_V2_G.mlp_ratio) == 6144
    with torch.device("meta"):
        keys = VideoMAEv2().state_dict()
    assert len([k for k in keys if k.endswith("attn.q_bias")]) == 40 and tuple(keys["head.weight"].shape) == (174, 1408)
    assert tuple(keys["patch_embed.proj.weight"].shape) == (1408, 3, 2, 14, 14) and "pos_embed" not in keys
    table = sinusoid_table(5, 6)[0]
    pos, j = 3, 4  # angle 3 / 10000^(2*2/6), even index -> sin
    assert abs(float(table[pos, j]) - torch.sin(torch.tensor(3 / 10000 ** (4 / 6), dtype=torch.float64)).item()) < 1e-7
    assert abs(float(table[pos, 5]) - torch.cos(torch.tensor(3 / 10000 ** (4 / 6), dtype=torch.float64)).item()) < 1e-7


def test_wrong_files_are_one_line(tmp_path):
    state = _official_state(SMALL)
    with pytest.raises(CgmbenchError, match="is missing key 'blocks.0.attn.q_bias'"):
        VideoMAEv2Extractor({k: v for k, v in state.items() if k != "blocks.0.attn.q_bias"}, config=SMALL)
    narrow = VideoMAEv2Config(**{**SMALL.__dict__, "embed_dim": 32})
    with pytest.raises(CgmbenchError, match="the 2-block, 32-wide model expects"):
        VideoMAEv2Extractor(state, config=narrow)
    bad = tmp_path / "evil.pth"
    torch.save({"model": state, "hook": print}, bad)  # a pickled function: refused by weights_only loading
    with pytest.raises(CgmbenchError, match="cannot read VideoMAE-v2 weights .*evil.pth") as info:
        VideoMAEv2Extractor(bad, config=SMALL)
    assert "\n" not in str(info.value)
