"""The SPADE generator."""

import functools

import keras
import numpy as np
import tensorflow as tf

from spade_tf.models import ops
from spade_tf.models.blocks import SPADEResBlock, upgrade_spade_arguments
from spade_tf.models.conv import Conv2D, xavier_normal
from spade_tf.models.fast_spade import encode_semantics
from spade_tf.utils import PACKAGE, check_choice

UPSAMPLING_CHOICES = {"normal": 5, "more": 6, "most": 7}


def latent_grid(crop_size, aspect_ratio, num_upsampling_layers):
    """(sh, sw) of the official generator: sw = crop // 2**n_up, sh = round(sw / aspect).

    `crop_size` is the *width*, as in the official options.
    """
    check_choice("num_upsampling_layers", num_upsampling_layers, tuple(UPSAMPLING_CHOICES))
    sw = int(crop_size) // 2 ** UPSAMPLING_CHOICES[num_upsampling_layers]
    sh = int(round(sw / float(aspect_ratio)))
    if sw < 1 or sh < 1:
        raise ValueError(
            f"crop_size={crop_size} with aspect_ratio={aspect_ratio} and "
            f"num_upsampling_layers={num_upsampling_layers!r} gives a latent grid of "
            f"{sh}x{sw}; use a crop_size of at least "
            f"{2 ** UPSAMPLING_CHOICES[num_upsampling_layers]}."
        )
    return sh, sw


@keras.saving.register_keras_serializable(package=PACKAGE)
class SPADEGenerator(keras.Model):
    """The SPADE generator: a latent grid upsampled by SPADE residual blocks.

    Without a VAE the first layer is a 3x3 conv (`fc`) on the semantic map
    resized (floor-index nearest) to the latent grid; the grid is
    H/2**n_up x W/2**n_up of the input, so the generator is fully
    convolutional and any input whose sides are multiples of 2**n_up works
    (at the configured size this is exactly the official grid). With a VAE,
    `fc` is a linear layer from z to a fixed sh x sw grid (from `crop_size`
    and `aspect_ratio`), reshaped channel-major like the official `.view`;
    the output size is then fixed and the semantic map may have any size.

    Call: `G(semantics, z=None, training=False, one_hot=False, noise_seed=None)` with NHWC
    float semantics (one-hot labels, then the instance-edge channel); returns
    NHWC images in [-1, 1], float32. With a VAE and no z, z is drawn from
    N(0, 1). `one_hot=True` says the map was made from integer ids
    (`preprocessing.make_semantics`, as training and inference do): the fast
    path then skips its per-call check of the map and the plain-conv fallback
    for soft maps (exports then hold no IF op). With a soft map it would be
    wrong, so it is off by default. With `noise_injection`, `noise_seed` (an
    int [2] tensor; training passes one per step) draws fresh noise maps;
    without it every call uses the same fixed maps (made from a constant
    seed, tiled to any size), so inference and exports are deterministic.

    Args:
        semantic_channels: channels of the semantic map (label_nc, +1 with a
            don't-care label, +1 with instance edges).
        base_filters: ngf; the widest layers have 16 * ngf channels.
        num_upsampling_layers: "normal" (5), "more" (6) or "most" (7).
        crop_size: width of the training crop; fixes the VAE latent grid.
        aspect_ratio: width / height of the training crop.
        use_vae: take z (from the style encoder) instead of the downsampled map.
        latent_dim: size of z.
        use_spectral_norm: spectral norm in the residual blocks' convs.
        spade: keyword arguments of every `SPADE` layer (param_free_norm,
            kernel_size, hidden_filters, fast, gather_impl; see `SPADE`),
            passed to the blocks unread; None = SPADE's defaults. With
            `fast` (the default) the label codes are computed once per call
            and resized once per resolution for all SPADE layers there.
        noise_injection: per-pixel noise in every residual block, scaled by
            learned per-channel strengths that start at 0 (see
            `SPADEResBlock`; not in the official SPADE, whose checkpoints
            have it off).
        position_injection: a learned linear function of each pixel's (y, x)
            position in every residual block (see `SPADEResBlock`; not in
            the official SPADE): smooth gradients (a sky's) without the
            horizontal bands the blocks otherwise piece them together with.
        noise_per_class: with `noise_injection`, strengths per class and
            channel, read from each pixel's label (see `SPADEResBlock`).
        noise_gain: a fixed factor on the noise strengths, so they grow
            that much faster from 0 (see `SPADEResBlock`).
        padding_mode: of every 3x3 conv (blocks, SPADE layers, `fc`,
            `conv_img`): "zeros" (official; its checkpoints need it) or
            "reflect". Zero padding tells a conv where the image ends; inside
            a region of one class that is the only left-right cue there is,
            and the generator paints thin vertical lines a few pixels from
            the left and right borders with it (a map of horizontal bands
            gives columns that differ only near the borders with zeros, and
            identical columns with "reflect").

    Example:
        >>> g = SPADEGenerator(semantic_channels=4, base_filters=4, crop_size=32)
        >>> g(tf.zeros([1, 32, 32, 4])).shape
        TensorShape([1, 32, 32, 3])

    Reference: https://arxiv.org/abs/1903.07291
    """

    def __init__(
        self,
        semantic_channels,
        base_filters=64,
        num_upsampling_layers="normal",
        crop_size=256,
        aspect_ratio=1.0,
        use_vae=False,
        latent_dim=256,
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
        self.padding_mode = padding_mode  # checked by the convs' Conv2D
        self.noise_injection = bool(noise_injection)
        self.noise_per_class = bool(noise_per_class)
        self.noise_gain = float(noise_gain)
        self.position_injection = bool(position_injection)
        self.semantic_channels = int(semantic_channels)
        self.base_filters = int(base_filters)
        self.num_upsampling_layers = num_upsampling_layers
        self.crop_size = int(crop_size)
        self.aspect_ratio = float(aspect_ratio)
        self.use_vae = bool(use_vae)
        self.latent_dim = int(latent_dim)
        self.use_spectral_norm = bool(use_spectral_norm)
        self.spade = dict(spade or {})
        self.num_up = UPSAMPLING_CHOICES.get(num_upsampling_layers)
        self.grid_height, self.grid_width = latent_grid(crop_size, aspect_ratio, num_upsampling_layers)
        nf = self.base_filters
        dtype = self.dtype_policy

        if self.use_vae:
            self.fc = keras.layers.Dense(
                16 * nf * self.grid_height * self.grid_width,
                kernel_initializer=xavier_normal(),
                name="fc",
                dtype=dtype,
            )
        else:
            self.fc = Conv2D(
                16 * nf,
                3,
                self.semantic_channels,
                padding=1,
                padding_mode=padding_mode,
                name="fc",
                dtype=dtype,
            )

        def block(fin, fout, name):
            return SPADEResBlock(
                fin,
                fout,
                self.semantic_channels,
                self.use_spectral_norm,
                self.spade,
                noise_injection=self.noise_injection,
                position_injection=self.position_injection,
                noise_per_class=self.noise_per_class,
                noise_gain=self.noise_gain,
                padding_mode=padding_mode,
                name=name,
                dtype=dtype,
            )

        self.head_0 = block(16 * nf, 16 * nf, "head_0")
        self.G_middle_0 = block(16 * nf, 16 * nf, "G_middle_0")
        self.G_middle_1 = block(16 * nf, 16 * nf, "G_middle_1")
        self.up_0 = block(16 * nf, 8 * nf, "up_0")
        self.up_1 = block(8 * nf, 4 * nf, "up_1")
        self.up_2 = block(4 * nf, 2 * nf, "up_2")
        self.up_3 = block(2 * nf, nf, "up_3")
        final_nc = nf
        if num_upsampling_layers == "most":
            self.up_4 = block(nf, nf // 2, "up_4")
            final_nc = nf // 2
        self.conv_img = Conv2D(
            3, 3, final_nc, padding=1, padding_mode=padding_mode, name="conv_img", dtype=dtype
        )

    @property
    def first_spade(self):
        """A SPADE layer of this generator: all of them have the same options (fast, gather_impl, kernel, ...)
        with their defaults resolved, so this one says how every layer reads the map."""
        return self.head_0.norm_0

    def blocks(self):
        """The residual blocks in forward order."""
        names = ["head_0", "G_middle_0", "G_middle_1", "up_0", "up_1", "up_2", "up_3"]
        if self.num_upsampling_layers == "most":
            names.append("up_4")
        return [getattr(self, n) for n in names]

    def build(self, semantics_shape=None, z_shape=None):
        if self.use_vae:
            self.fc.build((None, self.latent_dim))
        else:
            self.fc.build()
        for b in self.blocks():
            b.build()
        self.conv_img.build()

    def _check_semantics(self, semantics):
        channels = semantics.shape[-1]
        if channels is not None and channels != self.semantic_channels:
            raise ValueError(
                f"{self.name}: semantics have {channels} channels, the generator was built "
                f"for {self.semantic_channels} (labels + don't-care + instance edge)."
            )
        if self.use_vae:
            return
        multiple = 2**self.num_up
        for axis, size in (("height", semantics.shape[1]), ("width", semantics.shape[2])):
            if size is not None and size % multiple:
                raise ValueError(
                    f"{self.name}: semantics {axis} {size} is not a multiple of {multiple} "
                    f"(2**{self.num_up} for num_upsampling_layers="
                    f"{self.num_upsampling_layers!r}); resize or pad the label map."
                )

    def _noise(self, index, level, x, noise_seed):
        """Block `index`'s two noise maps at x's size (`level` upsamplings above the latent grid):
        fresh from `noise_seed`, else the fixed ones."""
        if not self.noise_injection:
            return None
        shape = tf.shape(x)
        if noise_seed is not None:
            seed = tf.random.experimental.stateless_fold_in(tf.cast(noise_seed, tf.int64), index)
            return tf.random.stateless_normal([shape[0], shape[1], shape[2], 2], seed=seed)
        # The fixed maps are made at the training size of each level (an exact fit for a VAE,
        # whose output size is fixed) and tiled for larger inputs.
        size = (self.grid_height * 2**level, self.grid_width * 2**level)
        fixed = tf.constant(_fixed_noise(index, *size))
        reps = tf.stack([1, shape[1] // size[0] + 1, shape[2] // size[1] + 1, 1])
        return tf.tile(fixed, reps)[:, : shape[1], : shape[2], :]

    def call(self, semantics, z=None, training=False, one_hot=False, noise_seed=None):
        self._check_semantics(semantics)
        nf = self.base_filters
        if self.use_vae:
            if z is None:
                z = tf.random.normal([tf.shape(semantics)[0], self.latent_dim], dtype=self.compute_dtype)
            x = self.fc(z)
            # The official `.view(N, 16nf, sh, sw)` is channel-major.
            x = tf.reshape(x, [-1, 16 * nf, self.grid_height, self.grid_width])
            x = tf.transpose(x, [0, 2, 3, 1])
        else:
            h, w = ops.spatial_size(semantics)
            x = ops.nearest_resize(semantics, (h // 2**self.num_up, w // 2**self.num_up))
            x = self.fc(x)

        spade = self.first_spade
        if spade.fast:
            codes, exact = encode_semantics(semantics, one_hot=one_hot)

            def taps(x):
                # Once per resolution, shared by every SPADE layer there.
                return spade.taps_from_codes(codes, exact, ops.spatial_size(x))
        else:

            def taps(x):
                return None

        def run(index, block, x, level, level_taps):
            noise = self._noise(index, level, x, noise_seed)
            position = _position_map(x) if self.position_injection else None
            return block(x, semantics, training=training, taps=level_taps, noise=noise, position=position)

        x = run(0, self.head_0, x, 0, taps(x))
        x = ops.upsample_nearest_2x(x)
        level, level_taps = 1, taps(x)
        x = run(1, self.G_middle_0, x, level, level_taps)
        if self.num_upsampling_layers in ("more", "most"):
            x = ops.upsample_nearest_2x(x)
            level, level_taps = 2, taps(x)
        x = run(2, self.G_middle_1, x, level, level_taps)
        for index, block in enumerate(self.blocks()[3:], start=3):
            x = ops.upsample_nearest_2x(x)
            level += 1
            x = run(index, block, x, level, taps(x))
        x = self.conv_img(ops.leaky_relu(x))
        # float32 out under mixed precision (the variable dtype).
        return tf.cast(tf.tanh(x), self.variable_dtype)

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "dtype": keras.saving.serialize_keras_object(self.dtype_policy),
            "semantic_channels": self.semantic_channels,
            "base_filters": self.base_filters,
            "num_upsampling_layers": self.num_upsampling_layers,
            "crop_size": self.crop_size,
            "aspect_ratio": self.aspect_ratio,
            "use_vae": self.use_vae,
            "latent_dim": self.latent_dim,
            "use_spectral_norm": self.use_spectral_norm,
            "spade": self.spade,
            "noise_injection": self.noise_injection,
            "position_injection": self.position_injection,
            "noise_per_class": self.noise_per_class,
            "noise_gain": self.noise_gain,
            "padding_mode": self.padding_mode,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**upgrade_spade_arguments(config))


def _position_map(x):
    """[1, H, W, 2] of x's pixel centres: y and x from -1 (top, left) to 1 (bottom, right)."""
    shape = tf.shape(x)

    def centres(n):
        return (tf.range(n, dtype=tf.float32) + 0.5) / tf.cast(n, tf.float32) * 2.0 - 1.0

    ys, xs = centres(shape[1]), centres(shape[2])
    grid = tf.stack([tf.tile(ys[:, None], [1, shape[2]]), tf.tile(xs[None, :], [shape[1], 1])], axis=-1)
    return grid[None]


@functools.lru_cache(maxsize=64)
def _fixed_noise(index, height, width):
    """Block `index`'s fixed noise maps, [1, height, width, 2] float32, the same in every process."""
    rng = np.random.default_rng([20190307, index, height, width])
    return rng.standard_normal((1, height, width, 2)).astype(np.float32)
