"""The SPADE residual block."""

import keras

from spade_tf.models import ops
from spade_tf.models.normalization import PACKAGE, SPADE, Conv2D


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
        param_free_norm: "sync_batch", "batch" or "instance" inside SPADE.
        use_spectral_norm: spectral norm on conv_0, conv_1 and conv_s.
        spade_kernel_size: kernel size of SPADE's modulation convs.
        spade_hidden_filters: hidden width of SPADE's modulation convs.
        fast: SPADE's exact fast path (see `SPADE`).
        gather_impl: how the fast path gathers (see `SPADE`).

    Call: `block(x, segmap, training=False, taps=None)`; `taps` is an optional
    `LabelTaps` at x's size, shared by the block's SPADE layers.

    Reference: https://arxiv.org/abs/1903.07291 (Fig. 10).
    """

    def __init__(
        self,
        input_filters,
        filters,
        label_channels,
        param_free_norm="sync_batch",
        use_spectral_norm=True,
        spade_kernel_size=3,
        spade_hidden_filters=128,
        fast=True,
        gather_impl="xla",
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.input_filters = int(input_filters)
        self.filters = int(filters)
        self.label_channels = int(label_channels)
        self.param_free_norm = param_free_norm
        self.use_spectral_norm = bool(use_spectral_norm)
        self.spade_kernel_size = int(spade_kernel_size)
        self.spade_hidden_filters = int(spade_hidden_filters)
        self.fast = bool(fast)
        self.gather_impl = gather_impl
        self.learned_shortcut = self.input_filters != self.filters
        middle = min(self.input_filters, self.filters)
        dtype = self.dtype_policy

        def spade(channels, name):
            return SPADE(
                channels,
                self.label_channels,
                param_free_norm,
                spade_kernel_size,
                spade_hidden_filters,
                fast=self.fast,
                gather_impl=self.gather_impl,
                name=name,
                dtype=dtype,
            )

        def conv(fin, fout, k, name, use_bias=True):
            return Conv2D(
                fout,
                k,
                fin,
                padding=k // 2,
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

    def build(self, x_shape=None, segmap_shape=None):
        seg = (None, None, None, self.label_channels)
        for norm in self._norms():
            norm.build(None, seg)
        self.conv_0.build()
        self.conv_1.build()
        if self.learned_shortcut:
            self.conv_s.build()

    def _norms(self):
        return [self.norm_0, self.norm_1] + ([self.norm_s] if self.learned_shortcut else [])

    def call(self, x, segmap, training=False, taps=None):
        if self.fast and taps is None:
            taps = self.norm_0.label_taps(segmap, ops.spatial_size(x))
        kw = dict(training=training, taps=taps)
        if self.learned_shortcut:
            x_s = self.conv_s(self.norm_s(x, segmap, **kw), training=training)
        else:
            x_s = x
        dx = self.conv_0(ops.leaky_relu(self.norm_0(x, segmap, **kw)), training=training)
        dx = self.conv_1(ops.leaky_relu(self.norm_1(dx, segmap, **kw)), training=training)
        return x_s + dx

    def get_config(self):
        config = super().get_config()
        config.update(
            input_filters=self.input_filters,
            filters=self.filters,
            label_channels=self.label_channels,
            param_free_norm=self.param_free_norm,
            use_spectral_norm=self.use_spectral_norm,
            spade_kernel_size=self.spade_kernel_size,
            spade_hidden_filters=self.spade_hidden_filters,
            fast=self.fast,
            gather_impl=self.gather_impl,
        )
        return config
