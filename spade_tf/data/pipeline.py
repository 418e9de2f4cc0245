"""The tf.data input pipeline: files -> preprocessed, batched training or evaluation examples.

The stream is a pure function of (seed, position). Position p of the infinite stream belongs to
epoch e = p // N (N examples); in training, epoch e visits the examples in a permutation drawn
statelessly from (seed, e), and the crop and flip of position p come from (seed, p). Nothing
depends on tf.data shuffle buffers, thread timing or how many batches were read before, so a
run resumed with `start_index` = the number of examples already consumed continues exactly
where it stopped, and skipping costs no decoding.

Reading follows the official `Pix2pixDataset` (reference notes, section 5): label maps hold
class ids (8- or 16-bit grayscale PNG, or palette-indexed PNG whose index is the id, as PIL
reads it), or colours converted with a `Palette`; raw 255 becomes the don't-care id
`num_classes` when the dataset has one; photos are converted to RGB; instance maps keep their
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
import struct
import zlib

import tensorflow as tf

from spade_tf.data import transforms

DONTCARE_VALUE = 255

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_PALETTE_COLOUR_TYPE = 3


def _grey_palette_chunks():
    """PLTE chunks whose entry i is (i, i, i), one per palette length 1..256, with their CRCs."""
    chunks = []
    for n in range(1, 257):
        body = b"PLTE" + bytes(v for i in range(n) for v in (i, i, i))
        chunks.append(struct.pack(">I", 3 * n) + body + struct.pack(">I", zlib.crc32(body)))
    return chunks


_GREY_PLTE_CHUNKS = _grey_palette_chunks()


def _be32(four_bytes):
    return tf.io.decode_raw(four_bytes, tf.int32, little_endian=False)[0]


def _png_header(data):
    """(is_png, bit_depth, colour_type) from the signature and the IHDR chunk."""
    head = tf.strings.substr(tf.strings.join([tf.strings.substr(data, 0, 26), b"\0" * 26]), 0, 26)
    raw = tf.io.decode_raw(head, tf.uint8)
    is_png = tf.equal(tf.strings.substr(head, 0, 8), _PNG_SIGNATURE)
    return is_png, raw[24], raw[25]


def _palette_as_indices(data, path):
    """A palette PNG with its PLTE chunk replaced by greys (i, i, i): decoding it gives the indices.

    TF's PNG decoder always expands palette indices to colours, but the official code (PIL)
    reads the index of a palette-mode label map as the class id, and colours need not be unique.
    Swapping in a grey palette of the same length (with a valid CRC) makes every decoded channel
    equal to the index; the pixel data is untouched.
    """
    length = tf.strings.length(data)

    def not_found_yet(pos, found):
        return tf.logical_and(tf.logical_not(found), pos + 8 <= length)

    def next_chunk(pos, found):
        is_plte = tf.equal(tf.strings.substr(data, pos + 4, 4), b"PLTE")
        chunk_size = _be32(tf.strings.substr(data, pos, 4))
        return tf.where(is_plte, pos, pos + 12 + chunk_size), is_plte

    pos, found = tf.while_loop(not_found_yet, next_chunk, [tf.constant(8), tf.constant(False)])
    pos = _with_check(
        pos, found, [path, ": palette-indexed PNG without a PLTE chunk; the file is damaged, re-export it"]
    )
    size = _be32(tf.strings.substr(data, pos, 4))
    entries = tf.clip_by_value(size // 3, 1, 256)
    rest = pos + 12 + size
    return tf.strings.join(
        [
            tf.strings.substr(data, 0, pos),
            tf.gather(tf.constant(_GREY_PLTE_CHUNKS), entries - 1),
            tf.strings.substr(data, rest, length - rest),
        ]
    )


def _decode_native(data, path):
    """(H, W, C) int32 with the file's own channels and values, as `np.asarray(Image.open(path))`.

    16-bit PNGs keep their 16-bit values (TF would otherwise scale them to 8 bits), palette PNGs
    give their indices (one channel); everything else decodes as 8-bit.
    """
    is_png, bit_depth, colour_type = _png_header(data)

    def sixteen_bit():
        return tf.cast(tf.io.decode_png(data, channels=0, dtype=tf.uint16), tf.int32)

    def palette_indices():
        # Three equal channels; keep one (a grey conversion would add rounding for nothing).
        return tf.cast(tf.io.decode_png(_palette_as_indices(data, path), channels=3), tf.int32)[..., :1]

    def eight_bit():
        return tf.cast(
            tf.io.decode_image(data, channels=0, dtype=tf.uint8, expand_animations=False), tf.int32
        )

    return tf.cond(
        tf.logical_and(is_png, tf.equal(bit_depth, 16)),
        sixteen_bit,
        lambda: tf.cond(
            tf.logical_and(is_png, tf.equal(colour_type, _PNG_PALETTE_COLOUR_TYPE)),
            palette_indices,
            eight_bit,
        ),
    )


def _text(part):
    """A message part as a string scalar: sizes as HxW, other numbers as decimals."""
    if isinstance(part, str):
        return part
    part = tf.convert_to_tensor(part)
    if part.dtype == tf.string:
        return part
    text = tf.strings.as_string(part)
    return text if text.shape.rank == 0 else tf.strings.reduce_join(text, separator="x")


def _with_check(value, condition, parts):
    """`value`, after checking `condition`; otherwise InvalidArgumentError with the joined message parts.

    Eagerly the error is raised at once with the plain message; in a graph (tf.data) an Assert
    op carries it, and the error surfaces when the element is read.
    """
    message = tf.strings.join([_text(p) for p in parts])
    if tf.executing_eagerly():
        if not bool(condition):
            raise tf.errors.InvalidArgumentError(None, None, message.numpy().decode("utf-8", "replace"))
        return value
    with tf.control_dependencies([tf.debugging.Assert(condition, [message])]):
        return tf.identity(value)


def _single_channel(ids, path, what, hint):
    channels = tf.shape(ids)[2]
    ids = _with_check(
        ids,
        tf.equal(channels, 1),
        [path, f": {what} has ", channels, f" channels; expected one channel of integer ids. {hint}"],
    )
    return ids[..., 0]


def decode_example(label_path, image_path, instance_path=None, palette=None):
    """Reads one example with TF ops (eagerly or inside tf.data).

    Args:
        label_path: string (tensor) path of the label map: one-channel ids (8/16-bit grayscale or
            palette-indexed PNG, the index being the id), or colours when `palette` is given.
        image_path: string (tensor) path of the photo (PNG, JPEG, BMP, GIF, WebP); converted to RGB.
        instance_path: string (tensor) path of the instance map (8- or 16-bit PNG), or None.
        palette: a `spade_tf.data.palette.Palette` for colour-coded label maps, or None. One-channel
            label maps are read as ids either way, as `spade_tf.data.check` reads them.

    Returns:
        (label int32 (H, W), image uint8 (H, W, 3), instance int32 (H, W) or None). Colours that
        are not in the palette give id -1.
    """
    native = _decode_native(tf.io.read_file(label_path), label_path)
    if palette is None:
        label = _single_channel(
            native,
            label_path,
            "label map",
            "Colour-coded label maps need a palette file (see spade_tf.data.palette); re-save "
            "grey+alpha maps as plain grayscale PNG",
        )
    else:
        from spade_tf.data.palette import rgb_to_ids_tf  # lazy: only colour-coded datasets need it

        channels = tf.shape(native)[2]
        native = _with_check(
            native,
            tf.logical_or(tf.equal(channels, 1), channels >= 3),
            [label_path, ": label map has ", channels, " channels; expected ids (1) or colours (RGB/RGBA)"],
        )
        label = tf.cond(
            tf.equal(channels, 1),
            lambda: native[..., 0],
            lambda: rgb_to_ids_tf(native[..., :3], palette),
        )
    label.set_shape([None, None])

    image = tf.io.decode_image(
        tf.io.read_file(image_path), channels=3, dtype=tf.uint8, expand_animations=False
    )
    image.set_shape([None, None, 3])
    label_size, image_size = tf.shape(label), tf.shape(image)[:2]
    image = _with_check(
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
        instance = _single_channel(
            _decode_native(tf.io.read_file(instance_path), instance_path),
            instance_path,
            "instance map",
            "Save instance ids as 8- or 16-bit grayscale PNG",
        )
        instance.set_shape([None, None])
        instance = _with_check(
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
    num_ids = num_classes + int(bool(contain_dontcare_label))
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
        if contain_dontcare_label:
            label = tf.where(tf.equal(label, DONTCARE_VALUE), num_classes, label)
        # One-hot encoding turns an out-of-range id into an all-zero pixel and training carries on
        # silently; the official scatter_ fails on such ids, so fail too, naming the file.
        low, high = tf.reduce_min(label), tf.reduce_max(label)
        label = _with_check(
            label,
            tf.logical_and(low >= 0, high < num_ids),
            [
                label_path,
                ": label ids range over ",
                low,
                "..",
                high,
                f" but must lie in 0..{num_ids - 1} "
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
