"""SPADE's losses with the official weights.

Discriminator outputs are what `MultiscaleDiscriminator` returns: one list
per scale of `[features..., logits]`. All reductions follow the official
`Pix2PixModel` (reference section 6): hinge terms are means over all
elements averaged over scales, feature matching is an L1 mean per layer
summed over layers and scales times `lambda_feat / num_D`, the KL term is a
*sum* over the batch and latent dims times `lambda_kld`.

These are per-replica values. Under a distribution strategy the trainer
rescales them for the global batch.
"""

import os

import keras
import tensorflow as tf

LAMBDA_FEAT = 10.0
LAMBDA_VGG = 10.0
LAMBDA_KLD = 0.05
VGG_LAYER_WEIGHTS = (1.0 / 32, 1.0 / 16, 1.0 / 8, 1.0 / 4, 1.0)
# relu1_1 .. relu5_1 of VGG19 (torchvision features[0:2], [2:7], [7:12], [12:21], [21:30]).
VGG_LAYERS = ("block1_conv1", "block2_conv1", "block3_conv1", "block4_conv1", "block5_conv1")


def _full(x):
    # Losses in float32 at least: 16-bit activations are upcast, float64 stays.
    x = tf.convert_to_tensor(x)
    return x if x.dtype == tf.float64 else tf.cast(x, tf.float32)


def _logits(outputs):
    return [_full(scale[-1]) for scale in outputs]


def generator_hinge_loss(fake_outputs):
    """Generator side of the hinge loss: mean over scales of -mean(D(fake))."""
    terms = [-tf.reduce_mean(x) for x in _logits(fake_outputs)]
    return tf.add_n(terms) / len(terms)


def discriminator_hinge_loss(fake_outputs, real_outputs):
    """(D_Fake, D_real): mean over scales of mean(relu(1 + D(fake))) and mean(relu(1 - D(real))).

    The official D loss is their sum, with no 0.5 factor.
    """
    fake = [tf.reduce_mean(tf.nn.relu(1.0 + x)) for x in _logits(fake_outputs)]
    real = [tf.reduce_mean(tf.nn.relu(1.0 - x)) for x in _logits(real_outputs)]
    return tf.add_n(fake) / len(fake), tf.add_n(real) / len(real)


def feature_matching_loss(fake_outputs, real_outputs, weight=LAMBDA_FEAT):
    """Sum over scales and intermediate layers of L1mean(f_fake, f_real) * weight / num_D.

    Real features are constants (the official `.detach()`); unlike pix2pixHD
    there is no per-layer weight.
    """
    total = 0.0
    for fake, real in zip(fake_outputs, real_outputs):
        for f, r in zip(fake[:-1], real[:-1]):
            diff = _full(f) - tf.stop_gradient(_full(r))
            total += tf.reduce_mean(tf.abs(diff))
    return total * weight / len(fake_outputs)


def kl_divergence_loss(mu, logvar, weight=LAMBDA_KLD):
    """-0.5 * sum(1 + logvar - mu^2 - exp(logvar)) * weight, summed over batch and dims."""
    mu, logvar = _full(mu), _full(logvar)
    return -0.5 * tf.reduce_sum(1.0 + logvar - tf.square(mu) - tf.exp(logvar)) * weight


class VGGPerceptualLoss:
    """VGG19 perceptual loss: sum_i w_i * L1mean(vgg_i(fake), vgg_i(real)) * weight.

    The features are relu1_1 .. relu5_1 with weights 1/32, 1/16, 1/8, 1/4, 1,
    as in the official VGGLoss. Weights come from a local file, never a
    download: a Keras `.weights.h5` of `keras.applications.VGG19(include_top=False)`
    or the Keras-applications `vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5`.

    Input convention: images arrive in [-1, 1] RGB. With
    `input_preprocessing="caffe"` (the default) they are converted to what the
    Keras-applications weights were trained on (BGR, 0..255, ImageNet mean
    subtracted). The official code feeds [-1, 1] RGB into torchvision's VGG19
    with no normalisation; `input_preprocessing="none"` reproduces that input
    for torchvision-derived weights. The two weight sets are different
    networks, so the loss's magnitude is not the official one in either case.

    Args:
        weights_path: path of the VGG19 weights file.
        weight: lambda_vgg (official: 10).
        input_preprocessing: "caffe" or "none".
    """

    def __init__(self, weights_path, weight=LAMBDA_VGG, input_preprocessing="caffe"):
        if input_preprocessing not in ("caffe", "none"):
            raise ValueError(f"input_preprocessing={input_preprocessing!r}: choose 'caffe' or 'none'.")
        if not weights_path or not os.path.isfile(weights_path):
            raise FileNotFoundError(
                f"VGG19 weights file not found: {weights_path!r}. The perceptual loss needs a local "
                "file (nothing is downloaded): the Keras-applications "
                "'vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5' or a '.weights.h5' saved from "
                "keras.applications.VGG19(include_top=False). Pass its path, or turn the VGG loss off."
            )
        self.weights_path = weights_path
        self.weight = float(weight)
        self.input_preprocessing = input_preprocessing
        vgg = keras.applications.VGG19(include_top=False, weights=None, input_shape=(None, None, 3))
        try:
            vgg.load_weights(weights_path)
        except Exception as e:  # h5py / Keras raise several types for a bad file
            raise ValueError(
                f"could not load VGG19 weights from {weights_path}: {e}. Expected the Keras VGG19 "
                "notop weights (.h5) or a .weights.h5 of keras.applications.VGG19(include_top=False)."
            ) from e
        vgg.trainable = False
        self.features = keras.Model(vgg.input, [vgg.get_layer(n).output for n in VGG_LAYERS])

    def _prepare(self, images):
        x = tf.cast(images, tf.float32)
        if self.input_preprocessing == "caffe":
            x = (x + 1.0) * 127.5
            x = x[..., ::-1] - tf.constant([103.939, 116.779, 123.68])
        return x

    def __call__(self, fake, real):
        fake_f = self.features(self._prepare(fake), training=False)
        real_f = self.features(self._prepare(real), training=False)
        total = 0.0
        for w, f, r in zip(VGG_LAYER_WEIGHTS, fake_f, real_f):
            total += w * tf.reduce_mean(tf.abs(f - tf.stop_gradient(r)))
        return total * self.weight
