"""The paper's quality numbers for synthesized images: FID and KID, and segmentation accuracy (mIoU, pixel
accuracy) of a segmentation network run on them against the input label maps.

SPADE (Table 1) reports FID from the 2015 Inception network and mIoU / pixel accuracy from DeepLabV2
(COCO-Stuff), UperNet101 (ADE20K) and DRN-D-105 (Cityscapes, on its 19 train ids); the official repository has
no evaluation code. Here the Inception weights and the segmentation network are user-supplied files
(`spade_tf.evaluation.inception.load_inception`, `spade_tf.evaluation.segmenter.Segmenter`). On the bundled demo dataset the demo
oracle (`spade_tf.evaluation.oracle`) gives mIoU, and its features give a domain KID that needs no download (labelled
"kid_oracle": a sanity and progress figure, not comparable with published KIDs).

Example:

    result = evaluate_images(labels, fakes, reals, num_classes=35,
                             inception=load_inception("pt_inception-2015-12-05-6726825d.pth"),
                             segmenter=Segmenter("drn_d_105_savedmodel"), label_class_map="cityscapes",
                             ignore_index=255, num_eval_classes=19)
    print(format_table(result))
"""

import hashlib
import json
import os
import time

import numpy as np

from spade_tf.data import demo
from spade_tf.evaluation import demo_metrics, metrics
from spade_tf.evaluation.inception import load_inception
from spade_tf.evaluation.oracle import (
    load_or_train_oracle,
    oracle_features,
    oracle_scores,
    segmentation_metrics,
)
from spade_tf.serving import synthesis
from spade_tf.serving.inference import load_synthesizer, resolve_model_path

# Rows of `format_table`, in order: key, label, format.
_ROWS = (
    ("num_images", "images", "{:d}"),
    ("fid", "FID (Inception)", "{:.2f}"),
    ("kid", "KID x 1000 (Inception)", "{:.2f}"),
    ("seg_miou", "mIoU, synthesized (segmenter)", "{:.3f}"),
    ("seg_pixel_accuracy", "pixel accuracy, synthesized (segmenter)", "{:.3f}"),
    ("seg_miou_real", "mIoU, real (segmenter)", "{:.3f}"),
    ("seg_pixel_accuracy_real", "pixel accuracy, real (segmenter)", "{:.3f}"),
    ("oracle_miou_synthesized", "mIoU, synthesized (demo oracle)", "{:.3f}"),
    ("oracle_pixel_accuracy_synthesized", "pixel accuracy, synthesized (demo oracle)", "{:.3f}"),
    ("oracle_miou_real", "mIoU, real (demo oracle)", "{:.3f}"),
    ("oracle_pixel_accuracy_real", "pixel accuracy, real (demo oracle)", "{:.3f}"),
    ("kid_oracle", "KID x 1000 (demo-oracle features)", "{:.2f}"),
)
# KID values are printed x1000, as papers do.
_SCALED = {"kid": 1000.0, "kid_oracle": 1000.0}


def map_labels(labels, class_map, what="labels"):
    """Applies a lookup table (e.g. Cityscapes' 35 ids -> 19 train ids, others -> 255) to label ids."""
    labels = np.asarray(labels).astype(np.int64)
    table = np.asarray(class_map).astype(np.int64)
    if labels.size and (labels.min() < 0 or labels.max() >= len(table)):
        raise ValueError(
            f"{what} hold ids {labels.min()}..{labels.max()} but the class map covers 0..{len(table) - 1}; "
            "give a class map with an entry for every id."
        )
    return table[labels]


def segmentation_scores(segmenter, images, labels, num_eval_classes, ignore_index=None, label_class_map=None):
    """mIoU and pixel accuracy of `segmenter` on `images` against `labels`.

    Args:
        segmenter: a `spade_tf.evaluation.segmenter.Segmenter` (its own class map turns its outputs into the
            evaluated ids).
        images: (N, H, W, 3) uint8.
        labels: (N, H, W) input label ids.
        num_eval_classes: K, the evaluated classes (ids 0..K-1 after the maps).
        ignore_index: label id left out of the scores (after `label_class_map`).
        label_class_map: optional table applied to the labels before comparing.

    Returns:
        `spade_tf.evaluation.oracle.segmentation_metrics`'s dict.
    """
    pred, _ = segmenter.predict(np.asarray(images))
    true = labels if label_class_map is None else map_labels(labels, label_class_map)
    return segmentation_metrics(pred, true, num_eval_classes, ignore_index=ignore_index)


def _kid(real_features, fake_features, subset_size, num_subsets):
    return metrics.kernel_inception_distance(
        real_features, fake_features, num_subsets=num_subsets, subset_size=subset_size
    )


def evaluate_images(
    labels,
    fakes,
    reals,
    num_classes,
    inception=None,
    stats_cache=None,
    split="val",
    data_fingerprint="",
    segmenter=None,
    num_eval_classes=None,
    ignore_index=None,
    label_class_map=None,
    oracle=None,
    kid_subset_size=1000,
    kid_subsets=100,
    segment_real=True,
):
    """Every metric that the given models allow, as one flat dict of floats.

    Args:
        labels: (N, H, W) input label ids.
        fakes: (N, H, W, 3) uint8 synthesized images.
        reals: (N, H, W, 3) uint8 real images at the same size (the paper's protocol: real statistics at the
            generated size).
        num_classes: label classes of the dataset (for the oracle).
        inception: an `InceptionFeatures` (FID and KID), or None.
        stats_cache: a `metrics.StatisticsCache` for the real features, or None to compute them.
        split, data_fingerprint: the cache key's split name and a string that changes with the images.
        segmenter: a `Segmenter`, or None.
        num_eval_classes: classes the segmenter is scored on (default num_classes).
        ignore_index, label_class_map: see `segmentation_scores`.
        oracle: the demo oracle model, or None.
        kid_subset_size, kid_subsets: KID subsets (clipped to the number of images).
        segment_real: also score the segmenter on the real images (the reachable ceiling).

    Returns:
        dict with "num_images" and, as available, "fid", "kid", "kid_std", "seg_*", "oracle_*", "kid_oracle".
    """
    labels, fakes, reals = np.asarray(labels), np.asarray(fakes), np.asarray(reals)
    n = len(labels)
    if not (len(fakes) == len(reals) == n) or fakes.shape != reals.shape or fakes.shape[:3] != labels.shape:
        raise ValueError(
            f"labels {labels.shape}, synthesized {fakes.shape} and real {reals.shape} images must match "
            "(the real images at the generated size)."
        )
    result = {"num_images": n}
    if inception is not None:
        fake_features = inception(fakes)
        if stats_cache is not None:
            key = metrics.StatisticsKey(split, fakes.shape[1:3], inception.identity, n, data_fingerprint)
            real = stats_cache.get_or_compute(key, lambda: inception(reals))
            real_mu, real_sigma, real_features = real.mu, real.sigma, real.features
        else:
            real_features = inception(reals)
            real_mu, real_sigma = metrics.gaussian_statistics(real_features)
        mu, sigma = metrics.gaussian_statistics(fake_features)
        result["fid"] = float(metrics.frechet_distance(real_mu, real_sigma, mu, sigma))
        kid = _kid(real_features, fake_features, kid_subset_size, kid_subsets)
        result["kid"], result["kid_std"] = kid["kid"], kid["kid_std"]
    if segmenter is not None:
        k = int(num_eval_classes or num_classes)
        runs = [("", fakes)] + ([("_real", reals)] if segment_real else [])
        for suffix, images in runs:
            scores = segmentation_scores(segmenter, images, labels, k, ignore_index, label_class_map)
            result["seg_miou" + suffix] = scores["mean_iou"]
            result["seg_pixel_accuracy" + suffix] = scores["pixel_accuracy"]
    if oracle is not None:
        result.update(oracle_scores(oracle, labels, fakes, reals, num_classes))
        kid = _kid(
            oracle_features(oracle, reals), oracle_features(oracle, fakes), kid_subset_size, kid_subsets
        )
        result["kid_oracle"], result["kid_oracle_std"] = kid["kid"], kid["kid_std"]
    return {k: (float(v) if k != "num_images" else int(v)) for k, v in result.items()}


def format_table(result):
    """The metrics as an aligned two-column text table (KID x 1000, with its standard deviation)."""
    lines = []
    for key, label, fmt in _ROWS:
        if key not in result:
            continue
        value = result[key] * _SCALED[key] if key in _SCALED else result[key]
        text = fmt.format(value)
        if result.get(key + "_std"):  # 0 when a single subset covers every image
            text += " +- " + fmt.format(result[key + "_std"] * _SCALED[key])
        lines.append(f"{label:<44} {text}")
    return "\n".join(lines)


def tensorboard_scalars(result):
    """The result as TensorBoard scalar names ("eval/fid", ...)."""
    return {f"eval/{k}": v for k, v in result.items() if k != "num_images" and np.isfinite(v)}


def _fingerprint(items):
    """Names and label sums of the real examples: a cache made from other images is stale."""
    h = hashlib.sha256()
    for item in items:
        h.update(item.name.encode())
        h.update(np.ascontiguousarray(item.real).tobytes()[:4096])
    return h.hexdigest()[:16]


def demo_root_of(model):
    """The demo dataset folder a training bundle was trained on, or None for other datasets."""
    config = model.options.get("config")
    if not config or config["data"]["dataset"] != "demo":
        return None
    d = config["data"]
    return demo.generate_demo_dataset(
        num_train=d["demo_num_train"], num_val=d["demo_num_val"], size=d["demo_size"]
    )


def run(
    model_path,
    split="val",
    dataset=None,
    dataset_root=None,
    limit=0,
    batch_size=8,
    inception_weights=None,
    stats_dir=None,
    segmenter=None,
    label_class_map=None,
    num_eval_classes=None,
    ignore_index=None,
    use_oracle=None,
    seed=0,
    style_from_real=True,
    kid_subset_size=1000,
    output=None,
    out=print,
):
    """`evaluate.py` as a function: every input is checked before the (long) synthesis.

    Args:
        model_path: a training workdir or a `.keras` bundle.
        split, dataset, dataset_root, limit: the examples (see `spade_tf.serving.synthesis.load_split`).
        batch_size: label maps per generator call.
        inception_weights: an Inception weight file (see `spade_tf.evaluation.inception`), or None (no FID / KID).
        stats_dir: where real-image statistics are cached (default: beside the model).
        segmenter: a `Segmenter`, or None.
        label_class_map, num_eval_classes, ignore_index: see `evaluate_images`.
        use_oracle: the demo oracle (default: on for demo models).
        seed: VAE models: the noise seed.
        style_from_real: VAE models: the latent from each real image through the encoder (the official
            test script); else random latents from the seeds.
        kid_subset_size: KID subset size.
        output: the JSON file to write (default <model folder>/eval_<split>.json).
        out: progress messages.

    Returns:
        The result dict (also written to `output`).
    """
    inception = load_inception(inception_weights) if inception_weights else None
    bundle_path = resolve_model_path(model_path)
    model = load_synthesizer(bundle_path)
    demo_root = demo_root_of(model)
    if use_oracle and demo_root is None:
        raise ValueError("the demo oracle only applies to models trained on the demo dataset.")
    use_oracle = demo_root is not None if use_oracle is None else use_oracle
    if not (inception or segmenter or use_oracle):
        raise ValueError(
            "nothing to measure: give Inception weights (FID, KID), a segmentation SavedModel (mIoU), or "
            "evaluate a demo model (its oracle)."
        )
    items = synthesis.load_split(model, split, dataset, dataset_root, limit, out=out)
    if model.info.use_vae and style_from_real:
        synthesis.attach_styles(items, style_from_real=True)
    start = time.monotonic()
    fakes = np.stack(
        [s[0] for s in synthesis.synthesize(model, items, batch_size, 1, seed, out=lambda m: None)]
    )
    out(f"Synthesized {len(items)} images in {time.monotonic() - start:.1f} s.")
    oracle = load_or_train_oracle(demo_root) if use_oracle else None
    stats_cache = None
    if inception is not None:
        stats_dir = stats_dir or os.path.join(os.path.dirname(os.path.abspath(bundle_path)), "fid_stats")
        stats_cache = metrics.StatisticsCache(stats_dir)
    result = evaluate_images(
        np.stack([i.label for i in items]),
        fakes,
        np.stack([i.real for i in items]),
        model.info.num_classes,
        inception=inception,
        stats_cache=stats_cache,
        split=split,
        data_fingerprint=_fingerprint(items),
        segmenter=segmenter,
        num_eval_classes=num_eval_classes,
        ignore_index=ignore_index,
        label_class_map=label_class_map,
        oracle=oracle,
        kid_subset_size=kid_subset_size,
    )
    result = {"model": os.path.abspath(bundle_path), "split": split, **result}
    if use_oracle:
        # The demo's other figures (style fidelity, diversity, texture) on the same split.
        images, labels, instances, looks = demo_metrics.load_demo_split(demo_root, split, limit)
        report = demo_metrics.demo_report(
            model.generate,
            labels,
            images,
            looks,
            demo_metrics.fit_look_classifier(demo_root, "train"),
            instances=instances,
            use_vae=model.info.use_vae,
            seed=seed,
        )
        result.update({k: v for k, v in report.items() if k != "num_maps"})
    output = output or os.path.join(os.path.dirname(os.path.abspath(bundle_path)), f"eval_{split}.json")
    tmp = output + ".tmp"
    with open(tmp, "w") as f:
        json.dump(result, f, indent=1)
    os.replace(tmp, output)
    out(format_table(result))
    if use_oracle:
        # The oracle's rows are in the table above; this one adds style, diversity and texture.
        figures = {k: v for k, v in result.items() if not k.startswith("oracle_")}
        out(demo_metrics.format_demo_report({**figures, "num_maps": len(items)}))
    out(f"Written: {output}")
    return result
