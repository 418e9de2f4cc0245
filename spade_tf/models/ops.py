"""Tensor ops that reproduce PyTorch conventions the official SPADE depends on.

All tensors are NHWC. These are plain functions (no state); the layers in
`normalization.py`, `generator.py` and `discriminator.py` call them.
"""

import tensorflow as tf


def _torch_nearest_indices(in_size, out_size):
    """Source indices of PyTorch's `nearest` interpolation along one axis.

    PyTorch computes `min(floor(dst * (in / out)), in - 1)` with the scale in
    float32. TF's `tf.image.resize(method="nearest")` uses half-pixel centres
    instead and picks different pixels (it moves SPADE outputs by up to 0.68),
    so the indices are computed explicitly here.
    """
    scale = tf.cast(in_size, tf.float32) / tf.cast(out_size, tf.float32)
    idx = tf.floor(tf.cast(tf.range(out_size), tf.float32) * scale)
    return tf.minimum(tf.cast(idx, tf.int32), in_size - 1)


def _is_power_of_two_factor(in_size, out_size):
    factor = out_size // in_size
    return out_size % in_size == 0 and factor & (factor - 1) == 0


def nearest_resize(x, size):
    """Resizes NHWC `x` to `size` (height, width) like `F.interpolate(mode="nearest")`.

    Args:
        x: tensor of shape (N, H, W, C).
        size: (out_height, out_width), Python ints or scalar int tensors.

    Returns:
        Tensor of shape (N, out_height, out_width, C).
    """
    out_h, out_w = size
    in_h, in_w = x.shape[1], x.shape[2]
    static = all(isinstance(s, int) for s in (in_h, in_w, out_h, out_w))
    if static:
        if (in_h, in_w) == (out_h, out_w):
            return x
        # Integer downsampling factors make floor(dst * k) a strided slice, and
        # power-of-two upsampling factors a repeat (1/k is exact in float32;
        # for factors such as 41 PyTorch's float32 scale rounds down and picks
        # other pixels, so those take the gather below). Both are cheaper than
        # a gather and bit-identical to it.
        if in_h % out_h == 0 and in_w % out_w == 0:
            return x[:, :: in_h // out_h, :: in_w // out_w, :]
        if _is_power_of_two_factor(in_h, out_h) and _is_power_of_two_factor(in_w, out_w):
            x = tf.repeat(x, out_h // in_h, axis=1)
            return tf.repeat(x, out_w // in_w, axis=2)
    dyn = tf.shape(x)
    in_h = in_h if isinstance(in_h, int) else dyn[1]
    in_w = in_w if isinstance(in_w, int) else dyn[2]
    x = tf.gather(x, _torch_nearest_indices(in_h, out_h), axis=1)
    return tf.gather(x, _torch_nearest_indices(in_w, out_w), axis=2)


@tf.custom_gradient
def upsample_nearest_2x(x):
    """`nn.Upsample(scale_factor=2)`: every pixel repeated into a 2x2 block.

    ResizeNearestNeighbor (floor(dst / 2), exact) is one kernel in TF and XLA and TFLite's
    RESIZE_NEAREST_NEIGHBOR. The broadcast this replaced converted to TFLite's reference BROADCAST_TO,
    single-threaded: 149 ms against 2 ms at 128x128x128, ~0.28 s of the ADE20K forward. TF's gradient
    of the resize has no XLA kernel (train.xla), so the gradient is written here.
    """
    dyn = tf.shape(x)
    n, h, w, c = (x.shape[i] if x.shape[i] is not None else dyn[i] for i in range(4))
    y = tf.raw_ops.ResizeNearestNeighbor(
        images=x, size=tf.stack([2 * h, 2 * w]), align_corners=False, half_pixel_centers=False
    )

    def grad(dy):
        # Each input pixel's 2x2 block of dy, summed: rows, then columns. Free reshapes and contiguous
        # slices; BroadcastTo's gradient (a 6-D reduce_sum) took ~8x longer in TF. 16-bit types add in
        # float32, as reduce_sum does.
        acc = tf.float32 if dy.dtype in (tf.bfloat16, tf.float16) else dy.dtype
        rows = tf.reshape(tf.cast(dy, acc), tf.stack([n, h, 2, w, 2 * c]))
        rows = rows[:, :, 0] + rows[:, :, 1]
        cols = tf.reshape(rows, tf.stack([n, h, w, 2, c]))
        return tf.cast(cols[:, :, :, 0] + cols[:, :, :, 1], dy.dtype)

    return y, grad


def avg_pool_3x3_s2_exclude_pad(x):
    """`F.avg_pool2d(x, 3, stride=2, padding=1, count_include_pad=False)` in NHWC.

    TF's SAME padding puts the extra row/column after the input, PyTorch pads
    one on each side, so the windows differ; pad explicitly and divide by the
    number of real (non-padding) pixels in each window.
    """
    paddings = [[0, 0], [1, 1], [1, 1], [0, 0]]
    summed = tf.nn.avg_pool2d(tf.pad(x, paddings), 3, 2, "VALID") * 9.0
    ones = tf.ones_like(x[:1, :, :, :1])
    count = tf.nn.avg_pool2d(tf.pad(ones, paddings), 3, 2, "VALID") * 9.0
    return summed / count


def spatial_size(x):
    """(H, W) of an NHWC tensor: Python ints where known, else scalar tensors."""
    dyn = tf.shape(x)
    h = x.shape[1] if x.shape[1] is not None else dyn[1]
    w = x.shape[2] if x.shape[2] is not None else dyn[2]
    return h, w


def after_gradient(dy):
    """Context for the recomputations in a custom gradient: they run once `dy` exists.

    TF runs an op as soon as its inputs exist. A recomputation from weights or forward tensors alone
    would otherwise run during the forward pass and be held until the backward pass reads it, which
    undoes the memory it was meant to save (0.34 GB at the peak of an ADE20K 256x256 step).
    """
    return tf.control_dependencies([dy])


@tf.custom_gradient
def leaky_relu(x):
    """`tf.nn.leaky_relu(x, 0.2)` whose gradient reads the output instead of the input.

    TF's own gradient keeps the input from the forward to the backward pass, next to the output that the
    following conv keeps: one activation-sized tensor more per call. At ADE20K 256x256, batch 1, the
    generator's calls hold ~0.1 GB at the training step's peak.
    """
    y = tf.nn.leaky_relu(x, 0.2)

    def grad(dy):
        # y > 0 exactly where x > 0 (the slope is positive), so the output alone gives TF's LeakyReluGrad.
        with after_gradient(dy):
            return tf.where(y > 0, dy, dy * tf.cast(0.2, dy.dtype))

    return y, grad


PADDING_MODES = ("zeros", "reflect")


def reflect_pad(x, padding):
    """Pads the two spatial axes of `x` (N, H, W[, C]) by `padding` pixels each side, mirrored.

    Mirrored without repeating the edge pixel (PyTorch's `padding_mode="reflect"`, TF's REFLECT). A
    side of `padding` pixels or fewer (a latent grid of 1) has nothing to mirror: it repeats its
    pixels instead (TF's SYMMETRIC, edge included). Where a side's size is unknown when tracing (a
    SavedModel signature of any size) the same choice is made at run time, by a gather.
    """
    modes = {}
    for axis in (1, 2):
        if x.shape[axis] is None:
            x = tf.gather(x, _mirror_indices(tf.shape(x)[axis], padding), axis=axis)
        else:
            modes[axis] = "SYMMETRIC" if x.shape[axis] <= padding else "REFLECT"
    if len(set(modes.values())) == 1 and len(modes) == 2:
        axes_at_once = [(1, 2)]  # one pad op for both axes, the usual case
    else:
        axes_at_once = [(axis,) for axis in modes]
    for axes in axes_at_once:
        paddings = [[padding, padding] if axis in axes else [0, 0] for axis in range(x.shape.rank)]
        x = tf.pad(x, paddings, mode=modes[axes[0]])
    return x


def _mirror_indices(size, padding):
    """The source index of each of `size + 2 * padding` pixels, as `reflect_pad` mirrors them."""
    i = tf.range(-padding, size + padding)
    reflect = tf.where(i < 0, -i, tf.where(i >= size, 2 * (size - 1) - i, i))
    symmetric = tf.where(i < 0, -i - 1, tf.where(i >= size, 2 * size - 1 - i, i))
    # Clamped: a side narrower than `padding` (which TF's static pads refuse) repeats its pixels.
    return tf.clip_by_value(tf.where(size > padding, reflect, symmetric), 0, size - 1)
