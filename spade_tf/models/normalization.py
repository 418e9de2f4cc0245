"""Parameter-free norms and SPADE.

Reference: Park et al., "Semantic Image Synthesis with Spatially-Adaptive
Normalization", CVPR 2019, https://arxiv.org/abs/1903.07291
"""

import keras
import tensorflow as tf

from spade_tf.models import ops
from spade_tf.models.conv import Conv2D, xavier_normal  # noqa: F401  (re-exported: the README's layer list)
from spade_tf.models.fast_spade import (
    GATHER_IMPLS,
    LabelTaps,  # noqa: F401  (re-exported: spade_tf.normalization.LabelTaps)
    encode_semantics,
    gather_conv_relu,
    gather_table,
    label_taps,
)
from spade_tf.utils import PACKAGE, check_choice

PARAM_FREE_NORMS = ("sync_batch", "batch", "instance")


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
        gather_impl: "segment_sum" (TF kernels: training, SavedModels), "xla" (XLA-compiled, ~4 % faster
            training steps on a 2-core CPU, ~0.15 GB more memory) or "gather_sum" (TFLite, ONNX); see
            `spade_tf.models.fast_spade.gather_conv_relu`.
        padding_mode: of the three convs, "zeros" (official) or "reflect"; the generator's own option
            (`SPADEGenerator(padding_mode=...)`), which passes it to every SPADE layer, not a
            `model.spade` key.

    Every SPADE layer of a generator gets the same options: `SPADEGenerator(spade={...})` and
    `SPADEResBlock(spade={...})` pass their `spade` dict here unread, so a new SPADE option needs only
    this constructor and the config (`config.model.spade`).

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
        gather_impl="segment_sum",
        padding_mode="zeros",
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.padding_mode = padding_mode  # checked by the convs' Conv2D
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
            padding_mode=padding_mode,
            name="mlp_shared",
            dtype=dtype,
        )
        self.mlp_gamma = Conv2D(
            self.num_features,
            self.kernel_size,
            self.hidden_filters,
            padding=pad,
            padding_mode=padding_mode,
            name="mlp_gamma",
            dtype=dtype,
        )
        self.mlp_beta = Conv2D(
            self.num_features,
            self.kernel_size,
            self.hidden_filters,
            padding=pad,
            padding_mode=padding_mode,
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
        return self.taps_from_codes(codes, exact, size)

    def taps_from_codes(self, codes, exact, size):
        """`LabelTaps` at `size` from the codes of `encode_semantics`, for this layer's kernel."""
        return label_taps(codes, size, self.label_channels, self.kernel_size, exact, self.padding_mode)

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
            padding_mode=self.padding_mode,
        )
        return config
