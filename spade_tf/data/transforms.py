"""The official preprocessing (NVlabs/SPADE `data/base_dataset.py`) as TF ops.

One set of random parameters (crop position, flip) is drawn per example and shared by the
label map, the photo and the instance map, as `get_params` / `get_transform` do officially.
The order of the steps is the official one:

1. resize: `resize_and_crop` -> load x load; `scale_width*` -> width load, height
   load * h // w; `scale_shortside*` -> long side load * long // short, while the short side
   keeps its original size (an official quirk, kept because trained models saw it);
2. crop (modes with "crop"): the crop_size square at (crop_x, crop_y), zero-padded where it
   leaves the picture, as PIL's `Image.crop` does;
3. `none`: each side rounded to the nearest multiple of 32 (Python `round`, halves to even);
   `fixed`: crop_size wide and round(crop_size / aspect_ratio) high;
4. horizontal flip.

Resampling reproduces Pillow bit for bit: NEAREST for label and instance maps, BICUBIC for
photos. TF's own `tf.image.resize` differs: its nearest rule picks another source pixel for
about one in six size pairs, and its antialiased bicubic works in float without Pillow's
fixed-point weights and 8-bit rounding between the horizontal and the vertical pass, which
moves up to ~1/3 of the pixels by one step and, on noisy pictures, a few by up to 17 steps.

Pillow resized the width first and then the height in every release up to 12, the releases the
official models were trained with. Pillow 13 runs the height pass first for some shapes whose
height shrinks much more than their width (python-pillow/Pillow#9549), which moves a few pixels
by a few steps. We keep the width-first order: it is the official behaviour, and it does not
change with the installed Pillow.

Everything works eagerly and inside `tf.data` with sizes only known at run time. Sizes given
as Python ints give Python ints back, so static shapes stay static.
"""

import numbers

import tensorflow as tf

PREPROCESS_MODES = (
    "resize_and_crop",
    "crop",
    "scale_width",
    "scale_width_and_crop",
    "scale_shortside",
    "scale_shortside_and_crop",
    "fixed",
    "none",
)

# Pillow's fixed-point precision for 8-bit resampling (32 bits - 8 bits of pixel - 2 bits of headroom).
_PRECISION_BITS = 22
# The bicubic kernel of Pillow (and of TF's "keyscubic"): Keys' cubic convolution with a = -0.5, support 2.
_CUBIC_A = -0.5
_CUBIC_SUPPORT = 2.0
# `none` mode rounds every side to a multiple of this.
_NONE_BASE = 32


def check_preprocess_mode(mode):
    """Raises ValueError unless `mode` is one of PREPROCESS_MODES."""
    if mode not in PREPROCESS_MODES:
        raise ValueError(f"preprocess_mode must be one of {PREPROCESS_MODES}, got {mode!r}")


def check_preprocess_args(mode, load_size, crop_size, aspect_ratio=1.0):
    """Raises ValueError for an unknown mode, non-positive or non-int sizes, or aspect_ratio <= 0."""
    check_preprocess_mode(mode)
    for name, value in (("load_size", load_size), ("crop_size", crop_size)):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    if not aspect_ratio > 0:
        raise ValueError(f"aspect_ratio (width / height) must be > 0, got {aspect_ratio!r}")


def _is_tensor(*values):
    return any(tf.is_tensor(v) for v in values)


def _split_size(size_hw):
    """(h, w) from a pair of ints, a pair of scalar tensors or a [2] tensor; tensors become int32."""
    if tf.is_tensor(size_hw):
        size_hw = tf.cast(size_hw, tf.int32)
        return size_hw[0], size_hw[1]
    h, w = size_hw
    if _is_tensor(h, w):
        return tf.cast(h, tf.int32), tf.cast(w, tf.int32)
    return int(h), int(w)


def _select(condition, if_true, if_false):
    if tf.is_tensor(condition):
        return tf.where(condition, if_true, if_false)
    return if_true if condition else if_false


def _minimum(a, b):
    return tf.minimum(a, b) if _is_tensor(a, b) else min(a, b)


def _maximum(a, b):
    return tf.maximum(a, b) if _is_tensor(a, b) else max(a, b)


def _equal(a, b):
    return tf.equal(a, b) if _is_tensor(a, b) else a == b


def _round_to_multiple(side, base):
    """`int(round(side / base) * base)` with Python's round-half-to-even, for ints or int32 tensors."""
    if tf.is_tensor(side):
        # tf.round rounds halves to even like Python's round, on the same float64 quotient.
        return tf.cast(tf.round(tf.cast(side, tf.float64) / base), tf.int32) * base
    return int(round(side / base) * base)


def _scale_width_size(h, w, load_size):
    # The official code computes load * h // w in get_params and int(load * h / w) in the transform;
    # for positive ints below 2**26 the float quotient never rounds across an integer, so they agree.
    return _select(_equal(w, load_size), h, load_size * h // w), _select(_equal(w, load_size), w, load_size)


def _scale_shortside_size(h, w, load_size):
    short, long = _minimum(h, w), _maximum(h, w)
    long = load_size * long // short
    # Official quirk: the short side keeps its own size and only the long side is scaled.
    width_is_shorter = _equal(w, short)
    new_h = _select(width_is_shorter, long, short)
    new_w = _select(width_is_shorter, short, long)
    unchanged = _equal(short, load_size)
    return _select(unchanged, h, new_h), _select(unchanged, w, new_w)


def _resized_size(mode, h, w, load_size):
    """Size after the resize step (step 1), before the crop."""
    if "resize" in mode:
        return load_size, load_size
    if "scale_width" in mode:
        return _scale_width_size(h, w, load_size)
    if "scale_shortside" in mode:
        return _scale_shortside_size(h, w, load_size)
    return h, w


def _fixed_size(crop_size, aspect_ratio):
    return int(round(crop_size / aspect_ratio)), crop_size


def output_size(mode, size_hw, load_size, crop_size, aspect_ratio=1.0):
    """(height, width) that `transform` produces for a source of size `size_hw`.

    Args:
        mode: one of PREPROCESS_MODES.
        size_hw: source (height, width): Python ints, scalar tensors or a [2] tensor.
        load_size: the official `--load_size`.
        crop_size: the official `--crop_size`.
        aspect_ratio: width / height, used by `fixed`.

    Returns:
        (h, w): Python ints when the inputs are Python ints, int32 scalar tensors otherwise.
    """
    check_preprocess_args(mode, load_size, crop_size, aspect_ratio)
    h, w = _split_size(size_hw)
    h, w = _resized_size(mode, h, w, load_size)
    if "crop" in mode:
        h, w = crop_size, crop_size
    if mode == "none":
        h, w = _round_to_multiple(h, _NONE_BASE), _round_to_multiple(w, _NONE_BASE)
    if mode == "fixed":
        h, w = _fixed_size(crop_size, aspect_ratio)
    return h, w


def static_output_size(mode, crop_size, aspect_ratio=1.0):
    """(h, w) when the output size does not depend on the source (crop modes, `fixed`), else None."""
    check_preprocess_mode(mode)
    if "crop" in mode:
        return crop_size, crop_size
    if mode == "fixed":
        return _fixed_size(crop_size, aspect_ratio)
    return None


def get_params(mode, size_hw, load_size, crop_size, seed):
    """Random crop position and flip of one example, from a stateless RNG.

    The official `get_params` draws x uniformly from 0..max(0, new_w - crop_size) and y from
    0..max(0, new_h - crop_size) (both inclusive), where (new_w, new_h) is the size after the
    resize step for the `*crop` modes and the source size otherwise, and flips when
    random() > 0.5. Here the numbers come from Philox keyed by `seed`, so one seed always gives
    the same parameters on every machine.

    Args:
        mode: one of PREPROCESS_MODES.
        size_hw: source (height, width), ints or tensors.
        load_size: the official `--load_size`.
        crop_size: the official `--crop_size`.
        seed: int32/int64 tensor of shape [2], the stateless RNG key.

    Returns:
        dict(crop_x=int32 scalar, crop_y=int32 scalar, flip=bool scalar).
    """
    check_preprocess_args(mode, load_size, crop_size)
    h, w = _split_size(size_hw)
    if "crop" in mode:
        h, w = _resized_size(mode, h, w, load_size)
    max_x = tf.maximum(tf.cast(w, tf.int32) - crop_size, 0)
    max_y = tf.maximum(tf.cast(h, tf.int32) - crop_size, 0)
    u = tf.random.stateless_uniform([3], seed=seed, dtype=tf.float64, alg="philox")
    # floor(u * (n + 1)) is uniform on 0..n; the minimum guards the (unreachable) u == 1.
    crop_x = tf.minimum(tf.cast(u[0] * tf.cast(max_x + 1, tf.float64), tf.int32), max_x)
    crop_y = tf.minimum(tf.cast(u[1] * tf.cast(max_y + 1, tf.float64), tf.int32), max_y)
    return {"crop_x": crop_x, "crop_y": crop_y, "flip": u[2] > 0.5}


# ----------------------------------------------------------------------------------------------
# Pillow-exact resampling.
# ----------------------------------------------------------------------------------------------


def _nearest_indices(in_size, out_size):
    """Source index of each output pixel along one axis, as Pillow's NEAREST resize picks it.

    Pillow (`ImagingScaleAffine`) starts at step / 2 with step = in / out in double precision,
    adds the step once per output pixel and truncates. The repeated addition decides the cases
    where (x + 0.5) * step is an exact integer (e.g. 2 -> 7 px), so a closed formula is off by
    one there; a float64 cumsum adds in the same order (TF's scan accumulates each row
    sequentially) and reproduces it exactly.

    This is Pillow's path for 8-bit (L, P) and 32-bit (I) maps, and for 16-bit PNGs as the
    official code saw them (older Pillow opened them as mode I). Recent Pillow opens 16-bit PNGs
    as I;16 and resizes that mode with trunc(step * (x + 0.5)) per pixel, which can pick the
    neighbouring pixel at those exact ties.
    """
    step = tf.cast(in_size, tf.float64) / tf.cast(out_size, tf.float64)
    steps = tf.concat([tf.reshape(step * 0.5, [1]), tf.fill(tf.reshape(out_size - 1, [1]), step)], 0)
    index = tf.cast(tf.math.cumsum(steps), tf.int32)
    return tf.minimum(index, tf.cast(in_size, tf.int32) - 1)


def resize_nearest(x, size_hw):
    """PIL `Image.resize(size, NEAREST)` of an (H, W) or (H, W, C) tensor, any dtype.

    Args:
        x: the label or instance map.
        size_hw: output (height, width), ints or int tensors (>= 1).
    """
    x = tf.convert_to_tensor(x)
    out_h, out_w = _split_size(size_hw)
    shape = tf.shape(x)
    x = tf.gather(x, _nearest_indices(shape[0], out_h), axis=0)
    return tf.gather(x, _nearest_indices(shape[1], out_w), axis=1)


def _cubic(x):
    """Pillow's `bicubic_filter`, with its operation order so float64 results agree bit for bit."""
    x = tf.abs(x)
    near = ((_CUBIC_A + 2.0) * x - (_CUBIC_A + 3.0)) * x * x + 1.0
    far = (((x - 5.0) * x + 8.0) * x - 4.0) * _CUBIC_A
    return tf.where(x < 1.0, near, tf.where(x < 2.0, far, tf.zeros_like(x)))


def _bicubic_taps(in_size, out_size):
    """Pillow's `precompute_coeffs` + `normalize_coeffs_8bpc` for one axis.

    Returns:
        (index, weight): (out_size, ksize) int32 source indices (clamped into range) and
        fixed-point weights (0 for taps past the window).
    """
    in_size = tf.cast(in_size, tf.int32)
    out_size = tf.cast(out_size, tf.int32)
    scale = tf.cast(in_size, tf.float64) / tf.cast(out_size, tf.float64)
    # Downsampling widens the kernel by the scale: this is the antialiasing.
    filterscale = tf.maximum(scale, 1.0)
    support = _CUBIC_SUPPORT * filterscale
    ksize = tf.cast(tf.math.ceil(support), tf.int32) * 2 + 1
    center = (tf.cast(tf.range(out_size), tf.float64) + 0.5) * scale
    # C truncates toward zero; below zero both truncation and floor end at the clamp to 0.
    first = tf.maximum(tf.cast(tf.floor(center - support + 0.5), tf.int32), 0)
    last = tf.minimum(tf.cast(tf.floor(center + support + 0.5), tf.int32), in_size)
    taps = tf.range(ksize)
    source = first[:, None] + taps[None, :]
    inside = taps[None, :] < (last - first)[:, None]
    weight = _cubic((tf.cast(source, tf.float64) - center[:, None] + 0.5) * (1.0 / filterscale))
    weight = tf.where(inside, weight, tf.zeros_like(weight))
    # Pillow sums the weights one after another; cumsum adds in the same order (sum() may not).
    total = tf.math.cumsum(weight, axis=1)[:, -1:]
    # Pillow leaves the weights as they are when they sum to zero; dividing by 1 does the same.
    weight = weight / tf.where(tf.equal(total, 0.0), tf.ones_like(total), total)
    scaled = weight * float(1 << _PRECISION_BITS)
    fixed = tf.where(weight < 0, tf.math.ceil(scaled - 0.5), tf.floor(scaled + 0.5))
    return tf.minimum(source, in_size - 1), tf.cast(fixed, tf.int32)


def _bicubic_pass(x, out_size, axis):
    """One separable pass of Pillow's 8-bit resampling along `axis` (0 or 1) of (H, W, C) int32.

    Integer arithmetic exactly as Pillow: rounding offset, sum of pixel * weight in int32, then
    shift by the precision and clip to 0..255 (`clip8`).
    """
    index, weight = _bicubic_taps(tf.shape(x)[axis], out_size)
    weight_shape = [-1, 1, 1] if axis == 0 else [1, -1, 1]
    out_shape = tf.tensor_scatter_nd_update(tf.shape(x), [[axis]], tf.reshape(out_size, [1]))
    acc = tf.fill(out_shape, tf.constant(1 << (_PRECISION_BITS - 1), tf.int32))

    # A loop over the taps keeps memory at one output-sized buffer (a full gather would hold
    # ksize of them: 17 for a 2048 -> 512 resize).
    def body(t, acc):
        pixels = tf.gather(x, index[:, t], axis=axis)
        return t + 1, acc + pixels * tf.reshape(weight[:, t], weight_shape)

    _, acc = tf.while_loop(lambda t, acc: t < tf.shape(index)[1], body, [tf.constant(0), acc])
    return tf.clip_by_value(tf.bitwise.right_shift(acc, _PRECISION_BITS), 0, 255)


def resize_bicubic(image, size_hw):
    """PIL `Image.resize(size, BICUBIC)` of an (H, W, C) uint8 photo, bit-exact.

    Pillow resizes the width first and then the height, rounding to 8 bits in between, and skips
    a pass whose size does not change; this does the same.

    Args:
        image: (H, W, C) uint8.
        size_hw: output (height, width), ints or int tensors (>= 1).

    Returns:
        (out_h, out_w, C) uint8.
    """
    image = tf.convert_to_tensor(image)
    if image.dtype != tf.uint8:
        raise ValueError(f"resize_bicubic expects a uint8 (H, W, C) image, got dtype {image.dtype.name}")
    out_h, out_w = _split_size(size_hw)
    x = tf.cast(image, tf.int32)
    shape = tf.shape(x)
    x = tf.cond(
        tf.equal(shape[1], out_w),
        lambda: x,
        lambda: _bicubic_pass(x, out_w, axis=1),
    )
    x = tf.cond(
        tf.equal(shape[0], out_h),
        lambda: x,
        lambda: _bicubic_pass(x, out_h, axis=0),
    )
    static = [s if isinstance(s, int) else None for s in (out_h, out_w)]
    return tf.ensure_shape(tf.cast(x, tf.uint8), static + image.shape.as_list()[2:])


def crop(x, crop_x, crop_y, crop_size):
    """PIL `Image.crop((x, y, x + size, y + size))` for x, y >= 0: zeros where the box leaves the picture.

    Args:
        x: (H, W) or (H, W, C) tensor.
        crop_x, crop_y: top-left corner, ints or int32 scalar tensors (>= 0).
        crop_size: side of the square.
    """
    x = tf.convert_to_tensor(x)
    window = x[crop_y : crop_y + crop_size, crop_x : crop_x + crop_size]
    shape = tf.shape(window)
    padding = [[0, crop_size - shape[0]], [0, crop_size - shape[1]]] + [[0, 0]] * (x.shape.rank - 2)
    return tf.pad(window, padding)


def _flip(x, flip):
    if tf.is_tensor(flip):
        return tf.cond(flip, lambda: tf.reverse(x, [1]), lambda: x)
    return tf.reverse(x, [1]) if flip else x


def _check_positive_size(mode, size_hw, out_hw):
    message = (
        f"preprocess_mode={mode!r} would resize a picture to zero size (sides must be >= 1 px; "
        "'none' rounds sides of 16 px or less to 0, 'scale_width' makes very wide pictures 0 px high); "
        "use larger pictures or another preprocess_mode"
    )
    h, w = out_hw
    if not _is_tensor(h, w):
        if h < 1 or w < 1:
            raise ValueError(f"{message}: {size_hw[0]}x{size_hw[1]} -> {h}x{w}")
        return []
    ok = tf.logical_and(h >= 1, w >= 1)
    return [tf.debugging.Assert(ok, [message, ": source (h, w) =", size_hw[0], size_hw[1], "-> ", h, w])]


def transform(label, image, instance, params, mode, load_size, crop_size, aspect_ratio=1.0, flip=True):
    """The official `get_transform` applied to one example, with shared parameters.

    Args:
        label: (H, W) integer label map (NEAREST resampling).
        image: (H, W, 3) uint8 photo (BICUBIC resampling) of the same size, or None.
        instance: (H, W) integer instance map (NEAREST resampling) of the same size, or None.
        params: dict(crop_x, crop_y, flip) from `get_params` (ints/bools or tensors).
        mode: one of PREPROCESS_MODES.
        load_size: the official `--load_size`.
        crop_size: the official `--crop_size`.
        aspect_ratio: width / height, used by `fixed`.
        flip: whether flipping is on at all (the official `isTrain and not no_flip`); when True,
            `params["flip"]` decides per example.

    Returns:
        (label, image, instance) with the same dtypes; image and instance stay None when None.
    """
    check_preprocess_args(mode, load_size, crop_size, aspect_ratio)
    label = tf.convert_to_tensor(label)
    if label.shape.rank != 2:
        raise ValueError(f"label must be an (H, W) map, got shape {label.shape}")
    if label.shape.is_fully_defined():
        h, w = label.shape.as_list()
    else:
        h, w = tf.shape(label)[0], tf.shape(label)[1]
    static_size = static_output_size(mode, crop_size, aspect_ratio)

    def apply(x, resize):
        if "resize" in mode or "scale" in mode:
            size = _resized_size(mode, h, w, load_size)
            checks = _check_positive_size(mode, (h, w), size)
            with tf.control_dependencies(checks):
                x = resize(tf.identity(x), size)
        if "crop" in mode:
            x = crop(x, params["crop_x"], params["crop_y"], crop_size)
        if mode == "none":
            size = (_round_to_multiple(h, _NONE_BASE), _round_to_multiple(w, _NONE_BASE))
            checks = _check_positive_size(mode, (h, w), size)
            with tf.control_dependencies(checks):
                x = resize(tf.identity(x), size)
        if mode == "fixed":
            x = resize(x, _fixed_size(crop_size, aspect_ratio))
        if flip:
            x = _flip(x, params["flip"])
        if static_size is not None:
            x = tf.ensure_shape(x, list(static_size) + x.shape.as_list()[2:])
        return x

    label = apply(label, resize_nearest)
    if image is not None:
        image = apply(tf.convert_to_tensor(image), resize_bicubic)
    if instance is not None:
        instance = apply(tf.convert_to_tensor(instance), resize_nearest)
    return label, image, instance


def normalize_image(image):
    """uint8 photo -> float32 in [-1, 1], as the official ToTensor + Normalize(0.5, 0.5) compute it."""
    return (tf.cast(image, tf.float32) / 255.0 - 0.5) / 0.5
