"""Exactness of the metric functional core against the reference libraries, on identical features.

References: pytorch-fid / clean-fid (``scipy.linalg.sqrtm`` FID), torch-fidelity (eigvals FID,
KID, IS, precision/recall), torchmetrics (FID, KID, IS, CLIP score), closed forms for
Gaussians and RBF kernels (scikit-learn). Everything is offline and CPU-only.
"""

from __future__ import annotations

import types
import warnings

import numpy as np
import pytest
import scipy.linalg
import torch

from cgmbench.metrics import (
    FrechetDistance,
    SingularCovarianceWarning,
    StreamingMoments,
    bootstrap_ci,
    bootstrap_fid,
    clip_score,
    cmmd,
    feature_statistics,
    fid_infinity,
    frechet_distance,
    inception_score,
    kernel_inception_distance,
    precision_recall,
)
from cgmbench.metrics.bootstrap import _weighted_stats


def _rel(a: float, b: float) -> float:
    return abs(a - b) / abs(b)


def _spiked_covariance(rng: np.random.Generator, d: int, rank: int = 64) -> np.ndarray:
    """Well-conditioned SPD matrix: diagonal in [0.5, 2] plus a random rank-``rank`` spike."""
    u = rng.standard_normal((d, rank)) / np.sqrt(rank)
    return np.diag(rng.uniform(0.5, 2.0, d)) + u @ u.T


class _IdentityExtractor(torch.nn.Module):
    """Feature 'network' for torchmetrics metric classes: the input already is the feature matrix."""

    def __init__(self, d: int):
        super().__init__()
        self.num_features = d

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


# ---------------------------------------------------------------------------------------------
# Fréchet distance
# ---------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_frechet_matches_pytorch_fid_and_clean_fid_at_2048(monkeypatch):
    from cleanfid.fid import frechet_distance as cleanfid_fd
    from pytorch_fid.fid_score import calculate_frechet_distance

    rng = np.random.default_rng(0)
    d = 2048
    mu1, mu2 = rng.standard_normal(d), rng.standard_normal(d) * 0.5 + 0.1
    sigma1, sigma2 = _spiked_covariance(rng, d), _spiked_covariance(rng, d)

    # Both libraries call scipy.linalg.sqrtm(sigma1 @ sigma2) on the same product; memoise the
    # real sqrtm so the slow Schur decomposition of the 2048 x 2048 product runs only once.
    real_sqrtm, cache, calls = scipy.linalg.sqrtm, {}, []

    def memo_sqrtm(a, *args, **kwargs):
        key = (a.tobytes(), args, tuple(sorted(kwargs.items())))
        calls.append(key in cache)
        if key not in cache:
            cache[key] = real_sqrtm(a, *args, **kwargs)
        return cache[key]

    monkeypatch.setattr(scipy.linalg, "sqrtm", memo_sqrtm)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # sqrtm(disp=False) is deprecated in SciPy 1.17
        ref_pytorch_fid = float(calculate_frechet_distance(mu1, sigma1, mu2, sigma2))
        ref_clean_fid = float(cleanfid_fd(mu1, sigma1, mu2, sigma2))
    assert calls == [False, True]  # both references really went through sqrtm

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # well-conditioned: no singular-covariance warning
        ours = frechet_distance(mu1, sigma1, mu2, sigma2)
    assert _rel(ours, ref_pytorch_fid) <= 1e-8
    assert _rel(ours, ref_clean_fid) <= 1e-8


def test_frechet_matches_torch_fidelity_and_torchmetrics_from_features():
    from torch_fidelity.metric_fid import fid_statistics_to_metric
    from torchmetrics.image.fid import _compute_fid

    rng = np.random.default_rng(1)
    a = np.maximum(rng.standard_normal((1500, 256)), 0)  # ReLU-like, like pool3 features
    b = np.maximum(rng.standard_normal((1200, 256)) * 1.1 + 0.05, 0)
    mu_a, sig_a = feature_statistics(a)
    mu_b, sig_b = feature_statistics(b)
    np.testing.assert_array_equal(mu_a, np.mean(a, axis=0))
    np.testing.assert_array_equal(sig_a, np.cov(a, rowvar=False))

    tf_value = fid_statistics_to_metric({"mu": mu_a, "sigma": sig_a}, {"mu": mu_b, "sigma": sig_b}, verbose=False)
    tm_value = _compute_fid(*(torch.from_numpy(t) for t in (mu_a, sig_a, mu_b, sig_b)))
    ours = frechet_distance(mu_a, sig_a, mu_b, sig_b)
    assert _rel(ours, tf_value["frechet_inception_distance"]) <= 1e-10
    assert _rel(ours, float(tm_value)) <= 1e-10
    assert _rel(frechet_distance(mu_b, sig_b, mu_a, sig_a), ours) <= 1e-12  # symmetric


def test_frechet_closed_forms():
    rng = np.random.default_rng(2)
    d = 64
    # commuting (diagonal) covariances: FD = |dmu|^2 + sum (sqrt(a) - sqrt(b))^2
    a, b = rng.uniform(0.1, 3.0, d), rng.uniform(0.1, 3.0, d)
    mu1, mu2 = rng.standard_normal(d), rng.standard_normal(d)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    assert _rel(frechet_distance(mu1, np.diag(a), mu2, np.diag(b)), expected) <= 1e-12

    # scalar times identity against a dense covariance with known spectrum
    q, _ = np.linalg.qr(rng.standard_normal((d, d)))
    lam = rng.uniform(0.2, 4.0, d)
    dense = (q * lam) @ q.T
    c = 1.7
    expected = d * c + lam.sum() - 2 * np.sqrt(c) * np.sqrt(lam).sum()
    assert _rel(frechet_distance(np.zeros(d), c * np.eye(d), np.zeros(d), dense), expected) <= 1e-10

    # identical statistics: zero up to rounding
    assert abs(frechet_distance(mu1, dense, mu1, dense)) < 1e-9


def test_frechet_fewer_samples_than_dims_is_finite_and_warns():
    from torch_fidelity.metric_fid import fid_statistics_to_metric

    rng = np.random.default_rng(3)
    x, y = rng.standard_normal((100, 256)), rng.standard_normal((120, 256)) + 0.3
    with pytest.warns(SingularCovarianceWarning):
        mu_x, sig_x = feature_statistics(x)
        mu_y, sig_y = feature_statistics(y)
    with pytest.warns(SingularCovarianceWarning, match="rank"):
        value = frechet_distance(mu_x, sig_x, mu_y, sig_y)
    assert np.isfinite(value)
    ref = fid_statistics_to_metric({"mu": mu_x, "sigma": sig_x}, {"mu": mu_y, "sigma": sig_y}, verbose=False)
    assert _rel(value, ref["frechet_inception_distance"]) <= 1e-6


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_frechet_rejects_non_finite(bad):
    mu, sigma = np.zeros(4), np.eye(4)
    mu_bad = mu.copy()
    mu_bad[2] = bad
    with pytest.raises(ValueError, match="non-finite"):
        frechet_distance(mu_bad, sigma, mu, sigma)
    sigma_bad = sigma.copy()
    sigma_bad[1, 1] = bad
    with pytest.raises(ValueError, match="sigma2 contains 1 non-finite"):
        frechet_distance(mu, sigma, mu, sigma_bad)


def test_frechet_rejects_bad_shapes():
    with pytest.raises(ValueError, match="shape"):
        frechet_distance(np.zeros(3), np.eye(3), np.zeros(3), np.eye(4))
    with pytest.raises(ValueError, match="mu1 has 3 dims but mu2 has 4"):
        frechet_distance(np.zeros(3), np.eye(3), np.zeros(4), np.eye(3))
    with pytest.raises(ValueError, match="not symmetric"):
        frechet_distance(np.zeros(2), np.array([[1.0, 0.5], [0.0, 1.0]]), np.zeros(2), np.eye(2))


# ---------------------------------------------------------------------------------------------
# Streaming statistics
# ---------------------------------------------------------------------------------------------


def test_streaming_moments_equal_numpy_one_pass_and_merged_shards():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((1000, 48)) * rng.uniform(0.1, 3, 48) + 200.0  # large offset: shift matters
    mu_ref, sig_ref = np.mean(x, axis=0), np.cov(x, rowvar=False)

    one = StreamingMoments()
    for batch in np.array_split(x, 7):
        one.update(batch)
    mu, sig = one.compute()
    np.testing.assert_allclose(mu, mu_ref, rtol=1e-13)
    np.testing.assert_allclose(sig, sig_ref, rtol=1e-9, atol=1e-10)

    shards = [StreamingMoments().update(torch.from_numpy(s.copy())) for s in np.array_split(x[::-1], 3)]
    merged = StreamingMoments()
    for s in (shards[2], shards[0], shards[1]):
        merged.merge(s)
    mu_m, sig_m = merged.compute()
    assert len(merged) == 1000
    np.testing.assert_allclose(mu_m, mu_ref, rtol=1e-13)
    np.testing.assert_allclose(sig_m, sig_ref, rtol=1e-9, atol=1e-10)


def test_streaming_moments_state_dict_round_trip(tmp_path):
    rng = np.random.default_rng(5)
    x = rng.standard_normal((300, 16)).astype(np.float32)
    m = StreamingMoments().update(x[:200])
    path = tmp_path / "moments.pt"
    torch.save(m.state_dict(), path)
    restored = StreamingMoments.from_state_dict(torch.load(path, weights_only=True))
    restored.update(x[200:])
    mu, sig = restored.compute()
    np.testing.assert_allclose(mu, x.astype(np.float64).mean(axis=0), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(sig, np.cov(x.astype(np.float64), rowvar=False), rtol=1e-10, atol=1e-12)

    state = m.state_dict()
    del state["sum_outer"]
    with pytest.raises(ValueError, match=r"missing keys \['sum_outer'\]"):
        StreamingMoments.from_state_dict(state)
    state = m.state_dict()
    state["sum_outer"] = torch.zeros(16, 15, dtype=torch.float64)
    with pytest.raises(ValueError, match="'sum_outer' has shape"):
        StreamingMoments.from_state_dict(state)


def test_streaming_moments_rejects_bad_input():
    m = StreamingMoments()
    with pytest.raises(ValueError, match="non-finite"):
        m.update(torch.tensor([[0.0, float("nan")], [1.0, 2.0]]))
    with pytest.raises(ValueError, match="non-finite"):
        m.update(np.array([[0.0, np.inf]]))
    m.update(np.ones((3, 2)))
    with pytest.raises(ValueError, match="3 dims"):
        m.update(np.ones((3, 3)))
    with pytest.raises(ValueError, match="at least 2"):
        StreamingMoments().update(np.ones((1, 2))).compute()


def test_frechet_distance_metric_object_matches_torchmetrics():
    from torchmetrics.image.fid import FrechetInceptionDistance

    rng = np.random.default_rng(6)
    real, fake = rng.standard_normal((400, 32)), rng.standard_normal((350, 32)) * 1.2 + 0.1
    tm = FrechetInceptionDistance(feature=_IdentityExtractor(32))
    tm.update(torch.from_numpy(real), real=True)
    tm.update(torch.from_numpy(fake), real=False)

    ours = FrechetDistance()
    ours.update(real[:150], real=True)
    other = FrechetDistance()
    other.update(real[150:], real=True)
    other.update(fake, real=False)
    ours.merge(other)
    assert _rel(ours.compute(), float(tm.compute())) <= 1e-9
    exact = frechet_distance(*feature_statistics(real), *feature_statistics(fake))
    assert _rel(ours.compute(), exact) <= 1e-12

    restored = FrechetDistance()
    restored.load_state_dict(ours.state_dict())
    assert restored.compute() == ours.compute()

    fixed = FrechetDistance()
    fixed.set_reference(*feature_statistics(real))
    fixed.update(fake, real=False)
    assert _rel(fixed.compute(), exact) <= 1e-12
    with pytest.raises(ValueError, match="set_reference"):
        fixed.update(real, real=True)


# ---------------------------------------------------------------------------------------------
# KID
# ---------------------------------------------------------------------------------------------


def _kid_features(seed: int = 7):
    rng = np.random.default_rng(seed)
    a = np.maximum(rng.standard_normal((260, 24)), 0)
    b = np.maximum(rng.standard_normal((240, 24)) * 1.1 + 0.1, 0)
    return a, b


def test_kid_matches_torch_fidelity_with_its_seed():
    from torch_fidelity.metric_kid import kid_features_to_metric

    a, b = _kid_features()
    ref = kid_features_to_metric(
        torch.from_numpy(a), torch.from_numpy(b), kid_subsets=6, kid_subset_size=100, rng_seed=2020,
        kid_kernel="poly", kid_kernel_poly_degree=3, kid_kernel_poly_gamma=None, kid_kernel_poly_coef0=1,
        verbose=False,
    )
    mean, std = kernel_inception_distance(a, b, num_subsets=6, subset_size=100, seed=2020)
    assert _rel(mean, ref["kernel_inception_distance_mean"]) <= 1e-10
    assert _rel(std, ref["kernel_inception_distance_std"]) <= 1e-10


def test_kid_matches_clean_fid_and_torchmetrics_given_their_rng():
    from cleanfid.fid import kernel_distance
    from torchmetrics.image.kid import KernelInceptionDistance

    a, b = _kid_features(8)
    np.random.seed(123)  # clean-fid draws from the global NumPy RNG
    ref_clean = kernel_distance(a, b, num_subsets=5, max_subset_size=100)
    mean_clean, _ = kernel_inception_distance(a, b, num_subsets=5, subset_size=100, seed=123, rng="clean-fid")
    assert _rel(mean_clean, ref_clean) <= 1e-10

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "will save all extracted features"
        tm = KernelInceptionDistance(feature=_IdentityExtractor(24), subsets=5, subset_size=100)
    tm.update(torch.from_numpy(a), real=True)
    tm.update(torch.from_numpy(b), real=False)
    torch.manual_seed(99)
    tm_mean, tm_std = tm.compute()
    mean_tm, std_tm = kernel_inception_distance(a, b, num_subsets=5, subset_size=100, seed=99, rng="torchmetrics")
    assert _rel(mean_tm, float(tm_mean)) <= 1e-10
    assert _rel(std_tm, float(tm_std)) <= 1e-10

    # one subset holding every sample is order-invariant: all conventions agree
    n = min(len(a), len(b))
    full = [kernel_inception_distance(a[:n], b[:n], 1, n, rng=r)[0] for r in ("torch-fidelity", "clean-fid")]
    assert _rel(full[0], full[1]) <= 1e-12


def test_kid_rejects_bad_input():
    a, b = _kid_features()
    with pytest.raises(ValueError, match="subset_size=1000"):
        kernel_inception_distance(a, b)  # fewer than 1000 samples
    a_bad = a.copy()
    a_bad[5, 3] = np.nan
    with pytest.raises(ValueError, match="feats_a contains 1 non-finite"):
        kernel_inception_distance(a_bad, b, subset_size=50)
    with pytest.raises(ValueError, match="24 feature dims but feats_b has 23"):
        kernel_inception_distance(a, b[:, :23], subset_size=50)


# ---------------------------------------------------------------------------------------------
# Inception Score
# ---------------------------------------------------------------------------------------------


def test_inception_score_matches_torch_fidelity_and_torchmetrics():
    from torch_fidelity.metric_isc import isc_features_to_metric
    from torchmetrics.image.inception import InceptionScore

    rng = np.random.default_rng(9)
    logits = rng.standard_normal((1003, 50)) * 3.0
    t = torch.from_numpy(logits)
    for shuffle in (True, False):
        ref = isc_features_to_metric(t, splits=10, shuffle=shuffle, rng_seed=2020)
        mean, std = inception_score(logits, splits=10, shuffle=shuffle, seed=2020)
        assert _rel(mean, ref["inception_score_mean"]) <= 1e-12
        assert _rel(std, ref["inception_score_std"]) <= 1e-9

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        tm = InceptionScore(feature=_IdentityExtractor(50), splits=4)
    tm.update(t)
    torch.manual_seed(31)
    tm_mean, tm_std = tm.compute()  # unbiased std (ddof=1)
    mean, std = inception_score(logits, splits=4, seed=31, rng="torchmetrics")
    assert _rel(mean, float(tm_mean)) <= 1e-12
    assert _rel(std, float(tm_std)) <= 1e-9

    # a single split does not depend on the order
    one = inception_score(logits, splits=1, shuffle=False)[0]
    assert _rel(inception_score(logits[::-1], splits=1)[0], one) <= 1e-12
    assert 1.0 <= one <= 50.0


def test_inception_score_rejects_bad_input():
    logits = np.zeros((20, 5))
    logits[3, 1] = np.inf
    with pytest.raises(ValueError, match="logits contains 1 non-finite"):
        inception_score(logits, splits=2)
    with pytest.raises(ValueError, match="splits"):
        inception_score(np.zeros((3, 5)), splits=10)


# ---------------------------------------------------------------------------------------------
# CLIP score and CMMD
# ---------------------------------------------------------------------------------------------


def test_clip_score_matches_torchmetrics_formula():
    from torchmetrics.functional.multimodal.clip_score import _clip_score_update

    rng = np.random.default_rng(10)
    n, d = 6, 24
    img = torch.from_numpy(rng.standard_normal((n, d)) + 0.3)
    txt = torch.from_numpy(rng.standard_normal((n, d)) + 0.3)

    # Stand-ins for the HF CLIP model/processor: "images" are the embeddings reshaped to 3-D,
    # captions are looked up in the text table. torchmetrics then applies its own formula.
    captions = [f"caption {i}" for i in range(n)]

    def processor(images=None, text=None, return_tensors="pt", padding=True):
        if images is not None:
            return {"pixel_values": torch.stack(images)}
        ids = torch.tensor([[captions.index(t)] for t in text])
        return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}

    model = types.SimpleNamespace(
        config=types.SimpleNamespace(),
        to=lambda device: model,
        get_image_features=lambda pv: pv.flatten(1),
        get_text_features=lambda ids, mask: txt[ids[:, 0]],
    )
    ref, count = _clip_score_update(list(img.reshape(n, 3, 1, 8)), captions, model, processor)
    assert count == n
    np.testing.assert_allclose(clip_score(img, txt, clamp=False), ref.numpy(), rtol=1e-12)
    np.testing.assert_allclose(clip_score(img, txt), np.maximum(ref.numpy(), 0), rtol=1e-12)
    # torchmetrics' CLIPScore.compute() = max(mean, 0)
    assert max(clip_score(img, txt, clamp=False).mean(), 0.0) == pytest.approx(max(float(ref.mean()), 0.0), rel=1e-12)


def test_clip_score_values_and_errors():
    e = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 2.0]])
    t = np.array([[2.0, 0.0], [-1.0, 0.0], [0.0, 1.0]])
    np.testing.assert_allclose(clip_score(e, t), [100.0, 0.0, 100.0])
    np.testing.assert_allclose(clip_score(e, t, scale=2.5, clamp=False), [2.5, -2.5, 2.5])
    with pytest.raises(ValueError, match="3 rows but text_emb has 2"):
        clip_score(e, t[:2])
    with pytest.raises(ValueError, match="all zeros"):
        clip_score(np.zeros((1, 2)), t[:1])
    with pytest.raises(ValueError, match="non-finite"):
        clip_score(np.array([[np.nan, 1.0]]), t[:1])


def test_cmmd_matches_rbf_kernel_mmd():
    from sklearn.metrics.pairwise import rbf_kernel

    rng = np.random.default_rng(11)
    x = rng.standard_normal((90, 16)) * 4
    y = rng.standard_normal((70, 16)) * 4 + 1.0
    gamma = 1 / (2 * 10.0**2)
    expected = 1000 * (rbf_kernel(x, x, gamma=gamma).mean() + rbf_kernel(y, y, gamma=gamma).mean()
                       - 2 * rbf_kernel(x, y, gamma=gamma).mean())
    assert _rel(cmmd(x, y), expected) <= 1e-12
    assert _rel(cmmd(x, y, block_size=17), expected) <= 1e-12  # blocking does not change the value
    # two single points: 1000 * (2 - 2 exp(-|x-y|^2 / 200))
    p, q = np.array([[0.0, 0.0]]), np.array([[3.0, 4.0]])
    assert cmmd(p, q) == pytest.approx(1000 * (2 - 2 * np.exp(-25 / 200)), rel=1e-14)
    assert abs(cmmd(x, x)) < 1e-12
    with pytest.raises(ValueError, match="non-finite"):
        cmmd(np.full((2, 16), np.nan), y)


# ---------------------------------------------------------------------------------------------
# Precision / recall
# ---------------------------------------------------------------------------------------------


def test_precision_recall_matches_torch_fidelity():
    from torch_fidelity.metric_prc import calculate_precision_recall_full

    rng = np.random.default_rng(12)
    real = rng.standard_normal((600, 16)).astype(np.float32)
    fake = (rng.standard_normal((500, 16)) * 1.1 + 0.2).astype(np.float32)
    # torch-fidelity convention: features_1 = generated, features_2 = real
    ref_p, ref_r = calculate_precision_recall_full(torch.from_numpy(fake), torch.from_numpy(real), 3, 10000)
    p, r = precision_recall(real, fake, k=3)
    assert p == pytest.approx(ref_p, abs=1e-6) and r == pytest.approx(ref_r, abs=1e-6)
    assert 0.05 < p < 0.95 and 0.05 < r < 0.95  # a non-degenerate case
    assert precision_recall(real, fake, batch_size=128) == (p, r)  # blocked computation
    p64, r64 = precision_recall(real, fake, distance="float64")
    assert abs(p64 - p) <= 2 / 500 and abs(r64 - r) <= 2 / 600
    p16, r16 = precision_recall(real, fake, distance="float16")
    assert abs(p16 - p) <= 0.02 and abs(r16 - r) <= 0.02
    assert precision_recall(real, real) == (1.0, 1.0)


def test_precision_recall_rejects_bad_input():
    x = np.zeros((10, 4))
    x[0, 0] = np.nan
    with pytest.raises(ValueError, match="feats_fake contains 1 non-finite"):
        precision_recall(np.ones((10, 4)), x)
    with pytest.raises(ValueError, match="at least 4 rows"):
        precision_recall(np.ones((3, 4)), np.ones((10, 4)))


# ---------------------------------------------------------------------------------------------
# Bootstrap and FID-infinity
# ---------------------------------------------------------------------------------------------


def test_bootstrap_ci_of_a_mean():
    rng = np.random.default_rng(13)
    values = rng.normal(3.0, 2.0, 2000)
    ci = bootstrap_ci(values, n_boot=2000, seed=1)
    assert ci.estimate == pytest.approx(values.mean())
    half = 1.96 * values.std(ddof=1) / np.sqrt(len(values))
    assert ci.low < ci.estimate < ci.high
    assert (ci.high - ci.low) / 2 == pytest.approx(half, rel=0.1)
    assert ci.std == pytest.approx(values.std(ddof=1) / np.sqrt(len(values)), rel=0.1)
    again = bootstrap_ci(values, n_boot=2000, seed=1)
    assert (again.low, again.high) == (ci.low, ci.high)
    via_fn = bootstrap_ci(lambda idx: values[idx].mean(), n_boot=200, seed=1, n_items=len(values))
    assert via_fn.estimate == pytest.approx(values.mean())
    assert via_fn.low == pytest.approx(ci.low, rel=0.02) and via_fn.high == pytest.approx(ci.high, rel=0.02)
    with pytest.raises(ValueError, match="n_items"):
        bootstrap_ci(lambda idx: 0.0)
    with pytest.raises(ValueError, match="non-finite"):
        bootstrap_ci(np.array([1.0, np.nan]))


def test_bootstrap_fid_resamples_rows():
    rng = np.random.default_rng(14)
    x = rng.standard_normal((200, 8))
    idx = rng.integers(0, 200, 200)
    mu, sig = _weighted_stats(x, idx)
    np.testing.assert_allclose(mu, x[idx].mean(axis=0), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(sig, np.cov(x[idx], rowvar=False), rtol=1e-10, atol=1e-13)

    real = rng.standard_normal((300, 8))
    fake = rng.standard_normal((250, 8)) + 0.5
    ci = bootstrap_fid(fake, real, n_boot=50, seed=2)
    assert ci.estimate == pytest.approx(frechet_distance(*feature_statistics(real), *feature_statistics(fake)))
    assert ci.low < ci.high and ci.std > 0
    fixed = bootstrap_fid(fake, feature_statistics(real), n_boot=50, seed=2)
    assert fixed.estimate == pytest.approx(ci.estimate)
    assert fixed.std < ci.std  # resampling only one side varies less


def test_fid_infinity_removes_the_1_over_n_bias():
    rng = np.random.default_rng(15)
    d = 16
    fake = rng.standard_normal((4000, d))  # exactly the reference distribution N(0, I)
    res = fid_infinity(fake, np.zeros(d), np.eye(d), ns=[500, 1000, 2000, 3000, 4000], seed=0,
                       return_details=True)
    assert res.fids[0] > 0.1  # finite-N FID is biased upwards
    assert abs(res.value) < 0.2 * res.fids[0]
    assert res.slope > 0
    np.testing.assert_allclose(res.value + res.slope / res.ns, res.fids, atol=0.05)
    assert fid_infinity(fake, np.zeros(d), np.eye(d), ns=[500, 1000, 2000, 3000, 4000], seed=0) == res.value
    with pytest.raises(ValueError, match="min_n=5000"):
        fid_infinity(fake, np.zeros(d), np.eye(d))
