"""Loss terms against hand computations, and the VGG loss with local weight files."""

import h5py
import keras
import numpy as np
import pytest
import tensorflow as tf
from keras.src.legacy.saving import legacy_h5_format

from spade_tf.models import losses


def _outputs(rng, scales=2):
    # [features..., logits] per scale, like MultiscaleDiscriminator.
    return [
        [tf.constant(rng.normal(size=(2, 5 - s, 5 - s, 3)).astype(np.float32)) for _ in range(3)]
        + [tf.constant(rng.normal(size=(2, 4 - s, 4 - s, 1)).astype(np.float32))]
        for s in range(scales)
    ]


def test_hinge_feature_matching_and_kl_by_hand():
    rng = np.random.default_rng(0)
    fake, real = _outputs(rng), _outputs(rng)
    f_logits = [s[-1].numpy() for s in fake]
    r_logits = [s[-1].numpy() for s in real]
    assert np.isclose(
        float(losses.generator_hinge_loss(fake)), np.mean([-x.mean() for x in f_logits]), rtol=1e-6
    )
    d_fake, d_real = losses.discriminator_hinge_loss(fake, real)
    assert np.isclose(float(d_fake), np.mean([np.maximum(1 + x, 0).mean() for x in f_logits]), rtol=1e-6)
    assert np.isclose(float(d_real), np.mean([np.maximum(1 - x, 0).mean() for x in r_logits]), rtol=1e-6)
    fm = sum(
        np.abs(f.numpy() - r.numpy()).mean() for fs, rs in zip(fake, real) for f, r in zip(fs[:-1], rs[:-1])
    )
    assert np.isclose(float(losses.feature_matching_loss(fake, real)), fm * 10 / 2, rtol=1e-6)
    mu, logvar = rng.normal(size=(2, 8)).astype(np.float32), rng.normal(size=(2, 8)).astype(np.float32)
    kld = -0.5 * np.sum(1 + logvar - mu**2 - np.exp(logvar)) * 0.05
    assert np.isclose(float(losses.kl_divergence_loss(mu, logvar)), kld, rtol=1e-6)


def test_feature_matching_gradient_only_through_fake():
    rng = np.random.default_rng(1)
    fake, real = _outputs(rng, 1), _outputs(rng, 1)
    f = tf.Variable(fake[0][0])
    r = tf.Variable(real[0][0])
    with tf.GradientTape(persistent=True) as tape:
        loss = losses.feature_matching_loss([[f, fake[0][-1]]], [[r, real[0][-1]]])
    assert tape.gradient(loss, r) is None
    assert tape.gradient(loss, f) is not None


def test_vgg_missing_file_is_named(tmp_path):
    path = str(tmp_path / "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5")
    with pytest.raises(
        FileNotFoundError, match="vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5.*nothing is downloaded"
    ):
        losses.VGGPerceptualLoss(path)


def test_vgg_bad_file_is_named(tmp_path):
    path = tmp_path / "broken.weights.h5"
    path.write_bytes(b"not an h5 file")
    with pytest.raises(ValueError, match="could not load VGG19 weights from .*broken.weights.h5"):
        losses.VGGPerceptualLoss(str(path))


@pytest.fixture(scope="module")
def vgg_files(tmp_path_factory):
    """Random VGG19 weights (nothing can be downloaded here) in both accepted formats."""
    folder = tmp_path_factory.mktemp("vgg")
    keras.utils.set_random_seed(0)
    vgg = keras.applications.VGG19(include_top=False, weights=None, input_shape=(None, None, 3))
    modern = str(folder / "vgg19.weights.h5")
    vgg.save_weights(modern)
    legacy = str(folder / "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5")
    with h5py.File(legacy, "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, vgg)
    return vgg, modern, legacy


@pytest.mark.parametrize("fmt", ["modern", "legacy"])
def test_vgg_loss_matches_direct_computation(vgg_files, fmt):
    vgg, modern, legacy = vgg_files
    loss = losses.VGGPerceptualLoss(modern if fmt == "modern" else legacy)
    for got, want in zip(loss.features.weights, vgg.weights):
        np.testing.assert_array_equal(got.numpy(), want.numpy())
    rng = np.random.default_rng(2)
    fake = tf.constant(rng.uniform(-1, 1, size=(2, 32, 32, 3)).astype(np.float32))
    real = tf.constant(rng.uniform(-1, 1, size=(2, 32, 32, 3)).astype(np.float32))

    def feats(x):
        x = (x.numpy() + 1) * 127.5
        x = x[..., ::-1] - np.array([103.939, 116.779, 123.68], np.float32)
        outs = []
        for layer in vgg.layers[1:]:
            x = layer(x)
            if layer.name in losses.VGG_LAYERS:
                outs.append(x.numpy())
        return outs

    expected = 10 * sum(
        w * np.abs(f - r).mean() for w, f, r in zip(losses.VGG_LAYER_WEIGHTS, feats(fake), feats(real))
    )
    np.testing.assert_allclose(float(loss(fake, real)), expected, rtol=1e-4)
    assert float(loss(real, real)) == 0.0
    var = tf.Variable(fake)
    with tf.GradientTape() as tape:
        value = loss(var, real)
    assert float(tf.reduce_sum(tf.abs(tape.gradient(value, var)))) > 0
