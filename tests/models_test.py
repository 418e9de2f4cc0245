"""Generator, discriminator and encoder: sizes, counts, serialisation, XLA, mixed precision."""

import gc

import keras
import numpy as np
import pytest
import tensorflow as tf

from spade_tf.models.discriminator import MultiscaleDiscriminator
from spade_tf.models.encoder import ConvEncoder
from spade_tf.models.generator import SPADEGenerator
from spade_tf.tools import convert
from tests.test_case import (
    assert_config_round_trip,
    copy_weights,
    fill_weights,
    fixture,
    fixture_config,
    generator_state,
    make_responsive,
    nhwc,
    save_and_load,
)


def _trainable_count(model):
    return int(sum(np.prod(v.shape) for v in model.trainable_weights))


# Official counts (reference section 11, from the official classes). The
# models are built from shapes alone: no activation is ever allocated.
@pytest.mark.parametrize(
    "options,g_count,d_count",
    [
        (dict(convert.DATASET_PRESETS["ade20k"]), 96_492_483, 5_836_930),
        (dict(convert.DATASET_PRESETS["cityscapes"]), 93_048_003, 5_601_410),
        (dict(convert.DATASET_PRESETS["coco_stuff"]), 97_480_899, 5_904_514),
        (dict(convert.DATASET_PRESETS["ade20k"], use_vae=True), 111_942_595, None),
    ],
    ids=["ade20k", "cityscapes", "coco", "ade20k_vae"],
)
def test_parameter_counts_equal_official(options, g_count, d_count):
    g = convert.build_generator(options)
    assert _trainable_count(g) == g_count
    del g
    if d_count is not None:
        assert _trainable_count(convert.build_discriminator(options)) == d_count
    else:
        assert _trainable_count(convert.build_encoder(options)) == 10_463_424
    gc.collect()


def _tiny_generator(**kwargs):
    args = dict(semantic_channels=5, base_filters=4, crop_size=32, spade=dict(hidden_filters=8))
    args.update(kwargs)
    return SPADEGenerator(**args)


def _semantics(n, h, w, c=5, seed=0):
    labels = tf.random.stateless_uniform([n, h, w], [seed, 1], 0, c, tf.int32)
    return tf.one_hot(labels, c)


@pytest.mark.parametrize("mode,multiple", [("normal", 32), ("more", 64), ("most", 128)])
def test_generator_upsampling_modes(mode, multiple):
    g = _tiny_generator(num_upsampling_layers=mode, crop_size=multiple)
    assert g(_semantics(1, multiple, 2 * multiple)).shape == (1, multiple, 2 * multiple, 3)


def test_generator_output_range_and_any_aspect():
    g = _tiny_generator()
    y = g(_semantics(2, 64, 32)).numpy()
    assert y.shape == (2, 64, 32, 3) and np.all(np.abs(y) <= 1.0)


def test_generator_vae_grid_from_crop_and_aspect():
    # crop 64 (width), aspect 2: sw = 2, sh = 1 -> output 32 x 64 whatever the label map size.
    g = _tiny_generator(use_vae=True, crop_size=64, aspect_ratio=2.0, latent_dim=8)
    assert (g.grid_height, g.grid_width) == (1, 2)
    assert g(_semantics(2, 50, 70), tf.zeros([2, 8])).shape == (2, 32, 64, 3)
    # Without z, z ~ N(0, 1): two calls differ.
    a, b = g(_semantics(1, 32, 64)), g(_semantics(1, 32, 64))
    assert not np.allclose(a.numpy(), b.numpy())


def test_generator_rejects_bad_sizes_and_channels():
    g = _tiny_generator()
    with pytest.raises(ValueError, match="height 48 is not a multiple of 32"):
        g(_semantics(1, 48, 32))
    with pytest.raises(ValueError, match="semantics have 6 channels, the generator was built for 5"):
        g(_semantics(1, 32, 32, c=6))
    with pytest.raises(ValueError, match="crop_size of at least 32"):
        _tiny_generator(crop_size=16)


def test_discriminator_layout():
    d = MultiscaleDiscriminator(input_filters=8, base_filters=4, num_scales=3, num_layers=3)
    outputs = d(tf.zeros([2, 64, 64, 8]))
    assert [[f.shape[1] for f in scale] for scale in outputs] == [
        [33, 17, 18, 19],
        [17, 9, 10, 11],
        [9, 5, 6, 7],
    ]
    assert [f.shape[-1] for f in outputs[0]] == [4, 8, 16, 1]
    with pytest.raises(ValueError, match="expected 8"):
        d(tf.zeros([1, 32, 32, 7]))


def test_encoder_any_input_size():
    e = ConvEncoder(base_filters=4, latent_dim=16, image_size=32)
    assert len(e.convs) == 3
    for shape in ([2, 32, 32, 3], [1, 64, 48, 3], [1, 17, 100, 3]):
        mu, logvar = e(tf.random.normal(shape))
        assert mu.shape == logvar.shape == (shape[0], 16)
    with pytest.raises(ValueError, match="power of two"):
        ConvEncoder(image_size=100)


def test_encoder_resizes_like_official():
    # The official encoder first resizes 64x64 to 256x256 (bilinear, half-pixel): spade_tf's encoder
    # must give the input its first layer saw (outputs_eval's E_resized_input).
    image = nhwc(fixture("inputs")["image"])
    encoder = ConvEncoder(base_filters=4, latent_dim=8, image_size=256)
    resized = encoder.resize_input(tf.constant(image))
    assert resized.shape == (image.shape[0], 256, 256, 3)
    np.testing.assert_allclose(resized.numpy(), nhwc(fixture("outputs_eval")["E_resized_input"]), atol=1e-5)
    # call() reads the image through resize_input: the same input gives the same latents either way.
    encoder.build()
    mu, logvar = encoder(tf.constant(image))
    mu_resized, logvar_resized = encoder(resized)
    np.testing.assert_array_equal(mu.numpy(), mu_resized.numpy())
    np.testing.assert_array_equal(logvar.numpy(), logvar_resized.numpy())


def _models():
    g = _tiny_generator(use_vae=True, latent_dim=8)
    d = MultiscaleDiscriminator(input_filters=8, base_filters=4)
    e = ConvEncoder(base_filters=4, latent_dim=8, image_size=16)
    sem, img, z = _semantics(2, 32, 32), tf.random.normal([2, 32, 32, 3]), tf.random.normal([2, 8])
    d_in = tf.concat([sem, img], -1)
    # A train-mode call first moves BN statistics and SN vectors off their
    # initial values, so the round trips below have state to lose.
    g(sem, z, training=True)
    d(d_in, training=True)
    e(img, training=True)
    return {
        "G": (g, lambda m: m(sem, z, training=False)),
        "D": (d, lambda m: m(d_in, training=False)),
        "E": (e, lambda m: m(img, training=False)),
    }


def _flat(x):
    return np.concatenate([np.ravel(t) for t in tf.nest.flatten(x)])


@pytest.mark.parametrize("net", ["G", "D", "E"])
def test_config_and_keras_file_round_trip(net, tmp_path):
    model, call = _models()[net]
    expected = _flat(call(model))
    clone = assert_config_round_trip(model)
    clone.build()
    copy_weights(model, clone)
    np.testing.assert_array_equal(_flat(call(clone)), expected)
    loaded = save_and_load(model, tmp_path)
    assert type(loaded) is type(model)
    np.testing.assert_array_equal(_flat(call(loaded)), expected)


def test_xla_matches_eager():
    g = convert.generator_from_official(generator_state("vae"), fixture_config("A_G_D_vae"))
    inputs = fixture("inputs")
    sem, z = nhwc(inputs["semantics"]), inputs["z"]
    eager = g(sem, z).numpy()
    jit = tf.function(lambda s, zz: g(s, zz), jit_compile=True)(sem, z).numpy()
    # Same float32 maths, fused differently: a few 1e-6.
    np.testing.assert_allclose(jit, eager, atol=1e-5)
    d = convert.discriminator_from_official(fixture("state_D"), fixture_config("A_G_D_vae"))
    d_in = nhwc(fixture("outputs_eval")["D_input"])
    np.testing.assert_allclose(
        _flat(tf.function(lambda x: d(x, training=True), jit_compile=True)(d_in)),
        _flat(d(d_in, training=False)),
        atol=1e-4,
    )


# Measured worst case on the fixture generator (outputs ~0.2 mean |x|): bfloat16
# eval 0.020 / train 0.061, float16 eval 0.0019 / train 0.0066. bfloat16 keeps 8
# mantissa bits (relative error 2**-9 per op) through ~40 layers; the bounds are
# ~2.5x the measured values.
@pytest.mark.parametrize(
    "policy,eval_tol,train_tol", [("mixed_bfloat16", 0.05, 0.15), ("mixed_float16", 0.005, 0.02)]
)
def test_mixed_precision_close_to_float32(policy, eval_tol, train_tol):
    ref = convert.generator_from_official(generator_state("vae"), fixture_config("A_G_D_vae"))
    g = SPADEGenerator(**convert.generator_kwargs(fixture_config("A_G_D_vae")), dtype=policy)
    g.build()
    copy_weights(ref, g)
    assert all(v.dtype == "float32" for v in g.weights)
    inputs = fixture("inputs")
    sem, z = nhwc(inputs["semantics"]), inputs["z"]
    y = g(sem, z)
    assert y.dtype == tf.float32
    np.testing.assert_allclose(y.numpy(), nhwc(fixture("outputs_eval")["G_vae"]), atol=eval_tol)
    y_train = tf.function(lambda s, zz: g(s, zz, training=True), jit_compile=True)(sem, z)
    np.testing.assert_allclose(y_train.numpy(), nhwc(fixture("outputs_train")["G_vae_train"]), atol=train_tol)
    # Gradients reach the float32 variables.
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(g(sem, z, training=True))
    grads = tape.gradient(loss, g.trainable_weights)
    assert all(gr is not None and gr.dtype == tf.float32 for gr in grads)
    d = MultiscaleDiscriminator(input_filters=12, base_filters=4, dtype=policy)
    e = ConvEncoder(base_filters=4, image_size=16, dtype=policy)
    assert d(tf.zeros([1, 32, 32, 12]))[0][-1].dtype == tf.float32
    assert e(tf.zeros([1, 32, 32, 3]))[0].dtype == tf.float32


def test_keras_variable_names_follow_official_modules():
    g = _tiny_generator(num_upsampling_layers="most", crop_size=128)
    g.build()
    paths = {v.path for v in g.weights}
    assert any(p.endswith("up_4/norm_s/mlp_gamma/kernel") for p in paths)
    assert any(p.endswith("head_0/conv_0/u") for p in paths)
    assert keras.saving.get_registered_name(SPADEGenerator) == "spade_tf>SPADEGenerator"


def _noise_generator(use_vae, strength=0.0, position_injection=False, noise_per_class=False):
    """A tiny generator with noise injection whose images respond to their inputs (`make_responsive`);
    `strength` is every noise strength and position weight."""
    keras.utils.set_random_seed(3)
    g = SPADEGenerator(
        semantic_channels=5,
        base_filters=4,
        crop_size=32,
        use_vae=use_vae,
        latent_dim=8,
        noise_injection=True,
        position_injection=position_injection,
        noise_per_class=noise_per_class,
        noise_gain=10.0 if noise_per_class else 1.0,
    )
    g.build()
    make_responsive(g, num_classes=4, use_instance_map=True, size=32)
    fill_weights(g, ("noise_strength", "position_kernel"), strength)
    return g


def _relative_path(weight):
    return weight.path.split("/", 1)[1]


@pytest.mark.parametrize("noise_per_class", [False, True])
def test_noise_and_position_injection_start_as_the_plain_generator(noise_per_class):
    # Strengths and position weights start at 0: a new generator with both computes exactly what the same
    # weights without them do, so turning the options on changes nothing until training moves them.
    noisy = _noise_generator(use_vae=True, position_injection=True, noise_per_class=noise_per_class)
    plain = SPADEGenerator(semantic_channels=5, base_filters=4, crop_size=32, use_vae=True, latent_dim=8)
    plain.build()
    by_path = {_relative_path(w): w for w in noisy.weights}
    for w in plain.weights:
        w.assign(by_path[_relative_path(w)])
    assert sorted(set(by_path) - {_relative_path(w) for w in plain.weights}) == sorted(
        f"{b}/{kind}_{i}"
        for b in ("head_0", "G_middle_0", "G_middle_1", "up_0", "up_1", "up_2", "up_3")
        for kind in ("noise_strength", "position_kernel")
        for i in (0, 1)
    )
    semantics = tf.one_hot(tf.random.stateless_uniform([2, 32, 32], [1, 2], 0, 5, tf.int32), 5)
    z = tf.random.stateless_normal([2, 8], [3, 4])
    seed = tf.constant([5, 6], tf.int64)
    np.testing.assert_array_equal(noisy(semantics, z, noise_seed=seed), plain(semantics, z))


def test_noise_maps_fixed_at_inference_fresh_in_training(tmp_path):
    g = _noise_generator(use_vae=True, strength=0.5)
    semantics = tf.one_hot(tf.random.stateless_uniform([2, 32, 32], [1, 2], 0, 5, tf.int32), 5)
    z = tf.random.stateless_normal([2, 8], [3, 4])
    fixed = g(semantics, z).numpy()
    # Without a seed every call (and a loaded copy, in another process alike) uses the same maps.
    np.testing.assert_array_equal(g(semantics, z), fixed)
    np.testing.assert_array_equal(save_and_load(g, tmp_path)(semantics, z), fixed)
    a = g(semantics, z, noise_seed=tf.constant([1, 2], tf.int64)).numpy()
    b = g(semantics, z, noise_seed=tf.constant([1, 3], tf.int64)).numpy()
    np.testing.assert_array_equal(g(semantics, z, noise_seed=tf.constant([1, 2], tf.int64)), a)
    # The noise reaches the pixels: another seed moves them by more than rounding (measured ~0.1 mean).
    assert np.abs(a - b).mean() > 1e-2 and np.abs(a - fixed).mean() > 1e-2


def test_per_class_noise_reaches_only_the_pixels_of_its_class(tmp_path):
    from spade_tf.models.blocks import SPADEResBlock
    from spade_tf.models.ops import nearest_resize

    block = SPADEResBlock(
        8, 8, 5, spade={"hidden_filters": 8}, noise_injection=True, noise_per_class=True, noise_gain=10.0
    )
    block.build()
    assert block.noise_strength_0.shape == (5, 8) and block.noise_strength_1.shape == (5, 8)
    # The map at twice the block's size: each pixel of x reads the label that nearest resizing picks.
    segmap = tf.one_hot(tf.random.stateless_uniform([2, 16, 16], [1, 2], 0, 5, tf.int32), 5)
    x = tf.random.stateless_normal([2, 8, 8, 8], [3, 4])
    noise = tf.random.stateless_normal([2, 8, 8, 2], [5, 6])
    plain = block(x, segmap, noise=noise).numpy()
    strength = np.zeros((5, 8), np.float32)
    strength[2] = np.linspace(0.1, 0.8, 8)
    # conv_1's noise is added to the block's output itself: with only class 2's conv_1 strengths set, the
    # output moves by noise x strength x gain on class 2's pixels and nowhere else.
    block.noise_strength_1.assign(strength)
    moved = block(x, segmap, noise=noise).numpy()
    class_2 = nearest_resize(segmap, (8, 8)).numpy()[..., 2:3]
    assert 0.1 < class_2.mean() < 0.35  # some pixels of class 2, most of others
    expected = noise.numpy()[..., 1:2] * class_2 * strength[2] * 10.0
    # float32 sums of terms of order 1 to 10: rounding is ~1e-6.
    np.testing.assert_allclose(moved - plain, expected, atol=1e-5)
    assert np.abs(expected).max() > 1.0
    loaded = SPADEResBlock.from_config(block.get_config())
    assert (loaded.noise_per_class, loaded.noise_gain) == (True, 10.0)


def test_reflect_pad_mirrors_and_repeats_a_single_pixel():
    from spade_tf.models.ops import reflect_pad

    x = np.arange(2 * 1 * 4 * 3, dtype=np.float32).reshape(2, 1, 4, 3)
    got = reflect_pad(tf.constant(x), 1).numpy()
    # Height 1 has nothing to mirror: its pixel repeats (numpy's "symmetric"); width 4 mirrors without
    # repeating the edge (PyTorch's "reflect", numpy's "reflect").
    expected = np.pad(x, [(0, 0), (1, 1), (0, 0), (0, 0)], "symmetric")
    expected = np.pad(expected, [(0, 0), (0, 0), (1, 1), (0, 0)], "reflect")
    np.testing.assert_array_equal(got, expected)
    codes = np.arange(25, dtype=np.int32).reshape(1, 5, 5)
    np.testing.assert_array_equal(
        reflect_pad(tf.constant(codes), 2), np.pad(codes, [(0, 0), (2, 2), (2, 2)], "reflect")
    )


@pytest.mark.parametrize("padding", [1, 2])
def test_reflect_pad_of_unknown_size_equals_the_static_pad(padding):
    # Traced for any size (a SavedModel signature), the choice between mirroring and repeating is made at run
    # time: the same pixels as the static pads, sides of 1 to 5 (1 and `padding` repeat, the rest mirror).
    from spade_tf.models.ops import reflect_pad

    dynamic = tf.function(
        lambda x: reflect_pad(x, padding), input_signature=[tf.TensorSpec([None, None, None, 2])]
    )
    for h, w in [(1, 1), (1, 4), (2, 2), (3, 1), (5, 3)]:
        if min(h, w) < padding:
            continue  # narrower than the pad: TF's static pads refuse it
        x = np.random.default_rng(h * 10 + w).standard_normal((2, h, w, 2)).astype(np.float32)
        expected = reflect_pad(tf.constant(x), padding).numpy()
        modes = ["symmetric" if n <= padding else "reflect" for n in (h, w)]
        np.testing.assert_array_equal(
            expected,
            np.pad(
                np.pad(x, [(0, 0), (padding,) * 2, (0, 0), (0, 0)], modes[0]),
                [(0, 0), (0, 0), (padding,) * 2, (0, 0)],
                modes[1],
            ),
        )
        np.testing.assert_array_equal(dynamic(tf.constant(x)).numpy(), expected)


def test_reflect_generator_for_any_size_runs_on_a_one_pixel_latent_grid():
    # Without VAE the generator's first conv reads the label map resized to 1x1 at 32 px (5 upsamplings);
    # a SavedModel for any size traces it with unknown sizes, where the static REFLECT pad would fail.
    keras.utils.set_random_seed(4)
    g = SPADEGenerator(semantic_channels=5, base_filters=4, crop_size=32, padding_mode="reflect")
    g.build()
    any_size = tf.function(g.call, input_signature=[tf.TensorSpec([None, None, None, 5])])
    for size in (32, 64):
        maps = tf.one_hot(np.random.default_rng(size).integers(0, 5, (1, size, size)), 5)
        np.testing.assert_allclose(any_size(maps).numpy(), g(maps).numpy(), atol=1e-6)


@pytest.mark.parametrize("padding_mode", ["zeros", "reflect"])
def test_reflect_padding_leaves_no_left_right_cue(padding_mode):
    # A map of horizontal bands (as the demo's landscapes mostly are) is the same in every column, and so is
    # everything a conv computes from it, but where zero padding marks the left and right borders: with
    # zeros the columns near them come out different (the demo's thin vertical border lines), with
    # "reflect" every column is the same.
    keras.utils.set_random_seed(3)
    g = SPADEGenerator(semantic_channels=5, base_filters=4, crop_size=32, padding_mode=padding_mode)
    g.build()
    make_responsive(g, num_classes=4, use_instance_map=True, size=32)
    bands = np.repeat(np.array([0, 0, 1, 1, 1, 2, 3, 3] * 4, np.int32)[None, :, None], 32, axis=2)
    y = g(tf.one_hot(bands, 5)).numpy()
    assert np.abs(y - y.mean(axis=(1, 2), keepdims=True)).mean() > 1e-2  # the bands reach the image
    columns = np.abs(y - y[:, :, 16:17]).max(
        axis=(0, 1, 3)
    )  # each column's largest difference from the middle
    if padding_mode == "reflect":
        assert columns.max() < 1e-5  # float32 rounding of equal sums
    else:
        assert columns[0] > 1e-2 and columns[-1] > 1e-2
    if padding_mode == "reflect":
        with pytest.raises(ValueError, match="padding_mode='reflect'"):
            convert.generator_to_official(g)


def test_noise_maps_tile_to_larger_inputs():
    g = _noise_generator(use_vae=False, strength=0.5)
    assert g(tf.one_hot(tf.zeros([1, 64, 96], tf.int32), 5)).shape == (1, 64, 96, 3)
    # The fixed maps are made at each level's training size (here up_3, 32x32) and repeat beyond it.
    at_training_size = g._noise(6, 5, tf.zeros([1, 32, 32, 4]), None).numpy()
    larger = g._noise(6, 5, tf.zeros([1, 64, 96, 4]), None).numpy()
    assert at_training_size.shape == (1, 32, 32, 2) and larger.shape == (1, 64, 96, 2)
    np.testing.assert_array_equal(larger[:, 32:, 64:], at_training_size)
    assert 0.8 < at_training_size.std() < 1.2  # standard normal
    # Each block has its own maps.
    assert np.abs(g._noise(5, 5, tf.zeros([1, 32, 32, 4]), None).numpy() - at_training_size).mean() > 0.5


def test_position_injection_adds_a_function_of_the_pixel_position(tmp_path):
    from spade_tf.models.generator import _position_map

    grid = _position_map(tf.zeros([3, 2, 4, 5])).numpy()
    assert grid.shape == (1, 2, 4, 2)
    np.testing.assert_allclose(grid[0, :, 0, 0], [-0.5, 0.5])  # y: pixel centres, top to bottom
    np.testing.assert_allclose(grid[0, 0, :, 1], [-0.75, -0.25, 0.25, 0.75])  # x: left to right
    semantics = tf.one_hot(tf.zeros([1, 32, 32], tf.int32), 5)
    z = tf.zeros([1, 8])
    plain = _noise_generator(use_vae=True, position_injection=True)
    moved = _noise_generator(use_vae=True, strength=0.3, position_injection=True)
    fill_weights(moved, ("noise_strength",), 0.0)
    # The weights reach the image, and a saved and loaded model keeps them.
    assert np.abs(moved(semantics, z).numpy() - plain(semantics, z).numpy()).mean() > 1e-2
    np.testing.assert_array_equal(save_and_load(moved, tmp_path)(semantics, z), moved(semantics, z))


def test_noise_and_position_injection_have_no_official_counterpart():
    with pytest.raises(ValueError, match="noise_injection"):
        convert.generator_to_official(_noise_generator(use_vae=False))
    with pytest.raises(ValueError, match="noise_injection and position_injection"):
        convert.generator_to_official(_noise_generator(use_vae=False, position_injection=True))
