"""The shared synthesis core: model info from both bundle kinds, input checks, seeds."""

import numpy as np
import pytest

from spade_tf.serving.inference import load_synthesizer
from tests.test_case import tiny_bundle


@pytest.fixture(scope="module")
def vae_model(tmp_path_factory):
    path = tiny_bundle(
        tmp_path_factory.mktemp("vae"), use_vae=True, contain_dontcare_label=True, responsive=True
    )
    return load_synthesizer(path)


@pytest.fixture(scope="module")
def plain_model(tmp_path_factory):
    return load_synthesizer(tiny_bundle(tmp_path_factory.mktemp("plain"), responsive=True))


def _labels(n, size=32, classes=4, seed=0):
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, classes, (n, size // 8, size // 8))
    return np.repeat(np.repeat(coarse, 8, 1), 8, 2).astype(np.int32)


def test_info_from_a_training_bundle(vae_model, plain_model):
    info = vae_model.info
    assert (info.num_classes, info.label_channels, info.height, info.width) == (4, 5, 32, 32)
    assert info.class_names == ("class0", "class1", "class2", "class3", "dontcare")
    assert info.palette.shape == (5, 3) and info.palette[4].tolist() == [0, 0, 0]
    assert info.use_vae and info.use_instance_map
    assert not plain_model.info.use_vae and plain_model.info.size_multiple == 32


def test_workdir_and_missing_paths(tmp_path):
    with pytest.raises(FileNotFoundError, match="without model.keras"):
        load_synthesizer(str(tmp_path))
    with pytest.raises(FileNotFoundError, match="nowhere.keras"):
        load_synthesizer(str(tmp_path / "nowhere.keras"))


def test_generate_matches_the_generator_on_the_official_semantics(plain_model):
    import tensorflow as tf

    from spade_tf.data.semantics import make_semantics

    labels = _labels(2)
    out = plain_model.generate(labels)
    direct = plain_model.generator(make_semantics(labels, 4, labels), training=False)
    expected = np.clip((direct.numpy() + 1) / 2 * 255, 0, 255).astype(np.uint8)
    assert out.dtype == np.uint8 and out.shape == (2, 32, 32, 3)
    np.testing.assert_array_equal(out, expected)
    # An explicit instance map changes the edge channel, hence the image.
    instances = np.arange(32 * 32, dtype=np.int32).reshape(1, 32, 32).repeat(2, 0)
    assert not np.array_equal(plain_model.generate(labels, instances), out)
    assert tf.is_tensor(plain_model.generate_float(labels))


def test_dontcare_255_equals_the_dontcare_id(vae_model):
    labels = _labels(1)
    a, b = labels.copy(), labels.copy()
    a[:, :8] = 4
    b[:, :8] = 255
    np.testing.assert_array_equal(vae_model.generate(a, seeds=[3]), vae_model.generate(b, seeds=[3]))


def test_seeds(vae_model):
    labels = np.repeat(_labels(1), 2, axis=0)
    same = vae_model.generate(labels, seeds=[5, 5])
    np.testing.assert_array_equal(same[0], same[1])
    np.testing.assert_array_equal(vae_model.generate(labels[:1], seeds=[5])[0], same[0])
    other = vae_model.generate(labels[:1], seeds=[6])[0]
    # Different latents move every image; 1 grey level is below any real change.
    assert np.abs(other.astype(int) - same[0].astype(int)).mean() > 1.0


def test_bad_inputs_name_the_problem(vae_model, plain_model):
    with pytest.raises(ValueError, match=r"ids \[7\] are out of range.*0\.\.3, 4 or 255"):
        vae_model.generate(np.full((1, 32, 32), 7, np.int32))
    with pytest.raises(ValueError, match="expected \\(N, H, W\\)"):
        plain_model.generate(np.zeros((32, 32), np.int32))
    with pytest.raises(ValueError, match="takes only 32x32"):
        vae_model.generate(np.zeros((1, 64, 64), np.int32))
    with pytest.raises(ValueError, match="multiples of 32"):
        plain_model.generate(np.zeros((1, 40, 32), np.int32))
    # Non-VAE models take any multiple of their grid.
    assert plain_model.generate(np.zeros((1, 64, 96), np.int32)).shape == (1, 64, 96, 3)
    with pytest.raises(ValueError, match="not a VAE"):
        plain_model.generate(np.zeros((1, 32, 32), np.int32), style_images=np.zeros((1, 32, 32, 3), np.uint8))
    with pytest.raises(ValueError, match="2 seeds for 1"):
        vae_model.generate(np.zeros((1, 32, 32), np.int32), seeds=[1, 2])
