"""What the demo shows besides label consistency: style fidelity, diversity and texture.

The demo dataset (`spade_tf/data/demo.py`) draws each landscape in one of four global looks (midday, golden
hour, overcast, dusk) and records them in `looks.json`. Four figures say whether a generator trained on it does
what GauGAN is known for; all but the first are NumPy on uint8 images:

- label consistency: the demo oracle's mIoU on synthesized over real images (`oracle.oracle_scores`);
- style fidelity: a classifier of looks trained on real images (`LookClassifier`, on global colour statistics)
  says which look each image synthesized from an exemplar has; the accuracy against the exemplar's look;
- diversity: images from several random latents per map: how many looks they cover, and how far apart they are;
- texture: per class, the mean local contrast of synthesized pixels over that of real pixels of the same maps.

Beside them, streaks (`streak_shares`): per class, how much of the luminance change between neighbouring pixels
runs left-right rather than up-down, in synthesized and in real images; vertical streaks across a sky, whose
photos change only from top to bottom, raise it, horizontal bands lower it.

Example:

    root = demo.generate_demo_dataset()
    classifier = fit_look_classifier(root)
    images, labels = oracle.load_split(root, "val")
    report = demo_report(synthesizer.generate, labels, images, split_looks(root, "val"), classifier,
                         oracle=oracle.load_or_train_oracle(root))
    print(format_demo_report(report))
"""

import os

import numpy as np
from PIL import Image

from spade_tf.data import demo
from spade_tf.evaluation import oracle as oracle_lib

# Rec. 601 luma weights (JPEG's, and PIL's "L" conversion), applied to gamma-encoded RGB in 0..255.
LUMA_WEIGHTS = (0.299, 0.587, 0.114)
# The side of the square windows of `local_contrast`: 5x5, as the texture figure is defined.
TEXTURE_WINDOW = 5
DIVERSITY_SEEDS = 8


def _pixels(images):
    """uint8 in [0, 255] or float in [-1, 1] (a generator's range) -> float64 in [0, 255], (N, H, W, 3)."""
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"images must be (N, H, W, 3), got shape {images.shape}")
    if images.dtype == np.uint8:
        return images.astype(np.float64)
    if not np.issubdtype(images.dtype, np.floating):
        raise ValueError(f"images must be uint8 in [0, 255] or float in [-1, 1], got dtype {images.dtype}")
    if images.size and (images.min() < -1.01 or images.max() > 1.01):
        raise ValueError(
            f"float images must be in [-1, 1] (got [{images.min():.3g}, {images.max():.3g}]); "
            "pass uint8 images in [0, 255]"
        )
    return (np.clip(images.astype(np.float64), -1.0, 1.0) + 1.0) * 127.5


def luminance(images):
    """Rec. 601 luma, 0.299 R + 0.587 G + 0.114 B, of images in grey levels.

    Args:
        images: (N, H, W, 3) uint8 in [0, 255] or float in [-1, 1].

    Returns:
        (N, H, W) float64 in [0, 255].
    """
    return _pixels(images) @ np.array(LUMA_WEIGHTS)


# ---------------------------------------------------------------------------------------------------------
# Looks: features and classifier
# ---------------------------------------------------------------------------------------------------------


def look_features(images):
    """Global colour statistics of each image: what tells a golden-hour photo from an overcast one.

    For each horizontal third of the image (top, middle, bottom): the mean of R, G and B, the standard
    deviation of the luminance (`luminance`) and the mean HSV saturation ((max - min) / max of R, G, B);
    then the standard deviation of R, G and B over the whole image. 18 numbers, in grey levels (saturation in
    [0, 1]). No spatial detail: two images of one layout in two looks differ here, two layouts in one look little.

    Args:
        images: (N, H, W, 3) uint8 in [0, 255] or float in [-1, 1]; H >= 3.

    Returns:
        (N, 18) float64.
    """
    x = _pixels(images)
    if x.shape[1] < 3:
        raise ValueError(f"look_features needs images at least 3 pixels high, got {x.shape[1]}")
    lum = x @ np.array(LUMA_WEIGHTS)
    high, low = x.max(-1), x.min(-1)
    saturation = (high - low) / np.maximum(high, 1.0)
    columns = []
    for rows in np.array_split(np.arange(x.shape[1]), 3):
        part = x[:, rows]
        columns += [part.mean(axis=(1, 2)), lum[:, rows].std(axis=(1, 2))[:, None]]
        columns.append(saturation[:, rows].mean(axis=(1, 2))[:, None])
    columns.append(x.std(axis=(1, 2)))
    return np.concatenate(columns, axis=1)


class LookClassifier:
    """Which global look an image has, from `look_features`: linear discriminant analysis in NumPy.

    Features are standardised with the training images' mean and standard deviation; an image goes to the look
    whose mean feature vector is nearest in the Mahalanobis distance of the pooled within-look covariance
    (shrunk towards its diagonal mean, so 18 features fit with a few dozen images per look). Closed form,
    deterministic, and enough for looks that differ in sky, light and colour.

    Args:
        looks: the looks it can answer, in order (default the demo's `LOOKS`).
        shrinkage: weight in [0, 1] of the identity (scaled to the covariance's mean variance) mixed into the
            pooled covariance.

    Example:

        classifier = LookClassifier().fit(train_images, train_looks)
        predicted = classifier.predict(val_images)        # array of look names
        classifier.accuracy(val_images, val_looks)        # fraction right
    """

    def __init__(self, looks=demo.LOOKS, shrinkage=0.1):
        self.looks = tuple(looks)
        if len(self.looks) < 2 or len(set(self.looks)) != len(self.looks):
            raise ValueError(f"LookClassifier: looks must be two or more distinct names, got {looks!r}")
        if not 0.0 <= shrinkage <= 1.0:
            raise ValueError(f"LookClassifier: shrinkage must be in [0, 1], got {shrinkage!r}")
        self.shrinkage = float(shrinkage)
        self.feature_mean = self.feature_scale = self.class_means = self.precision = None

    def _look_indices(self, looks, count):
        looks = list(looks)
        if len(looks) != count:
            raise ValueError(f"{count} images but {len(looks)} looks")
        unknown = sorted({str(v) for v in looks if v not in self.looks})
        if unknown:
            raise ValueError(f"unknown looks {unknown[:5]}; this classifier knows {self.looks}")
        return np.array([self.looks.index(v) for v in looks])

    def fit(self, images, looks):
        """Learns the looks from images (N, H, W, 3) and their look names (N,); returns self."""
        features = look_features(images)
        target = self._look_indices(looks, len(features))
        missing = [name for k, name in enumerate(self.looks) if not np.any(target == k)]
        if missing:
            raise ValueError(f"LookClassifier.fit: no training image has the looks {missing}")
        self.feature_mean = features.mean(0)
        self.feature_scale = np.maximum(features.std(0), 1e-6)
        z = (features - self.feature_mean) / self.feature_scale
        self.class_means = np.stack([z[target == k].mean(0) for k in range(len(self.looks))])
        within = z - self.class_means[target]
        covariance = within.T @ within / max(len(z) - len(self.looks), 1)
        target_variance = np.trace(covariance) / len(covariance)
        covariance = (1 - self.shrinkage) * covariance + self.shrinkage * target_variance * np.eye(
            len(covariance)
        )
        self.precision = np.linalg.inv(covariance)
        return self

    def predict(self, images):
        """The look names (N,) of images (N, H, W, 3), uint8 or float in [-1, 1]."""
        if self.precision is None:
            raise ValueError("LookClassifier.predict before fit")
        z = (look_features(images) - self.feature_mean) / self.feature_scale
        d = z[:, None, :] - self.class_means[None]
        distance = np.einsum("nkf,fg,nkg->nk", d, self.precision, d)
        return np.array(self.looks)[np.argmin(distance, axis=1)]

    def accuracy(self, images, looks):
        """Fraction of images whose predicted look is the given one."""
        truth = np.array(self.looks)[self._look_indices(looks, len(images))]
        return float(np.mean(self.predict(images) == truth))


def split_looks(demo_root, split):
    """The looks of a demo split in file-name order, the order of `oracle.load_split`.

    Args:
        demo_root: a demo dataset folder (`demo.generate_demo_dataset`).
        split: "train" or "val".

    Returns:
        A list of look names, one per image.
    """
    looks = demo.read_looks(demo_root, split)
    names = sorted(n for n in os.listdir(os.path.join(demo_root, split, "images")) if n.endswith(".png"))
    missing = [n for n in names if n not in looks]
    if missing:
        raise ValueError(f"{demo_root}/{demo.LOOKS_FILE} has no {split!r} look for {missing[:5]}")
    return [looks[n] for n in names]


def fit_look_classifier(demo_root, split="train"):
    """A `LookClassifier` fit on the real images of one split of a demo dataset folder."""
    images, _ = oracle_lib.load_split(demo_root, split)
    return LookClassifier().fit(images, split_looks(demo_root, split))


# ---------------------------------------------------------------------------------------------------------
# Style fidelity and diversity
# ---------------------------------------------------------------------------------------------------------


def style_fidelity(classifier, images, exemplar_looks):
    """How often an image synthesized from an exemplar has the exemplar's look.

    Args:
        classifier: a fitted `LookClassifier`.
        images: (N, H, W, 3) synthesized images, uint8 or float in [-1, 1].
        exemplar_looks: (N,) the look of the exemplar each image was made with.

    Returns:
        {"style_accuracy": fraction of images classified as their exemplar's look,
        "style_accuracy_per_look": {look: that fraction among images of that exemplar look, None if none},
        "style_confusion": {exemplar look: {look classified: fraction of that exemplar look's images},
        None if none}: which look a failing style comes out as}.
    """
    truth = np.asarray(list(exemplar_looks))
    if len(truth) != len(images):
        raise ValueError(f"{len(images)} images but {len(truth)} exemplar looks")
    predicted = classifier.predict(images)
    confusion = {
        look: (
            {other: float(np.mean(predicted[truth == look] == other)) for other in classifier.looks}
            if np.any(truth == look)
            else None
        )
        for look in classifier.looks
    }
    # A look's accuracy is its confusion row's diagonal.
    per_look = {look: None if row is None else row[look] for look, row in confusion.items()}
    return {
        "style_accuracy": float(np.mean(predicted == truth)),
        "style_accuracy_per_look": per_look,
        "style_confusion": confusion,
    }


def looks_covered(predicted_looks):
    """Mean over maps of the number of distinct looks among one map's images.

    Args:
        predicted_looks: (M, S) look names, S images (seeds) for each of M maps.

    Returns:
        A float in [1, min(S, number of looks)].
    """
    predicted = np.asarray(predicted_looks)
    if predicted.ndim != 2 or not predicted.size:
        raise ValueError(f"predicted_looks must be (maps, seeds), got shape {predicted.shape}")
    return float(np.mean([len(set(row.tolist())) for row in predicted]))


def seed_distance(images):
    """Mean absolute pixel difference between images of the same map made from different seeds.

    Args:
        images: (M, S, H, W, 3), S >= 2 images per map, uint8 or float in [-1, 1].

    Returns:
        The mean over maps and over the S (S - 1) / 2 pairs of seeds of the mean |a - b| over pixels and
        channels, in grey levels (0 = the seeds give the same image, 255 = black against white).
    """
    images = np.asarray(images)
    if images.ndim != 5 or images.shape[1] < 2:
        raise ValueError(f"images must be (maps, seeds >= 2, H, W, 3), got shape {images.shape}")
    m, s = images.shape[:2]
    x = _pixels(images.reshape((m * s,) + images.shape[2:])).reshape(images.shape)
    first, second = np.triu_indices(s, k=1)
    return float(np.mean([np.abs(x[:, i] - x[:, j]).mean() for i, j in zip(first, second)]))


def seed_diversity(classifier, images):
    """Diversity of images made from random latents: looks covered per map and distance between seeds.

    Args:
        classifier: a fitted `LookClassifier`.
        images: (M, S, H, W, 3), S seeds for each of M maps, uint8 or float in [-1, 1].

    Returns:
        {"looks_per_map": `looks_covered` of the predicted looks, "seed_pixel_distance": `seed_distance`}.
    """
    images = np.asarray(images)
    if images.ndim != 5:
        raise ValueError(f"images must be (maps, seeds, H, W, 3), got shape {images.shape}")
    m, s = images.shape[:2]
    predicted = classifier.predict(images.reshape((m * s,) + images.shape[2:])).reshape(m, s)
    return {"looks_per_map": looks_covered(predicted), "seed_pixel_distance": seed_distance(images)}


# ---------------------------------------------------------------------------------------------------------
# Texture
# ---------------------------------------------------------------------------------------------------------


def _window_sums(x, window):
    """Sums of x (N, H, W) over every window x window square that fits: (N, H - window + 1, W - window + 1)."""
    c = np.pad(np.cumsum(np.cumsum(x, axis=1), axis=2), ((0, 0), (1, 0), (1, 0)))
    w = window
    return c[:, w:, w:] - c[:, :-w, w:] - c[:, w:, :-w] + c[:, :-w, :-w]


def _check_window(window, shape):
    if isinstance(window, bool) or not isinstance(window, (int, np.integer)) or window < 2:
        raise ValueError(f"window must be an integer >= 2, got {window!r}")
    if shape[1] < window or shape[2] < window:
        raise ValueError(f"images of {shape[1]}x{shape[2]} are smaller than the {window}x{window} window")


def local_contrast(images, window=TEXTURE_WINDOW):
    """The standard deviation of luminance in each window x window square of each image.

    The population standard deviation (divided by window^2) of the Rec. 601 luminance (`luminance`), in grey
    levels, computed with box filters (summed-area tables of L and L^2). Only windows inside the image count,
    so the map is smaller than the image by window - 1 on each axis; entry [n, i, j] is the window whose top
    left pixel is (i, j), i.e. centred on (i + window // 2, j + window // 2) for an odd window.

    Args:
        images: (N, H, W, 3) uint8 or float in [-1, 1].
        window: the square's side in pixels.

    Returns:
        (N, H - window + 1, W - window + 1) float64.
    """
    lum = luminance(images)
    _check_window(window, lum.shape)
    area = float(window * window)
    mean = _window_sums(lum, window) / area
    mean_sq = _window_sums(lum * lum, window) / area
    return np.sqrt(np.maximum(mean_sq - mean * mean, 0.0))


def class_interiors(labels, num_classes, window=TEXTURE_WINDOW):
    """Which windows of `local_contrast` lie entirely inside one class.

    A window that straddles a class border measures the step between two colours, not a texture; keeping
    only windows whose window x window pixels all have one class is the class mask eroded by the window.

    Args:
        labels: (N, H, W) integer class ids; ids outside 0..num_classes-1 (e.g. don't-care) belong to no class.
        num_classes: number of classes K.
        window: the square's side in pixels.

    Returns:
        (K, N, H - window + 1, W - window + 1) bool.
    """
    labels = np.asarray(labels)
    if labels.ndim != 3:
        raise ValueError(f"labels must be (N, H, W), got shape {labels.shape}")
    _check_window(window, labels.shape)
    return np.stack(
        [
            _window_sums((labels == k).astype(np.float64), window) > window * window - 0.5
            for k in range(num_classes)
        ]
    )


def texture_contrast(images, labels, num_classes, window=TEXTURE_WINDOW):
    """Mean local contrast of each class: `local_contrast` averaged over that class's `class_interiors`.

    Args:
        images: (N, H, W, 3) uint8 or float in [-1, 1].
        labels: (N, H, W) class ids of those images (the label maps they were made from).
        num_classes: number of classes K.
        window: the square's side in pixels.

    Returns:
        contrast: (K,) float64 mean contrast in grey levels, NaN for a class with no interior window;
        counts: (K,) int64 interior windows per class.
    """
    labels = np.asarray(labels)
    if labels.shape != np.asarray(images).shape[:3]:
        raise ValueError(
            f"labels shape {labels.shape} does not match images shape {np.asarray(images).shape[:3]}"
        )
    contrast = local_contrast(images, window)
    inside = class_interiors(labels, num_classes, window)
    counts = inside.sum(axis=(1, 2, 3))
    sums = np.array([contrast[m].sum() for m in inside])
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan), counts


def texture_ratios(
    synthesized, real, labels, class_names=demo.CLASS_NAMES, window=TEXTURE_WINDOW, min_windows=25
):
    """Per class, the mean local contrast of synthesized pixels over that of real pixels of the same maps.

    1 means the synthesized images are as textured as the real ones; a blurred copy scores well below 1.
    Both image sets are measured over the same windows, those inside one class of `labels`.

    Args:
        synthesized: (N, H, W, 3) images made from `labels`, uint8 or float in [-1, 1].
        real: (N, H, W, 3) the real images of those label maps.
        labels: (N, H, W) class ids.
        class_names: one name per class id.
        window: the square's side in pixels.
        min_windows: classes with fewer interior windows than this get no ratio (None).

    Returns:
        {"texture_ratio": mean of the per-class ratios that exist (None if none),
        "texture_ratio_per_class", "texture_synthesized_per_class", "texture_real_per_class":
        {class name: float or None}}.
    """
    k = len(class_names)
    fake, counts = texture_contrast(synthesized, labels, k, window)
    true, _ = texture_contrast(real, labels, k, window)
    ok = (counts >= min_windows) & (true > 0)
    ratio = np.where(ok, fake / np.where(ok, true, 1.0), np.nan)
    return {
        "texture_ratio": float(np.nanmean(ratio)) if ok.any() else None,
        "texture_ratio_per_class": _per_class(ratio, ok, class_names),
        "texture_synthesized_per_class": _per_class(fake, ok, class_names),
        "texture_real_per_class": _per_class(true, ok, class_names),
    }


def _per_class(values, ok, class_names):
    """{class name: float} for the classes that `ok` keeps and have a finite value, None for the others."""
    return {
        name: (float(v) if np.isfinite(v) and ok[i] else None)
        for i, (name, v) in enumerate(zip(class_names, values))
    }


def horizontal_step_share(images, labels, num_classes):
    """Per class, mean |left-right luminance step| over the sum of the mean left-right and up-down steps.

    Steps are between 4-neighbours that both have the class (a step across a class border is an edge, not
    the texture). 0 means the class changes only from top to bottom (a sky's gradient, horizontal bands),
    1 only from left to right (vertical streaks), 0.5 no preferred direction.

    Args:
        images: (N, H, W, 3) uint8 or float in [-1, 1].
        labels: (N, H, W) class ids of those images.
        num_classes: number of classes K.

    Returns:
        share: (K,) float64, NaN for a class with no pair of neighbours or no step at all;
        pairs: (K,) int64, the smaller of its left-right and up-down neighbour pair counts.
    """
    labels = np.asarray(labels)
    lum = luminance(images)
    if labels.shape != lum.shape:
        raise ValueError(f"labels shape {labels.shape} does not match images shape {lum.shape}")
    dx = np.abs(np.diff(lum, axis=2))
    dy = np.abs(np.diff(lum, axis=1))
    share = np.full(num_classes, np.nan)
    pairs = np.zeros(num_classes, np.int64)
    for k in range(num_classes):
        inside = labels == k
        across = inside[:, :, 1:] & inside[:, :, :-1]
        down = inside[:, 1:, :] & inside[:, :-1, :]
        pairs[k] = min(across.sum(), down.sum())
        if pairs[k] == 0:
            continue
        mean_x, mean_y = dx[across].mean(), dy[down].mean()
        if mean_x + mean_y > 0:
            share[k] = mean_x / (mean_x + mean_y)
    return share, pairs


def streak_shares(synthesized, real, labels, class_names=demo.CLASS_NAMES, min_pairs=25):
    """`horizontal_step_share` of synthesized and real images per class, and the largest gap between them.

    A generator that draws each class with the photos' directions scores a gap near 0; vertical streaks
    across a sky (real share ~0.1) or water give a large one. A measure of direction, not of strength:
    `texture_ratios` says how strong the texture is.

    Args:
        synthesized: (N, H, W, 3) images made from `labels`, uint8 or float in [-1, 1].
        real: (N, H, W, 3) the real images of those label maps.
        labels: (N, H, W) class ids.
        class_names: one name per class id.
        min_pairs: classes with fewer neighbour pairs than this get no share (None).

    Returns:
        {"streak_gap": the largest |synthesized - real| share over the classes that have both (None if none),
        "streak_class": that class's name, "horizontal_step_share_synthesized_per_class",
        "horizontal_step_share_real_per_class": {class name: float or None}}.
    """
    k = len(class_names)
    fake, pairs = horizontal_step_share(synthesized, labels, k)
    true, _ = horizontal_step_share(real, labels, k)
    ok = (pairs >= min_pairs) & np.isfinite(fake) & np.isfinite(true)
    gaps = np.where(ok, np.abs(fake - np.where(ok, true, 0.0)), -1.0)
    worst = int(np.argmax(gaps))
    return {
        "streak_gap": float(gaps[worst]) if ok.any() else None,
        "streak_class": class_names[worst] if ok.any() else None,
        "horizontal_step_share_synthesized_per_class": _per_class(fake, ok, class_names),
        "horizontal_step_share_real_per_class": _per_class(true, ok, class_names),
    }


def border_step_ratio(images, width=8):
    """Mean left-right luminance step in the `width` columns at each side over that of the columns between.

    Real demo photos read about 1 (0.96 on the validation set); thin vertical lines a few pixels from the
    left and right borders, which a generator with zero padding paints (`SPADEGenerator`'s `padding_mode`),
    raise it (about 2 in the demo's 1000-step runs). A whole-image figure: it does not see the classes.

    Args:
        images: (N, H, W, 3), uint8 or float in [-1, 1]; W > 2 * width + 1.
        width: columns counted as the border on each side.

    Returns:
        float.
    """
    dx = np.abs(np.diff(luminance(images), axis=2)).mean(axis=(0, 1))
    if dx.size <= 2 * width:
        raise ValueError(f"images {np.shape(images)} are too narrow for a border of {width} columns a side")
    inner = dx[width:-width].mean()
    return float((dx[:width].mean() + dx[-width:].mean()) / 2 / inner) if inner > 0 else float("inf")


# ---------------------------------------------------------------------------------------------------------
# The report
# ---------------------------------------------------------------------------------------------------------


def _style_exemplars(looks, look):
    """For each map i, the index of a real image of `look` other than map i's own (when there is another)."""
    pool = [j for j, v in enumerate(looks) if v == look]
    if not pool:
        return None
    picks = []
    for i in range(len(looks)):
        j = pool[i % len(pool)]
        if j == i and len(pool) > 1:
            j = pool[(i + 1) % len(pool)]
        picks.append(j)
    return np.array(picks)


def demo_report(
    synthesize,
    labels,
    real_images,
    looks,
    classifier,
    oracle=None,
    instances=None,
    use_vae=True,
    num_seeds=DIVERSITY_SEEDS,
    num_diversity_maps=16,
    num_style_maps=None,
    seed=0,
    class_names=demo.CLASS_NAMES,
):
    """All the demo's figures for one generator, on one split's label maps.

    Runs, in order: each map from its own photo (VAE: the latent from the encoder, as `evaluate.py` and the
    official test script do; otherwise the generator's only image), scored by the oracle (label consistency)
    and against the real images (texture); then, for VAE models, every map with an exemplar of each look
    (a real image of that look, not the map's own when another exists; style fidelity) and the first maps
    from `num_seeds` seeds each (diversity).

    Args:
        synthesize: callable(labels, instances=None, seeds=None, style_images=None) -> (N, H, W, 3) uint8;
            `spade_tf.serving.inference.load_synthesizer(path).generate` fits.
        labels: (N, H, W) label ids.
        real_images: (N, H, W, 3) uint8, the real images of those maps.
        looks: (N,) the look of each real image (`split_looks`).
        classifier: a `LookClassifier` fit on real training images (`fit_look_classifier`).
        oracle: the demo oracle (`oracle.load_or_train_oracle`); None leaves label consistency out.
        instances: (N, H, W) instance ids for models with instance maps, else None.
        use_vae: whether the model takes a latent (seeds, style images); False leaves style and diversity out.
        num_seeds: seeds per map for diversity.
        num_diversity_maps: maps (the first ones) synthesized from `num_seeds` seeds each.
        num_style_maps: maps (the first ones) synthesized with each look's exemplars; None: all.
        seed: first seed; seeds seed .. seed + num_seeds - 1 are used for every map.
        class_names: one name per class id.

    Returns:
        A JSON-ready dict: "num_maps"; with an oracle, `oracle.oracle_scores`'s four figures and
        "oracle_miou_ratio"; `texture_ratios`'s and `streak_shares`'s; "border_step_ratio_synthesized" and "_real"
        (`border_step_ratio`); for VAE models `style_fidelity`'s, `seed_diversity`'s,
        "num_looks" and "num_seeds" (None for the figures left out).
    """
    labels = np.asarray(labels)
    real_images = np.asarray(real_images)
    looks = list(looks)
    n = len(labels)
    if real_images.shape[:3] != labels.shape or len(looks) != n:
        raise ValueError(
            f"labels {labels.shape}, real_images {real_images.shape} and {len(looks)} looks do not match"
        )

    def run(index, seeds=None, style=None):
        inst = None if instances is None else np.asarray(instances)[index]
        return np.asarray(synthesize(labels[index], inst, seeds=seeds, style_images=style))

    everything = np.arange(n)
    if use_vae:
        own = run(everything, seeds=seed + everything, style=real_images)
    else:
        own = run(everything)
    report = {"num_maps": int(n)}
    if oracle is not None:
        report.update(oracle_lib.oracle_scores(oracle, labels, own, real_images, len(class_names)))
        real_miou = report["oracle_miou_real"]
        report["oracle_miou_ratio"] = report["oracle_miou_synthesized"] / real_miou if real_miou > 0 else None
    report.update(texture_ratios(own, real_images, labels, class_names))
    report.update(streak_shares(own, real_images, labels, class_names))
    report.update(
        border_step_ratio_synthesized=border_step_ratio(own),
        border_step_ratio_real=border_step_ratio(real_images),
    )

    report.update(
        style_accuracy=None,
        style_accuracy_per_look=None,
        style_confusion=None,
        looks_per_map=None,
        seed_pixel_distance=None,
        num_looks=len(classifier.looks),
        num_seeds=None,
    )
    if not use_vae:
        return report
    maps = np.arange(n if num_style_maps is None else min(int(num_style_maps), n))
    made, made_looks = [], []
    for look in classifier.looks:
        exemplars = _style_exemplars(looks, look)
        if exemplars is None:
            continue
        made.append(run(maps, seeds=seed + maps, style=real_images[exemplars[maps]]))
        made_looks += [look] * len(maps)
    if made:
        report.update(style_fidelity(classifier, np.concatenate(made), made_looks))
    m = min(int(num_diversity_maps), n)
    repeated = np.repeat(np.arange(m), num_seeds)
    seeds = seed + np.tile(np.arange(num_seeds), m)
    images = run(repeated, seeds=seeds).reshape((m, num_seeds) + real_images.shape[1:])
    report.update(seed_diversity(classifier, images), num_seeds=int(num_seeds))
    return report


def _number(value, fmt="{:.3f}"):
    return "-" if value is None else fmt.format(value)


def _taken_for(look, classified):
    """', else <look> <fraction>': the look that an exemplar look's images most often come out as instead."""
    others = {other: v for other, v in (classified or {}).items() if other != look and v > 0}
    if not others:
        return ""
    other = max(others, key=others.get)
    return f", else {other} {others[other]:.2f}"


def format_demo_report(report):
    """The report of `demo_report` as an aligned two-column text table, per-class and per-look rows indented."""
    rows = [("maps", str(report["num_maps"]))]
    if "oracle_miou_synthesized" in report:
        rows += [
            ("mIoU, synthesized (demo oracle)", _number(report["oracle_miou_synthesized"])),
            ("mIoU, real (demo oracle)", _number(report["oracle_miou_real"])),
            ("label consistency (mIoU ratio)", _number(report["oracle_miou_ratio"])),
        ]
    looks = report.get("num_looks")
    seeds = report.get("num_seeds")
    if seeds is None and report.get("style_accuracy") is None:
        # demo_report measures style and seeds on VAE models only: say so rather than print empty rows.
        rows.append(
            (f"style accuracy ({looks} looks), seeds", "not measured: not a VAE (no style, no latent)")
        )
    else:
        rows.append((f"style accuracy ({looks} looks)", _number(report.get("style_accuracy"))))
        confusion = report.get("style_confusion") or {}
        for look, value in (report.get("style_accuracy_per_look") or {}).items():
            rows.append((f"  {look}", _number(value) + _taken_for(look, confusion.get(look))))
        rows.append(
            (
                f"looks covered by {seeds or '-'} seeds (of {looks})",
                _number(report.get("looks_per_map"), "{:.2f}"),
            )
        )
        rows.append(
            (
                "pixel distance between seeds (grey levels)",
                _number(report.get("seed_pixel_distance"), "{:.1f}"),
            )
        )
    rows.append(("texture ratio (5x5 contrast, mean of classes)", _number(report.get("texture_ratio"))))
    for name, value in (report.get("texture_ratio_per_class") or {}).items():
        rows.append((f"  {name}", _number(value)))
    if "streak_gap" in report:
        worst = report.get("streak_class")
        rows.append(
            (
                "streaks (left-right step share, max gap)",
                _number(report.get("streak_gap")) + (f" ({worst})" if worst else ""),
            )
        )
        real = report.get("horizontal_step_share_real_per_class") or {}
        for name, value in (report.get("horizontal_step_share_synthesized_per_class") or {}).items():
            if value is not None:
                rows.append((f"  {name}", f"{value:.2f} vs real {real[name]:.2f}"))
    if report.get("border_step_ratio_synthesized") is not None:
        rows.append(
            (
                "border lines (left-right steps, 8 edge cols)",
                f"{report['border_step_ratio_synthesized']:.2f} vs real {report['border_step_ratio_real']:.2f}",
            )
        )
    return "\n".join(f"{label:<44} {text}" for label, text in rows)


# ---------------------------------------------------------------------------------------------------------
# A trained model on a demo split: the report and its gallery
# ---------------------------------------------------------------------------------------------------------


def load_demo_split(demo_root, split, limit=0):
    """One split of a demo dataset folder, in file-name order.

    Args:
        demo_root: a demo dataset folder (`demo.generate_demo_dataset`).
        split: "train" or "val".
        limit: the first N examples; 0 = all.

    Returns:
        (images (N, H, W, 3) uint8, labels (N, H, W) uint8, instances (N, H, W) int32, looks: N names).
    """
    images, labels = oracle_lib.load_split(demo_root, split)
    looks = split_looks(demo_root, split)
    folder = os.path.join(demo_root, split, "instances")
    names = sorted(n for n in os.listdir(folder) if n.endswith(".png"))
    if len(names) != len(labels):
        raise ValueError(f"{folder}: {len(names)} instance maps for {len(labels)} label maps")
    instances = np.stack([np.asarray(Image.open(os.path.join(folder, n)), dtype=np.int32) for n in names])
    n = len(labels) if limit <= 0 else min(int(limit), len(labels))
    return images[:n], labels[:n], instances[:n], looks[:n]


def gallery_rows(
    synthesize, labels, instances, real_images, looks, count, looks_order=demo.LOOKS, seeds=(0, 1)
):
    """The demo gallery's images for the first `count` maps: with each look's exemplar, and from seeds.

    Args:
        synthesize: as for `demo_report` (a VAE model's).
        labels, instances, real_images, looks: the whole split; exemplars are drawn from all of it (the
            exemplar of look L for map i is `_style_exemplars`' pick, the one `demo_report` uses).
        count: the maps shown (the first ones).
        looks_order: the looks, one column each.
        seeds: one column per random seed.

    Returns:
        A list with one {column name: uint8 image} per map: "<look> style" and "seed <s>" columns.
    """
    n = min(int(count), len(labels))
    index = np.arange(n)
    inst = None if instances is None else np.asarray(instances)[:n]
    rows = [{} for _ in range(n)]
    for look in looks_order:
        exemplars = _style_exemplars(list(looks), look)
        if exemplars is None:
            continue
        style = np.asarray(real_images)[exemplars[:n]]
        made = np.asarray(synthesize(labels[:n], inst, seeds=index, style_images=style))
        for i in range(n):
            rows[i][f"{look} style"] = made[i]
    for s in seeds:
        made = np.asarray(synthesize(labels[:n], inst, seeds=np.full(n, s)))
        for i in range(n):
            rows[i][f"seed {s}"] = made[i]
    return rows
