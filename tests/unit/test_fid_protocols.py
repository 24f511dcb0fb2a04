"""Named FID protocols of the GAN papers (cgmbench.metrics.fid_protocols): DF-GAN's flip-augmented reference set
equals a direct computation on the images plus their mirror images, and the run records the protocol and any
deviation of its knobs (truncation 0.88) or input protocol."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from cgmbench.errors import CgmbenchError
from cgmbench.metrics.fid_protocols import FID_PROTOCOLS, augment_references, protocol_deviations
from cgmbench.spec.task import load_task

torch.set_num_threads(1)
pytestmark = pytest.mark.filterwarnings("ignore::cgmbench.metrics.SingularCovarianceWarning")
ROOT = Path(__file__).resolve().parents[2]


def _task(tmp_path: Path, fid_protocol: str = "dfgan", protocol: str = "pytorch-fid", size: int = 12):
    text = (ROOT / "tasks" / "shapes-t2i.toml").read_text()
    text = text.replace('compute = ["judge", "fid", "clip_score"]\nprotocol = "clean"',
                        f'compute = ["fid", "kid"]\nprotocol = "{protocol}"\nfid_protocol = "{fid_protocol}"')
    text = text.replace("size = 1000", f"size = {size}")
    path = tmp_path / "shapes-t2i.toml"
    path.write_text(text)
    return load_task(str(path))


def test_hflip_reference_stats_equal_a_direct_computation(tmp_path, monkeypatch):
    from cgmbench.extractors import get_extractor
    from cgmbench.scoring.reference_stats import reference_stats
    from cgmbench.sources.base import open_source

    monkeypatch.setenv("CGMBENCH_HOME", str(tmp_path / "home"))
    task = _task(tmp_path)
    extractor = get_extractor("shapes-cnn", protocol="pytorch-fid")
    stats = reference_stats(task, extractor, "pytorch-fid", batch_size=5, augmentation="hflip")
    images = open_source(task, "reference").references(list(range(12)))
    both = torch.from_numpy(np.concatenate([images, images[..., ::-1].copy()]))
    feats = extractor(both).numpy()
    assert stats.n == 24 and not np.array_equal(images, images[..., ::-1])
    np.testing.assert_allclose(stats.mu, feats.mean(0), rtol=0, atol=1e-10)
    np.testing.assert_allclose(stats.sigma, np.cov(feats, rowvar=False, ddof=1), rtol=0, atol=1e-9)
    plain = reference_stats(task, extractor, "pytorch-fid", batch_size=5)
    assert plain.n == 12 and plain.key != stats.key  # the augmentation is part of the content address
    assert stats.meta["reference"]["augmentation"] == "hflip"
    batch = images[:3]
    assert np.array_equal(augment_references(batch, "hflip")[3:], batch[..., ::-1])
    assert augment_references(batch, "none") is batch


@pytest.mark.slow
def test_run_records_the_protocol_and_its_deviations(tmp_path, monkeypatch):
    import cgmbench

    monkeypatch.setenv("CGMBENCH_HOME", str(tmp_path / "home"))
    task = _task(tmp_path)
    kwargs = dict(num_samples=8, batch_size=8, device="cpu", log=lambda m: None)
    fid = cgmbench.run(task, "stackgan", out=tmp_path / "a", knobs={"truncation": 0.88}, **kwargs)["metrics"]["fid"]
    assert fid["fid_protocol"]["name"] == "dfgan" and fid["fid_protocol"]["reference_augmentation"] == "hflip"
    assert fid["comparable"] is True and fid["deviations"] == {} and fid["n_reference"] == 24
    kid = cgmbench.run(task, "stackgan", out=tmp_path / "b", **kwargs)["metrics"]
    # the shipped StackGAN samples at its own default truncation 1.0, not the protocol's 0.88
    assert kid["fid"]["deviations"] == {"truncation": {"protocol": 0.88, "used": 1.0}}
    assert kid["fid"]["comparable"] is False
    assert kid["kid"]["n_reference"] == 12  # only FID uses the protocol's augmented reference
    other = _task(tmp_path, protocol="clean")
    fid = cgmbench.run(other, "stackgan", out=tmp_path / "c", knobs={"truncation": 0.88}, **kwargs)["metrics"]["fid"]
    assert fid["deviations"] == {"input_protocol": {"protocol": "pytorch-fid", "used": "clean"}}


def test_protocol_table_and_bad_names(tmp_path):
    assert FID_PROTOCOLS["dfgan"].knobs == {"truncation": 0.88}
    assert FID_PROTOCOLS["dmgan"].reference_augmentation == "none"
    assert protocol_deviations(FID_PROTOCOLS["dmgan"], {}, "pytorch-fid") == {}  # no knob: untruncated
    with pytest.raises(CgmbenchError, match="unknown fid_protocol 'df-gan'.*known: dfgan, dmgan"):
        _task(tmp_path, fid_protocol="df-gan")
    with pytest.raises(CgmbenchError, match="unknown reference augmentation 'shift'"):
        augment_references(np.zeros((1, 3, 2, 2), np.uint8), "shift")
