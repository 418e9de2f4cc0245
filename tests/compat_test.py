"""Files and import paths from before the package restructure keep working.

`tests/fixtures/legacy-v1/` holds a bundle, a config and a checkpoint written by the old code, with
the outputs it computed from them (its README says how they were made).
"""

import importlib
import json
import os

import numpy as np
import pytest
import tensorflow as tf

from spade_tf import MOVED_MODULES
from spade_tf.config import RENAMED_KEYS, check_command_line, upgrade_config, validate
from spade_tf.data.semantics import make_semantics
from spade_tf.serving.inference import load_synthesizer
from spade_tf.training.trainer import trainer_from_config

LEGACY = os.path.join(os.path.dirname(__file__), "fixtures", "legacy-v1")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The same computation on the same machine gives the same floats; the margin covers a different CPU's
# kernels (float32 parity elsewhere in the suite is ~1e-6 of the output scale).
RTOL_OF_SCALE = 1e-5


def _close(got, expected):
    expected = np.asarray(expected)
    np.testing.assert_allclose(np.asarray(got), expected, rtol=0, atol=RTOL_OF_SCALE * np.abs(expected).max())


@pytest.fixture(scope="module")
def expected():
    return dict(np.load(os.path.join(LEGACY, "expected.npz")))


@pytest.mark.parametrize("old", sorted(MOVED_MODULES))
def test_old_module_paths_are_the_new_modules(old):
    assert importlib.import_module(old) is importlib.import_module(MOVED_MODULES[old])


def test_readme_api_at_its_old_paths():
    from spade_tf.bundle import load_bundle, save_bundle  # noqa: F401
    from spade_tf.convert import StateDictMismatch, generator_from_official, generator_to_official  # noqa: F401
    from spade_tf.encoder import reparameterize  # noqa: F401
    from spade_tf.inference import load_synthesizer as old_loader
    from spade_tf.normalization import SPADE, Conv2D, InstanceNorm, ParamFreeBatchNorm  # noqa: F401
    from spade_tf.preprocessing import make_semantics as old_make_semantics
    from spade_tf.preprocessing import semantic_channels

    assert old_loader is load_synthesizer and old_make_semantics is make_semantics
    assert semantic_channels(9, True, True) == 11


def test_a_bundle_written_before_the_change_gives_the_same_images(expected):
    model = load_synthesizer(os.path.join(LEGACY, "model.keras"))
    # The seed -> latent stream is unchanged too.
    np.testing.assert_array_equal(model.latent_from_seeds([3, 4]), expected["z"])
    labels = expected["labels"]
    _close(model.generate_float(labels, labels, expected["z"]), expected["bundle_float"])
    mu, logvar = model.bundle.encoder(expected["style"].astype(np.float32) / 127.5 - 1.0, training=False)
    _close(mu, expected["mu"])
    _close(logvar, expected["logvar"])
    np.testing.assert_array_equal(
        model.generate(labels, instances=labels, style_images=expected["style"]), expected["images_style"]
    )


def test_a_checkpoint_and_config_written_before_the_change_resume(expected):
    with open(os.path.join(LEGACY, "config.json")) as f:
        old = json.load(f)
    assert "disc_filters" in old["model"]  # the old layout, as the fixture's README says
    config = validate(upgrade_config(old))
    assert config.discriminator.base_filters == old["model"]["disc_filters"]
    assert config.model.spade.hidden_filters == old["model"]["spade_hidden_filters"]
    assert config.encoder.image_size == old["model"]["encoder_image_size"]
    trainer = trainer_from_config(config, tf.distribute.MirroredStrategy(["/cpu:0"]), steps_per_epoch=12)
    status = trainer.checkpoint().read(tf.train.latest_checkpoint(os.path.join(LEGACY, "checkpoints")))
    status.assert_existing_objects_matched()
    assert int(trainer.step.numpy()) == 2
    labels = expected["labels"]
    semantics = make_semantics(labels, 9, labels)
    fake = trainer.generator(semantics, expected["z"], training=False, one_hot=True).numpy()
    _close(fake, expected["ckpt_float"])
    logits = trainer.discriminator(np.concatenate([semantics, fake], -1), training=False)[0][-1]
    _close(logits, expected["ckpt_d_logits"])


@pytest.mark.parametrize("old", sorted(RENAMED_KEYS))
def test_renamed_config_keys_name_their_new_place(old):
    with pytest.raises(ValueError, match=f"--config.{old} is now --config.{RENAMED_KEYS[old]}"):
        check_command_line([f"--config.{old}=1"], os.path.join(ROOT, "configs", "demo.py"))
