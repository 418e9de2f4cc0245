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
import numpy as np
import tensorflow as tf

from spade_tf.models.state_dict import StateDictMismatch, load_state_dict

LAMBDA_FEAT = 10.0
LAMBDA_VGG = 10.0
LAMBDA_KLD = 0.05
VGG_LAYER_WEIGHTS = (1.0 / 32, 1.0 / 16, 1.0 / 8, 1.0 / 4, 1.0)
# relu1_1 .. relu5_1 of VGG19 (torchvision features[0:2], [2:7], [7:12], [12:21], [21:30]).
VGG_LAYERS = ("block1_conv1", "block2_conv1", "block3_conv1", "block4_conv1", "block5_conv1")
# The convolutions the loss reads, in order: Keras VGG19 layer -> torchvision `features.N` (N counts convs,
# ReLUs and max-pools, as torchvision's `vgg19().features` does). block5_conv1 (relu5_1) is the last one used.
VGG_CONVS = {
    "block1_conv1": 0,
    "block1_conv2": 2,
    "block2_conv1": 5,
    "block2_conv2": 7,
    "block3_conv1": 10,
    "block3_conv2": 12,
    "block3_conv3": 14,
    "block3_conv4": 16,
    "block4_conv1": 19,
    "block4_conv2": 21,
    "block4_conv3": 23,
    "block4_conv4": 25,
    "block5_conv1": 28,
}
TORCHVISION_SUFFIXES = (".pth", ".pt", ".npz")


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


def _is_torchvision_file(path):
    return str(path).endswith(TORCHVISION_SUFFIXES)


def _torchvision_conv_weights(state_dict, layer, index):
    """(kernel HWIO, bias) of torchvision's `features.<index>` for the Keras VGG19 `layer`."""
    kernel_key, bias_key = f"features.{index}.weight", f"features.{index}.bias"
    missing = [k for k in (kernel_key, bias_key) if k not in state_dict]
    if missing:
        raise StateDictMismatch(
            f"VGG19 state dict: missing {', '.join(missing)} (for {layer}); expected torchvision's "
            "vgg19().features keys (features.N.weight / .bias), e.g. vgg19-dcbb9e9d.pth."
        )
    kernel, bias = np.asarray(state_dict[kernel_key]), np.asarray(state_dict[bias_key])
    return kernel.transpose(2, 3, 1, 0), bias  # PyTorch (out, in, kh, kw) -> Keras (kh, kw, in, out)


class VGGPerceptualLoss:
    """VGG19 perceptual loss: sum_i w_i * L1mean(vgg_i(fake), vgg_i(real)) * weight.

    The features are relu1_1 .. relu5_1 with weights 1/32, 1/16, 1/8, 1/4, 1,
    as in the official VGGLoss. Weights come from a local file, never a
    download, in one of two kinds:

    - torchvision's VGG19 state dict (`vgg19-dcbb9e9d.pth`, or the same keys
      in an `.npz`; `classifier.*` is ignored): the network of the official
      loss. Images in [-1, 1] RGB go in as they are, as the official code
      feeds them, so the loss is the official one (`VGGLoss(fake, real)`
      times `weight`), gradient included. `from_torchvision` takes the
      state dict itself.
    - Keras weights: a `.weights.h5` of `keras.applications.VGG19(include_top=False)`
      or the Keras-applications `vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5`.
      These are a different network (Caffe-trained): by default images are
      converted to its input convention (BGR, 0..255, ImageNet mean
      subtracted). Not the official loss: its magnitude differs.

    Args:
        weights_path: path of the VGG19 weights file (.pth/.pt/.npz: torchvision; .h5: Keras).
        weight: lambda_vgg (official: 10).
        input_preprocessing: "caffe" (BGR, 0..255, mean subtracted) or "none" ([-1, 1] RGB as given);
            None (or "") picks by the file's kind: "none" for torchvision, "caffe" for Keras.
    """

    def __init__(self, weights_path, weight=LAMBDA_VGG, input_preprocessing=None):
        if not weights_path or not os.path.isfile(weights_path):
            raise FileNotFoundError(
                f"VGG19 weights file not found: {weights_path!r}. The perceptual loss needs a local "
                "file (nothing is downloaded): torchvision's 'vgg19-dcbb9e9d.pth' (the official loss; "
                "reading .pth needs PyTorch, or save the same keys as .npz), the Keras-applications "
                "'vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5' or a '.weights.h5' saved from "
                "keras.applications.VGG19(include_top=False). Pass its path, or turn the VGG loss off."
            )
        torchvision = _is_torchvision_file(weights_path)
        state_dict = load_state_dict(weights_path) if torchvision else None
        self._setup(weights_path, weight, input_preprocessing, state_dict)

    @classmethod
    def from_torchvision(cls, state_dict, weight=LAMBDA_VGG):
        """The official loss from torchvision's VGG19 state dict (`features.N.weight/bias`; NumPy arrays)."""
        loss = cls.__new__(cls)
        loss._setup(None, weight, "none", state_dict)
        return loss

    def _setup(self, weights_path, weight, input_preprocessing, state_dict):
        torchvision = state_dict is not None
        if not input_preprocessing:  # None or "" (the config's "by the file's kind")
            input_preprocessing = "none" if torchvision else "caffe"
        if input_preprocessing not in ("caffe", "none"):
            raise ValueError(f"input_preprocessing={input_preprocessing!r}: choose 'caffe' or 'none'.")
        if torchvision and input_preprocessing != "none":
            raise ValueError(
                f"input_preprocessing={input_preprocessing!r} with torchvision's VGG19 weights: the official "
                "loss feeds them [-1, 1] RGB as it is; use 'none' (or leave it unset)."
            )
        self.weights_path = weights_path
        self.weight = float(weight)
        self.input_preprocessing = input_preprocessing
        vgg = keras.applications.VGG19(include_top=False, weights=None, input_shape=(None, None, 3))
        if torchvision:
            for layer, index in VGG_CONVS.items():
                kernel, bias = _torchvision_conv_weights(state_dict, layer, index)
                expected = [tuple(w.shape) for w in vgg.get_layer(layer).get_weights()]
                if [kernel.shape, bias.shape] != expected:
                    raise StateDictMismatch(
                        f"VGG19 state dict: features.{index} has kernel {kernel.shape[::-1]} (out, in, kh, kw "
                        f"reversed) and bias {bias.shape}; {layer} of VGG19 needs {expected}."
                    )
                vgg.get_layer(layer).set_weights([kernel, bias])
        else:
            try:
                vgg.load_weights(weights_path)
            except Exception as e:  # h5py / Keras raise several types for a bad file
                raise ValueError(
                    f"could not load VGG19 weights from {weights_path}: {e}. Expected the Keras VGG19 "
                    "notop weights (.h5), a .weights.h5 of keras.applications.VGG19(include_top=False), or "
                    "torchvision's vgg19 state dict (.pth / .npz)."
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
