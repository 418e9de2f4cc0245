"""SPADE's exact fast path: the one-hot `mlp_shared` conv as a sum of gathered kernel rows.

`SPADE` (spade_tf.models.normalization) calls it when `fast=True`; the generator encodes the label
map once per call (`encode_semantics`) and resizes the codes once per resolution (`label_taps`).
"""

import typing

import numpy as np
import tensorflow as tf
from tensorflow.python.ops import control_flow_util

from spade_tf.models import ops
from spade_tf.utils import check_choice

# SPADE's first conv (`mlp_shared`) reads a one-hot label map: at each of its k*k taps the input pixel
# selects one row of that tap's kernel slice, so the conv is a sum of k*k gathered rows. The last
# semantic channel is handled as a free 0/1 bit: it is the instance-edge channel of instance-map models
# (and an ordinary label channel otherwise), so one code per pixel, `code = label + C * bit` with C the
# channel count and label = C - 1 for a pixel with no label among the first C - 1 channels, covers every
# layout without the layer knowing it. The table has, per tap, C rows for bit 0 (the label's kernel row,
# zero for "no label") and C rows for bit 1 (the same plus the last channel's row); zero padding reads
# the "no label, bit 0" row, which is zero. A map whose values are not all 0 or 1, or with two labels at
# a pixel (soft maps), is not described by codes: the layer then runs the plain conv (`tf.cond`), so
# the result is the conv's for every input.


class LabelTaps(typing.NamedTuple):
    """Input of SPADE's gather path at one resolution (see `label_taps`).

    Attributes:
        index: int32 (N, H, W, k*k), the row of `gather_table` read by each pixel at each tap.
        exact: scalar bool tensor: the codes describe the semantic map exactly; when false SPADE runs
            the plain conv on the semantic map instead. A constant when the map is one-hot by
            construction (`encode_semantics(..., one_hot=True)`), and a value in eager mode: SPADE then
            takes its branch without a `tf.cond` (so exports hold no IF op).
    """

    index: tf.Tensor
    exact: tf.Tensor


def encode_semantics(segmap, one_hot=False):
    """Per-pixel codes of a semantic map for SPADE's gather path (see the notes above `LabelTaps`).

    Args:
        segmap: (N, H, W, C) float semantic map (one-hot labels, then optional instance edges); C
            must be static.
        one_hot: True when the caller made `segmap` from integer ids (`preprocessing.make_semantics`),
            so that it is 0/1 with at most one label per pixel whatever the ids: `exact` is then a
            constant true and nothing is checked.

    Returns:
        (codes, exact): int32 (N, H, W, 1) codes `label + C * bit` with label in [0, C - 1] (C - 1:
        none among the first C - 1 channels) and bit the last channel; and a scalar bool, true when
        every value is 0 or 1 and no pixel has two labels, i.e. when the codes describe the map.
    """
    channels = segmap.shape[-1]
    if channels is None:
        raise ValueError(
            f"encode_semantics: the semantic map needs a static channel count, got {segmap.shape}."
        )
    bit = tf.cast(segmap[..., -1:] > 0, tf.int32)
    if channels == 1:
        codes, count = channels * bit, None
    else:
        labels = segmap[..., :-1]
        # 0/1 values make the channel sum an exact count (up to 256 in bfloat16, far above 1).
        count = tf.reduce_sum(labels, axis=-1, keepdims=True)
        label = tf.where(count > 0, tf.argmax(labels, axis=-1, output_type=tf.int32)[..., None], channels - 1)
        codes = label + channels * bit
    if one_hot:
        return codes, tf.constant(True)
    exact = tf.reduce_all(tf.logical_or(tf.equal(segmap, 0), tf.equal(segmap, 1)))
    if count is not None:
        exact = tf.logical_and(exact, tf.reduce_all(count <= 1))
    return codes, exact


def label_taps(codes, size, channels, kernel_size, exact, padding_mode="zeros"):
    """`LabelTaps` at `size` from full-resolution codes of `encode_semantics`.

    Nearest resizing picks pixels, so it commutes with the encoding: the codes are resized instead of
    the C-channel float map (one int32 channel).

    Args:
        codes: int32 (N, H, W, 1) from `encode_semantics`.
        size: (height, width) of SPADE's input x.
        channels: C, the semantic map's channel count.
        kernel_size: k of `mlp_shared`.
        exact: the `exact` of `encode_semantics`.
        padding_mode: the conv's, "zeros" or "reflect".
    """
    codes = ops.nearest_resize(codes, size)[..., 0]
    k, p = kernel_size, kernel_size // 2
    if padding_mode == "reflect":
        # Mirroring commutes with the encoding, as resizing does: out-of-image taps read the mirrored code.
        padded = ops.reflect_pad(codes, p)
    else:
        # Out-of-image taps read "no label, bit 0": the zero row, as the conv's zero padding.
        padded = tf.pad(codes, [[0, 0], [p, p], [p, p]], constant_values=channels - 1)
    h, w = size
    taps = [
        padded[:, dy : dy + h, dx : dx + w] + (dy * k + dx) * 2 * channels
        for dy in range(k)
        for dx in range(k)
    ]
    return LabelTaps(tf.stack(taps, axis=-1), exact)


def _in_xla_context():
    """True while tracing inside an XLA-compiled function (`jit_compile=True`)."""
    return control_flow_util.GraphOrParentsInXlaContext(tf.compat.v1.get_default_graph())


def gather_table(kernel):
    """(k*k*2C, F) table of `mlp_shared`'s kernel (k, k, C, F), rows ordered as `label_taps` indexes them.

    Row `a + C * b` of tap t is `kernel[t, a] + b * kernel[t, C - 1]`, without the first term for
    a = C - 1 (so "no label, bit 0" is a zero row).
    """
    k, _, channels, filters = kernel.shape
    rows = tf.reshape(kernel, [k * k, channels, filters])
    if _in_xla_context():
        # XLA would fuse slices and concatenations into the gather that reads the table and redo them
        # for every pixel (the fast path was then 30 % slower than the conv under jit_compile); the
        # result of a product stays in memory. Adding the zero products of the 0/1 selection matrix
        # is exact, so the rows are the same. Outside XLA the product costs more than the slices.
        select = np.zeros([2 * channels, channels], np.float64)
        labels = np.arange(channels - 1)
        select[labels, labels] = 1.0
        select[channels + labels, labels] = 1.0
        select[channels:, channels - 1] = 1.0
        table = tf.einsum("rc,tcf->trf", tf.constant(select, kernel.dtype), rows)
    else:
        labels = tf.concat([rows[:, :-1], tf.zeros_like(rows[:, :1])], axis=1)
        table = tf.concat([labels, labels + rows[:, -1:]], axis=1)
    return tf.reshape(table, [-1, filters])


def _accum_dtype(dtype):
    return tf.float64 if dtype == tf.float64 else tf.float32


def _rounded(tensor, dtype):
    # Rounded to the compute dtype first, as the plain conv rounds its kernel; sums then run in float32.
    return tf.cast(tf.cast(tensor, dtype), _accum_dtype(dtype))


def _gather_sum_relu(table, bias, index, dtype):
    # The (N, H, W, k*k, F) gather and its sum: XLA's forward pass, and TFLite's / ONNX's GATHER + SUM.
    table, bias = _rounded(table, dtype), _rounded(bias, dtype)
    return tf.cast(tf.nn.relu(tf.reduce_sum(tf.gather(table, index), axis=-2) + bias), dtype)


# XLA fuses the gather into the reduction and runs the scatter-add of the backward pass as one loop;
# TF's own kernels take ~5x (forward) and ~20x (backward) longer here on CPU. Exports use the other
# implementations of `gather_conv_relu` instead.
_gather_relu_forward = tf.function(_gather_sum_relu, jit_compile=True, reduce_retracing=True)


@tf.function(jit_compile=True, reduce_retracing=True)
def _gather_relu_backward(grad, out, index, num_rows, num_taps):
    grad = tf.where(out > 0, tf.cast(grad, _accum_dtype(grad.dtype)), 0)
    d_bias = tf.reduce_sum(grad, axis=[0, 1, 2])
    d_table = tf.add_n([tf.math.unsorted_segment_sum(grad, index[..., t], num_rows) for t in range(num_taps)])
    return d_table, d_bias


# A function of its own: its gradient is then built inside it, where the custom gradient's closure
# finds `out` and `index`. Inlined into a `tf.cond` branch instead, the branch's gradient cannot reach
# tensors captured by the closure ("Could not find external tensor capture").
@tf.function(autograph=False, reduce_retracing=True)
def _gather_conv_relu(table, bias, index, dtype, num_rows, num_taps):
    @tf.custom_gradient
    def fn(table, bias):
        out = _gather_relu_forward(table, bias, index, dtype)

        def grad(dy):
            d_table, d_bias = _gather_relu_backward(dy, out, index, num_rows, num_taps)
            return tf.cast(d_table, table.dtype), tf.cast(d_bias, bias.dtype)

        return out, grad

    return fn(table, bias)


GATHER_IMPLS = ("xla", "segment_sum", "gather_sum")


def _segment_sum_rows(table, index):
    # One TF kernel that reads and adds the rows of each pixel's taps: no (N, H, W, k*k, F) intermediate,
    # ~2x faster than gather + reduce_sum and ~3x faster than the conv on CPU, and differentiable by TF.
    shape = tf.shape(index)
    pixels = tf.reduce_prod(shape[:-1])
    segments = tf.reshape(tf.broadcast_to(tf.range(pixels)[:, None], [pixels, shape[-1]]), [-1])
    rows = tf.sparse.segment_sum(table, tf.reshape(index, [-1]), segments)
    return tf.reshape(rows, tf.concat([shape[:-1], tf.shape(table)[-1:]], axis=0))


def gather_conv_relu(table, bias, index, dtype, impl="segment_sum"):
    """`relu(conv(segmap) + bias)` of `mlp_shared` as gathered kernel rows, in `dtype`.

    Args:
        table: `gather_table(kernel)`, float32 (float64 under a float64 policy).
        bias: the conv's bias.
        index: `LabelTaps.index`.
        dtype: the compute dtype of the result; sums run in float32 (float64) whatever it is.
        impl: how the rows are gathered and summed, all with the same result:
            "xla": an XLA-compiled gather-sum with a hand-written gradient (fastest; Keras and training);
            "segment_sum": `tf.sparse.segment_sum`, plain TF kernels (SavedModels for TF Serving, which
            refuses XLA functions by default; training configs, as it holds less memory);
            "gather_sum": `tf.gather` + `tf.reduce_sum`, the builtin GATHER and SUM ops of TFLite and
            ONNX (neither has a sparse segment sum).

    Returns:
        (N, H, W, F) in `dtype`. Gradients w.r.t. table and bias are computed in float32 (float64).
    """
    check_choice("gather_impl", impl, GATHER_IMPLS)
    dtype = tf.as_dtype(dtype)
    if impl == "xla" or _in_xla_context():
        # Inside an XLA-compiled function (`jit_compile`, train.xla) every implementation is XLA's: it
        # has no sparse segment sum, and its own gather-sum is the fast one there.
        return _gather_conv_relu(table, bias, index, dtype, int(table.shape[0]), int(index.shape[-1]))
    if impl == "gather_sum":
        return _gather_sum_relu(table, bias, index, dtype)
    table, bias = _rounded(table, dtype), _rounded(bias, dtype)
    return tf.cast(tf.nn.relu(_segment_sum_rows(table, index) + bias), dtype)
