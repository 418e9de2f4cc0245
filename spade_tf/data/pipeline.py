"""The tf.data input pipeline: files -> preprocessed, batched training or evaluation examples.

The stream is a pure function of (seed, position). Position p of the infinite stream belongs to
epoch e = p // N (N examples); in training, epoch e visits the examples in a permutation drawn
statelessly from (seed, e), and the crop and flip of position p come from (seed, p). Nothing
depends on tf.data shuffle buffers, thread timing or how many batches were read before, so a
run resumed with `start_index` = the number of examples already consumed continues exactly
where it stopped, and skipping costs no decoding.

Reading follows the official `Pix2pixDataset` (reference notes, section 5): label maps are read
by the rule of `spade_tf.data.labels` (grey and palette-indexed PNGs hold ids, RGB(A) PNGs colours
of a `Palette`), as the dataset check and synthesize.py read them; raw 255 becomes the don't-care
id `num_classes` when the dataset has one; photos are converted to RGB; instance maps keep their
raw integer ids (16-bit PNGs included).

Example:

```python
examples = find_examples("custom", root).examples
ds = build_dataset(examples, num_classes=9, contain_dontcare_label=False, use_instance_map=True,
                   preprocess_mode="resize_and_crop", load_size=72, crop_size=64, aspect_ratio=1.0,
                   flip=True, training=True, batch_size=16, seed=0, start_index=step * 16)
batch = next(iter(ds))   # label (16, 64, 64) int32, image (16, 64, 64, 3) float32, instance, index
```
"""

import numbers

import tensorflow as tf

from spade_tf.data import labels as label_maps
from spade_tf.data import transforms
from spade_tf.data.labels import with_check


def decode_example(label_path, image_path, instance_path=None, palette=None):
    """Reads one example with TF ops (eagerly or inside tf.data).

    Args:
        label_path: string (tensor) path of the label map, read by the rule of `spade_tf.data.labels`:
            ids (8/16-bit grey, palette-indexed PNG whose index is the id, grey+alpha), or RGB(A) colours
            looked up in `palette`.
        image_path: string (tensor) path of the photo (PNG, JPEG, BMP, GIF, WebP); converted to RGB.
        instance_path: string (tensor) path of the instance map (8- or 16-bit PNG), or None.
        palette: a `spade_tf.data.palette.Palette` for colour-coded label maps, or None. Maps of ids are
            read as ids either way, as `spade_tf.data.check` reads them.

    Returns:
        (label int32 (H, W), image uint8 (H, W, 3), instance int32 (H, W) or None). Colours that
        are not in the palette give id -1.
    """
    label = label_maps.decode_label_png_tf(
        tf.io.read_file(label_path),
        None if palette is None else palette.colors,
        label_path,
        hint="Colour-coded label maps need a palette file (see spade_tf.data.palette) that gives each colour "
        "its id, or convert them to grey PNGs of ids",
    )

    image = tf.io.decode_image(
        tf.io.read_file(image_path), channels=3, dtype=tf.uint8, expand_animations=False
    )
    image.set_shape([None, None, 3])
    label_size, image_size = tf.shape(label), tf.shape(image)[:2]
    image = with_check(
        image,
        tf.reduce_all(tf.equal(label_size, image_size)),
        [
            image_path,
            ": photo is ",
            image_size,
            " (HxW) but its label map ",
            label_path,
            " is ",
            label_size,
            "; resize one of them so label map and photo have the same size",
        ],
    )

    instance = None
    if instance_path is not None:
        # Instance ids are read as label ids are: grey (8 or 16 bit, e.g. Cityscapes' *_instanceIds.png),
        # palette-indexed or grey+alpha; colours are refused.
        instance = label_maps.decode_label_png_tf(
            tf.io.read_file(instance_path),
            source=instance_path,
            hint="Instance maps hold one channel of integer ids: save them as 8- or 16-bit grayscale PNG",
        )
        instance = with_check(
            instance,
            tf.reduce_all(tf.equal(tf.shape(instance), label_size)),
            [
                instance_path,
                ": instance map is ",
                tf.shape(instance),
                " (HxW) but its label map ",
                label_path,
                " is ",
                label_size,
                "; they must have the same size",
            ],
        )
    return label, image, instance


def _check_int(name, value, minimum):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return int(value)


def example_stream_order(num_examples, seed, start_index=0, training=True, repeat=True):
    """The order of the stream: which example sits at each position.

    Args:
        num_examples: N, the number of examples.
        seed: int; the training order is a pure function of it.
        start_index: first position produced; earlier positions are skipped without any work.
        training: permute each epoch (from the stateless key (seed, -1 - epoch)); otherwise
            visit the examples in order.
        repeat: produce epochs forever; otherwise stop at the end of the epoch that holds
            `start_index`.

    Returns:
        A dataset of (position, example_index, epoch) int64 scalars.
    """
    n = _check_int("num_examples", num_examples, 1)
    start_index = _check_int("start_index", start_index, 0)
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise ValueError(f"seed must be an int, got {seed!r}")
    seed = int(seed)
    start_epoch = start_index // n
    if repeat:
        epochs = tf.data.Dataset.counter(start_epoch)
    else:
        epochs = tf.data.Dataset.range(start_epoch, start_epoch + 1)

    def one_epoch(epoch):
        if training:
            key = tf.stack([tf.constant(seed, tf.int64), -1 - epoch])
            order = tf.random.experimental.stateless_shuffle(tf.range(n, dtype=tf.int64), key, alg="philox")
        else:
            order = tf.range(n, dtype=tf.int64)
        first = tf.maximum(start_index - epoch * n, 0)
        positions = epoch * n + tf.range(first, n, dtype=tf.int64)
        return tf.data.Dataset.from_tensor_slices((positions, order[first:], tf.fill([n - first], epoch)))

    return epochs.flat_map(one_epoch)


def _example_paths(examples, use_instance_map):
    """(labels, images, instances) path lists from Example-like objects or (label, image[, instance]) tuples."""
    labels, images, instances = [], [], []
    for i, example in enumerate(examples):
        if hasattr(example, "label") and hasattr(example, "image"):
            label, image, instance = example.label, example.image, getattr(example, "instance", None)
        elif isinstance(example, (tuple, list)) and len(example) in (2, 3):
            label, image = example[:2]
            instance = example[2] if len(example) == 3 else None
        else:
            raise ValueError(
                f"examples[{i}] is {example!r}; expected a spade_tf.data.layouts.Example or a "
                "(label_path, image_path[, instance_path]) tuple"
            )
        if use_instance_map and instance is None:
            raise ValueError(
                f"examples[{i}] ({label}) has no instance map but use_instance_map=True; give every "
                "example an instance map, or set use_instance_map=False"
            )
        labels.append(str(label))
        images.append(str(image))
        instances.append(str(instance) if use_instance_map else "")
    if not labels:
        raise ValueError("examples is empty; the dataset folder holds no complete examples")
    return labels, images, instances


def build_dataset(
    examples,
    *,
    num_classes,
    contain_dontcare_label,
    use_instance_map,
    preprocess_mode,
    load_size,
    crop_size,
    aspect_ratio,
    flip,
    training,
    batch_size,
    seed=0,
    start_index=0,
    repeat=True,
    palette=None,
    drop_remainder=True,
    num_parallel_calls=tf.data.AUTOTUNE,
):
    """Batched, preprocessed examples in the deterministic order of `example_stream_order`.

    Args:
        examples: `spade_tf.data.layouts.Example`s (or (label, image[, instance]) path tuples).
        num_classes: the official label_nc.
        contain_dontcare_label: raw label value 255 becomes id `num_classes` (the don't-care id).
        use_instance_map: read the instance maps and return them as "instance".
        preprocess_mode: one of `transforms.PREPROCESS_MODES`.
        load_size, crop_size, aspect_ratio: the official --load_size, --crop_size, --aspect_ratio.
        flip: random horizontal flips in training (the official `not --no_flip`).
        training: random order, crop and flip. Otherwise the examples come in order, unflipped,
            cropped at (0, 0): the official test mode is serial and unflipped but still draws a
            random crop position; we fix it so an evaluation is repeatable.
        batch_size: examples per batch (the global batch; the trainer distributes it).
        seed: int; the stream is a pure function of (seed, position).
        start_index: position of the first example, e.g. steps done * batch_size on resume.
        repeat: loop over the data forever; otherwise stop at the end of the current epoch.
        palette: a `Palette` for colour-coded label maps, or None.
        drop_remainder: drop a last incomplete batch (only matters with repeat=False).
        num_parallel_calls: parallel decodes; the output order stays deterministic.

    Returns:
        A tf.data.Dataset of dicts: label int32 (B, H, W), image float32 (B, H, W, 3) in [-1, 1],
        instance int32 (B, H, W) (only with use_instance_map) and index int64 (B,), the
        position of each example in the stream. Modes without a crop and other than `fixed`
        keep the source sizes, so a batch needs sources of one size (as officially).

    Raises:
        ValueError: bad arguments or examples. Broken files, size mismatches and label ids outside
            0..num_classes-1 (0..num_classes with a don't-care label) raise
            tf.errors.InvalidArgumentError naming the file when the batch is read.
    """
    transforms.check_preprocess_args(preprocess_mode, load_size, crop_size, aspect_ratio)
    load_size, crop_size, aspect_ratio = int(load_size), int(crop_size), float(aspect_ratio)
    num_classes = _check_int("num_classes", num_classes, 1)
    batch_size = _check_int("batch_size", batch_size, 1)
    labels, images, instances = _example_paths(examples, use_instance_map)
    label_paths, image_paths = tf.constant(labels), tf.constant(images)
    instance_paths = tf.constant(instances)
    flip = bool(flip) and bool(training)

    def load(position, example_index, epoch):
        del epoch  # part of the order's output for inspection; the position determines everything
        label_path = label_paths[example_index]
        label, image, instance = decode_example(
            label_path,
            image_paths[example_index],
            instance_paths[example_index] if use_instance_map else None,
            palette,
        )
        if training:
            # Key (seed, p) for position p; epoch permutations use (seed, -1 - e), so no key serves both.
            key = tf.stack([tf.constant(seed, tf.int64), position])
            params = transforms.get_params(preprocess_mode, tf.shape(label), load_size, crop_size, key)
        else:
            # The official test mode still draws a random crop position; a fixed one makes evaluations repeatable.
            params = {"crop_x": 0, "crop_y": 0, "flip": False}
        label, image, instance = transforms.transform(
            label, image, instance, params, preprocess_mode, load_size, crop_size, aspect_ratio, flip
        )
        label = label_maps.dontcare_to_id(label, num_classes, contain_dontcare_label)
        # One-hot encoding turns an out-of-range id into an all-zero pixel and training carries on
        # silently; the official scatter_ fails on such ids, so fail too, naming the file.
        low, high = tf.reduce_min(label), tf.reduce_max(label)
        label = with_check(
            label,
            tf.reduce_all(label_maps.valid_ids(label, num_classes, contain_dontcare_label)),
            [
                label_path,
                ": label ids range over ",
                low,
                "..",
                high,
                f" but must lie in {label_maps.allowed_ids(num_classes, contain_dontcare_label)} "
                f"(num_classes={num_classes}, contain_dontcare_label={bool(contain_dontcare_label)}). "
                "Raise num_classes, set contain_dontcare_label if 255 marks unlabelled pixels, or fix the "
                "file (-1: a colour missing from the palette); spade_tf.data.check lists every bad file",
            ],
        )
        element = {"label": label, "image": transforms.normalize_image(image), "index": position}
        if use_instance_map:
            element["instance"] = instance
        return element

    ds = example_stream_order(len(labels), seed, start_index, training, repeat)
    ds = ds.map(load, num_parallel_calls=num_parallel_calls, deterministic=True)
    ds = ds.batch(batch_size, drop_remainder=drop_remainder)
    return ds.prefetch(tf.data.AUTOTUNE)
