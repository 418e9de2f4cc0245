"""The convolution every SPADE network uses: PyTorch padding, optional PyTorch spectral norm, the official init."""

import functools
import os

import keras
import tensorflow as tf

from spade_tf.models import ops
from spade_tf.utils import PACKAGE, check_choice


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


# Which kernels compute the convs' gradients: "forward" (as forward convs where `_route` allows: every conv
# of the generator, SPADE and the discriminator; `conv_input_gradient`, `conv_kernel_gradient`), "tf" (TF's
# Conv2DBackpropInput / Conv2DBackpropFilter) or "auto" (forward without a GPU, else tf). An environment
# variable rather than a config field: it picks kernels, not a model (the sums are the same), like
# TF_ENABLE_ONEDNN_OPTS, and the benchmark's child processes inherit it. Read when a function is traced.
CONV_GRADIENTS_ENV = "SPADE_TF_CONV_GRADIENTS"
CONV_GRADIENTS_CHOICES = ("auto", "forward", "tf")


@functools.cache
def _has_gpu():
    return bool(tf.config.list_physical_devices("GPU"))


def conv_gradients():
    """The kernels the convs' gradients use, "forward" or "tf" (see CONV_GRADIENTS_ENV).

    On CPU, TF's backprop kernels ran at about half the speed of its forward conv at the demo's shapes
    (64x64, 16-64 channels, batch 8; on a 2-core AMD EPYC the forward-conv gradients made the demo's
    G step 22% and its whole training step about 10% cheaper; the discriminator's convs as well, its D step
    23% and the whole step 13% more: README, "The demo's levers"). On a GPU
    cuDNN's backprop kernels were not compared, so "auto" keeps them there.
    """
    choice = os.environ.get(CONV_GRADIENTS_ENV, "auto")
    if choice not in CONV_GRADIENTS_CHOICES:
        raise ValueError(
            f"{CONV_GRADIENTS_ENV}={choice!r}: choose one of {', '.join(CONV_GRADIENTS_CHOICES)} "
            "(or leave it unset for auto)."
        )
    if choice == "auto":
        return "tf" if _has_gpu() else "forward"
    return choice


def _route(kernel_size, strides, padding, shape):
    """How a conv with PyTorch padding `padding` (zeros on each side) runs and is differentiated.

    "tf": `tf.nn.conv2d` (SAME at stride 1 when the padding is an odd kernel's symmetric one, else the padded
    input, VALID) with TF's Conv2DBackprop* kernels. "s1": a stride-1 conv whose input and kernel gradients
    are forward convs. "s2d": a stride-2 conv with an even kernel, computed as a stride-1 conv of half the
    kernel size on the space-to-depth input (each 2x2 block of pixels one pixel of 4x the channels: the
    same products), so that it is differentiated as "s1" too. That covers every conv of the generator and
    SPADE ("s1", SAME) and the discriminator's ("s1" and "s2d", kernel 4); the encoder's 3x3 stride-2 convs
    keep TF's kernels (a 3x3 kernel would be padded to 4x4, 16/9 of the work).
    """
    if conv_gradients() != "forward":
        return "tf"
    if strides == 1 and padding <= kernel_size - 1:
        return "s1"
    if strides == 2 and kernel_size % 2 == 0 and None not in tuple(shape[1:3]):
        return "s2d"
    return "tf"


def _nhwc(strides):
    return [1, strides, strides, 1]


def _pad(x, top, left, bottom=None, right=None):
    bottom, right = top if bottom is None else bottom, left if right is None else right
    if not (top or left or bottom or right):
        return x
    return tf.pad(x, [[0, 0], [top, bottom], [left, right], [0, 0]])


def _tf_conv_input(x, kernel_size, strides, padding):
    """(input, stride, TF padding) of the VALID or SAME `tf.nn.conv2d` equal to the PyTorch-padded conv."""
    if strides == 1 and 2 * padding == kernel_size - 1:
        # At stride 1 an odd kernel's SAME padding is p zeros on each side:
        # the same sums, without materialising a padded copy of the input.
        return x, 1, "SAME"
    return _pad(x, padding, padding), strides, "VALID"


def _forward(x, kernel, strides, padding):
    """The conv of x zero-padded by `padding` on each side, without a custom gradient."""
    x, strides, tf_padding = _tf_conv_input(x, kernel.shape[0], strides, padding)
    return tf.nn.conv2d(x, kernel, strides, tf_padding)


def _s1_input_gradient(dy, kernel, padding):
    # A stride-1 conv's input gradient is a full correlation of dy with the kernel rotated by 180 degrees
    # and its in/out channels swapped; the input's own padding p leaves k - 1 - p of it.
    flipped = tf.transpose(tf.reverse(kernel, [0, 1]), [0, 1, 3, 2])
    return _forward(dy, flipped, 1, kernel.shape[0] - 1 - padding)


def _s1_kernel_gradient(x, dy, padding):
    # dK[i, j, c, k] = sum over batch and pixels of x_padded[b, y + i, x + j, c] * dy[b, y, x, k]: a VALID conv
    # of x_padded laid out as (c, H, W, b) with dy laid out as an (H, W, b, k) filter.
    x = _pad(x, padding, padding)
    dk = tf.nn.conv2d(tf.transpose(x, [3, 1, 2, 0]), tf.transpose(dy, [1, 2, 0, 3]), 1, "VALID")
    return tf.transpose(dk, [1, 2, 0, 3])


def _s2d(x, kernel, padding):
    """A stride-2 conv with an even kernel as a stride-1 VALID conv: (input, kernel, output size).

    The input, zero-padded (one row/column more where the padded size is odd), goes through
    `tf.nn.space_to_depth`; the kernel (kh, kw, c, o) becomes (kh / 2, kw / 2, 4c, o) in its channel order
    (dy, dx, c). The caller cuts the output to the size (the odd size's extra row/column). Autodiff
    carries the gradients back through these reshapes, so only the stride-1 conv needs its own.
    """
    kh, kw, c, o = kernel.shape
    padded = [n + 2 * padding for n in x.shape[1:3]]
    eh, ew = (n % 2 for n in padded)
    x = tf.nn.space_to_depth(_pad(x, padding, padding, padding + eh, padding + ew), 2)
    kernel = tf.reshape(kernel, [kh // 2, 2, kw // 2, 2, c, o])
    kernel = tf.reshape(tf.transpose(kernel, [0, 2, 1, 3, 4, 5]), [kh // 2, kw // 2, 4 * c, o])
    return x, kernel, tuple((n - kh) // 2 + 1 for n in padded)


def conv_input_gradient(dy, kernel, x, strides, padding):
    """d(conv(x, kernel))/dx for `dy`, the conv having PyTorch padding `padding`: a forward conv on the "s1"
    route (`_route`), else TF's Conv2DBackpropInput."""
    k = kernel.shape[0]
    if _route(k, strides, padding, x.shape) == "s1":
        return _s1_input_gradient(dy, kernel, padding)
    xp, strides, tf_padding = _tf_conv_input(x, k, strides, padding)
    dx = tf.raw_ops.Conv2DBackpropInput(
        input_sizes=tf.shape(xp), filter=kernel, out_backprop=dy, strides=_nhwc(strides), padding=tf_padding
    )
    if xp is x:
        return dx
    return dx[:, padding : tf.shape(dx)[1] - padding, padding : tf.shape(dx)[2] - padding]


def conv_kernel_gradient(x, dy, kernel_shape, strides, padding):
    """d(conv(x, kernel))/dkernel for `dy`, the conv having PyTorch padding `padding`: a forward conv on the
    "s1" route (`_route`), else TF's Conv2DBackpropFilter."""
    k = kernel_shape[0]
    if _route(k, strides, padding, x.shape) == "s1":
        return _s1_kernel_gradient(x, dy, padding)
    x, strides, tf_padding = _tf_conv_input(x, k, strides, padding)
    return tf.raw_ops.Conv2DBackpropFilter(
        input=x, filter_sizes=kernel_shape, out_backprop=dy, strides=_nhwc(strides), padding=tf_padding
    )


def conv2d(x, kernel, strides, padding):
    """The conv of x zero-padded by `padding` (PyTorch's) on each side, whose gradients are
    `conv_input_gradient` and `conv_kernel_gradient`."""
    route = _route(kernel.shape[0], strides, padding, x.shape)
    if route == "tf":
        return _forward(x, kernel, strides, padding)
    if route == "s2d":
        x, kernel, (oh, ow) = _s2d(x, kernel, padding)
        return conv2d(x, kernel, 1, 0)[:, :oh, :ow]

    @tf.custom_gradient
    def conv(x, kernel):
        def grad(dy):
            return (
                conv_input_gradient(dy, kernel, x, strides, padding),
                conv_kernel_gradient(x, dy, kernel.shape, strides, padding),
            )

        return _forward(x, kernel, strides, padding), grad

    return conv(x, kernel)


def _normalized_kernel_conv(x, kernel, sigma, strides, padding):
    """`tf.nn.conv2d(x, kernel / sigma)` in x's dtype, whose backward pass computes `kernel / sigma` again.

    Autodiff would keep the normalized kernel, a copy of the kernel, from the forward pass to the
    backward pass; the generator's spectral-norm kernels hold 66 M parameters at ngf 64, so a training
    step would hold 0.26 GB more at its peak. The gradients are autodiff's: the conv's input and filter
    gradients (the ops TF's own Conv2D gradient runs), then d(kernel / sigma) by kernel and by sigma;
    sigma's own dependence on the kernel is differentiated by TF outside.
    """
    route = _route(kernel.shape[0], strides, padding, x.shape)
    if route == "tf" and padding and 2 * padding != kernel.shape[0] - 1:
        # Padded once here, so that the backward pass reads the padded input rather than padding it again.
        return _normalized_kernel_conv(_pad(x, padding, padding), kernel, sigma, strides, 0)
    if route == "s2d":
        # sigma is the original kernel's; the rearranged kernel has the same entries, so the same sigma
        # and the same sum in sigma's gradient. The rearranged copy is held until the backward pass: the
        # discriminator's kernels only (a few M parameters at the official widths).
        x, kernel, (oh, ow) = _s2d(x, kernel, padding)
        return _normalized_kernel_conv(x, kernel, sigma, 1, 0)[:, :oh, :ow]
    dtype = x.dtype

    @tf.custom_gradient
    def conv(x, kernel, sigma):
        def normalized():
            return tf.cast(kernel / sigma, dtype)

        def grad(dy):
            with ops.after_gradient(dy):
                k = normalized()
            dx = conv_input_gradient(dy, k, x, strides, padding)
            dk = tf.cast(conv_kernel_gradient(x, dy, k.shape, strides, padding), kernel.dtype)
            return dx, dk / sigma, -tf.reduce_sum(dk * kernel) / (sigma * sigma)

        return _forward(x, normalized(), strides, padding), grad

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
        padding_mode: "zeros" (PyTorch's default, the official SPADE's) or "reflect": the input
            mirrored at its borders (`ops.reflect_pad`), so a border pixel sees no zeros that mark
            it as one (see `SPADEGenerator`'s `padding_mode`).
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
        padding_mode="zeros",
        **kwargs,
    ):
        super().__init__(**kwargs)
        check_choice("padding_mode", padding_mode, ops.PADDING_MODES)
        self.padding_mode = padding_mode
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

    def _padded(self, inputs):
        """(input, zero padding the conv adds): mirrored padding is added here, zeros by the conv."""
        if self.padding_mode == "reflect" and self.padding:
            return ops.reflect_pad(inputs, self.padding), 0
        return inputs, self.padding

    def call(self, inputs, training=False):
        bias = tf.cast(self.bias, self.compute_dtype) if self.use_bias else None
        if not self.use_spectral_norm:
            return self.convolve(inputs, tf.cast(self.kernel, self.compute_dtype), bias)
        sigma = self.spectral_sigma(training)
        inputs, padding = self._padded(inputs)
        x = _normalized_kernel_conv(inputs, tf.convert_to_tensor(self.kernel), sigma, self.strides, padding)
        return x if bias is None else tf.nn.bias_add(x, bias)

    def convolve(self, inputs, kernel, bias=None):
        """This layer's padding and stride applied with a given kernel and bias.

        SPADE's fast path reads its shared conv's weights outside a `tf.cond`
        and convolves with them in the fallback branch.
        """
        inputs, padding = self._padded(inputs)
        x = conv2d(inputs, kernel, self.strides, padding)
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
            padding_mode=self.padding_mode,
            use_bias=self.use_bias,
            use_spectral_norm=self.use_spectral_norm,
            power_iterations=self.power_iterations,
            epsilon=self.epsilon,
            kernel_initializer=keras.initializers.serialize(self.kernel_initializer),
        )
        return config
