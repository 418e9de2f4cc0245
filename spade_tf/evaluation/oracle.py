"""A segmentation "oracle" that checks synthesized images against their label maps.

SPADE papers score a generator by segmenting its outputs with a network trained on real images and comparing
the result with the input label map (mIoU, pixel accuracy). For the bundled demo dataset
(`spade_tf/data/demo.py`) a small per-pixel classifier plays that role: it is trained on the real demo
images in well under a minute on a CPU, and labels a pixel from its colour and texture in a ~21 px
neighbourhood. A generator whose outputs put the right colours and textures in the right places scores close
to the oracle's score on real validation images.

Example:

    root = demo.generate_demo_dataset()
    oracle = load_or_train_oracle(root)
    real = evaluate_oracle(oracle, *load_split(root, "val"), num_classes=len(demo.CLASS_NAMES))
    fake = evaluate_oracle(oracle, synthesized_uint8, val_labels, num_classes=len(demo.CLASS_NAMES))
    ratio = fake["mean_iou"] / real["mean_iou"]
"""

import json
import os

import keras
import numpy as np
import tensorflow as tf
from PIL import Image

# Bump when the oracle's architecture or training recipe changes, so cached oracles are retrained.
# Version 2: learning rate 1e-2 (was 3e-3), for the demo's four looks.
ORACLE_VERSION = 2
ORACLE_FILE = "oracle.keras"
_ORACLE_INFO = "oracle.json"
# Dilations of the 3x3 convs: receptive field 1 + 2 * sum = 21 px, enough to see a texture's period
# (ripples, grass blades) and a little of the surroundings, without downsampling.
DILATIONS = (1, 2, 4, 2, 1)
DEFAULT_STEPS = 600
DEFAULT_BATCH_SIZE = 16
DEFAULT_WIDTH = 16
# Peak of the cosine schedule. With the demo's four looks, 3e-3 left the oracle short of converged after 600
# steps (val mIoU 0.836); 1e-2 gave 0.877 and 0.868 with seeds 0 and 1 (6e-3: 0.867, 0.865; 1.5e-2: 0.875,
# 0.853), at no extra time. Width 24 or 900 steps reached 0.88 and 0.87 but cost 2.2x and 1.5x the time.
DEFAULT_LEARNING_RATE = 1e-2


def build_oracle(num_classes, width=DEFAULT_WIDTH, dilations=DILATIONS, seed=0):
    """A small fully-convolutional per-pixel classifier.

    Args:
        num_classes: number of output classes K.
        width: channels of every hidden conv.
        dilations: dilation rate of each 3x3 conv (conv -> batch norm -> ReLU); the receptive field is
            1 + 2 * sum(dilations) pixels.
        seed: seed of the weight initialisers.

    Returns:
        A `keras.Model` mapping NHWC float32 images in [-1, 1] of any size to logits (N, H, W, K).
    """
    if int(num_classes) < 2:
        raise ValueError(f"build_oracle: num_classes must be >= 2, got {num_classes}")
    inputs = keras.Input((None, None, 3), name="image")
    x = inputs
    for i, rate in enumerate(dilations):
        x = keras.layers.Conv2D(
            width,
            3,
            padding="same",
            dilation_rate=rate,
            use_bias=False,
            kernel_initializer=keras.initializers.HeNormal(seed=seed + i),
            name=f"conv_{i}",
        )(x)
        x = keras.layers.BatchNormalization(name=f"bn_{i}")(x)
        x = keras.layers.ReLU(name=f"relu_{i}")(x)
    logits = keras.layers.Conv2D(
        int(num_classes),
        1,
        kernel_initializer=keras.initializers.GlorotUniform(seed=seed + len(dilations)),
        name="logits",
    )(x)
    return keras.Model(inputs, logits, name="oracle")


def _to_unit_range(images):
    """uint8 [0, 255] -> float32 [-1, 1]; float input must already be in [-1, 1]."""
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"images must be (N, H, W, 3), got shape {images.shape}")
    if images.dtype == np.uint8:
        return images.astype(np.float32) / 127.5 - 1.0
    if not np.issubdtype(images.dtype, np.floating):
        raise ValueError(f"images must be uint8 in [0, 255] or float in [-1, 1], got dtype {images.dtype}")
    # A little slack for generator outputs that overshoot tanh's range after a resize.
    if images.size and (images.min() < -1.01 or images.max() > 1.01):
        raise ValueError(
            f"float images must be in [-1, 1] (got [{images.min():.3g}, {images.max():.3g}]); "
            "pass uint8 images in [0, 255], or scale floats with x / 127.5 - 1"
        )
    return images.astype(np.float32)


def train_oracle(
    train_images,
    train_labels,
    num_classes,
    steps=DEFAULT_STEPS,
    batch_size=DEFAULT_BATCH_SIZE,
    seed=0,
    width=DEFAULT_WIDTH,
):
    """Trains `build_oracle` on real images with per-pixel cross-entropy.

    Batches are drawn at random with horizontal flips and a small brightness/contrast jitter, so the oracle
    judges colours by range rather than exact value (a generator never reproduces them exactly). About 45 s
    for the default 600 steps of 16 images at 64 px on 2 CPU cores.

    Args:
        train_images: (N, H, W, 3) uint8 images.
        train_labels: (N, H, W) integer class ids in [0, num_classes).
        num_classes: number of classes K.
        steps: optimiser steps.
        batch_size: images per step.
        seed: seed for the initial weights and the batch order.
        width: hidden channels (see `build_oracle`).

    Returns:
        The trained `keras.Model` (see `build_oracle`).
    """
    images = _to_unit_range(train_images)
    labels = np.asarray(train_labels)
    if labels.shape != images.shape[:3]:
        raise ValueError(f"labels shape {labels.shape} does not match images shape {images.shape[:3]}")
    if labels.min() < 0 or labels.max() >= num_classes:
        raise ValueError(
            f"label ids must be in [0, {num_classes - 1}] for num_classes={num_classes}, "
            f"got values in [{labels.min()}, {labels.max()}]"
        )
    rng = np.random.default_rng(seed)
    model = build_oracle(num_classes, width=width, seed=seed)
    schedule = keras.optimizers.schedules.CosineDecay(DEFAULT_LEARNING_RATE, decay_steps=steps, alpha=0.05)
    optimizer = keras.optimizers.Adam(schedule)
    images_t = tf.constant(images)
    labels_t = tf.constant(labels.astype(np.int32))
    binomial = np.array([1.0, 2.0, 1.0], np.float32)
    blur_kernel = tf.constant(np.tile((np.outer(binomial, binomial) / 16)[:, :, None, None], (1, 1, 3, 1)))

    @tf.function
    def step(index, flip, gain, offset, blur):
        x = tf.gather(images_t, index)
        y = tf.gather(labels_t, index)
        x = tf.where(flip[:, None, None, None], tf.reverse(x, [2]), x)
        y = tf.where(flip[:, None, None], tf.reverse(y, [2]), y)
        x = tf.clip_by_value(x * gain[:, None, None, :] + offset[:, None, None, None], -1.0, 1.0)
        blurred = tf.nn.depthwise_conv2d(
            tf.pad(x, [[0, 0], [1, 1], [1, 1], [0, 0]], "SYMMETRIC"), blur_kernel, [1] * 4, "VALID"
        )
        x = x + blur[:, None, None, None] * (blurred - x)
        with tf.GradientTape() as tape:
            logits = model(x, training=True)
            loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits))
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return loss

    n = len(images)
    for _ in range(int(steps)):
        index = rng.integers(0, n, batch_size)
        flip = rng.random(batch_size) < 0.5
        gain = rng.uniform(0.92, 1.08, (batch_size, 3)).astype(np.float32)
        offset = rng.uniform(-0.06, 0.06, batch_size).astype(np.float32)
        # Half of the images are softened by a random amount: generator outputs are smoother than the
        # procedural textures, and the oracle should judge where classes are, not how sharp they are.
        blur = np.where(rng.random(batch_size) < 0.5, rng.random(batch_size), 0.0).astype(np.float32)
        step(index, flip, gain, offset, blur)
    return model


def predict_labels(oracle, images, batch_size=64):
    """Per-pixel class ids.

    Args:
        oracle: a model from `build_oracle` / `train_oracle`.
        images: (N, H, W, 3), either uint8 in [0, 255] or float in [-1, 1] (the generator's output range);
            the dtype decides which.
        batch_size: images per forward pass.

    Returns:
        (N, H, W) int64 class ids.
    """
    x = _to_unit_range(images)
    out = [
        np.argmax(np.asarray(oracle(x[i : i + batch_size], training=False)), axis=-1)
        for i in range(0, len(x), batch_size)
    ]
    return np.concatenate(out, 0) if out else np.zeros(x.shape[:3], np.int64)


def segmentation_metrics(pred_labels, true_labels, num_classes, ignore_index=None, class_map=None):
    """Pixel accuracy and IoU from a confusion matrix.

    Args:
        pred_labels: integer predictions, any shape.
        true_labels: integer ground truth, the same shape.
        num_classes: number of evaluated classes K (ids 0..K-1 after `class_map`).
        ignore_index: ground-truth pixels with this id (after `class_map`) are left out.
        class_map: optional 1-D integer array mapping raw ids to evaluated ids, applied to both predictions
            and truth; raw ids mapped to `ignore_index` are left out when they are the truth.

    A prediction outside 0..K-1 (e.g. a class mapped to `ignore_index`) on a counted pixel is wrong: it
    lowers pixel accuracy and the IoU of the true class, but has no column in the confusion matrix.

    Returns:
        A dict with "pixel_accuracy" (float), "mean_iou" (mean over classes present in truth or prediction),
        "per_class_iou" (list of K floats, NaN for classes absent from both) and "confusion"
        ((K, K) int64 array, rows = truth, columns = prediction).
    """
    pred = np.asarray(pred_labels).astype(np.int64).ravel()
    true = np.asarray(true_labels).astype(np.int64).ravel()
    if pred.shape != true.shape:
        raise ValueError(
            f"pred_labels and true_labels must have the same shape, got {np.shape(pred_labels)} "
            f"and {np.shape(true_labels)}"
        )
    k = int(num_classes)
    if class_map is not None:
        class_map = np.asarray(class_map).astype(np.int64)
        for name, ids in (("pred_labels", pred), ("true_labels", true)):
            if ids.size and (ids.min() < 0 or ids.max() >= len(class_map)):
                raise ValueError(
                    f"{name} has ids in [{ids.min()}, {ids.max()}] but class_map covers only "
                    f"0..{len(class_map) - 1}; extend class_map to every raw id"
                )
        pred, true = class_map[pred], class_map[true]
    keep = np.ones_like(true, bool) if ignore_index is None else true != ignore_index
    pred, true = pred[keep], true[keep]
    if true.size and (true.min() < 0 or true.max() >= k):
        bad = true[(true < 0) | (true >= k)][0]
        raise ValueError(
            f"true_labels has id {bad} outside 0..{k - 1} for num_classes={k}; pass ignore_index={bad} "
            "to leave such pixels out, or a class_map that maps them"
        )
    # Out-of-range predictions go to an extra column K, counted as wrong and then dropped.
    pred = np.where((pred >= 0) & (pred < k), pred, k)
    full = np.bincount(true * (k + 1) + pred, minlength=k * (k + 1)).reshape(k, k + 1)
    confusion = full[:, :k]
    tp = np.diag(confusion).astype(np.float64)
    union = full.sum(1) + confusion.sum(0) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(union > 0, tp / np.maximum(union, 1), np.nan)
    total = full.sum()
    return {
        "pixel_accuracy": float(tp.sum() / total) if total else float("nan"),
        "mean_iou": float(np.nanmean(iou)) if np.any(union > 0) else float("nan"),
        "per_class_iou": [float(v) for v in iou],
        "confusion": confusion,
    }


def evaluate_oracle(oracle, images, labels, num_classes):
    """`segmentation_metrics` of the oracle's predictions on `images` against `labels`."""
    return segmentation_metrics(predict_labels(oracle, images), labels, num_classes)


def oracle_scores(oracle, labels, synthesized, real, num_classes):
    """The oracle's mIoU and pixel accuracy on synthesized and on real images, against the same label maps.

    The real images' scores are the ceiling a generator can reach: a perfect one matches them.

    Args:
        oracle: the oracle model (`load_or_train_oracle`).
        labels: (N, H, W) label ids, the generator's inputs.
        synthesized: (N, H, W, 3) uint8 images made from `labels`.
        real: (N, H, W, 3) uint8 real images of the same label maps.
        num_classes: classes of the dataset.

    Returns:
        {"oracle_miou_synthesized", "oracle_pixel_accuracy_synthesized", "oracle_miou_real",
        "oracle_pixel_accuracy_real"}: floats.
    """
    result = {}
    for name, images in (("synthesized", synthesized), ("real", real)):
        scores = evaluate_oracle(oracle, images, labels, num_classes)
        result[f"oracle_miou_{name}"] = float(scores["mean_iou"])
        result[f"oracle_pixel_accuracy_{name}"] = float(scores["pixel_accuracy"])
    return result


def oracle_features(oracle, images, batch_size=32):
    """Per-image features of the demo oracle: mean and standard deviation of its last hidden layer.

    Colour and texture statistics of the whole picture, 2 x width numbers per image; a feature space for a
    KID on the demo domain when no Inception weights exist.

    Args:
        oracle: the oracle model.
        images: (N, H, W, 3) uint8.
        batch_size: images per call.

    Returns:
        (N, 2 x width) float64.
    """
    hidden = [layer for layer in oracle.layers if layer.name.startswith("relu_")][-1]
    body = keras.Model(oracle.input, hidden.output)
    x = _to_unit_range(np.asarray(images))
    out = []
    for i in range(0, len(x), batch_size):
        h = np.asarray(body(x[i : i + batch_size], training=False), np.float64)
        out.append(np.concatenate([h.mean(axis=(1, 2)), h.std(axis=(1, 2))], axis=1))
    return np.concatenate(out)


def load_split(demo_root, split):
    """Images and label maps of one split of a dataset in the custom layout.

    Args:
        demo_root: dataset folder holding `<split>/images/*.png` and `<split>/labels/*.png`.
        split: "train" or "val".

    Returns:
        images: (N, H, W, 3) uint8; labels: (N, H, W) uint8, in file-name order.
    """
    if split not in ("train", "val"):
        raise ValueError(f"split must be one of ('train', 'val'), got {split!r}")
    folders = {kind: os.path.join(demo_root, split, kind) for kind in ("images", "labels")}
    names = {}
    for kind, folder in folders.items():
        if not os.path.isdir(folder):
            raise FileNotFoundError(
                f"{folder} does not exist; generate the demo dataset with "
                "spade_tf.data.demo.generate_demo_dataset() or point demo_root at a custom-layout folder"
            )
        names[kind] = sorted(n for n in os.listdir(folder) if n.endswith(".png"))
    if names["images"] != names["labels"]:
        missing = sorted(set(names["images"]) ^ set(names["labels"]))
        raise ValueError(
            f"{demo_root}/{split}: images and labels do not pair up; unmatched files: {missing[:5]}"
        )
    if not names["images"]:
        raise ValueError(f"{folders['images']} holds no .png files")
    images = [
        np.asarray(Image.open(os.path.join(folders["images"], n)).convert("RGB")) for n in names["images"]
    ]
    labels = []
    for n in names["labels"]:
        with Image.open(os.path.join(folders["labels"], n)) as im:
            if im.mode != "L":
                raise ValueError(
                    f"{folders['labels']}/{n} has mode {im.mode}; label maps must be 8-bit mode L"
                )
            labels.append(np.asarray(im))
    return np.stack(images), np.stack(labels)


def _num_classes(demo_root):
    path = os.path.join(demo_root, "palette.json")
    try:
        with open(path) as f:
            return len(json.load(f)["classes"])
    except (OSError, ValueError, KeyError) as e:
        raise ValueError(
            f"cannot read the class list from {path} ({e}); it must hold {{'classes': [...]}}"
        ) from e


def load_or_train_oracle(demo_root, seed=0):
    """The oracle of a dataset folder, trained on its train split once and cached there.

    The model is cached as `<demo_root>/oracle.keras`, with `oracle.json` beside it recording the seed and
    recipe version; a cache made with another seed or version is retrained. Both files are written to a
    temporary name and renamed, so an interrupted run leaves no half-written oracle.

    Args:
        demo_root: dataset folder (see `spade_tf.data.demo.generate_demo_dataset`).
        seed: training seed.

    Returns:
        The oracle `keras.Model`.
    """
    path = os.path.join(demo_root, ORACLE_FILE)
    info_path = os.path.join(demo_root, _ORACLE_INFO)
    info = {"version": ORACLE_VERSION, "seed": int(seed)}
    try:
        with open(info_path) as f:
            cached = json.load(f) == info and os.path.exists(path)
    except (OSError, ValueError):
        cached = False
    if cached:
        return keras.saving.load_model(path, compile=False)
    images, labels = load_split(demo_root, "train")
    model = train_oracle(images, labels, _num_classes(demo_root), seed=seed)
    # The record goes first and comes back last, so a model file never sits beside a record it does not match.
    if os.path.exists(info_path):
        os.remove(info_path)
    tmp = os.path.join(demo_root, f"oracle.tmp-{os.getpid()}.keras")
    model.save(tmp)
    os.replace(tmp, path)
    with open(info_path + ".tmp", "w") as f:
        json.dump(info, f)
    os.replace(info_path + ".tmp", info_path)
    return model
