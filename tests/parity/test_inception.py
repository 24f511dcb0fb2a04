"""FID Inception extractor: exact agreement with torch-fidelity, clean-fid and pytorch-fid, offline.

The official weights are not available in tests, so a random FID-Inception state_dict under the
official key names is built once per module (convolutions random, BatchNorm statistics calibrated on
smooth-noise images so that activations stay O(1)). The same file is placed in a temporary torch-hub
cache under the official file names, from which torch-fidelity and pytorch-fid load it without
network, and is handed to cgmbench's extractor through ``weights_path=`` or ``$CGMBENCH_HOME``.
"""

from __future__ import annotations

import dataclasses
import shutil

import pytest
import torch
import torch.nn.functional as F
from inception_helpers import (
    PT_FID_WEIGHTS_NAME,
    TF_WEIGHTS_NAME,
    hub_cache_with,
    random_fid_inception_state_dict,
    smooth_images,
)

from cgmbench import weights as weights_registry
from cgmbench.errors import CgmbenchError
from cgmbench.extractors import (
    INCEPTION_WEIGHTS,
    FIDInceptionNetwork,
    FIDInceptionV3,
    get_extractor,
    get_protocol,
    sha256_file,
    tf32_disabled,
    to_uint8,
)
from cgmbench.extractors.resize import resize_bilinear_tf1, resize_pil_bicubic_float
from cgmbench.weights import known_file


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("inception_weights") / "random-fid-inception.pth"
    torch.save(random_fid_inception_state_dict(), path)
    return path




@pytest.fixture(scope="module")
def torch_home(tmp_path_factory, weights_file):
    """A torch-hub cache holding the random weights under both official file names."""
    return hub_cache_with(weights_file, tmp_path_factory.mktemp("torch_home"))


@pytest.fixture(scope="module")
def images():
    return smooth_images(6, 64, 64, seed=7)


@pytest.fixture(scope="module")
def extractor(weights_file):
    return FIDInceptionV3(protocol="tf-exact", weights_path=weights_file)


@pytest.fixture(scope="module")
def ours(extractor, images):
    return extractor.extract(images)


@pytest.fixture(scope="module")
def fidelity_outputs(torch_home, images):
    """torch-fidelity's features on the same images, its weights loaded from the (offline) hub cache."""
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TORCH_HOME", str(torch_home))
        assert (torch_home / "hub" / "checkpoints" / TF_WEIGHTS_NAME).is_file()
        assert torch.hub.get_dir() == str(torch_home / "hub")  # so nothing is downloaded
        reference = FeatureExtractorInceptionV3("inception-v3-compat", ["2048", "logits_unbiased", "logits"])
    with torch.no_grad():
        pool3, logits_unbiased, logits = reference(images)
    return {"pool3": pool3, "logits_unbiased": logits_unbiased, "logits": logits}


# ----------------------------------------------------------------------------------------------
# tf-exact protocol vs torch-fidelity
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [(32, 32), (64, 64), (299, 299), (512, 512), (37, 91), (600, 300)])
def test_tf1_resize_is_bit_exact_with_torch_fidelity(size):
    from torch_fidelity.interpolate_compat_tensorflow import interpolate_bilinear_2d_like_tensorflow1x

    x = smooth_images(2, *size, seed=3)
    for dtype in (torch.float32, torch.float64):
        ours = resize_bilinear_tf1(x.to(dtype), (299, 299))
        theirs = interpolate_bilinear_2d_like_tensorflow1x(x.to(dtype), size=(299, 299), align_corners=False)
        assert ours.dtype == dtype and ours.shape == (2, 3, 299, 299)
        assert torch.equal(ours, theirs)


@pytest.mark.slow
def test_tf_exact_features_and_logits_equal_torch_fidelity(ours, fidelity_outputs):
    for key in ("pool3", "logits_unbiased", "logits"):
        assert ours[key].dtype == torch.float64 and ours[key].device.type == "cpu"
        assert ours[key].shape == fidelity_outputs[key].shape
        diff = (ours[key] - fidelity_outputs[key].double()).abs().max().item()
        assert diff <= 1e-5, (key, diff)
    # the random network is informative: features are O(1) and differ between images
    assert 0.05 < ours["pool3"].abs().mean().item() < 20
    assert (ours["pool3"][0] - ours["pool3"][1]).abs().max().item() > 1e-2
    # the fc bias is what separates the two logits
    assert (ours["logits"] - ours["logits_unbiased"]).abs().max().item() > 1e-3


@pytest.mark.slow
def test_call_and_logits_methods_match_extract_and_do_not_depend_on_batch_size(extractor, images, ours):
    flags_seen = []
    hook = extractor.network.register_forward_pre_hook(
        lambda module, args: flags_seen.append(
            (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
        )
    )
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = True, True
    try:
        features = extractor(images, batch_size=4)  # chunks of 4 and 2
        logits = extractor.logits(images[:3], batch_size=1)
        logits_with_bias = extractor.logits(images[:3], bias=True)
        # the caller's TF32 settings are restored after the pass
        assert (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32) == (True, True)
    finally:
        hook.remove()
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved
    assert flags_seen and all(flags == (False, False) for flags in flags_seen)
    assert features.dtype == torch.float64 and features.shape == (6, extractor.feature_dim)
    assert (features - ours["pool3"]).abs().max().item() <= 1e-5
    assert logits.shape == (3, 1008)
    assert (logits - ours["logits_unbiased"][:3]).abs().max().item() <= 1e-5
    assert (logits_with_bias - ours["logits"][:3]).abs().max().item() <= 1e-5


@pytest.mark.slow
def test_float64_compute_matches_torch_fidelity_run_in_float64(weights_file, images, ours):
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    ext = FIDInceptionV3(weights_path=weights_file, compute_dtype=torch.float64)
    reference = FeatureExtractorInceptionV3(
        "inception-v3-compat", ["2048"], feature_extractor_weights_path=str(weights_file)
    )
    # torch-fidelity 0.4.0's feature_extractor_internal_dtype="float64" is a no-op (its text_to_dtype
    # maps "float64" to torch.float32), so switch the reference to float64 by hand.
    reference.feature_extractor_internal_dtype = torch.float64
    reference.double()
    with torch.no_grad():
        (theirs,) = reference(images[:2])  # computed in float64, returned as float32
    ours64 = ext(images[:2])
    assert (ours64 - theirs.double()).abs().max().item() <= 1e-6
    # float64 really changes the computation (float32 rounding accumulates over ~95 layers)
    assert (ours64 - ours["pool3"][:2]).abs().max().item() > 1e-6
    assert ext.describe()["compute_dtype"] == "float64"


# ----------------------------------------------------------------------------------------------
# clean and pytorch-fid protocols
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [(64, 64), (48, 80), (512, 384)])
def test_clean_resize_equals_clean_fid(size):
    from cleanfid.resize import build_resizer

    x = smooth_images(3, *size, seed=11)
    clean_fid_resize = build_resizer("clean")
    ours = resize_pil_bicubic_float(x, (299, 299))
    network_input = get_protocol("clean")(x)
    for i in range(x.shape[0]):
        theirs = torch.from_numpy(clean_fid_resize(x[i].permute(1, 2, 0).numpy())).permute(2, 0, 1)
        assert theirs.dtype == torch.float32
        assert torch.equal(ours[i], theirs)
        # clean-fid's InceptionV3W then feeds (x - 128) / 128 to the network
        assert torch.equal(network_input[i], (theirs - 128) / 128)
    # antialiased bicubic is a different image than TF1 bilinear: the protocols must not be confused
    assert (network_input - get_protocol("tf-exact")(x)).abs().max().item() > 1e-2


def test_pytorch_fid_protocol_equals_pytorch_fid(weights_file, torch_home, images, monkeypatch):
    from pytorch_fid.inception import InceptionV3

    monkeypatch.setenv("TORCH_HOME", str(torch_home))
    reference = InceptionV3([InceptionV3.BLOCK_INDEX_BY_DIM[2048]]).eval()  # loads the hub-cached file
    ext = get_extractor("inception-v3", weights_path=weights_file, protocol="pytorch-fid")
    batch = images[:3]
    with torch.no_grad():
        theirs = reference(batch.float() / 255)[0].flatten(1)  # pytorch-fid feeds ToTensor() images in [0, 1]
    assert (ext(batch) - theirs.double()).abs().max().item() <= 1e-5
    assert ext.describe()["protocol"]["name"] == "pytorch-fid"


def test_protocol_registry_records_name_and_description():
    for name in ("tf-exact", "clean", "pytorch-fid"):
        record = get_protocol(name).to_dict()
        assert record["name"] == name and len(record["description"]) > 20
        assert set(record) == {"name", "description", "resize", "normalisation"}
    with pytest.raises(ValueError, match="unknown FID protocol 'adm'.*tf-exact"):
        get_protocol("adm")


# ----------------------------------------------------------------------------------------------
# Weights: official location, sha256, user-supplied files, wrong checkpoints
# ----------------------------------------------------------------------------------------------


def test_missing_official_weights_raise_clear_error(_isolated_home):
    destination = _isolated_home / "weights" / TF_WEIGHTS_NAME
    with pytest.raises(CgmbenchError) as info:
        get_extractor("inception-v3")
    message = str(info.value)
    assert "\n" not in message  # the command line prints it as one line
    assert INCEPTION_WEIGHTS.url in message
    assert "6726825d0af5f729cebd5821db510b11b1cfad8faad88a03f1befd49fb9129b2" in message
    assert str(destination) in message
    assert "cgmbench weights fetch inception-v3" in message
    with pytest.raises(CgmbenchError, match="does not exist"):
        FIDInceptionV3(weights_path=_isolated_home / "nowhere.pth")


def test_official_location_is_sha256_verified(_isolated_home, weights_file, monkeypatch):
    destination = _isolated_home / "weights" / TF_WEIGHTS_NAME
    destination.parent.mkdir(parents=True)
    shutil.copyfile(weights_file, destination)
    digest = sha256_file(weights_file)

    # one registry: the extractor's spec reads file name, URL and sha256 from cgmbench.weights
    official = known_file("inception-v3")
    assert INCEPTION_WEIGHTS.filename == official.filename == TF_WEIGHTS_NAME
    assert INCEPTION_WEIGHTS.sha256 == official.sha256 and official.size == 95_628_359

    # the random file is not the official one: refused at the official location
    with pytest.raises(CgmbenchError, match=f"sha256 {digest}, expected {INCEPTION_WEIGHTS.sha256}"):
        FIDInceptionV3()

    # pretend the random file is the official one: loaded from $CGMBENCH_HOME and marked official
    monkeypatch.setitem(weights_registry._REGISTRY, "inception-v3", dataclasses.replace(official, sha256=digest))
    assert INCEPTION_WEIGHTS.sha256 == digest
    ext = FIDInceptionV3(protocol="clean")
    assert ext.is_official_weights and ext.weights_sha256 == digest
    assert ext.weights_path == destination
    assert ext.describe()["protocol"]["name"] == "clean"


def test_user_weights_are_recorded_as_non_standard(extractor, weights_file):
    assert extractor.name == "inception-v3" and extractor.feature_dim == 2048
    assert extractor.weights_sha256 == sha256_file(weights_file)
    assert extractor.is_official_weights is False
    record = extractor.describe()
    assert record["weights_sha256"] == extractor.weights_sha256 and record["is_official_weights"] is False
    assert record["official_weights_sha256"] == INCEPTION_WEIGHTS.sha256 and record["tf32"] is False
    # extractors never leave eval mode (BatchNorm would switch to batch statistics)
    extractor.train()
    assert not extractor.training and not extractor.network.Mixed_7c.branch_pool.bn.training


def test_wrong_checkpoint_names_the_mismatching_keys(tmp_path, weights_file):
    state = torch.load(weights_file, weights_only=True)
    del state["Mixed_6b.branch1x1.conv.weight"]
    state["fc.weight"] = torch.zeros(1000, 2048)
    state["aux.weight"] = torch.zeros(1)
    bad = tmp_path / "bad.pth"
    torch.save(state, bad)
    with pytest.raises(ValueError) as info:
        FIDInceptionV3(weights_path=bad)
    message = str(info.value)
    assert "missing keys: Mixed_6b.branch1x1.conv.weight" in message
    assert "unexpected keys: aux.weight" in message
    assert "fc.weight: file (1000, 2048) vs model (1008, 2048)" in message


class _NotATensor:
    pass


def test_pickled_objects_are_refused(tmp_path):
    path = tmp_path / "pickle.pth"
    torch.save({"x": _NotATensor()}, path)
    with pytest.raises(ValueError, match="weights-only"):
        FIDInceptionV3(weights_path=path)


def test_unknown_extractor_name_lists_available():
    with pytest.raises(ValueError, match=r"unknown feature extractor 'clip'.*inception-v3") as info:
        get_extractor("clip")
    assert isinstance(info.value, CgmbenchError)  # the command line prints it as one line


# ----------------------------------------------------------------------------------------------
# Input validation
# ----------------------------------------------------------------------------------------------


def test_bad_inputs_raise_value_errors(extractor, images):
    with pytest.raises(ValueError, match="dtype torch.uint8.*to_uint8"):
        extractor(images.float() / 255)
    with pytest.raises(ValueError, match="channels-last.*permute"):
        extractor(images.permute(0, 2, 3, 1))
    with pytest.raises(ValueError, match="unsqueeze"):
        extractor(images[0])
    with pytest.raises(ValueError, match="grayscale"):
        extractor(images[:, :1])
    with pytest.raises(ValueError, match="torch.Tensor"):
        extractor(images.numpy())
    with pytest.raises(ValueError, match="dtype torch.uint8"):
        extractor.logits(images.to(torch.int64))
    with pytest.raises(ValueError, match="batch_size"):
        extractor(images, batch_size=0)
    for name in ("tf-exact", "clean", "pytorch-fid"):
        with pytest.raises(ValueError, match="uint8"):
            get_protocol(name)(images.float())


def test_to_uint8_rounds_and_checks_the_range():
    x = torch.tensor([0.0, 0.4 / 255, 0.6 / 255, 0.5, 1.0]).view(1, 1, 1, 5).expand(1, 3, 1, 5)
    assert to_uint8(x)[0, 0, 0].tolist() == [0, 0, 1, 128, 255]
    assert to_uint8(x * 2 - 1, value_range=(-1, 1))[0, 0, 0].tolist() == [0, 0, 1, 128, 255]
    with pytest.raises(ValueError, match="outside value_range"):
        to_uint8(x * 1.1)
    with pytest.raises(ValueError, match="NaN"):
        to_uint8(torch.full((1, 3, 2, 2), float("nan")))
    with pytest.raises(ValueError, match="float tensor"):
        to_uint8(torch.zeros(1, 3, 2, 2, dtype=torch.uint8))


def test_tf32_context_restores_flags():
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    try:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = True, True
        with tf32_disabled():
            assert not torch.backends.cudnn.allow_tf32 and not torch.backends.cuda.matmul.allow_tf32
        assert torch.backends.cudnn.allow_tf32 and torch.backends.cuda.matmul.allow_tf32
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def test_clean_protocol_returns_to_the_input_device_and_dtype():
    x = smooth_images(1, 40, 40, seed=5)
    out = get_protocol("clean")(x, dtype=torch.float64)
    assert out.dtype == torch.float64 and out.shape == (1, 3, 299, 299) and out.device == x.device
    # clipped to [0, 255] before (x - 128) / 128
    assert out.min().item() >= -1.0 and out.max().item() <= 127 / 128
    assert torch.equal(out, get_protocol("clean")(x).double())


@pytest.mark.parametrize("shape,stride,padding", [((2, 3, 11, 11), 2, 0), ((1, 4, 10, 9), 2, 0), ((2, 3, 8, 8), 1, 1)])
def test_max_pool_3x3_equals_torch_bit_for_bit(shape, stride, padding):
    from cgmbench.extractors.inception import max_pool_3x3

    x = torch.randn(*shape, generator=torch.Generator().manual_seed(0)) - 3  # negatives: padding must be -inf
    x[0, 0, 1, 1] = float("nan")
    ours, theirs = max_pool_3x3(x, stride, padding), F.max_pool2d(x, 3, stride, padding)
    assert ours.shape == theirs.shape
    assert torch.equal(ours.nan_to_num(7.0), theirs.nan_to_num(7.0))
    assert torch.equal(ours.isnan(), theirs.isnan())
