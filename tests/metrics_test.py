"""FID, KID and the real-statistics cache (spade_tf.evaluation.metrics)."""

import os

import numpy as np
import pytest
import scipy.linalg

from spade_tf.evaluation import metrics


def _scipy_frechet(mu1, sigma1, mu2, sigma2):
    """TTUR's / pytorch-fid's formula: scipy's sqrtm of the non-symmetric product."""
    diff = mu1 - mu2
    root = scipy.linalg.sqrtm(sigma1 @ sigma2)
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(root).real)


def _gaussians(dim, n1, n2, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n1, dim)) @ rng.standard_normal((dim, dim))
    y = rng.standard_normal((n2, dim)) * 1.5 + 0.3
    return metrics.gaussian_statistics(x) + metrics.gaussian_statistics(y)


# (dim, n1, n2): n1 < dim makes sigma1 singular (rank n1 - 1), as with fewer images than features.
@pytest.mark.parametrize(
    "dim,n1,n2", [(1, 50, 60), (2, 100, 103), (8, 100, 103), (64, 400, 300), (16, 8, 40)]
)
def test_frechet_distance_matches_scipy_sqrtm(dim, n1, n2):
    mu1, sigma1, mu2, sigma2 = _gaussians(dim, n1, n2)
    expected = _scipy_frechet(mu1, sigma1, mu2, sigma2)
    # Both are float64; they differ by round-off (~1e-14 relative), and for the singular case by
    # scipy's sqrtm error in the null space (~1e-8 relative, measured against 60-digit mpmath).
    np.testing.assert_allclose(metrics.frechet_distance(mu1, sigma1, mu2, sigma2), expected, rtol=1e-6)


def test_frechet_distance_of_commuting_singular_covariances_is_exact():
    # Covariances diagonal in one basis, with zero variances: the distance has the closed form
    # |mu1 - mu2|^2 + sum_i (sqrt(a_i) - sqrt(b_i))^2.
    rng = np.random.default_rng(1)
    basis, _ = np.linalg.qr(rng.standard_normal((10, 10)))
    a = np.array([4.0, 1.0, 0.25, 0.0, 0.0, 9.0, 2.0, 0.0, 1.0, 3.0])
    b = np.array([1.0, 0.0, 0.25, 0.0, 5.0, 4.0, 2.0, 0.0, 0.0, 1.0])
    mu1, mu2 = rng.standard_normal(10), rng.standard_normal(10)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    got = metrics.frechet_distance(mu1, basis @ np.diag(a) @ basis.T, mu2, basis @ np.diag(b) @ basis.T)
    # Round-off of the basis products only (~1e-15); eigenvalues of zero stay zero after thresholding.
    np.testing.assert_allclose(got, expected, rtol=1e-10)


@pytest.mark.parametrize("n", [200, 20])  # 20 < 32: a singular covariance
def test_frechet_distance_of_identical_statistics_is_zero(n):
    features = np.random.default_rng(2).standard_normal((n, 32)) * 3.0
    mu, sigma = metrics.gaussian_statistics(features)
    # tr(sigma) is ~9 * 32; the distance cancels to round-off of that scale.
    assert abs(metrics.frechet_distance(mu, sigma, mu, sigma)) < 1e-9 * np.trace(sigma)


def test_gaussian_statistics_are_the_unbiased_estimates():
    features = np.random.default_rng(3).standard_normal((7, 3)).astype(np.float32)
    mu, sigma = metrics.gaussian_statistics(features)
    centred = features.astype(np.float64) - features.mean(0, dtype=np.float64)
    assert mu.dtype == sigma.dtype == np.float64
    np.testing.assert_allclose(sigma, centred.T @ centred / 6, rtol=1e-12)
    with pytest.raises(ValueError, match="at least 2"):
        metrics.gaussian_statistics(features[:1])


def test_frechet_distance_refuses_bad_statistics():
    mu, sigma = np.zeros(3), np.eye(3)
    with pytest.raises(ValueError, match="dimensions 3 and 2"):
        metrics.frechet_distance(mu, sigma, np.zeros(2), np.eye(2))
    with pytest.raises(ValueError, match="not symmetric"):
        metrics.frechet_distance(mu, sigma, mu, np.triu(np.ones((3, 3))))
    with pytest.raises(ValueError, match="not a covariance"):
        metrics.frechet_distance(mu, sigma, mu, -np.eye(3))
    with pytest.raises(ValueError, match=r"mu \(D,\) and sigma \(D, D\)"):
        metrics.frechet_distance(mu, sigma[:2], mu, sigma)


# ---------------------------------------------------------------------------
# KID
# ---------------------------------------------------------------------------


def _kernel(a, b):
    return (sum(p * q for p, q in zip(a, b)) / len(a) + 1.0) ** 3


def _mmd2_loops(x, y):
    """Binkowski et al.'s unbiased MMD^2, written out pair by pair."""
    m = len(x)
    xx = sum(_kernel(x[i], x[j]) for i in range(m) for j in range(m) if i != j)
    yy = sum(_kernel(y[i], y[j]) for i in range(m) for j in range(m) if i != j)
    xy = sum(_kernel(x[i], y[j]) for i in range(m) for j in range(m))
    return xx / (m * (m - 1)) + yy / (m * (m - 1)) - 2 * xy / (m * m)


def test_kid_with_whole_sets_equals_the_direct_computation():
    rng = np.random.default_rng(4)
    real, fake = rng.standard_normal((7, 5)), rng.standard_normal((7, 5)) + 0.5
    result = metrics.kernel_inception_distance(real, fake, num_subsets=3, subset_size=1000)
    # Subsets clipped to the 7 vectors of each set are permutations; MMD^2 does not depend on order.
    assert result["subset_size"] == 7
    np.testing.assert_allclose(result["kid"], _mmd2_loops(real.tolist(), fake.tolist()), rtol=1e-12)
    assert result["kid_std"] < 1e-12 * abs(result["kid"])


def test_kid_subsets_follow_the_stated_sampling_rule():
    rng = np.random.default_rng(5)
    real, fake = rng.standard_normal((12, 4)), rng.standard_normal((9, 4)) * 2.0
    result = metrics.kernel_inception_distance(real, fake, num_subsets=4, subset_size=100, seed=3)
    # The rule: size = min(subset_size, 12, 9); per subset, draw real then fake without replacement.
    draws = np.random.default_rng(3)
    values = []
    for _ in range(4):
        x = real[draws.choice(12, 9, replace=False)]
        y = fake[draws.choice(9, 9, replace=False)]
        values.append(_mmd2_loops(x.tolist(), y.tolist()))
    assert result["subset_size"] == 9
    np.testing.assert_allclose(result["kid"], np.mean(values), rtol=1e-12)
    np.testing.assert_allclose(result["kid_std"], np.std(values), rtol=1e-9)


def test_kid_is_unbiased_and_near_zero_for_one_distribution():
    rng = np.random.default_rng(6)
    # 400 independent pairs of 20-vector samples from one Gaussian: the unbiased estimate averages to 0
    # within its standard error; the biased (diagonal-including) estimate would be clearly positive.
    estimates = [
        metrics.kernel_inception_distance(rng.standard_normal((20, 4)), rng.standard_normal((20, 4)), 1)[
            "kid"
        ]
        for _ in range(400)
    ]
    standard_error = np.std(estimates) / np.sqrt(len(estimates))
    assert abs(np.mean(estimates)) < 4 * standard_error

    features = rng.standard_normal((300, 16))
    same = metrics.kernel_inception_distance(features, features, num_subsets=2, subset_size=300)
    shifted = metrics.kernel_inception_distance(features, features + 0.5, num_subsets=50, subset_size=100)
    # A set against itself shares its vectors between the subsets: KID = (2/m)(mean_off - mean_diag).
    k = (features @ features.T / 16 + 1.0) ** 3
    mean_off = (k.sum() - np.trace(k)) / (300 * 299)
    np.testing.assert_allclose(same["kid"], 2 / 300 * (mean_off - np.mean(np.diag(k))), rtol=1e-10)
    assert -0.1 * shifted["kid"] < same["kid"] < 0
    assert shifted["kid"] > 10 * shifted["kid_std"] / np.sqrt(50)


def test_kid_refuses_bad_input():
    x = np.zeros((5, 3))
    with pytest.raises(ValueError, match="dimension 3, fake 4"):
        metrics.kernel_inception_distance(x, np.zeros((5, 4)))
    with pytest.raises(ValueError, match="at least 2"):
        metrics.kernel_inception_distance(x, np.zeros((1, 3)))


# ---------------------------------------------------------------------------
# Statistics cache
# ---------------------------------------------------------------------------


class _Counter:
    def __init__(self, features):
        self.features, self.calls = features, 0

    def __call__(self):
        self.calls += 1
        return self.features


def _key(**overrides):
    fields = dict(split="val", image_size=(16, 24), extractor="pytorch-fid-inception/sha256=ab/protocol=1")
    fields.update(num_images=10)
    fields.update(overrides)
    return metrics.StatisticsKey(**fields)


def test_cache_hit_miss_and_stale(tmp_path):
    features = np.random.default_rng(7).standard_normal((10, 6))
    cache = metrics.StatisticsCache(tmp_path)
    compute = _Counter(features)

    first = cache.get_or_compute(_key(), compute)
    again = cache.get_or_compute(_key(), compute)
    assert compute.calls == 1
    assert os.listdir(tmp_path) == ["val_16x24.npz"]  # nothing left from the temporary write
    mu, sigma = metrics.gaussian_statistics(features)
    for stats in (first, again):
        np.testing.assert_array_equal(stats.mu, mu)
        np.testing.assert_array_equal(stats.sigma, sigma)
        np.testing.assert_array_equal(stats.features, features)

    # Another extractor (other weights or protocol) or image count: the file is stale and replaced.
    other = _key(extractor="ttur-inception-graph/sha256=cd/protocol=1")
    cache.get_or_compute(other, compute)
    assert compute.calls == 2
    assert cache.load(_key()) is None and cache.load(other) is not None
    changed = _Counter(features[:8])
    stats = cache.get_or_compute(_key(extractor=other.extractor, num_images=8), changed)
    assert changed.calls == 1
    np.testing.assert_array_equal(stats.mu, features[:8].mean(0))

    # Another image size is another file; both stay.
    cache.get_or_compute(_key(image_size=32, num_images=8), changed)
    assert sorted(os.listdir(tmp_path)) == ["val_16x24.npz", "val_32x32.npz"]


def test_cache_recomputes_a_damaged_file_and_writes_atomically(tmp_path, monkeypatch):
    features = np.random.default_rng(8).standard_normal((10, 4))
    cache = metrics.StatisticsCache(tmp_path, keep_features=False)
    path = cache.path(_key())
    with open(path, "wb") as f:
        f.write(b"PK\x03\x04 truncated")
    compute = _Counter(features)
    stats = cache.get_or_compute(_key(), compute)
    assert compute.calls == 1 and stats.features is None
    good = open(path, "rb").read()

    def failing_savez(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", failing_savez)
    with pytest.raises(OSError, match="disk full"):
        cache.save(_key(num_images=9), features[:9])
    # The old file is untouched and no temporary file is left behind.
    assert open(path, "rb").read() == good
    assert os.listdir(tmp_path) == ["val_16x24.npz"]


def test_cache_keys_refuse_bad_values(tmp_path):
    with pytest.raises(ValueError, match="split='../val'"):
        _key(split="../val")
    with pytest.raises(ValueError, match="image_size"):
        _key(image_size=(1, 2, 3))
    with pytest.raises(ValueError, match="key says 10 images, features hold 3"):
        metrics.StatisticsCache(tmp_path).save(_key(), np.zeros((3, 2)))
