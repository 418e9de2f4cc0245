"""Seeds give the same latents and images everywhere: golden values, committed, so that a change of random
stream (TF's stateless normal, the seed layout, the export's seed input) shows up.

The model is the pre-restructure bundle of tests/fixtures/legacy-v1/ with its last conv scaled up (its
output after two training steps is ~1e-3, which rounds to one grey); `seed-golden.npz` beside it holds
what this test computed when it was written: latents of a few seeds, and the exported SavedModel's
`serving_default` images for seeds 3 and 4.
"""

import os

import numpy as np
import tensorflow as tf

from spade_tf.serving import export_lib
from spade_tf.serving.inference import load_synthesizer

LEGACY = os.path.join(os.path.dirname(__file__), "fixtures", "legacy-v1")
GOLDEN = os.path.join(LEGACY, "seed-golden.npz")
SEEDS = [0, 1, 3, 4, 2**31 - 1]
IMAGE_SEEDS = [3, 4]
# conv_img's weights times this: images then span many grey levels, so a different latent changes them.
BRIGHTEN = 400.0


def _model():
    synth = load_synthesizer(os.path.join(LEGACY, "model.keras"))
    conv = synth.generator.conv_img
    conv.set_weights([w * BRIGHTEN for w in conv.get_weights()])
    return synth


def _labels():
    return np.load(os.path.join(LEGACY, "expected.npz"))["labels"]


def compute(tmp_dir):
    synth = _model()
    latents = synth.latent_from_seeds(SEEDS).numpy()
    version = export_lib.export_saved_model(synth, os.path.join(tmp_dir, "export"))
    serving = tf.saved_model.load(version).signatures["serving_default"]
    labels = tf.constant(_labels(), tf.int32)
    images = serving(labels=labels, instances=labels, seed=tf.constant(IMAGE_SEEDS, tf.int32))[
        "images"
    ].numpy()
    return latents, images


def test_seeds_give_the_committed_latents_and_images(tmp_path):
    golden = np.load(GOLDEN)
    latents, images = compute(str(tmp_path))
    # stateless_normal is a counter-based generator: the same bits on every CPU, up to float rounding.
    np.testing.assert_allclose(latents, golden["latents"], rtol=1e-6, atol=1e-6)
    assert images.std() > 10  # the images do show their latent (see BRIGHTEN)
    assert not np.array_equal(images[0], images[1])
    # uint8 after float32 networks: another CPU's kernels may round a pixel the other way.
    assert np.abs(images.astype(int) - golden["images"].astype(int)).max() <= 1


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        latents, images = compute(tmp)
    np.savez_compressed(GOLDEN, latents=latents, images=images)
    print("wrote", GOLDEN, latents.shape, images.shape, images.std())
