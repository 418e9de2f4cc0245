"""Convolutions with PyTorch-style spectral norm, parameter-free norms, and SPADE.

Reference: Park et al., "Semantic Image Synthesis with Spatially-Adaptive
Normalization", CVPR 2019, https://arxiv.org/abs/1903.07291
"""

import typing

import keras
import numpy as np
import tensorflow as tf
from tensorflow.python.ops import control_flow_util

from spade_tf.models import ops

PACKAGE = "spade_tf"
PARAM_FREE_NORMS = ("sync_batch", "batch", "instance")


def xavier_normal(gain=0.02):
    """The official initialisation: `xavier_normal_(w, gain=0.02)`.

    Xavier normal has std = gain * sqrt(2 / (fan_in + fan_out)); Keras'
    fan_avg variance scaling has std = sqrt(scale / ((fan_in + fan_out) / 2)),
    so scale = gain**2 gives the same distribution (fans are computed the
    same way for conv kernels: receptive field times channels).
    """
    return keras.initializers.VarianceScaling(
        scale=gain**2, mode="fan_avg", distribution="untruncated_normal"
    )


def _unit_normal(shape, dtype=None):
    # tf.random (seeded by keras.utils.set_random_seed) rather than keras.random,
    # whose global SeedGenerator is a variable bound to the first strategy that
    # created it: models built under a second strategy would fail.
    v = tf.random.normal(shape, dtype=dtype or "float32")
    return v / tf.maximum(tf.norm(v), 1e-12)


def _normalize(v, eps):
    # torch.nn.functional.normalize: v / max(||v||, eps). tf.math.l2_normalize
    # clamps the squared norm instead, which differs for tiny vectors.
    return v / tf.maximum(tf.norm(v), eps)


def check_choice(name, value, allowed):
    if value not in allowed:
        raise ValueError(f"{name}={value!r} is not supported; choose one of {', '.join(map(repr, allowed))}.")


def _normalized_kernel_conv(x, kernel, sigma, strides, padding):
    """`tf.nn.conv2d(x, kernel / sigma)` in x's dtype, whose backward pass computes `kernel / sigma` again.

    Autodiff would keep the normalized kernel, a copy of the kernel, from the forward pass to the
    backward pass; the generator's spectral-norm kernels hold 66 M parameters at ngf 64, so a training
    step would hold 0.26 GB more at its peak. The gradients are autodiff's: the conv's input and filter
    gradients (the ops TF's own Conv2D gradient runs), then d(kernel / sigma) by kernel and by sigma;
    sigma's own dependence on the kernel is differentiated by TF outside.
    """
    dtype = x.dtype
    conv_strides = [1, strides, strides, 1]

    @tf.custom_gradient
    def conv(x, kernel, sigma):
        def normalized():
            return tf.cast(kernel / sigma, dtype)

        def grad(dy):
            with ops.after_gradient(dy):
                k = normalized()
            dx = tf.raw_ops.Conv2DBackpropInput(
                input_sizes=tf.shape(x), filter=k, out_backprop=dy, strides=conv_strides, padding=padding
            )
            dk = tf.raw_ops.Conv2DBackpropFilter(
                input=x, filter_sizes=tf.shape(k), out_backprop=dy, strides=conv_strides, padding=padding
            )
            dk = tf.cast(dk, kernel.dtype)
            return dx, dk / sigma, -tf.reduce_sum(dk * kernel) / (sigma * sigma)

        return tf.nn.conv2d(x, normalized(), strides, padding), grad

    return conv(x, kernel, sigma)


@keras.saving.register_keras_serializable(package=PACKAGE)
class Conv2D(keras.layers.Layer):
    """2-D convolution with PyTorch padding and optional PyTorch spectral norm.

    Padding is explicit zero padding on every side (PyTorch's `padding=p`),
    which Keras' "same"/"valid" cannot express for SPADE's discriminator
    (kernel 4, padding 2).

    With `use_spectral_norm=True` the layer reproduces
    `torch.nn.utils.spectral_norm` (not `keras.layers.SpectralNormalization`,
    which keeps only u, overwrites the kernel and blocks the gradient through
    sigma): the trainable `kernel` is the unnormalised weight (`weight_orig`),
    `u` (out,) and `v` (kh*kw*in,) are stored; a training call runs one power
    iteration, writes u and v back, and divides the kernel by
    sigma = u . (W v) with u, v held constant, so the gradient flows through
    sigma into the kernel. An inference call uses the stored u and v and does
    no iteration. `v` is kept in this layer's (kh, kw, in) flattening; the
    converter permutes it from PyTorch's (in, kh, kw) order.

    Args:
        filters: output channels.
        kernel_size: square kernel size.
        input_filters: input channels (fixed so the layer builds without data).
        strides: stride in both directions.
        padding: zero padding added on each side.
        use_bias: add a bias.
        use_spectral_norm: apply spectral normalisation to the kernel.
        power_iterations: power iterations per training call (PyTorch: 1).
        epsilon: normalisation epsilon of the power iteration (PyTorch: 1e-12).
        kernel_initializer: initialiser of the kernel; the official xavier
            normal with gain 0.02 by default.

    Example:
        >>> conv = Conv2D(8, 3, input_filters=4, padding=1, use_spectral_norm=True)
        >>> conv(tf.zeros([1, 16, 16, 4]), training=True).shape
        TensorShape([1, 16, 16, 8])
    """

    def __init__(
        self,
        filters,
        kernel_size,
        input_filters,
        strides=1,
        padding=0,
        use_bias=True,
        use_spectral_norm=False,
        power_iterations=1,
        epsilon=1e-12,
        kernel_initializer=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.filters = int(filters)
        self.kernel_size = int(kernel_size)
        self.input_filters = int(input_filters)
        self.strides = int(strides)
        self.padding = int(padding)
        self.use_bias = bool(use_bias)
        self.use_spectral_norm = bool(use_spectral_norm)
        self.power_iterations = int(power_iterations)
        self.epsilon = float(epsilon)
        self.kernel_initializer = keras.initializers.get(
            kernel_initializer if kernel_initializer is not None else xavier_normal()
        )

    def build(self, input_shape=None):
        if input_shape is not None and input_shape[-1] not in (None, self.input_filters):
            raise ValueError(
                f"{self.name}: expected {self.input_filters} input channels, got shape {input_shape}."
            )
        k = self.kernel_size
        self.kernel = self.add_weight(
            name="kernel",
            shape=(k, k, self.input_filters, self.filters),
            initializer=self.kernel_initializer,
            autocast=False,
        )
        if self.use_bias:
            self.bias = self.add_weight(name="bias", shape=(self.filters,), initializer="zeros")
        if self.use_spectral_norm:
            # Replicas hold identical weights, so their u, v updates are
            # identical too: keep the first replica's.
            self.u = self.add_weight(
                name="u",
                shape=(self.filters,),
                initializer=_unit_normal,
                trainable=False,
                autocast=False,
                aggregation="only_first_replica",
            )
            self.v = self.add_weight(
                name="v",
                shape=(k * k * self.input_filters,),
                initializer=_unit_normal,
                trainable=False,
                autocast=False,
                aggregation="only_first_replica",
            )

    def spectral_sigma(self, training=False):
        """sigma = u . (W v) of the spectral norm (float32); a training call first runs the power iteration
        and stores the new u and v."""
        kernel = tf.convert_to_tensor(self.kernel)
        # Columns of w_t are the rows of PyTorch's W_mat = weight.reshape(out, -1).
        w_t = tf.reshape(kernel, [-1, self.filters])
        u, v = tf.convert_to_tensor(self.u), tf.convert_to_tensor(self.v)
        if training:
            w_const = tf.stop_gradient(w_t)
            for _ in range(self.power_iterations):
                v = _normalize(tf.linalg.matvec(w_const, u), self.epsilon)
                u = _normalize(tf.linalg.matvec(w_const, v, transpose_a=True), self.epsilon)
            u, v = tf.stop_gradient(u), tf.stop_gradient(v)
            self.u.assign(u)
            self.v.assign(v)
        return tf.tensordot(u, tf.linalg.matvec(w_t, v, transpose_a=True), 1)

    def normalized_kernel(self, training=False):
        """The kernel the convolution uses (W / sigma with spectral norm), float32."""
        kernel = tf.convert_to_tensor(self.kernel)
        if not self.use_spectral_norm:
            return kernel
        return kernel / self.spectral_sigma(training)

    def call(self, inputs, training=False):
        bias = tf.cast(self.bias, self.compute_dtype) if self.use_bias else None
        if not self.use_spectral_norm:
            return self.convolve(inputs, tf.cast(self.kernel, self.compute_dtype), bias)
        sigma = self.spectral_sigma(training)
        x, strides, padding = self._conv_input(inputs)
        x = _normalized_kernel_conv(x, tf.convert_to_tensor(self.kernel), sigma, strides, padding)
        return x if bias is None else tf.nn.bias_add(x, bias)

    def _conv_input(self, inputs):
        """(input, stride, TF padding) of the VALID or SAME `tf.nn.conv2d` equal to this layer's conv."""
        p = self.padding
        if self.strides == 1 and 2 * p == self.kernel_size - 1:
            # At stride 1 an odd kernel's SAME padding is p zeros on each side:
            # the same sums, without materialising a padded copy of the input.
            return inputs, 1, "SAME"
        x = tf.pad(inputs, [[0, 0], [p, p], [p, p], [0, 0]]) if p else inputs
        return x, self.strides, "VALID"

    def convolve(self, inputs, kernel, bias=None):
        """This layer's padding and stride applied with a given kernel and bias.

        SPADE's fast path reads its shared conv's weights outside a `tf.cond`
        and convolves with them in the fallback branch.
        """
        x, strides, padding = self._conv_input(inputs)
        x = tf.nn.conv2d(x, kernel, strides, padding)
        return x if bias is None else tf.nn.bias_add(x, bias)

    def compute_output_shape(self, input_shape):
        def out(n):
            if n is None:
                return None
            return (n + 2 * self.padding - self.kernel_size) // self.strides + 1

        return (input_shape[0], out(input_shape[1]), out(input_shape[2]), self.filters)

    def get_config(self):
        config = super().get_config()
        config.update(
            filters=self.filters,
            kernel_size=self.kernel_size,
            input_filters=self.input_filters,
            strides=self.strides,
            padding=self.padding,
            use_bias=self.use_bias,
            use_spectral_norm=self.use_spectral_norm,
            power_iterations=self.power_iterations,
            epsilon=self.epsilon,
            kernel_initializer=keras.initializers.serialize(self.kernel_initializer),
        )
        return config


@keras.saving.register_keras_serializable(package=PACKAGE)
class ParamFreeBatchNorm(keras.layers.Layer):
    """Batch norm without scale and shift, with PyTorch's statistics.

    Training normalises with the batch mean and biased variance over
    (N, H, W); the running variance is updated with the *unbiased* variance
    and momentum 0.1 as in `torch.nn.BatchNorm2d` (Keras' BatchNormalization
    uses the biased one). With `synchronized=True` the statistics are pooled
    over all replicas of the current `tf.distribute` strategy, as
    SynchronizedBatchNorm2d pools them over GPUs: the replicas then normalise
    with the statistics of the global batch. Statistics are computed in float32
    in two passes (mean, then mean squared deviation) for precision.

    Args:
        num_features: channels.
        momentum: PyTorch momentum: running = (1 - m) * running + m * batch.
        epsilon: added to the variance.
        synchronized: pool statistics across replicas.
    """

    def __init__(self, num_features, momentum=0.1, epsilon=1e-5, synchronized=True, **kwargs):
        super().__init__(**kwargs)
        self.num_features = int(num_features)
        self.momentum = float(momentum)
        self.epsilon = float(epsilon)
        self.synchronized = bool(synchronized)

    def build(self, input_shape=None):
        shape = (self.num_features,)
        self.running_mean = self.add_weight(
            name="running_mean",
            shape=shape,
            initializer="zeros",
            trainable=False,
            autocast=False,
            aggregation="mean",
        )
        self.running_var = self.add_weight(
            name="running_var",
            shape=shape,
            initializer="ones",
            trainable=False,
            autocast=False,
            aggregation="mean",
        )

    def _moments(self, x):
        ctx = tf.distribute.get_replica_context()
        pooled = self.synchronized and ctx is not None and ctx.num_replicas_in_sync > 1
        count = tf.cast(tf.reduce_prod(tf.shape(x)[:-1]), x.dtype)
        total = tf.reduce_sum(x, axis=[0, 1, 2])
        if pooled:
            count, total = ctx.all_reduce(tf.distribute.ReduceOp.SUM, [count, total])
        mean = total / count
        sq_dev = tf.reduce_sum(tf.square(x - mean), axis=[0, 1, 2])
        if pooled:
            sq_dev = ctx.all_reduce(tf.distribute.ReduceOp.SUM, sq_dev)
        return mean, sq_dev / count, count

    def centered(self, inputs, training=False):
        """(x - mean, 1 / sqrt(var + eps)) in float32 (float64 layers: float64); their product, cast
        to the compute dtype, is the output. A training call updates the running statistics."""
        x = tf.cast(inputs, _stats_dtype(self))
        if training:
            mean, var, count = self._moments(x)
            unbiased = var * count / tf.maximum(count - 1.0, 1.0)
            m = self.momentum
            vdt = self.running_mean.dtype
            self.running_mean.assign((1.0 - m) * self.running_mean + m * tf.cast(mean, vdt))
            self.running_var.assign((1.0 - m) * self.running_var + m * tf.cast(unbiased, vdt))
        else:
            mean = tf.cast(self.running_mean, x.dtype)
            var = tf.cast(self.running_var, x.dtype)
        return x - mean, tf.math.rsqrt(var + self.epsilon)

    def call(self, inputs, training=False):
        centered, scale = self.centered(inputs, training)
        return tf.cast(centered * scale, self.compute_dtype)

    def get_config(self):
        config = super().get_config()
        config.update(
            num_features=self.num_features,
            momentum=self.momentum,
            epsilon=self.epsilon,
            synchronized=self.synchronized,
        )
        return config


@keras.saving.register_keras_serializable(package=PACKAGE)
class InstanceNorm(keras.layers.Layer):
    """`InstanceNorm2d(affine=False)`: per-sample, per-channel over (H, W), biased variance.

    Args:
        epsilon: added to the variance (PyTorch: 1e-5; Keras' default 1e-3 differs).
    """

    def __init__(self, epsilon=1e-5, **kwargs):
        super().__init__(**kwargs)
        self.epsilon = float(epsilon)

    def centered(self, inputs, training=False):
        """(x - mean, 1 / sqrt(var + eps)), per sample and channel, in float32 (float64 layers: float64)."""
        x = tf.cast(inputs, _stats_dtype(self))
        mean, var = tf.nn.moments(x, axes=[1, 2], keepdims=True)
        return x - mean, tf.math.rsqrt(var + self.epsilon)

    def call(self, inputs, training=False):
        centered, scale = self.centered(inputs, training)
        return tf.cast(centered * scale, self.compute_dtype)

    def get_config(self):
        config = super().get_config()
        config.update(epsilon=self.epsilon)
        return config


def _stats_dtype(layer):
    # Statistics in float32 under mixed precision; float64 layers keep float64.
    return tf.float64 if layer.compute_dtype == "float64" else tf.float32


def param_free_norm_layer(kind, num_features, name, dtype):
    check_choice("param_free_norm", kind, PARAM_FREE_NORMS)
    if kind == "instance":
        return InstanceNorm(name=name, dtype=dtype)
    return ParamFreeBatchNorm(num_features, synchronized=kind == "sync_batch", name=name, dtype=dtype)


# -- SPADE's gather path -------------------------------------------------------------------------------
#
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


def label_taps(codes, size, channels, kernel_size, exact):
    """`LabelTaps` at `size` from full-resolution codes of `encode_semantics`.

    Nearest resizing picks pixels, so it commutes with the encoding: the codes are resized instead of
    the C-channel float map (one int32 channel).

    Args:
        codes: int32 (N, H, W, 1) from `encode_semantics`.
        size: (height, width) of SPADE's input x.
        channels: C, the semantic map's channel count.
        kernel_size: k of `mlp_shared`.
        exact: the `exact` of `encode_semantics`.
    """
    codes = ops.nearest_resize(codes, size)[..., 0]
    k, p = kernel_size, kernel_size // 2
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


def gather_conv_relu(table, bias, index, dtype, impl="xla"):
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


@tf.custom_gradient
def modulate(centered, scale, gamma, beta):
    """SPADE's `norm(x) * (1 + gamma) + beta` from the norm's `centered(x)`, in gamma's dtype.

    norm(x) = cast(centered * scale). Autodiff would keep norm(x) and 1 + gamma from the forward to the
    backward pass, next to `centered`, which the norm's own gradient keeps; this gradient computes norm(x)
    and 1 + gamma again from `centered`, `scale` and gamma, so a training step holds one activation-sized
    tensor less per SPADE layer (~0.15 GB at the peak of an ADE20K 256x256 step at batch 1). Same values,
    same gradients.

    Args:
        centered: x - mean, float32 (float64), (N, H, W, C).
        scale: 1 / sqrt(var + eps): (C,) for batch norm, (N, 1, 1, C) for instance norm.
        gamma, beta: (N, H, W, C) in the compute dtype.
    """
    dtype = gamma.dtype
    out = tf.cast(centered * scale, dtype) * (1.0 + gamma) + beta

    def grad(dy):
        with ops.after_gradient(dy):
            d_norm = tf.cast(dy * (1.0 + gamma), centered.dtype)
            d_gamma = dy * tf.cast(centered * scale, dtype)
        axes = [0, 1, 2] if scale.shape.rank == 1 else [1, 2]
        d_scale = tf.reduce_sum(d_norm * centered, axis=axes, keepdims=scale.shape.rank != 1)
        return d_norm * scale, d_scale, d_gamma, dy

    return out, grad


@keras.saving.register_keras_serializable(package=PACKAGE)
class SPADE(keras.layers.Layer):
    """Spatially-adaptive denormalisation: `norm(x) * (1 + gamma(seg)) + beta(seg)`.

    The label map is resized to x's spatial size with PyTorch's floor-index
    nearest rule, passed through a shared conv + ReLU with `hidden_filters`
    channels, then two convs predict per-pixel gamma and beta. The sublayer
    names follow the official module (`param_free_norm`, `mlp_shared`,
    `mlp_gamma`, `mlp_beta`) so weights map one to one.

    With `fast=True` (the default) the shared conv of a 0/1 label map runs
    as a sum of gathered kernel rows: k*k row additions per pixel instead of
    k*k*C multiply-adds (see the notes above `LabelTaps`; other maps take the
    plain conv through `tf.cond`). Results equal the plain path's up to float rounding
    (float32: a few ulps). The weights are the same in both modes. (Gamma and
    beta as one conv with concatenated kernels was tried and measured slower
    on a 2-core AVX-512 CPU with oneDNN: +4 % forward, +6 % training time.)

    Call: `layer(x, segmap, training=False, taps=None)`; `taps` is an
    optional `LabelTaps` at x's size, which the generator computes once per
    resolution and shares between its SPADE layers (ignored with
    `fast=False`). Without it the layer encodes `segmap` itself.

    Args:
        num_features: channels of x.
        label_channels: channels of the semantic map.
        param_free_norm: "sync_batch", "batch" or "instance".
        kernel_size: kernel of the three modulation convs (official: 3).
        hidden_filters: channels of the shared hidden layer (official: 128).
        fast: run the shared conv as gathered kernel rows when the map allows.
        gather_impl: "xla", "segment_sum" or "gather_sum" (see `gather_conv_relu`).

    Reference: https://arxiv.org/abs/1903.07291 (Sec. 3, Fig. 2).
    """

    def __init__(
        self,
        num_features,
        label_channels,
        param_free_norm="sync_batch",
        kernel_size=3,
        hidden_filters=128,
        fast=True,
        gather_impl="xla",
        **kwargs,
    ):
        super().__init__(**kwargs)
        check_choice("param_free_norm", param_free_norm, PARAM_FREE_NORMS)
        check_choice("gather_impl", gather_impl, GATHER_IMPLS)
        self.num_features = int(num_features)
        self.label_channels = int(label_channels)
        self.param_free_norm_kind = param_free_norm
        self.kernel_size = int(kernel_size)
        self.hidden_filters = int(hidden_filters)
        self.fast = bool(fast)
        self.gather_impl = gather_impl
        dtype = self.dtype_policy
        pad = self.kernel_size // 2
        self.param_free_norm = param_free_norm_layer(
            param_free_norm, self.num_features, name="param_free_norm", dtype=dtype
        )
        self.mlp_shared = Conv2D(
            self.hidden_filters,
            self.kernel_size,
            self.label_channels,
            padding=pad,
            name="mlp_shared",
            dtype=dtype,
        )
        self.mlp_gamma = Conv2D(
            self.num_features,
            self.kernel_size,
            self.hidden_filters,
            padding=pad,
            name="mlp_gamma",
            dtype=dtype,
        )
        self.mlp_beta = Conv2D(
            self.num_features,
            self.kernel_size,
            self.hidden_filters,
            padding=pad,
            name="mlp_beta",
            dtype=dtype,
        )

    def build(self, x_shape=None, segmap_shape=None):
        self.param_free_norm.build((None, None, None, self.num_features))
        self.mlp_shared.build((None, None, None, self.label_channels))
        self.mlp_gamma.build((None, None, None, self.hidden_filters))
        self.mlp_beta.build((None, None, None, self.hidden_filters))

    def label_taps(self, segmap, size):
        """`LabelTaps` of `segmap` at `size` for this layer's kernel (what the generator shares)."""
        codes, exact = encode_semantics(segmap)
        return label_taps(codes, size, self.label_channels, self.kernel_size, exact)

    def call(self, x, segmap, training=False, taps=None):
        centered, scale = self.param_free_norm.centered(x, training=training)
        size = ops.spatial_size(x)
        if not self.fast:
            segmap = ops.nearest_resize(segmap, size)
            actv = tf.nn.relu(self.mlp_shared(segmap))
            return modulate(centered, scale, self.mlp_gamma(actv), self.mlp_beta(actv))

        if taps is None:
            taps = self.label_taps(segmap, size)
        # Variables are read outside the branches: TFLite's converter freezes only the main graph's.
        kernel = self.mlp_shared.normalized_kernel(training)
        bias = tf.convert_to_tensor(self.mlp_shared.bias)
        cdt = self.compute_dtype

        def gathered():
            return gather_conv_relu(gather_table(kernel), bias, taps.index, cdt, self.gather_impl)

        def convolved():
            segmap_x = ops.nearest_resize(segmap, size)
            return tf.nn.relu(self.mlp_shared.convolve(segmap_x, tf.cast(kernel, cdt), tf.cast(bias, cdt)))

        exact = tf.get_static_value(taps.exact)
        if exact is None:
            actv = tf.cond(taps.exact, gathered, convolved)
        else:
            # Known when tracing (a one-hot map by construction) or in eager mode: no branch to build.
            actv = gathered() if exact else convolved()
        return modulate(centered, scale, self.mlp_gamma(actv), self.mlp_beta(actv))

    def get_config(self):
        config = super().get_config()
        config.update(
            num_features=self.num_features,
            label_channels=self.label_channels,
            param_free_norm=self.param_free_norm_kind,
            kernel_size=self.kernel_size,
            hidden_filters=self.hidden_filters,
            fast=self.fast,
            gather_impl=self.gather_impl,
        )
        return config
