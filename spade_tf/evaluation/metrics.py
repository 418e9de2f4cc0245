"""Image-quality metrics on Inception features: FID, KID and cached real-image statistics.

- `frechet_distance`: the Frechet distance between two Gaussians, the FID of Heusel et al. when the
  Gaussians are fitted (`gaussian_statistics`) to pool3 features of real and generated images
  (`spade_tf.evaluation.inception`).
- `kernel_inception_distance`: KID of Binkowski et al., the unbiased MMD^2 with the cubic polynomial
  kernel, averaged over random subsets.
- `StatisticsCache`: real-image statistics (and features, for KID) stored per split as `.npz`, keyed so
  that a change of images, size or feature extractor recomputes them.

Everything is float64 numpy; no scipy at run time.

Example:

    extractor = inception.load_inception(weights_path)
    cache = StatisticsCache(os.path.join(workdir, "fid_stats"))
    key = StatisticsKey("val", (256, 256), extractor.identity, num_images=len(real_images))
    real = cache.get_or_compute(key, lambda: extractor(real_images))
    fake_features = extractor(fake_images)
    fid = frechet_distance(real.mu, real.sigma, *gaussian_statistics(fake_features))
    kid = kernel_inception_distance(real.features, fake_features)["kid"]
"""

import dataclasses
import json
import os
import re
import tempfile
import zipfile

import numpy as np

# Bump when the cache file layout changes.
CACHE_FORMAT_VERSION = 1
# Eigenvalues below this fraction (times the dimension) of the largest are round-off: treated as 0.
_EIGEN_RTOL = np.finfo(np.float64).eps
# A covariance whose most negative eigenvalue is below -this * the largest is not a covariance.
_NEGATIVE_EIGEN_TOLERANCE = 1e-6


def _features(name, features):
    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2:
        raise ValueError(f"{name}: expected features of shape (N, D), got {features.shape}.")
    if not np.all(np.isfinite(features)):
        raise ValueError(f"{name}: features hold NaN or inf values.")
    return features


def gaussian_statistics(features):
    """Mean and unbiased covariance of features, as pytorch-fid and TTUR compute them.

    Args:
        features: (N, D) array, N >= 2.

    Returns:
        (mu (D,), sigma (D, D)) float64; sigma is `np.cov(features, rowvar=False)` (divides by N - 1).
        With N <= D sigma is singular; `frechet_distance` handles that.
    """
    features = _features("gaussian_statistics", features)
    if features.shape[0] < 2:
        raise ValueError(f"gaussian_statistics: need at least 2 feature vectors, got {features.shape[0]}.")
    # atleast_2d: np.cov of a single feature column is a 0-d array.
    return features.mean(axis=0), np.atleast_2d(np.cov(features, rowvar=False))


def _check_gaussian(name, mu, sigma):
    mu = np.asarray(mu, dtype=np.float64)
    sigma = np.asarray(sigma, dtype=np.float64)
    if mu.ndim != 1 or sigma.shape != (mu.shape[0], mu.shape[0]):
        raise ValueError(
            f"frechet_distance: {name} needs mu (D,) and sigma (D, D), got {mu.shape} and {sigma.shape}."
        )
    if not (np.all(np.isfinite(mu)) and np.all(np.isfinite(sigma))):
        raise ValueError(f"frechet_distance: {name} holds NaN or inf values.")
    scale = max(np.abs(sigma).max(), np.finfo(np.float64).tiny)
    if np.abs(sigma - sigma.T).max() > 1e-6 * scale:
        raise ValueError(f"frechet_distance: sigma of {name} is not symmetric: not a covariance matrix.")
    return mu, (sigma + sigma.T) / 2


def _psd_eigenvalues(matrix, name):
    """Eigenvalues of a symmetric PSD matrix, with round-off below zero (and near it) set to 0."""
    values = np.linalg.eigvalsh(matrix)
    top = max(values[-1], 0.0)
    if values[0] < -_NEGATIVE_EIGEN_TOLERANCE * top:
        raise ValueError(
            f"frechet_distance: {name} has eigenvalue {values[0]:.3g} (largest {top:.3g}): not a covariance matrix."
        )
    return np.where(values > _EIGEN_RTOL * matrix.shape[0] * top, values, 0.0)


def _psd_sqrt(matrix, name):
    values, vectors = np.linalg.eigh(matrix)
    top = max(values[-1], 0.0)
    if values[0] < -_NEGATIVE_EIGEN_TOLERANCE * top:
        raise ValueError(
            f"frechet_distance: {name} has eigenvalue {values[0]:.3g} (largest {top:.3g}): not a covariance matrix."
        )
    return (vectors * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T


def trace_sqrt_product(sigma1, sigma2):
    """tr(sqrtm(sigma1 @ sigma2)) for symmetric PSD matrices, without a non-symmetric sqrtm.

    With A = sigma1^(1/2), sigma1 sigma2 = A (A sigma2 A) A^-1 is similar to the symmetric PSD matrix
    A sigma2 A, so the eigenvalues of sigma1 sigma2 are those of A sigma2 A: real and >= 0, and the
    trace of its principal square root is the sum of their square roots. Two symmetric eigensolves
    replace scipy's Schur-based sqrtm, and singular covariances (fewer images than dimensions) need no
    regulariser.
    """
    root1 = _psd_sqrt(sigma1, "sigma1")
    middle = root1 @ sigma2 @ root1
    values = _psd_eigenvalues((middle + middle.T) / 2, "sigma1^(1/2) sigma2 sigma1^(1/2)")
    return float(np.sqrt(values).sum())


def frechet_distance(mu1, sigma1, mu2, sigma2):
    """Frechet distance ||mu1 - mu2||^2 + tr(sigma1 + sigma2 - 2 (sigma1 sigma2)^(1/2)) in float64.

    This is the FID when the Gaussians are fitted to Inception pool3 features (`gaussian_statistics`).
    tr((sigma1 sigma2)^(1/2)) comes from the symmetric form sigma1^(1/2) sigma2 sigma1^(1/2)
    (`trace_sqrt_product`); eigenvalues below D * eps of the largest are taken as 0, so singular and
    near-singular covariances give a finite, real result with no added eps. pytorch-fid instead calls
    scipy's sqrtm on sigma1 @ sigma2 and, only when that fails to be finite, retries with 1e-6 * I added
    to both covariances; where it needs no such retry the two agree to round-off.

    Args:
        mu1, sigma1: mean (D,) and covariance (D, D) of the first Gaussian.
        mu2, sigma2: the same for the second.

    Returns:
        The distance as a Python float (>= 0 up to round-off).

    Raises:
        ValueError: shapes that do not match, NaN or inf, or a sigma that is not symmetric PSD.
    """
    mu1, sigma1 = _check_gaussian("the first Gaussian", mu1, sigma1)
    mu2, sigma2 = _check_gaussian("the second Gaussian", mu2, sigma2)
    if mu1.shape != mu2.shape:
        raise ValueError(
            f"frechet_distance: the Gaussians have dimensions {mu1.shape[0]} and {mu2.shape[0]}."
        )
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * trace_sqrt_product(sigma1, sigma2))


def _polynomial_mmd2_unbiased(x, y):
    """Unbiased MMD^2 of two equal-size samples with k(a, b) = (a.b / D + 1)^3."""
    m, dim = x.shape
    k_xx = (x @ x.T / dim + 1.0) ** 3
    k_yy = (y @ y.T / dim + 1.0) ** 3
    k_xy = (x @ y.T / dim + 1.0) ** 3
    # The within-sample sums leave out the diagonal k(x_i, x_i); the cross term keeps all m^2 pairs.
    within = (k_xx.sum() - np.trace(k_xx) + k_yy.sum() - np.trace(k_yy)) / (m * (m - 1))
    return within - 2.0 * k_xy.sum() / (m * m)


def kernel_inception_distance(real_features, fake_features, num_subsets=100, subset_size=1000, seed=0):
    """Kernel Inception Distance (Binkowski et al. 2018): mean and spread of the unbiased MMD^2.

    Each of `num_subsets` rounds draws `subset_size` real and `subset_size` fake feature vectors, each
    without replacement and independently, and computes the unbiased MMD^2 with the polynomial kernel
    k(x, y) = (x.y / D + 1)^3. Subset size rule: `subset_size` is clipped to the smaller of the two sets
    (as clean-fid does), so small evaluation sets still get a KID; with subsets as large as a whole set
    that set's draws are permutations of it.

    Args:
        real_features: (N_real, D) features.
        fake_features: (N_fake, D) features.
        num_subsets: number of random subsets (clean-fid and Binkowski et al.: 100).
        subset_size: largest subset size (1000 in both).
        seed: seed of `np.random.default_rng` for the subset draws.

    Returns:
        dict(kid=mean over subsets, kid_std=standard deviation over subsets (ddof=0, as torchmetrics),
        subset_size=the size used). KID is not scaled (papers often print KID x 1000); it is unbiased, so
        it can come out slightly below 0 when the two sets come from one distribution. A set against
        itself is no such case: the same vectors land in both subsets, and with whole-set subsets of m
        vectors KID = (2 / m) (mean of k(x_i, x_j), i != j, - mean of k(x_i, x_i)) < 0. For a real-vs-real
        baseline compare disjoint halves.

    Reference: Binkowski et al., "Demystifying MMD GANs", https://arxiv.org/abs/1801.01401.
    """
    real = _features("kernel_inception_distance (real)", real_features)
    fake = _features("kernel_inception_distance (fake)", fake_features)
    if real.shape[1] != fake.shape[1]:
        raise ValueError(
            f"kernel_inception_distance: real features have dimension {real.shape[1]}, fake {fake.shape[1]}."
        )
    if int(num_subsets) < 1:
        raise ValueError(f"kernel_inception_distance: num_subsets must be >= 1, got {num_subsets}.")
    size = min(int(subset_size), real.shape[0], fake.shape[0])
    if size < 2:
        raise ValueError(
            f"kernel_inception_distance: subsets of {size} vectors (subset_size={subset_size}, "
            f"{real.shape[0]} real, {fake.shape[0]} fake); the unbiased estimate needs at least 2 of each."
        )
    rng = np.random.default_rng(seed)
    values = np.empty(int(num_subsets))
    for i in range(values.shape[0]):
        x = real[rng.choice(real.shape[0], size, replace=False)]
        y = fake[rng.choice(fake.shape[0], size, replace=False)]
        values[i] = _polynomial_mmd2_unbiased(x, y)
    return {"kid": float(values.mean()), "kid_std": float(values.std()), "subset_size": size}


# ---------------------------------------------------------------------------
# Cached real-image statistics
# ---------------------------------------------------------------------------

_SPLIT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclasses.dataclass(frozen=True)
class StatisticsKey:
    """What cached real statistics depend on; any change makes a cached file stale.

    Args:
        split: dataset split name ("val", "train"); letters, digits, "_", "." and "-".
        image_size: (height, width) the images were evaluated at.
        extractor: the feature extractor's identity (`InceptionFeatures.identity`: weight content hash
            and preprocessing protocol version).
        num_images: how many real images the statistics cover.
        data_fingerprint: optional string that changes when the images do (file names and sizes, say).
    """

    split: str
    image_size: tuple
    extractor: str
    num_images: int
    data_fingerprint: str = ""

    def __post_init__(self):
        if not isinstance(self.split, str) or not _SPLIT_NAME.match(self.split):
            raise ValueError(
                f"StatisticsKey: split={self.split!r}: use letters, digits, '_', '.' and '-' (it names a file)."
            )
        size = tuple(int(s) for s in np.atleast_1d(self.image_size))
        if len(size) == 1:
            size = size * 2
        if len(size) != 2 or min(size) < 1:
            raise ValueError(f"StatisticsKey: image_size={self.image_size!r}: expected (height, width).")
        object.__setattr__(self, "image_size", size)
        object.__setattr__(self, "num_images", int(self.num_images))

    def to_json(self):
        return json.dumps(
            {"format": CACHE_FORMAT_VERSION, **dataclasses.asdict(self), "image_size": list(self.image_size)},
            sort_keys=True,
        )


@dataclasses.dataclass
class RealStatistics:
    """Statistics of real-image features: mu (D,), sigma (D, D), features (N, D) or None."""

    mu: np.ndarray
    sigma: np.ndarray
    features: np.ndarray = None


class StatisticsCache:
    """Real-image Inception statistics kept as `<directory>/<split>_<H>x<W>.npz`.

    A file holds mu, sigma, optionally the features (KID needs them) and its `StatisticsKey` as JSON. A
    file whose key differs from the one asked for (other extractor, image count, fingerprint or format
    version), or that cannot be read, is stale: `get_or_compute` recomputes and replaces it. Files are
    written to a temporary name in the same directory and moved into place with `os.replace`, so a
    reader never sees half a file and a crash leaves the old file or none.

    Args:
        directory: where the files live (created on first write).
        keep_features: store the features too, for KID (float64, N x D x 8 bytes).
    """

    def __init__(self, directory, keep_features=True):
        self.directory = os.fspath(directory)
        self.keep_features = bool(keep_features)

    def path(self, key):
        height, width = key.image_size
        return os.path.join(self.directory, f"{key.split}_{height}x{width}.npz")

    def load(self, key):
        """The cached `RealStatistics` for `key`, or None when missing, stale or unreadable."""
        path = self.path(key)
        if not os.path.isfile(path):
            return None
        try:
            with np.load(path, allow_pickle=False) as data:
                if str(data["key"]) != key.to_json():
                    return None
                features = data["features"] if "features" in data.files else None
                if self.keep_features and features is None:
                    return None
                return RealStatistics(data["mu"], data["sigma"], features)
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
            # A damaged file is recomputed like a stale one.
            return None

    def save(self, key, features):
        """Computes the statistics of `features` ((N, D), N == key.num_images), writes and returns them."""
        features = _features(f"StatisticsCache ({key.split})", features)
        if features.shape[0] != key.num_images:
            raise ValueError(
                f"StatisticsCache: key says {key.num_images} images, features hold {features.shape[0]}."
            )
        mu, sigma = gaussian_statistics(features)
        arrays = {"key": np.array(key.to_json()), "mu": mu, "sigma": sigma}
        if self.keep_features:
            arrays["features"] = features
        os.makedirs(self.directory, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=os.path.basename(self.path(key)), suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                np.savez(f, **arrays)
            os.replace(tmp, self.path(key))
        except BaseException:
            if os.path.exists(tmp):
                os.remove(tmp)
            raise
        return RealStatistics(mu, sigma, features if self.keep_features else None)

    def get_or_compute(self, key, compute_features):
        """Cached statistics for `key`, or `compute_features()` ((N, D) array) stored and returned."""
        cached = self.load(key)
        if cached is not None:
            return cached
        return self.save(key, compute_features())
