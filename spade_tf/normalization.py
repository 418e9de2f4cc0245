"""Convolutions with PyTorch-style spectral norm, parameter-free norms, and SPADE.

Reference: Park et al., "Semantic Image Synthesis with Spatially-Adaptive
Normalization", CVPR 2019, https://arxiv.org/abs/1903.07291
"""

import keras
import tensorflow as tf

from spade_tf import ops

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

    def normalized_kernel(self, training=False):
        """The kernel the convolution uses (W / sigma with spectral norm), float32."""
        kernel = tf.convert_to_tensor(self.kernel)
        if not self.use_spectral_norm:
            return kernel
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
        sigma = tf.tensordot(u, tf.linalg.matvec(w_t, v, transpose_a=True), 1)
        return kernel / sigma

    def call(self, inputs, training=False):
        kernel = tf.cast(self.normalized_kernel(training), self.compute_dtype)
        x = inputs
        if self.padding:
            p = self.padding
            x = tf.pad(x, [[0, 0], [p, p], [p, p], [0, 0]])
        x = tf.nn.conv2d(x, kernel, self.strides, "VALID")
        if self.use_bias:
            x = tf.nn.bias_add(x, tf.cast(self.bias, self.compute_dtype))
        return x

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

    def call(self, inputs, training=False):
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
        y = (x - mean) * tf.math.rsqrt(var + self.epsilon)
        return tf.cast(y, self.compute_dtype)

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

    def call(self, inputs, training=False):
        x = tf.cast(inputs, _stats_dtype(self))
        mean, var = tf.nn.moments(x, axes=[1, 2], keepdims=True)
        y = (x - mean) * tf.math.rsqrt(var + self.epsilon)
        return tf.cast(y, self.compute_dtype)

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


@keras.saving.register_keras_serializable(package=PACKAGE)
class SPADE(keras.layers.Layer):
    """Spatially-adaptive denormalisation: `norm(x) * (1 + gamma(seg)) + beta(seg)`.

    The label map is resized to x's spatial size with PyTorch's floor-index
    nearest rule, passed through a shared conv + ReLU with `hidden_filters`
    channels, then two convs predict per-pixel gamma and beta. The sublayer
    names follow the official module (`param_free_norm`, `mlp_shared`,
    `mlp_gamma`, `mlp_beta`) so weights map one to one.

    Args:
        num_features: channels of x.
        label_channels: channels of the semantic map.
        param_free_norm: "sync_batch", "batch" or "instance".
        kernel_size: kernel of the three modulation convs (official: 3).
        hidden_filters: channels of the shared hidden layer (official: 128).

    Reference: https://arxiv.org/abs/1903.07291 (Sec. 3, Fig. 2).
    """

    def __init__(
        self,
        num_features,
        label_channels,
        param_free_norm="sync_batch",
        kernel_size=3,
        hidden_filters=128,
        **kwargs,
    ):
        super().__init__(**kwargs)
        check_choice("param_free_norm", param_free_norm, PARAM_FREE_NORMS)
        self.num_features = int(num_features)
        self.label_channels = int(label_channels)
        self.param_free_norm_kind = param_free_norm
        self.kernel_size = int(kernel_size)
        self.hidden_filters = int(hidden_filters)
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

    def call(self, x, segmap, training=False):
        normalized = self.param_free_norm(x, training=training)
        segmap = ops.nearest_resize(segmap, ops.spatial_size(x))
        actv = tf.nn.relu(self.mlp_shared(segmap))
        gamma = self.mlp_gamma(actv)
        beta = self.mlp_beta(actv)
        return normalized * (1.0 + gamma) + beta

    def get_config(self):
        config = super().get_config()
        config.update(
            num_features=self.num_features,
            label_channels=self.label_channels,
            param_free_norm=self.param_free_norm_kind,
            kernel_size=self.kernel_size,
            hidden_filters=self.hidden_filters,
        )
        return config
