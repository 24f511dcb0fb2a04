"""Issue 18: digest provenance of every registry entry, the recipes, the CIFAR-10 batch reader, sFID features and
the two harness-only recipes on tiny local files in the official formats (random Inception weights), each
checked against torch-fidelity / numpy computed independently."""

from __future__ import annotations

import hashlib
import json
import pickle
import re

import numpy as np
import pytest
import torch

from cgmbench import weights
from cgmbench.cli.main import main
from cgmbench.errors import CgmbenchError, IntegrityError
from cgmbench.reproduce.cifar import load_split, parse_batch
from cgmbench.reproduce.recipes import load_recipe, recipe_names, verdict
from inception_helpers import random_fid_inception_state_dict, smooth_images

torch.set_num_threads(1)


_SHA256_HEX = re.compile(r"[0-9a-f]{64}")


def _digest_problem(kf: weights.KnownFile) -> str | None:
    """Why ``kf`` breaks the registry's digest rule (None when it keeps it): either pinned (a 64-hex SHA-256 and
    the URL of the publisher's listing it was copied from, or why cgmbench pinned an unlisted file), or a
    digest_source starting with "none published" (then the digest is recorded at first fetch); a hub entry's
    source names the hub file it is about."""
    src = kf.digest_source or ""
    if kf.sha256:
        if not _SHA256_HEX.fullmatch(kf.sha256):
            return f"pinned sha256 {kf.sha256!r} is not 64 lower-case hex digits"
        if not ("http" in src or src.startswith("none published")):
            return f"pinned without the URL it was taken from: {src!r}"
    elif not src.startswith("none published"):
        return f"not pinned and not 'none published': {src!r}"
    if kf.hub_id and kf.hub_filename and kf.hub_filename not in src:
        return f"the digest source does not name the hub file {kf.hub_filename!r}: {src!r}"
    return None


def test_the_digest_rule_rejects_unpinned_and_unsourced_entries():
    ok = weights.KnownFile(name="t", filename="f", sha256="a" * 64, digest_source="https://example.org/listing")
    assert _digest_problem(ok) is None
    assert _digest_problem(weights.KnownFile(name="t", filename="f", digest_source="none published (looked up: x)")) \
        is None
    for bad in (weights.KnownFile(name="t", filename="f", digest_source="published, not pinned: https://x"),
                weights.KnownFile(name="t", filename="f"),
                weights.KnownFile(name="t", filename="f", sha256="a" * 64, digest_source="copied by hand"),
                weights.KnownFile(name="t", filename="f", sha256="A" * 64, digest_source="https://x"),
                weights.KnownFile(name="t", filename="f", sha256="a" * 63, digest_source="https://x"),
                weights.KnownFile(name="t", filename="f", hub_id="o/r", hub_filename="w.safetensors",
                                  digest_source="none published (looked up: the model card)")):
        assert _digest_problem(bad), bad


def test_every_registry_entry_is_pinned_with_its_source_or_says_none_published(capsys):
    import cgmbench.reproduce.files  # noqa: F401

    files = weights.known_files()
    assert {"inception-v3", "dit:xl-2-256", "sd3:medium", "cifar10:python", "adm:ref-imagenet256",
            "clip-vit-l-14", "latte:ucf101", "videomae-v2-g-ssv2", "sd-vae-ft-ema"} <= set(files)
    problems = {name: _digest_problem(kf) for name, kf in files.items()}
    assert not {k: v for k, v in problems.items() if v}
    for kf in files.values():
        assert weights.digest_provenance(kf)
    assert main(["weights", "list"]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert len(listed) == len(files) and not any(" not-pinned " in line for line in listed)


def test_weights_fetch_prints_the_digest_it_recorded_or_checked(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CGMBENCH_HOME", str(tmp_path / "home"))
    published = tmp_path / "published.bin"
    published.write_bytes(bytes(range(256)) * 300)
    want = hashlib.sha256(published.read_bytes()).hexdigest()
    # test entries leave with the test (monkeypatch.setitem deletes them at teardown)
    monkeypatch.setitem(weights._REGISTRY, "digest-test:unlisted", weights.KnownFile(
        name="digest-test:unlisted", filename="unlisted.bin", url=published.as_uri(),
        digest_source="none published (looked up: nowhere, a test file)"))
    assert main(["weights", "fetch", "digest-test:unlisted"]) == 0
    out = capsys.readouterr().out
    assert f"unlisted.bin  sha256 {want}" in out
    assert f"checked against: sha256 {want} recorded at first fetch (none published (looked up: nowhere" in out
    assert json.loads((tmp_path / "home" / "weights" / "sha256.json").read_text()) == {"unlisted.bin": want}
    # the recorded digest guards the file from then on
    (tmp_path / "home" / "weights" / "unlisted.bin").write_bytes(b"tampered")
    with pytest.raises(IntegrityError, match=want):
        weights.resolve("digest-test:unlisted")

    monkeypatch.setitem(weights._REGISTRY, "digest-test:pinned", weights.KnownFile(
        name="digest-test:pinned", filename="pinned.bin", url=published.as_uri(), sha256=want,
        digest_source="https://example.org/listing"))
    assert main(["weights", "fetch", "digest-test:pinned"]) == 0
    assert f"checked against: sha256 {want} pinned from https://example.org/listing" in capsys.readouterr().out
    monkeypatch.setitem(weights._REGISTRY, "digest-test:wrong-pin", weights.KnownFile(
        name="digest-test:wrong-pin", filename="wrong.bin", url=published.as_uri(), sha256="0" * 64,
        digest_source="https://example.org/listing"))
    assert main(["weights", "fetch", "digest-test:wrong-pin"]) == 2
    errors = [line for line in capsys.readouterr().err.split("\n") if "cgmbench: error" in line]  # past the bar
    assert len(errors) == 1 and want in errors[0] and "0" * 64 in errors[0]
    assert not (tmp_path / "home" / "weights" / "wrong.bin").exists()


def test_md5_listed_by_the_publisher_is_verified(tmp_path):
    kf = weights.KnownFile(name="t", filename="f.bin", md5="0" * 32, digest_source="none published")
    path = tmp_path / "f.bin"
    path.write_bytes(b"abc")
    with pytest.raises(IntegrityError):
        weights.verify(kf, path)
    ok = weights.KnownFile(name="t", filename="f.bin", md5="900150983cd24fb0d6963f7d28e17f72")
    assert weights.verify(ok, path) == weights.sha256_file(path)


def test_recipes_load_and_list(capsys):
    names = recipe_names()
    for required in ("dit-xl2-256", "dit-xl2-512", "ldm-cin256-v2", "ldm-txt2img-coco30k", "pix2pix-facades",
                     "cyclegan-horse2zebra", "adm-evaluator-imagenet256", "torch-fidelity-cifar10"):
        assert required in names
    for n in names:
        r = load_recipe(n)
        assert r.targets and r.source and r.gpu_hours > 0 and r.fetch
        assert all(t.why for t in r.targets)
    assert main(["reproduce", "--list"]) == 0
    out = capsys.readouterr().out
    assert "dit-xl2-256" in out and "fid 2.27±0.1" in out and "sfid 6.14043" in out
    ok, line = verdict(load_recipe("dit-xl2-256"), {"fid": 2.31}, {"fid": [2.29, 2.33]})
    assert ok and line == "dit-xl2-256: reproduced: fid 2.31 [2.29, 2.33] vs 2.27 ± 0.1"
    ok, line = verdict(load_recipe("dit-xl2-256"), {"fid": 2.5})
    assert not ok and "not reproduced" in line


def test_reproduce_lists_all_missing_files_at_once(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CGMBENCH_HOME", str(tmp_path))
    assert main(["reproduce", "dit-xl2-256", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "4 file(s)" in err
    for name in ("dit:xl-2-256", "sd-vae-ft-ema", "inception-v3", "adm:ref-imagenet256"):
        assert f"cgmbench weights fetch {name}" in err


def _cifar_batch(images: np.ndarray, labels) -> bytes:
    return pickle.dumps({b"batch_label": b"testing batch 1 of 1", b"labels": list(labels),
                         b"data": images.reshape(len(images), -1), b"filenames": [b"x.png"] * len(images)},
                        protocol=2)


def test_cifar_batches_read_without_unpickling_objects(tmp_path):
    imgs = smooth_images(5, 32, 32, seed=3).numpy()
    got, labels = parse_batch(_cifar_batch(imgs, [1, 2, 3, 4, 5]), "t")
    assert np.array_equal(got, imgs) and labels.tolist() == [1, 2, 3, 4, 5]

    class Evil:
        def __reduce__(self):
            import os
            return (os.system, ("echo pwned",))

    with pytest.raises(IntegrityError, match="not allowed"):
        parse_batch(pickle.dumps({b"data": Evil()}), "evil")
    with pytest.raises(IntegrityError, match="uint8"):
        parse_batch(pickle.dumps({b"data": np.zeros((2, 3072), np.float32), b"labels": [0, 1]}), "float")
    (tmp_path / "cifar-10-batches-py").mkdir()
    (tmp_path / "cifar-10-batches-py" / "test_batch").write_bytes(_cifar_batch(imgs, range(5)))
    assert np.array_equal(load_split(tmp_path, "test", limit=3), imgs[:3])


@pytest.fixture(scope="module")
def inception_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("w") / "inception-random.pth"
    torch.save(random_fid_inception_state_dict(seed=0), path)
    return path


def _fidelity_extractor(path, features):
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    return FeatureExtractorInceptionV3("inception-v3-compat", features, feature_extractor_weights_path=str(path))


def test_spatial_features_are_mixed_6d_branch1x1_first_7_channels_nhwc(inception_file):
    from cgmbench.extractors.inception import FIDInceptionV3

    images = smooth_images(3, 40, 40, seed=5)
    ours = FIDInceptionV3(weights_path=inception_file).extract(images, outputs=("spatial", "pool3"))
    ref = _fidelity_extractor(inception_file, ["2048"])
    grabbed = {}
    ref.Mixed_6d.branch1x1.register_forward_hook(lambda m, i, o: grabbed.__setitem__("x", o))
    with torch.no_grad():
        pool = ref(images)[0]
    expected = grabbed["x"][:, :7].permute(0, 2, 3, 1).reshape(3, -1).double()
    assert ours["spatial"].shape == (3, 2023)
    torch.testing.assert_close(ours["spatial"], expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(ours["pool3"], pool.double(), rtol=1e-5, atol=1e-6)


def _fd(a, b):  # TTUR's formula with scipy's sqrtm, as the ADM evaluator
    from scipy import linalg

    mu1, s1, mu2, s2 = a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False)
    covmean = linalg.sqrtm(s1 @ s2).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


@pytest.mark.slow
def test_adm_recipe_on_tiny_official_format_batches(tmp_path, inception_file):
    from cgmbench.reproduce.runner import reproduce

    ref_imgs = smooth_images(10, 32, 32, seed=11).numpy().transpose(0, 2, 3, 1)
    smp_imgs = smooth_images(10, 32, 32, seed=12).numpy().transpose(0, 2, 3, 1)
    np.savez(tmp_path / "ref.npz", arr_0=ref_imgs)
    np.savez(tmp_path / "sample.npz", arr_0=smp_imgs)
    files = {"inception-v3": str(inception_file), "adm:ref-imagenet256": str(tmp_path / "ref.npz"),
             "adm:samples-admnet-guided-upsampled-256": str(tmp_path / "sample.npz")}
    res = reproduce("adm-evaluator-imagenet256", out=tmp_path / "out", files=files, log=lambda m: None)
    assert res["reproduced"] is False and res["verdict"].startswith("adm-evaluator-imagenet256: not reproduced: fid ")

    # independent: torch-fidelity's network, a hook for mixed_6/conv, scipy's sqrtm, the evaluator's IS formula
    ref = _fidelity_extractor(inception_file, ["2048", "logits_unbiased"])
    grabbed = []
    ref.Mixed_6d.branch1x1.register_forward_hook(lambda m, i, o: grabbed.append(o[:, :7].permute(0, 2, 3, 1)))
    with torch.no_grad():
        (pa, _), (pb, lb) = (ref(torch.from_numpy(x.transpose(0, 3, 1, 2).copy())) for x in (ref_imgs, smp_imgs))
    sa, sb = (g.reshape(10, -1).double().numpy() for g in grabbed)
    pa, pb = pa.double().numpy(), pb.double().numpy()
    v = res["values"]
    assert v["fid"] == pytest.approx(_fd(pb, pa), rel=1e-4)
    assert v["sfid"] == pytest.approx(_fd(sb, sa), rel=1e-4)
    p = torch.softmax(lb.double(), 1).numpy()
    assert v["is"] == pytest.approx(float(np.exp((p * (np.log(p) - np.log(p.mean(0)))).sum(1).mean())), rel=1e-6)
    d = lambda x, y: ((x[:, None] - y[None]) ** 2).sum(-1)  # noqa: E731 - exact squared distances
    ra, rb = np.sort(d(pa, pa), 1)[:, 3], np.sort(d(pb, pb), 1)[:, 3]
    precision = (d(pb, pa) <= ra[None]).any(1).mean()
    recall = (d(pa, pb) <= rb[None]).any(1).mean()
    assert abs(v["precision"] - precision) <= 0.1 and abs(v["recall"] - recall) <= 0.1  # fp16: 1 of 10 may flip
    # resumable: the same command returns the finished result
    assert reproduce("adm-evaluator-imagenet256", out=tmp_path / "out", files=files, log=lambda m: None) == res


@pytest.mark.slow
def test_cifar10_recipe_matches_torch_fidelity_on_tiny_batches(tmp_path, inception_file):
    import torch_fidelity

    from cgmbench.reproduce.runner import reproduce

    train = smooth_images(12, 32, 32, seed=21).numpy()
    test = smooth_images(12, 32, 32, seed=22).numpy()
    root = tmp_path / "cifar-10-batches-py"
    root.mkdir()
    (root / "data_batch_1").write_bytes(_cifar_batch(train, range(12)))
    (root / "test_batch").write_bytes(_cifar_batch(test, range(12)))
    res = reproduce("torch-fidelity-cifar10", out=tmp_path / "out", log=lambda m: None,
                    files={"inception-v3": str(inception_file), "cifar10:python": str(root)})

    class DS(torch.utils.data.Dataset):
        def __init__(self, x):
            self.x = torch.from_numpy(x)

        def __len__(self):
            return len(self.x)

        def __getitem__(self, i):
            return self.x[i]

    m = torch_fidelity.calculate_metrics(input1=DS(train), input2=DS(test), fid=True, isc=True, verbose=False,
                                         feature_extractor_weights_path=str(inception_file), cuda=False)
    assert res["values"]["fid"] == pytest.approx(m["frechet_inception_distance"], rel=1e-4)
    assert res["values"]["is"] == pytest.approx(m["inception_score_mean"], rel=1e-5)
    assert res["provenance"]["n_fid"] == [12, 12]
