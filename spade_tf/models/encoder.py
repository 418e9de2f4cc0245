"""The style encoder (VAE) of SPADE."""

import math

import keras
import tensorflow as tf

from spade_tf.models.conv import Conv2D, xavier_normal
from spade_tf.models.normalization import InstanceNorm
from spade_tf.utils import PACKAGE


@keras.saving.register_keras_serializable(package=PACKAGE)
class ConvEncoder(keras.Model):
    """Encodes an image into the mean and log-variance of the style latent z.

    The image is resized (bilinear, half-pixel, no antialias, like the
    official `F.interpolate(mode="bilinear")`) to `image_size` x `image_size`,
    then stride-2 3x3 convs (spectral norm, no bias, instance norm, leaky
    ReLU 0.2) halve it down to 4x4 with channels ndf, 2ndf, 4ndf, 8ndf, 8ndf,
    ...; the 4x4 features are flattened in (C, H, W) order and two linear
    layers give mu and logvar.

    With `image_size=256` (the default) this is exactly the official
    ConvEncoder built with crop_size >= 256 (layer1..layer6), whose weights
    load one to one. The official encoder crashes for crop_size < 256 (it
    still resizes to 256 but drops layer6, leaving 8x8 features for a 4x4
    linear layer); here the input size never matters: the number of layers
    follows `image_size` alone, so any input works. A smaller `image_size`
    (a power of two, at least 8) makes a cheaper encoder for small models.

    Call: `E(image, training=False)` with NHWC images in [-1, 1]; returns
    `(mu, logvar)`, each (N, latent_dim), float32.

    Args:
        base_filters: ndf (the official code uses ngf here, not nef).
        latent_dim: size of z (the official encoder hard-codes 256).
        image_size: side the input is resized to; a power of two >= 8.
        use_spectral_norm: spectral norm on the convs.

    Reference: https://arxiv.org/abs/1903.07291 (Appendix, Fig. 14).
    """

    def __init__(self, base_filters=64, latent_dim=256, image_size=256, use_spectral_norm=True, **kwargs):
        super().__init__(**kwargs)
        self.base_filters = int(base_filters)
        self.latent_dim = int(latent_dim)
        self.image_size = int(image_size)
        self.use_spectral_norm = bool(use_spectral_norm)
        num_layers = math.log2(self.image_size) - 2 if self.image_size > 0 else 0
        if self.image_size < 8 or num_layers != int(num_layers):
            raise ValueError(f"image_size={image_size}: use a power of two of at least 8 (official: 256).")
        self.num_layers = int(num_layers)
        dtype = self.dtype_policy
        self.convs = []
        fin = 3
        for i in range(self.num_layers):
            fout = self.base_filters * min(2**i, 8)
            self.convs.append(
                Conv2D(
                    fout,
                    3,
                    fin,
                    strides=2,
                    padding=1,
                    use_bias=False,
                    use_spectral_norm=self.use_spectral_norm,
                    name=f"layer{i + 1}",
                    dtype=dtype,
                )
            )
            fin = fout
        self.final_filters = fin
        self.norm = InstanceNorm(name="norm", dtype=dtype)
        init = xavier_normal()
        self.fc_mu = keras.layers.Dense(self.latent_dim, kernel_initializer=init, name="fc_mu", dtype=dtype)
        self.fc_var = keras.layers.Dense(self.latent_dim, kernel_initializer=init, name="fc_var", dtype=dtype)

    def build(self, image_shape=None):
        for conv in self.convs:
            conv.build()
        features = self.final_filters * 16
        self.fc_mu.build((None, features))
        self.fc_var.build((None, features))

    def resize_input(self, image):
        """The image at `image_size`, as the official encoder resizes it (bilinear, half-pixel, no antialias)."""
        s = self.image_size
        if image.shape[1] != s or image.shape[2] != s:
            image = tf.image.resize(
                tf.cast(image, self.variable_dtype), (s, s), method="bilinear", antialias=False
            )
        return tf.cast(image, self.compute_dtype)

    def call(self, image, training=False):
        x = self.resize_input(image)
        for i, conv in enumerate(self.convs):
            if i:
                x = tf.nn.leaky_relu(x, 0.2)
            x = self.norm(conv(x, training=training))
        x = tf.nn.leaky_relu(x, 0.2)
        # The official flatten is over (C, H, W).
        x = tf.reshape(tf.transpose(x, [0, 3, 1, 2]), [-1, self.final_filters * 16])
        mu = tf.cast(self.fc_mu(x), self.variable_dtype)
        logvar = tf.cast(self.fc_var(x), self.variable_dtype)
        return mu, logvar

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "dtype": keras.saving.serialize_keras_object(self.dtype_policy),
            "base_filters": self.base_filters,
            "latent_dim": self.latent_dim,
            "image_size": self.image_size,
            "use_spectral_norm": self.use_spectral_norm,
        }


def reparameterize(mu, logvar, eps=None):
    """z = mu + eps * exp(0.5 * logvar), eps ~ N(0, 1) unless given."""
    if eps is None:
        eps = tf.random.normal(tf.shape(mu), dtype=mu.dtype)
    return mu + eps * tf.exp(0.5 * logvar)
