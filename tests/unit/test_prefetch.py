"""The feature pipeline's two stages and its background prefetch give exactly the plain features."""

import numpy as np
import pytest
import torch
from inception_helpers import random_fid_inception_state_dict, smooth_images

from cgmbench.errors import CgmbenchError
from cgmbench.extractors import get_extractor
from cgmbench.scoring.reference_stats import background, iter_feature_batches


@pytest.fixture(scope="module")
def inception_weights(tmp_path_factory):
    path = tmp_path_factory.mktemp("prefetch") / "random-inception.pth"
    torch.save(random_fid_inception_state_dict(seed=3), path)
    return path


@pytest.mark.parametrize("protocol", ["tf-exact", "clean"])
@pytest.mark.slow
def test_prepared_stages_equal_forward(inception_weights, protocol):
    ext = get_extractor("inception-v3", weights_path=inception_weights, protocol=protocol)
    images = smooth_images(5, 40, 48, seed=1)
    plain = ext(images, batch_size=2)
    staged = ext.features_of_prepared(ext.prepare(images, 2))
    assert torch.equal(plain, staged)


def test_prefetched_batches_equal_plain_batches():
    ext = get_extractor("shapes-cnn")
    arrays = [smooth_images(n, 32, 32, seed=n).numpy() for n in (3, 5, 2)]
    plain = torch.cat(list(iter_feature_batches(ext, iter(arrays), batch_size=4, prefetch=False)))
    fetched = torch.cat(list(iter_feature_batches(ext, iter(arrays), batch_size=4, prefetch=True)))
    assert plain.shape == (10, ext.feature_dim) and torch.equal(plain, fetched)


def test_errors_in_the_background_reach_the_caller():
    def source():
        yield np.zeros((2, 3, 32, 32), np.uint8)
        raise CgmbenchError("corrupt image x.png")

    ext = get_extractor("shapes-cnn")
    it = iter_feature_batches(ext, source(), batch_size=4)
    assert next(it).shape[0] == 2
    with pytest.raises(CgmbenchError, match="corrupt image x.png"):
        next(it)
    # a wrong dtype is refused in the background stage and reported the same way
    with pytest.raises(CgmbenchError, match="uint8"):
        list(iter_feature_batches(ext, iter([np.zeros((2, 3, 32, 32), np.float32)]), batch_size=4))


def test_background_keeps_order_and_stops_early():
    assert list(background(iter(range(50)), depth=3)) == list(range(50))
    it = background(iter(range(10**9)))
    assert [next(it) for _ in range(5)] == [0, 1, 2, 3, 4]
    it.close()  # the worker thread stops instead of producing a billion items
