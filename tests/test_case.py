"""Shared helpers: the official parity fixtures and round-trip checks."""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures", "official-small")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def fixture(name):
    """Arrays of `tests/fixtures/official-small/<name>.npz` as a dict."""
    with np.load(os.path.join(FIXTURES, name + ".npz")) as data:
        return {k: data[k] for k in data.files}


def fixture_config(section=None):
    with open(os.path.join(FIXTURES, "config.json")) as f:
        config = json.load(f)
    return config if section is None else config[section]


def nhwc(a):
    """NCHW fixture array -> NHWC."""
    return np.transpose(a, (0, 2, 3, 1))


def generator_state(variant="vae"):
    """The fixture G state dict with the `fc` of a variant ("vae", "novae", "vae_ar2")."""
    state = fixture("state_G")
    if variant != "vae":
        fc = fixture("state_G_fc_variants")
        state["fc.weight"] = fc[f"{variant}/fc.weight"]
        state["fc.bias"] = fc[f"{variant}/fc.bias"]
    return state


def assert_config_round_trip(layer):
    """from_config(get_config()) gives the same config."""
    config = layer.get_config()
    clone = layer.__class__.from_config(config)
    assert clone.get_config() == config
    return clone


def copy_weights(source, target):
    target.set_weights(source.get_weights())


def fill_weights(model, kinds, value):
    """Sets every weight of `model` whose path contains one of `kinds` (e.g. "noise_strength") to `value`."""
    for w in model.weights:
        if any(kind in w.path for kind in kinds):
            w.assign(np.full(w.shape, value, w.dtype))


def save_and_load(model, tmp_path):
    path = os.path.join(str(tmp_path), "model.keras")
    model.save(path)
    return keras.saving.load_model(path, compile=False)


_TWO_CPU_STRATEGY = []


def two_cpu_strategy():
    """One MirroredStrategy over the two logical CPUs, shared by every test.

    A second strategy over the same devices in one process would reuse
    collective group and instance keys and can pair up mismatched tensors.
    """
    import tensorflow as tf

    if not _TWO_CPU_STRATEGY:
        devices = [d.name for d in tf.config.list_logical_devices("CPU")][:2]
        assert len(devices) == 2, "tests/conftest.py must configure two logical CPUs"
        _TWO_CPU_STRATEGY.append(tf.distribute.MirroredStrategy(devices))
    return _TWO_CPU_STRATEGY[0]


def tiny_config(
    use_vae=False,
    use_instance_map=True,
    contain_dontcare_label=False,
    num_classes=4,
    size=32,
    noise_injection=False,
    position_injection=False,
    padding_mode="zeros",
):
    """The demo config's small variant, reshaped: a random-weight model builds in about a second."""
    from spade_tf.config import load_config_file

    config = load_config_file(os.path.join(os.path.dirname(__file__), "..", "configs", "demo.py:small"))
    config.data.num_classes = num_classes
    config.data.use_instance_map = use_instance_map
    config.data.contain_dontcare_label = contain_dontcare_label
    config.data.crop_size = config.data.load_size = size
    config.model.use_vae = use_vae
    config.model.noise_injection = noise_injection
    config.model.position_injection = position_injection
    config.model.padding_mode = padding_mode
    config.model.latent_dim = 16
    config.encoder.image_size = size
    return config


def make_responsive(generator, num_classes, use_instance_map, size, gain=50.0, seed=0):
    """Makes a random-weight generator's image depend on its label map, as a trained model's does.

    At initialisation the SPADE convs are tiny (xavier gain 0.02), so gamma and beta are ~0 and the labels
    barely move the image; and the batch norms' running statistics are the initial (0, 1), so at inference
    nothing is normalised: activations grow to ~1e15 and tanh saturates every pixel to 0 or 255, whatever the
    labels. A test comparing two such models' outputs would check nothing. Scaling the SPADE convs by `gain`
    (gamma and beta become O(1)), taking the running statistics from one training-mode pass and scaling the
    output conv to a 0.5 standard deviation gives images that change where the label map changes.
    """
    import tensorflow as tf

    from spade_tf.data.semantics import make_semantics
    from spade_tf.models.normalization import ParamFreeBatchNorm

    g = generator
    spades = [
        n for b in g.blocks() for n in (b.norm_0, b.norm_1, b.norm_s if b.learned_shortcut else None) if n
    ]
    for spade in spades:
        for conv in (spade.mlp_shared, spade.mlp_gamma, spade.mlp_beta):
            conv.kernel.assign(conv.kernel * gain)
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, num_classes, (8, size // 8, size // 8))
    ids = np.repeat(np.repeat(coarse, 8, 1), 8, 2).astype(np.int32)
    channels = g.semantic_channels - int(use_instance_map)
    semantics = make_semantics(ids, channels, ids if use_instance_map else None)
    z = tf.random.stateless_normal([8, g.latent_dim], seed=[seed, 1]) if g.use_vae else None
    norms = [n.param_free_norm for n in spades if isinstance(n.param_free_norm, ParamFreeBatchNorm)]
    momenta = [n.momentum for n in norms]
    for n in norms:
        n.momentum = 1.0  # the running statistics become this pass's batch statistics
    g(semantics, z, training=True)
    for n, m in zip(norms, momenta):
        n.momentum = m
    spread = float(np.std(g(semantics, z, training=False)))
    g.conv_img.kernel.assign(g.conv_img.kernel * (0.5 / spread))
    return g


def tiny_bundle(path, seed=0, class_names=None, responsive=False, palette=None, **kwargs):
    """Writes a random-weight model as train.py would (`path` is a workdir folder or a .keras file).

    Keyword arguments go to `tiny_config`. `responsive` applies `make_responsive` (images that depend on
    the labels). `palette`: one RGB colour per class (default: the official colour map). Returns the
    bundle file path.
    """
    import json as _json

    from spade_tf.config import build_models
    from spade_tf.data.palette import default_colormap
    from spade_tf.models.bundle import save_bundle

    config = tiny_config(**kwargs)
    keras.utils.set_random_seed(seed)
    g, d, e = build_models(config)
    n = config.data.num_classes
    if responsive:
        make_responsive(g, n, config.data.use_instance_map, config.data.crop_size, seed=seed)
    options = {
        "config": _json.loads(config.to_json()),
        "class_names": list(class_names or [f"class{i}" for i in range(n)]),
        "palette": (
            np.asarray(palette).tolist() if palette is not None else default_colormap(n + 1)[1:].tolist()
        )
        + [[0, 0, 0]],
        "step": 0,
    }
    path = str(path)
    if not path.endswith(".keras"):
        os.makedirs(path, exist_ok=True)
        path = os.path.join(path, "model.keras")
    return save_bundle(path, g, d, e, options)


def encoder_features(encoder, images):
    """The style encoder's features before its fc_mu / fc_var layers, (N, final_filters * 16) float32.

    Follows `ConvEncoder.call` up to its linear layers; `make_style_responsive` fits fc_mu on them.
    """
    import tensorflow as tf

    x = encoder.resize_input(tf.cast(images, tf.float32) / 127.5 - 1.0)
    for i, conv in enumerate(encoder.convs):
        if i:
            x = tf.nn.leaky_relu(x, 0.2)
        x = encoder.norm(conv(x, training=False))
    x = tf.nn.leaky_relu(x, 0.2)
    return tf.reshape(tf.transpose(x, [0, 3, 1, 2]), [len(images), -1]).numpy()


def make_style_responsive(synthesizer, exemplars, labels, steps=60):
    """Makes a random-weight VAE's image take the mean colour of its style exemplar, as a trained VAE's would.

    A random encoder maps photos to arbitrary latents, and training one to carry style takes minutes (see
    tests/synthesize_test.py). Here, for each exemplar, Adam finds the latent z whose images of `labels` have
    the exemplar's mean colour (the generator fixed); then the encoder's fc_mu, a linear layer over its last
    features, is set by least squares to map each exemplar's features to its z exactly, and fc_var to a tiny
    variance (logvar -12) so that the seed noise `style_png` adds around mu does not blur the style. Only
    these exemplars get a meaningful latent; other photos get some latent. Apply `make_responsive` first, so
    that the images depend on the labels too.

    Args:
        synthesizer: a VAE `spade_tf.serving.inference.Synthesizer`, changed in place (export it after).
        exemplars: (N, h, w, 3) uint8 photos.
        labels: (M, H, W) int label maps at the model's size that the colours are fitted on.
        steps: Adam steps on the latents.

    Returns:
        (N, 3) float: the mean colour (0..255) of each exemplar's images, averaged over `labels`.
    """
    import tensorflow as tf

    g, e = synthesizer.generator, synthesizer.encoder
    exemplars, labels = np.asarray(exemplars), np.asarray(labels)
    n, m = len(exemplars), len(labels)
    target = tf.constant(exemplars.reshape(n, -1, 3).mean(1)[:, None] / 127.5 - 1.0, tf.float32)
    semantics = synthesizer.semantics(np.tile(labels, (n, 1, 1)))  # row i * m + j: exemplar i, map j
    z = tf.Variable(tf.zeros([n, g.latent_dim]))
    optimizer = keras.optimizers.Adam(0.1)

    def colours():
        images = g(semantics, tf.repeat(z, m, axis=0), training=False)
        return tf.reshape(tf.reduce_mean(images, [1, 2]), [n, m, 3])

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.square(colours() - target))
        optimizer.apply_gradients([(tape.gradient(loss, z), z)])

    for _ in range(steps):
        step()
    features = encoder_features(e, exemplars)
    solution = np.linalg.lstsq(np.c_[features, np.ones(n)], z.numpy(), rcond=None)[0]
    e.fc_mu.kernel.assign(solution[:-1])
    e.fc_mu.bias.assign(solution[-1])
    e.fc_var.kernel.assign(np.zeros(e.fc_var.kernel.shape, np.float32))
    e.fc_var.bias.assign(np.full(e.fc_var.bias.shape, -12.0, np.float32))
    return (colours().numpy().mean(1) + 1.0) * 127.5


def run_script(script, *flags, timeout=600):
    """Runs a top-level script of the repository (e.g. "serve.py") with `flags` to its exit.

    Returns:
        The `subprocess.CompletedProcess`, with stdout and stderr as text.
    """
    return subprocess.run(
        [sys.executable, os.path.join(REPO, script), *flags],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"),
        timeout=timeout,
    )


def require_torch():
    """torch, or a skip where PyTorch (an optional extra) is missing; CI sets SPADE_TF_REQUIRE_TORCH so it must be there."""
    try:
        import torch  # optional dependency: requirements-torch.txt
    except ImportError:
        if os.environ.get("SPADE_TF_REQUIRE_TORCH"):
            raise
        pytest.skip("PyTorch is an optional extra (requirements-torch.txt); CI installs it")
    return torch
