"""The SPADE residual block."""

import keras
import tensorflow as tf

from spade_tf.models import ops
from spade_tf.models.conv import Conv2D
from spade_tf.models.normalization import SPADE
from spade_tf.utils import PACKAGE


@keras.saving.register_keras_serializable(package=PACKAGE)
class SPADEResBlock(keras.layers.Layer):
    """Residual block whose two convs are preceded by SPADE and leaky ReLU.

    `out = shortcut(x) + conv_1(lrelu(norm_1(conv_0(lrelu(norm_0(x))))))`, with
    a learned shortcut `conv_s(norm_s(x))` (1x1, no bias, no activation) when
    the channel count changes, identity otherwise. conv_0 and conv_1 keep their
    biases under spectral norm, as in the official `SPADEResnetBlock`.

    Args:
        input_filters: channels of x (fin).
        filters: output channels (fout); the middle width is min(fin, fout).
        label_channels: channels of the semantic map.
        use_spectral_norm: spectral norm on conv_0, conv_1 and conv_s.
        spade: keyword arguments of the block's `SPADE` layers (param_free_norm, kernel_size,
            hidden_filters, fast, gather_impl; see `SPADE`), passed on unread; None = SPADE's defaults.
        noise_injection: add per-pixel noise after conv_0 and conv_1, scaled by a learned
            per-channel strength that starts at 0 (StyleGAN's noise inputs; not in the official
            SPADE). Inside a region of one class every SPADE modulation is the same, so without a
            source of per-pixel randomness the block can only paint the texture of a region as a
            smooth or fixed pattern; the noise gives it random-phase texture (grass, sand, foam).
        padding_mode: of every 3x3 conv of the block and of its SPADE layers, "zeros" (official) or
            "reflect" (see `SPADEGenerator`).
        noise_per_class: with `noise_injection`, the strengths are per semantic channel and feature
            channel, (label_channels, c), read at each pixel from its one-hot label (instance edges
            add their own row): each class learns how much random texture it takes, so grass or
            water can take much and a sky none (per-channel strengths apply to every class alike).
        noise_gain: a fixed factor on the learned strengths (1: none). Adam moves a weight by about
            the learning rate per step whatever its gradient's scale, so a gain of g lets the
            strengths grow g times faster from 0 (StyleGAN's equalized learning rate, for these
            weights alone); at the generator's learning rate they barely leave 0 in a short run.
        position_injection: add a learned linear function of the pixel's (y, x) position in the
            image after conv_0 and conv_1 (weights start at 0; not in the official SPADE). For the
            same reason the block cannot tell where in a region it is: a sky's vertical gradient
            must then be pieced together from zero padding and the nearest-neighbour upsampling's
            blocks, which leaves horizontal bands.

    Call: `block(x, segmap, training=False, taps=None, noise=None, position=None)`; `taps` is an
    optional `LabelTaps` at x's size, shared by the block's SPADE layers; `noise` ([N or 1, H, W, 2]
    at x's size: one map for conv_0, one for conv_1) is used with `noise_injection`, `position`
    ([1, H, W, 2]: y and x in [-1, 1], top left to bottom right) with `position_injection`; None adds
    nothing.

    Reference: https://arxiv.org/abs/1903.07291 (Fig. 10).
    """

    def __init__(
        self,
        input_filters,
        filters,
        label_channels,
        use_spectral_norm=True,
        spade=None,
        noise_injection=False,
        position_injection=False,
        noise_per_class=False,
        noise_gain=1.0,
        padding_mode="zeros",
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.padding_mode = padding_mode
        self.noise_injection = bool(noise_injection)
        self.noise_per_class = bool(noise_per_class)
        self.noise_gain = float(noise_gain)
        self.position_injection = bool(position_injection)
        self.input_filters = int(input_filters)
        self.filters = int(filters)
        self.label_channels = int(label_channels)
        self.use_spectral_norm = bool(use_spectral_norm)
        self.spade = dict(spade or {})
        self.learned_shortcut = self.input_filters != self.filters
        middle = min(self.input_filters, self.filters)
        dtype = self.dtype_policy

        def spade(channels, name):
            return SPADE(
                channels, self.label_channels, padding_mode=padding_mode, name=name, dtype=dtype, **self.spade
            )

        def conv(fin, fout, k, name, use_bias=True):
            return Conv2D(
                fout,
                k,
                fin,
                padding=k // 2,
                padding_mode=padding_mode,
                use_bias=use_bias,
                use_spectral_norm=self.use_spectral_norm,
                name=name,
                dtype=dtype,
            )

        self.conv_0 = conv(self.input_filters, middle, 3, "conv_0")
        self.conv_1 = conv(middle, self.filters, 3, "conv_1")
        self.norm_0 = spade(self.input_filters, "norm_0")
        self.norm_1 = spade(middle, "norm_1")
        if self.learned_shortcut:
            self.conv_s = conv(self.input_filters, self.filters, 1, "conv_s", use_bias=False)
            self.norm_s = spade(self.input_filters, "norm_s")
        self.middle_filters = middle

    def build(self, x_shape=None, segmap_shape=None):
        seg = (None, None, None, self.label_channels)
        for norm in self._norms():
            norm.build(None, seg)
        self.conv_0.build()
        self.conv_1.build()
        if self.learned_shortcut:
            self.conv_s.build()
        widths = (self.middle_filters, self.filters)
        if self.noise_injection:
            self.noise_strength_0, self.noise_strength_1 = (
                self.add_weight(
                    shape=(self.label_channels, c) if self.noise_per_class else (c,),
                    initializer="zeros",
                    name=f"noise_strength_{i}",
                )
                for i, c in enumerate(widths)
            )
        if self.position_injection:
            self.position_kernel_0, self.position_kernel_1 = (
                self.add_weight(shape=(2, c), initializer="zeros", name=f"position_kernel_{i}")
                for i, c in enumerate(widths)
            )

    def _norms(self):
        return [self.norm_0, self.norm_1] + ([self.norm_s] if self.learned_shortcut else [])

    def _inject(self, x, index, noise, position, labels):
        """Adds conv `index`'s noise map and position function, where they are on and given; `labels` is
        the semantic map at x's size (with `noise_per_class`)."""
        if self.noise_injection and noise is not None:
            strength = tf.cast(self.noise_strength_0 if index == 0 else self.noise_strength_1, x.dtype)
            if self.noise_per_class:
                # (N, H, W, labels) x (labels, c): each pixel reads its class's row (a matmul in exports).
                strength = tf.tensordot(tf.cast(labels, x.dtype), strength, axes=1)
            if self.noise_gain != 1.0:
                strength = strength * self.noise_gain
            x = x + tf.cast(noise[..., index : index + 1], x.dtype) * strength
        if self.position_injection and position is not None:
            kernel = self.position_kernel_0 if index == 0 else self.position_kernel_1
            position, kernel = tf.cast(position, x.dtype), tf.cast(kernel, x.dtype)
            x = x + position[..., 0:1] * kernel[0] + position[..., 1:2] * kernel[1]
        return x

    def call(self, x, segmap, training=False, taps=None, noise=None, position=None):
        if self.norm_0.fast and taps is None:
            taps = self.norm_0.label_taps(segmap, ops.spatial_size(x))
        kw = dict(training=training, taps=taps)
        if self.learned_shortcut:
            x_s = self.conv_s(self.norm_s(x, segmap, **kw), training=training)
        else:
            x_s = x
        # Both convs keep x's size: the map is resized for their per-class noise once.
        per_class = self.noise_injection and self.noise_per_class and noise is not None
        labels = ops.nearest_resize(segmap, ops.spatial_size(x)) if per_class else None
        dx = self.conv_0(ops.leaky_relu(self.norm_0(x, segmap, **kw)), training=training)
        dx = self._inject(dx, 0, noise, position, labels)
        dx = self.conv_1(ops.leaky_relu(self.norm_1(dx, segmap, **kw)), training=training)
        dx = self._inject(dx, 1, noise, position, labels)
        return x_s + dx

    def get_config(self):
        config = super().get_config()
        config.update(
            input_filters=self.input_filters,
            filters=self.filters,
            label_channels=self.label_channels,
            use_spectral_norm=self.use_spectral_norm,
            spade=self.spade,
            noise_injection=self.noise_injection,
            position_injection=self.position_injection,
            noise_per_class=self.noise_per_class,
            noise_gain=self.noise_gain,
            padding_mode=self.padding_mode,
        )
        return config

    @classmethod
    def from_config(cls, config):
        return cls(**upgrade_spade_arguments(config))


# Arguments that blocks and generators saved before `spade={...}` took one by one, and their SPADE names.
_OLD_SPADE_ARGUMENTS = {
    "param_free_norm": "param_free_norm",
    "spade_kernel_size": "kernel_size",
    "spade_hidden_filters": "hidden_filters",
    "fast": "fast",
    "gather_impl": "gather_impl",
}


def upgrade_spade_arguments(config):
    """A block or generator config saved with the old one-by-one SPADE arguments -> `spade={...}`.

    Bundles written before `spade` existed stored e.g. `spade_hidden_filters` and `fast`; they load as
    the same model. (A "gather_impl" missing from such a file meant "xla", the default then.)
    """
    config = dict(config)
    old = {new: config.pop(key) for key, new in _OLD_SPADE_ARGUMENTS.items() if key in config}
    if old:
        old.setdefault("gather_impl", "xla")
        config["spade"] = {**old, **(config.get("spade") or {})}
    return config
