"""The metric harness end to end: exactness against torch-fidelity / torchmetrics / clean-fid, the
reference-statistics cache, the CLIP wrapper, the ``fid`` / ``score`` / ``stats`` commands, bad input.

Offline: the FID Inception is a random, BatchNorm-calibrated state dict under the official key names
(built with the helpers of ``test_inception.py``) handed to cgmbench through ``--extractor-weights``
and to torch-fidelity / torchmetrics through a temporary torch-hub cache. Images are 299x299 for the
torchmetrics comparisons (its KID and IS always resize with antialiasing, which is the identity at
299) and 64x64 for the clean-fid resize path.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import warnings

import numpy as np
import pytest
import torch
from PIL import Image
from inception_helpers import hub_cache_with, random_fid_inception_state_dict, smooth_images

from cgmbench.cli import metrics as cli_metrics
from cgmbench.errors import CgmbenchError
from cgmbench.extractors import FeatureExtractor, get_extractor
from cgmbench.metrics import SingularCovarianceWarning, frechet_distance, inception_score
from cgmbench.run.samples import SampleStore
from cgmbench.scoring.harness import HarnessOptions, compute_metrics, extract_samples
from cgmbench.sources.base import open_source
from cgmbench.scoring.reference_stats import (
    ReferenceStats,
    load_adm_batch,
    load_stats,
    reference_stats,
    save_stats,
    stats_dir,
)
from cgmbench.spec.task import validate_task_dict

pytestmark = [pytest.mark.slow]

N_IMAGES = 8


def _save_folder(folder, images):
    folder.mkdir(parents=True)
    for i, image in enumerate(images):
        Image.fromarray(image.permute(1, 2, 0).numpy()).save(folder / f"{i:03d}.png")
    return folder


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("harness_weights") / "random-fid-inception.pth"
    torch.save(random_fid_inception_state_dict(seed=3), path)
    return path


@pytest.fixture(scope="module")
def torch_home(tmp_path_factory, weights_file):
    return hub_cache_with(weights_file, tmp_path_factory.mktemp("harness_torch_home"))


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """Two folders of 299x299 PNGs: 'fake' (the samples) and 'real' (the reference), different statistics."""
    root = tmp_path_factory.mktemp("harness_folders")
    fake = smooth_images(N_IMAGES, 299, 299, seed=21)
    real = (smooth_images(N_IMAGES, 299, 299, seed=22).int() * 3 // 4 + 40).to(torch.uint8)
    return _save_folder(root / "fake", fake), _save_folder(root / "real", real), fake


def _folder_task(real_folder, resolution, compute, protocol="tf-exact", extractor="inception-v3", name="folder-test"):
    return validate_task_dict({
        "name": name, "kind": "class-conditional", "resolution": resolution, "num_samples": N_IMAGES,
        "conditions": {"source": "labels", "num_classes": 10},
        "reference": {"source": "image-folder", "path": str(real_folder)},
        "metrics": {"compute": compute, "protocol": protocol, "extractor": extractor},
        "data": {"license": "test", "attribution": "test", "obtain": "test"},
    })


def _store(root, images: torch.Tensor) -> SampleStore:
    store = SampleStore.create(root, {"test": True}, tuple(images.shape[1:]))
    store.write_shard(0, images[:5].numpy())
    store.write_shard(5, images[5:].numpy())
    return store


@pytest.fixture(scope="module")
def harness_run(tmp_path_factory, folders, weights_file):
    """The harness on the fake folder as a run's samples, the real folder as the reference."""
    fake_dir, real_dir, fake = folders
    task = _folder_task(real_dir, 299, ["fid", "kid", "is"])
    store = _store(tmp_path_factory.mktemp("harness_store") / "samples", fake)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CGMBENCH_HOME", str(tmp_path_factory.mktemp("harness_home")))
        opts = HarnessOptions(batch_size=4, extractor_weights=str(weights_file), log=lambda m: None)
        metrics, pending = compute_metrics(task, open_source(task, "conditions"), store, N_IMAGES, opts)
    return metrics, pending


# ----------------------------------------------------------------------------------------------
# Exactness against the reference libraries
# ----------------------------------------------------------------------------------------------


def test_fid_kid_is_equal_torch_fidelity_calculate_metrics(harness_run, folders, weights_file):
    import torch_fidelity

    metrics, pending = harness_run
    fake_dir, real_dir, _ = folders
    assert pending == [] and list(metrics) == ["fid", "kid", "is"]
    common = dict(cuda=False, verbose=False, cache=False, feature_extractor_weights_path=str(weights_file),
                  save_cpu_ram=True, batch_size=4)
    # torch-fidelity's KID convention: input1 is the first argument of our kid (the reference)
    ref = torch_fidelity.calculate_metrics(input1=str(real_dir), input2=str(fake_dir), fid=True, kid=True,
                                           kid_subsets=100, kid_subset_size=N_IMAGES, **common)
    isc = torch_fidelity.calculate_metrics(input1=str(fake_dir), isc=True, isc_splits=N_IMAGES, **common)
    # FID and KID of two near-identical sets are small, so relative agreement is judged with an absolute floor: the
    # references compute in float32 and vary run to run on one machine (KID measured 0.0788069..0.0788071 for the
    # same inputs here, ours 0.0788073 every time); 1e-6 covers that float32 noise.
    assert metrics["fid"]["value"] == pytest.approx(ref["frechet_inception_distance"], rel=1e-6, abs=1e-6)
    assert metrics["kid"]["value"] == pytest.approx(ref["kernel_inception_distance_mean"], rel=1e-6, abs=1e-6)
    # every subset holds all N rows, so both stds are float rounding only
    kid_scale = abs(ref["kernel_inception_distance_mean"])
    assert metrics["kid"]["std"] == pytest.approx(ref["kernel_inception_distance_std"], abs=1e-5 * kid_scale)
    assert metrics["is"]["value"] == pytest.approx(isc["inception_score_mean"], rel=1e-6)
    assert metrics["is"]["std"] == pytest.approx(isc["inception_score_std"], rel=1e-6)
    # provenance: the user's weights are recorded and marked non-standard
    for name in ("fid", "kid", "is"):
        entry = metrics[name]
        assert entry["protocol"] == "tf-exact" and entry["extractor"] == "inception-v3"
        assert entry["official_weights"] is False and len(entry["weights_sha256"]) == 64
        assert entry["n"] == N_IMAGES and entry["method"]
    assert len(metrics["fid"]["reference_stats_sha256"]) == 64 and metrics["fid"]["n_reference"] == N_IMAGES
    lo, hi = metrics["fid"]["ci95"]
    assert lo <= metrics["fid"]["value"] <= hi and hi > lo


def test_fid_kid_is_equal_torchmetrics(harness_run, folders, torch_home, weights_file, monkeypatch):
    from torchmetrics.image import FrechetInceptionDistance, InceptionScore, KernelInceptionDistance

    metrics, _ = harness_run
    _, _, fake = folders
    real = torch.stack([torch.from_numpy(np.asarray(Image.open(p))).permute(2, 0, 1)
                        for p in sorted(folders[1].glob("*.png"))])
    monkeypatch.setenv("TORCH_HOME", str(torch_home))
    fid = FrechetInceptionDistance(feature=2048, antialias=False)
    kid = KernelInceptionDistance(subsets=1, subset_size=N_IMAGES)
    isc = InceptionScore(splits=1)
    for metric in (fid, kid):
        metric.update(real, real=True)
        metric.update(fake, real=False)
    isc.update(fake)
    # (as above) FID of two near-identical sets is small (~0.079 here), so relative agreement is judged with an absolute floor:
    # the references compute their square root in float32 and vary run to run on one machine (measured
    # 0.0788069..0.0788071 for the same inputs, ours 0.0788073 every time), 1e-6 covers that float32 noise.
    assert metrics["fid"]["value"] == pytest.approx(float(fid.compute()), rel=1e-6, abs=1e-6)
    # every one of our 100 subsets of size N holds all rows: the value equals the one-subset KID
    assert metrics["kid"]["value"] == pytest.approx(float(kid.compute()[0]), rel=1e-6, abs=1e-6)
    # torchmetrics' IS with one split is permutation-invariant; compare our logits' IS with one split
    ext = get_extractor("inception-v3", weights_path=weights_file)
    ours_is1 = inception_score(ext.logits(fake).numpy(), splits=1)[0]
    assert ours_is1 == pytest.approx(float(isc.compute()[0]), rel=1e-6)


def test_clean_protocol_equals_clean_fid_folder_path(tmp_path, weights_file):
    from cleanfid.fid import get_folder_features

    folder = _save_folder(tmp_path / "small", smooth_images(4, 64, 48, seed=5))
    ext = get_extractor("inception-v3", weights_path=weights_file, protocol="clean")

    def model(x):  # clean-fid hands the resized float [0, 255] images; InceptionV3W feeds (x - 128) / 128
        return ext.network((x - 128) / 128)["pool3"]

    theirs = get_folder_features(str(folder), model=model, num_workers=0, batch_size=4, device=torch.device("cpu"),
                                 mode="clean", verbose=False)
    count, batches = cli_metrics.folder_batches(folder, 4)
    ours = torch.cat([ext(torch.from_numpy(b)) for b in batches]).numpy()
    assert count == 4 and ours.shape == theirs.shape == (4, 2048)
    assert np.abs(ours - theirs).max() <= 1e-5


# ----------------------------------------------------------------------------------------------
# The fid command
# ----------------------------------------------------------------------------------------------


def _cli(argv) -> int:
    """The ``cgmbench`` main loop for these three commands (one-line errors, exit status 2)."""
    parser = argparse.ArgumentParser(prog="cgmbench")
    sub = parser.add_subparsers(dest="command", required=True)
    cli_metrics.register(sub)
    args = parser.parse_args(argv)
    try:
        return cli_metrics.COMMANDS[args.command](args)
    except CgmbenchError as error:
        print(f"cgmbench: error: {error}", file=__import__("sys").stderr)
        return 2


def test_fid_command_json_and_non_standard_weights(folders, weights_file, harness_run, capsys):
    fake_dir, real_dir, _ = folders
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the command reports warnings itself, it does not raise them
        assert _cli(["fid", str(real_dir), str(fake_dir), "--protocol", "tf-exact", "--extractor-weights",
                     str(weights_file), "--batch-size", "4", "--json"]) == 0
    out, err = capsys.readouterr()
    result = json.loads(out)
    assert isinstance(result["fid"], float) and result["fid"] == pytest.approx(harness_run[0]["fid"]["value"], rel=1e-6)
    assert result["protocol"] == "tf-exact" and result["extractor"] == "inception-v3"
    assert result["official_weights"] is False and len(result["weights_sha256"]) == 64
    assert result["n_a"] == result["n_b"] == N_IMAGES
    assert "fewer" in err.lower() or "singular" in err.lower()  # N=8 < d=2048 is reported


def test_fid_command_errors_are_one_line(tmp_path, folders, weights_file, capsys):
    fake_dir, _, _ = folders
    empty = tmp_path / "empty"
    empty.mkdir()
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "a.png").write_bytes(b"not a png")
    (corrupt / "b.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    cases = [
        ([str(empty), str(fake_dir)], "holds no images"),
        ([str(corrupt), str(fake_dir)], "corrupt or unreadable image"),
        ([str(tmp_path / "nowhere"), str(fake_dir)], "does not exist"),
        ([str(fake_dir), str(fake_dir), "--protocol", "adm"], "unknown FID protocol"),
        ([str(fake_dir), str(fake_dir), "--extractor", "nope"], "unknown feature extractor"),
    ]
    for argv, message in cases:
        assert _cli(["fid", *argv, "--extractor-weights", str(weights_file)]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err
    # official weights missing: the error names URL, sha256 and the exact path
    assert _cli(["fid", str(fake_dir), str(fake_dir)]) == 2
    err = capsys.readouterr().err
    assert "weights-inception-2015-12-05-6726825d.pth" in err and "6726825d0af5f729" in err
    assert err.count("\n") == 1


# ----------------------------------------------------------------------------------------------
# Reference statistics: content addressing, verification, ADM batches
# ----------------------------------------------------------------------------------------------


class _TinyExtractor(FeatureExtractor):
    """Mean colour and a few pixel statistics: a cheap deterministic extractor for cache tests."""

    name = "tiny-test"
    feature_dim = 6
    weights_sha256 = "0" * 64

    def __init__(self, nan: bool = False):
        super().__init__()
        self.nan = nan

    def features(self, images):
        x = images.double() / 255
        out = torch.cat([x.mean((2, 3)), x.std((2, 3))], 1)
        return out * float("nan") if self.nan else out


def test_reference_stats_are_content_addressed_cached_and_verified(tmp_path, folders):
    _, real_dir, _ = folders
    task = _folder_task(real_dir, 64, ["fid"])
    first = reference_stats(task, _TinyExtractor(), "clean")
    assert first.path.parent == stats_dir() and first.path.name == f"{first.key}.npz"
    assert first.n == N_IMAGES and first.features.shape == (N_IMAGES, 6)
    again = reference_stats(task, _TinyExtractor(), "clean")
    assert again.key == first.key and np.array_equal(again.sigma, first.sigma)
    # another protocol, resolution or set of images is another key
    assert reference_stats(task, _TinyExtractor(), "tf-exact").key != first.key
    assert reference_stats(dataclasses.replace(task, resolution=32), _TinyExtractor(), "clean").key != first.key
    # a tampered file is refused with a clear error
    with np.load(first.path) as data:
        arrays = dict(data)
    arrays["sigma"] = arrays["sigma"] * 1.01
    np.savez(first.path, **arrays)
    with pytest.raises(CgmbenchError, match="content sha256.*corrupt or edited"):
        load_stats(first.key)
    # a run that needs them recomputes them (with a warning naming the corrupt file) instead of using them
    fresh = reference_stats(task, _TinyExtractor(), "clean")
    assert fresh.key == first.key and np.array_equal(fresh.sigma, first.sigma)
    assert load_stats(first.key).content_sha256() == first.content_sha256()
    # save/load round trip of a hand-made object
    stats = ReferenceStats("f" * 64, np.zeros(3), np.eye(3), 10, None, {"reference": "x"})
    save_stats(stats, tmp_path)
    assert load_stats("f" * 64, tmp_path).content_sha256() == stats.content_sha256()


def test_adm_reference_batch_is_read_without_pickle(tmp_path):
    path = tmp_path / "VIRTUAL_test.npz"
    mu, sigma = np.arange(4.0), np.eye(4) * 2
    np.savez(path, mu=mu, sigma=sigma, arr_0=np.zeros((2, 8, 8, 3), np.uint8))
    data = load_adm_batch(path, images=True)
    assert np.array_equal(data["mu"], mu) and np.array_equal(data["sigma"], sigma) and data["arr_0"].shape[0] == 2
    np.savez(tmp_path / "pickled.npz", mu=np.array([{"evil": 1}], dtype=object), sigma=sigma)
    with pytest.raises(CgmbenchError, match="pickled objects are refused"):
        load_adm_batch(tmp_path / "pickled.npz")
    np.savez(tmp_path / "other.npz", arr_0=np.zeros(3))
    with pytest.raises(CgmbenchError, match="not an ADM reference batch"):
        load_adm_batch(tmp_path / "other.npz")
    with pytest.raises(CgmbenchError, match="does not exist"):
        load_adm_batch(tmp_path / "missing.npz")


def test_bad_inputs_give_clear_errors_and_warnings(tmp_path, folders):
    _, real_dir, fake = folders
    store = _store(tmp_path / "samples", fake[:, :, :64, :64].contiguous())
    with pytest.raises(CgmbenchError, match="NaN or infinite"):
        extract_samples(_TinyExtractor(nan=True), store, N_IMAGES, batch_size=4)
    with pytest.raises(CgmbenchError, match="uint8"):  # ExtractorError is a CgmbenchError (and a ValueError)
        _TinyExtractor()(fake.float())
    task = _folder_task(real_dir, 64, ["fid"])
    sample = extract_samples(_TinyExtractor(), store, 3, batch_size=4)
    from cgmbench.scoring.harness import fid_entry

    ref = reference_stats(task, _TinyExtractor(), "clean")
    entry = fid_entry(sample, ref)  # N = 3 < d = 6: biased and singular, still finite; the record says so
    assert np.isfinite(entry["value"]) and "only N=3 samples for d=6" in entry["warnings"][0]
    with pytest.warns(SingularCovarianceWarning):  # the functional core warns
        frechet_distance(ref.mu, ref.sigma, *sample.moments.compute())


# ----------------------------------------------------------------------------------------------
# CLIP extractors (open_clip)
# ----------------------------------------------------------------------------------------------

TINY_CLIP = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 8, "head_width": 16},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}


def test_open_clip_wrapper_matches_open_clip_on_a_tiny_random_model(tmp_path):
    import open_clip
    from safetensors.torch import save_file

    from cgmbench.extractors.clip import build_openclip

    config = tmp_path / "cgmbench-tiny-clip.json"
    config.write_text(json.dumps(TINY_CLIP))
    open_clip.add_model_config(config)
    torch.manual_seed(0)
    reference = open_clip.create_model("cgmbench-tiny-clip", pretrained=None).eval()
    weights = tmp_path / "tiny.safetensors"
    save_file({k: v.contiguous() for k, v in reference.state_dict().items()}, str(weights))
    ext = build_openclip("cgmbench-tiny-clip", weights)
    images = smooth_images(3, 40, 56, seed=9)
    preprocess = open_clip.image_transform(32, is_train=False)
    with torch.no_grad():
        theirs = reference.encode_image(torch.stack([preprocess(Image.fromarray(im.permute(1, 2, 0).numpy()))
                                                     for im in images]))
        theirs_text = reference.encode_text(open_clip.get_tokenizer("cgmbench-tiny-clip")(["a red circle", "x"]))
    assert (ext(images) - theirs.double()).abs().max().item() <= 1e-5
    assert (ext.encode_text(["a red circle", "x"]) - theirs_text.double()).abs().max().item() <= 1e-5
    record = ext.describe()
    assert record["model_name"] == "cgmbench-tiny-clip" and record["weights_sha256"] == ext.weights_sha256
    assert record["protocol"]["name"] == "clip-openai" and ext.feature_dim == 16


@pytest.mark.parametrize("name,hub", [("clip-vit-b-32", "timm/vit_base_patch32_clip_224.openai"),
                                      ("clip-vit-l-14", "timm/vit_large_patch14_clip_224.openai"),
                                      ("clip-vit-l-14-336", "timm/vit_large_patch14_clip_336.openai")])
def test_missing_clip_weights_name_what_to_fetch_and_where(name, hub, _isolated_home, monkeypatch):
    from cgmbench.extractors import clip

    monkeypatch.setattr(clip, "_hf_cached", lambda hub_id: None)  # whatever the machine's HF cache holds
    with pytest.raises(CgmbenchError) as info:
        get_extractor(name)
    message = str(info.value)
    assert hub in message and "open_clip_model.safetensors" in message
    assert str(_isolated_home / "weights") in message and "\n" not in message


# ----------------------------------------------------------------------------------------------
# Runs: cgmbench score, stats, pending reasons
# ----------------------------------------------------------------------------------------------


def test_score_recomputes_a_run_and_keeps_identity_rules(tmp_path, capsys):
    from cgmbench.run.record import identity_digest, load_record
    from cgmbench.run.runner import RunConfig, run

    out = tmp_path / "run"
    record = run(RunConfig(task="shapes-t2i", model="oracle", num_samples=24, out=str(out), progress=False),
                 log=lambda m: None)
    assert {"judge", "fid", "clip_score"} <= set(record["metrics"]) and record["metrics_pending"] == []
    # damage the recorded metrics, then recompute them from the samples
    damaged = json.loads((out / "run.json").read_text())
    damaged["metrics"]["fid"]["value"] = 1e9
    (out / "run.json").write_text(json.dumps(damaged))
    assert _cli(["score", str(out)]) == 0
    rescored = load_record(out / "run.json")
    assert rescored["metrics"] == record["metrics"]
    assert rescored["identity_sha256"] == record["identity_sha256"] == identity_digest(rescored)
    assert "fid:" in capsys.readouterr().out
    # a run whose samples changed is refused
    store = SampleStore.open(out / "samples")
    shard = out / "samples" / store.index["shards"][0]["file"]
    shard.write_bytes(shard.read_bytes()[:-1] + b"\x00")
    assert _cli(["score", str(out)]) == 2
    assert "corrupt" in capsys.readouterr().err


def test_stats_command_caches_then_reuses(capsys):
    assert _cli(["stats", "--task", "shapes-cc", "--max-images", "200", "--json"]) == 0
    first = json.loads(capsys.readouterr().out)
    assert first["extractor"] == "shapes-cnn" and first["protocol"] == "clean" and first["n"] == 200
    assert _cli(["stats", "--task", "shapes-cc", "--max-images", "200", "--json"]) == 0
    second = json.loads(capsys.readouterr().out)
    assert second["reference_stats_sha256"] == first["reference_stats_sha256"] and second["path"] == first["path"]
    assert _cli(["stats", "--task", "shapes-edit"]) == 2  # psnr / lpips need no reference statistics
    assert "no metric that needs reference statistics" in capsys.readouterr().err


def test_metrics_that_cannot_be_computed_stay_pending_with_a_reason(tmp_path):
    from cgmbench.run.runner import RunConfig, run

    rec = run(RunConfig(task="shapes-edit", model="oracle", num_samples=12, out=str(tmp_path / "e"), progress=False),
              log=lambda m: None)
    assert rec["metrics"]["psnr"]["value"] == 100.0  # the oracle returns the true targets: capped PSNR
    # offline there are no LPIPS backbone weights: lpips and the background lpips_bg stay pending, with the reason
    assert [p.split(":")[0] for p in rec["metrics_pending"]] == ["lpips", "lpips_bg"]
    assert all("LPIPS" in p or "lpips" in p.split(":", 1)[1] for p in rec["metrics_pending"])
