"""The multi-scale PatchGAN discriminator used by SPADE (from pix2pixHD)."""

import keras
import tensorflow as tf

from spade_tf.models import ops
from spade_tf.models.conv import Conv2D
from spade_tf.models.normalization import InstanceNorm
from spade_tf.utils import PACKAGE


@keras.saving.register_keras_serializable(package=PACKAGE)
class NLayerDiscriminator(keras.layers.Layer):
    """One PatchGAN scale with the official kernel 4, padding 2 layout.

    `model0`: conv (stride 2, bias, no norm) + LeakyReLU(0.2);
    `model1..model{n-1}`: spectral-norm conv without bias + instance norm +
    LeakyReLU(0.2), channels doubling up to 512, stride 2 except the last of
    them (stride 1); `model{n}`: conv to 1 channel (stride 1, bias). Each
    stride-2 layer maps a side s to s // 2 + 1, each stride-1 layer to s + 1.

    Call returns `[f0, ..., f{n-1}, logits]` (features after LeakyReLU).

    Args:
        input_filters: channels of concat([semantics, image]).
        base_filters: ndf.
        num_layers: n_layers_D (official: 4).
        use_spectral_norm: spectral norm on the middle convs.
    """

    def __init__(self, input_filters, base_filters=64, num_layers=4, use_spectral_norm=True, **kwargs):
        super().__init__(**kwargs)
        self.input_filters = int(input_filters)
        self.base_filters = int(base_filters)
        self.num_layers = int(num_layers)
        self.use_spectral_norm = bool(use_spectral_norm)
        if self.num_layers < 1:
            raise ValueError(f"num_layers must be at least 1, got {num_layers}.")
        dtype = self.dtype_policy
        nf = self.base_filters
        self.convs = [Conv2D(nf, 4, self.input_filters, strides=2, padding=2, name="model0", dtype=dtype)]
        self.norms = [None]
        for n in range(1, self.num_layers):
            nf_prev, nf = nf, min(nf * 2, 512)
            stride = 1 if n == self.num_layers - 1 else 2
            self.convs.append(
                Conv2D(
                    nf,
                    4,
                    nf_prev,
                    strides=stride,
                    padding=2,
                    use_bias=False,
                    use_spectral_norm=self.use_spectral_norm,
                    name=f"model{n}",
                    dtype=dtype,
                )
            )
            self.norms.append(InstanceNorm(name=f"model{n}_norm", dtype=dtype))
        self.convs.append(Conv2D(1, 4, nf, padding=2, name=f"model{self.num_layers}", dtype=dtype))
        self.norms.append(None)

    def build(self, input_shape=None):
        for conv in self.convs:
            conv.build()

    def call(self, inputs, training=False):
        x = inputs
        results = []
        for conv, norm in zip(self.convs[:-1], self.norms[:-1]):
            x = conv(x, training=training)
            if norm is not None:
                x = norm(x)
            x = tf.nn.leaky_relu(x, 0.2)
            results.append(x)
        results.append(self.convs[-1](x, training=training))
        return results

    def get_config(self):
        config = super().get_config()
        config.update(
            input_filters=self.input_filters,
            base_filters=self.base_filters,
            num_layers=self.num_layers,
            use_spectral_norm=self.use_spectral_norm,
        )
        return config


@keras.saving.register_keras_serializable(package=PACKAGE)
class MultiscaleDiscriminator(keras.Model):
    """`num_scales` PatchGAN discriminators on successively avg-pooled inputs.

    Call: `D(inputs, training=False)` with NHWC `concat([semantics, image], -1)`
    (semantics first, as in the official code); returns one list per scale of
    `[features..., logits]`, NHWC. Scale i sees the input average-pooled i times
    with `avg_pool2d(3, stride 2, padding 1, count_include_pad=False)`.
    Outputs are float32.

    Args:
        input_filters: semantic channels + 3.
        base_filters: ndf.
        num_scales: num_D (official: 2).
        num_layers: n_layers_D per scale (official: 4).
        use_spectral_norm: spectral norm on the middle convs.

    Example:
        >>> d = MultiscaleDiscriminator(input_filters=7, base_filters=4)
        >>> [f.shape[1] for f in d(tf.zeros([1, 32, 32, 7]))[0]]
        [17, 9, 5, 6, 7]

    Reference: Wang et al., pix2pixHD, https://arxiv.org/abs/1711.11585
    """

    def __init__(
        self, input_filters, base_filters=64, num_scales=2, num_layers=4, use_spectral_norm=True, **kwargs
    ):
        super().__init__(**kwargs)
        self.input_filters = int(input_filters)
        self.base_filters = int(base_filters)
        self.num_scales = int(num_scales)
        self.num_layers = int(num_layers)
        self.use_spectral_norm = bool(use_spectral_norm)
        self.scales = [
            NLayerDiscriminator(
                self.input_filters,
                self.base_filters,
                self.num_layers,
                self.use_spectral_norm,
                name=f"discriminator_{i}",
                dtype=self.dtype_policy,
            )
            for i in range(self.num_scales)
        ]

    def build(self, inputs_shape=None):
        for d in self.scales:
            d.build()

    def call(self, inputs, training=False):
        channels = inputs.shape[-1]
        if channels is not None and channels != self.input_filters:
            raise ValueError(
                f"{self.name}: input has {channels} channels, expected {self.input_filters} "
                "(semantic channels + 3 image channels, semantics first)."
            )
        outputs = []
        x = inputs
        for i, d in enumerate(self.scales):
            if i:
                # The official code also pools after the last scale; that
                # result is never used, so it is skipped here.
                x = ops.avg_pool_3x3_s2_exclude_pad(x)
            outputs.append([tf.cast(f, self.variable_dtype) for f in d(x, training=training)])
        return outputs

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "dtype": keras.saving.serialize_keras_object(self.dtype_policy),
            "input_filters": self.input_filters,
            "base_filters": self.base_filters,
            "num_scales": self.num_scales,
            "num_layers": self.num_layers,
            "use_spectral_norm": self.use_spectral_norm,
        }
