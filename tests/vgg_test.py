"""The official VGG perceptual loss from torchvision's VGG19 state dict.

`tests/fixtures/official-vgg/` holds the official `VGGLoss` run on weights that a NumPy rule rebuilds
(its README). A second seed and size are checked against the same computation written in PyTorch here
(torchvision's VGG19 `features` layer by layer: 3x3 convs with padding 1, ReLU, 2x2 max-pools).
"""

import json
import os

import numpy as np
import pytest
import tensorflow as tf

from configs.demo import get_config
from spade_tf.data import setup as data_setup
from spade_tf.models.losses import VGG_LAYERS, VGGPerceptualLoss
from spade_tf.models.state_dict import StateDictMismatch
from spade_tf.tools import convert
from spade_tf.training import train_lib
from spade_tf.training.trainer import GANTrainer, make_optimizers
from tests.test_case import fixture as official_fixture
from tests.test_case import fixture_config, generator_state, nhwc, require_torch

FIXTURE = os.path.join(os.path.dirname(__file__), "fixtures", "official-vgg")
CONFIG_E = [
    64,
    64,
    "M",
    128,
    128,
    "M",
    256,
    256,
    256,
    256,
    "M",
    512,
    512,
    512,
    512,
    "M",
    512,
    512,
    512,
    512,
    "M",
]
# The bounds: the loss within 1e-4 relative (float32 sums of ~1e5 terms), the gradient within 1e-3
# by relative L2 norm (|a - b| has no gradient at ties; frameworks pick differently on single pixels).
LOSS_RTOL, GRAD_RTOL = 1e-4, 1e-3


def torchvision_state_dict(seed):
    """The fixture README's rule: torchvision key names, PyTorch layouts, He-scaled normal weights."""
    rng = np.random.default_rng(seed)
    state, index, cin = {}, 0, 3
    for v in CONFIG_E:
        if v == "M":
            index += 1
            continue
        w = rng.standard_normal((v, cin, 3, 3)).astype(np.float32) * np.float32(np.sqrt(2.0 / (cin * 9)))
        b = (rng.standard_normal(v) * 0.01).astype(np.float32)
        state[f"features.{index}.weight"], state[f"features.{index}.bias"] = w, b
        index += 2
        cin = v
    return state


def _nhwc(x):
    return np.transpose(x, (0, 2, 3, 1))


def _loss_and_grad(loss, x, y):
    x = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(x)
        value = loss(x, tf.constant(y))
    return float(value), tape.gradient(value, x).numpy()


def _relative_l2(a, b):
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


@pytest.fixture(scope="module")
def fixture():
    with open(os.path.join(FIXTURE, "meta.json")) as f:
        meta = json.load(f)
    return meta, dict(np.load(os.path.join(FIXTURE, "vgg_loss.npz")))


def test_reproduces_the_official_loss_features_and_gradient(fixture):
    meta, data = fixture
    state = torchvision_state_dict(meta["seed"])
    state["classifier.0.weight"] = np.zeros((4, 4), np.float32)  # ignored, as the issue asks
    loss = convert.vgg_loss_from_torchvision(state, weight=1.0)
    x, y = _nhwc(data["x_nchw"]), _nhwc(data["y_nchw"])
    for name, features in zip(VGG_LAYERS, loss.features(loss._prepare(x))):
        expected = _nhwc(data[f"relu{VGG_LAYERS.index(name) + 1}_1_nchw"])
        np.testing.assert_allclose(features.numpy(), expected, rtol=0, atol=1e-4 * np.abs(expected).max())
    value, grad = _loss_and_grad(loss, x, y)
    assert value == pytest.approx(float(data["loss"]), rel=LOSS_RTOL)
    assert _relative_l2(grad, _nhwc(data["grad_x_nchw"])) < GRAD_RTOL
    # The weight multiplies: the trainer's lambda_vgg (10).
    assert float(convert.vgg_loss_from_torchvision(state, weight=10.0)(x, y)) == pytest.approx(
        10 * value, rel=1e-6
    )


def _torch_official_loss(torch, state, x_nchw, y_nchw):
    """The official VGGLoss in PyTorch: relu1_1..relu5_1 of torchvision's VGG19, L1 means, weights 1/32..1."""
    fn = torch.nn.functional

    def features(x):
        outputs, index = [], 0
        for v in CONFIG_E[:17]:  # up to relu5_1 (features.29)
            if v == "M":
                x = fn.max_pool2d(x, 2, 2)
                index += 1
                continue
            x = fn.relu(
                fn.conv2d(
                    x,
                    torch.from_numpy(state[f"features.{index}.weight"]),
                    torch.from_numpy(state[f"features.{index}.bias"]),
                    padding=1,
                )
            )
            if index in (0, 5, 10, 19, 28):
                outputs.append(x)
            index += 2
        return outputs

    x = torch.from_numpy(x_nchw).requires_grad_(True)
    y = torch.from_numpy(y_nchw)
    weights = [1.0 / 32, 1.0 / 16, 1.0 / 8, 1.0 / 4, 1.0]
    total = sum(w * fn.l1_loss(a, b.detach()) for w, a, b in zip(weights, features(x), features(y)))
    total.backward()
    return float(total.detach()), x.grad.numpy()


@pytest.mark.torch
def test_second_seed_and_size_against_pytorch():
    torch = require_torch()
    state = torchvision_state_dict(seed=1)
    rng = np.random.default_rng(7)
    x = rng.uniform(-1, 1, (1, 3, 48, 36)).astype(np.float32)
    y = rng.uniform(-1, 1, (1, 3, 48, 36)).astype(np.float32)
    expected, expected_grad = _torch_official_loss(torch, state, x, y)
    value, grad = _loss_and_grad(convert.vgg_loss_from_torchvision(state), _nhwc(x), _nhwc(y))
    assert value == pytest.approx(expected, rel=LOSS_RTOL)
    assert _relative_l2(grad, _nhwc(expected_grad)) < GRAD_RTOL


def test_files_pick_the_official_input_convention(tmp_path):
    state = torchvision_state_dict(seed=0)
    path = tmp_path / "vgg19.npz"
    np.savez(path, **state)
    loss = VGGPerceptualLoss(str(path), weight=1.0)
    assert loss.input_preprocessing == "none"
    x = np.random.default_rng(0).uniform(-1, 1, (1, 32, 32, 3)).astype(np.float32)
    assert float(loss(x, -x)) == pytest.approx(
        float(convert.vgg_loss_from_torchvision(state)(x, -x)), rel=1e-6
    )
    with pytest.raises(ValueError, match="feeds them \\[-1, 1\\] RGB"):
        VGGPerceptualLoss(str(path), input_preprocessing="caffe")
    del state["features.28.weight"]
    with pytest.raises(StateDictMismatch, match="missing features.28.weight \\(for block5_conv1\\)"):
        convert.vgg_loss_from_torchvision(state)


def _fixture_trainer(vgg_loss):
    """A GANTrainer holding the official fixture's converted G, D and E (tests/fixtures/official-small)."""
    g = convert.generator_from_official(generator_state("vae"), fixture_config("A_G_D_vae"))
    d = convert.discriminator_from_official(official_fixture("state_D"), fixture_config("A_G_D_vae"))
    e = convert.encoder_from_official(official_fixture("state_E"), fixture_config("E_crop256"))
    strategy = tf.distribute.get_strategy()
    g_opt, d_opt = make_optimizers(2e-4, True, 1, 1, 1)
    return GANTrainer(
        g, d, e, g_opt, d_opt, strategy, global_batch_size=2, label_channels=8, use_instance_map=True,
        lambda_feat=10.0, lambda_kld=0.05, vgg_loss=vgg_loss,
    )  # fmt: skip


def test_training_step_losses_match_the_official_step_with_vgg(fixture):
    """The trainer's G and D step losses from the official fixture state, VGG on (lambda_vgg 10).

    The official loss terms (tests/fixtures/official-small, README) were computed with every
    network in inference mode and a fixed reparameterisation noise, `--no_vgg_loss`: the step's
    loss functions run so here, with that noise. The VGG term is checked against the official
    VGGLoss on the official fake and real images (PyTorch, the computation checked against
    tests/fixtures/official-vgg above). Then one real G and D step runs with the VGG loss.
    """
    torch = require_torch()
    meta, _ = fixture
    state = torchvision_state_dict(meta["seed"])
    trainer = _fixture_trainer(convert.vgg_loss_from_torchvision(state, weight=10.0))
    inputs, out = official_fixture("inputs"), official_fixture("outputs_eval")
    eps = tf.constant(inputs["eps"])
    trainer._noise = lambda index, salt: eps  # the official fixture's noise, for both steps
    batch = {
        "label": tf.constant(nhwc(inputs["label"])),
        "instance": tf.constant(nhwc(inputs["instance"])),
        "image": tf.constant(nhwc(inputs["image"])),
        "index": tf.constant([0, 1]),
    }
    _, g_logs = trainer.generator_losses(batch, training=False)
    _, d_logs = trainer.discriminator_losses(batch, training=False)
    expected = fixture_config("losses_eval")
    got = {**g_logs, **d_logs}
    for ours, theirs in [("G_GAN", "G_GAN"), ("G_Feat", "G_GAN_Feat"), ("G_KLD", "G_KLD")]:
        assert float(got[ours]) == pytest.approx(expected[theirs], rel=1e-4), ours
    for name in ("D_Fake", "D_real"):
        assert float(got[name]) == pytest.approx(expected[name], rel=1e-4), name
    official_vgg, _ = _torch_official_loss(torch, state, out["loss_fake_image"], inputs["image"])
    assert float(got["G_VGG"]) == pytest.approx(10 * official_vgg, rel=LOSS_RTOL)

    before = [v.numpy() for v in trainer.generator.trainable_variables]
    logs = trainer.train_step(next(iter(tf.data.Dataset.from_tensors(batch))))
    assert logs.finite() and logs.values["G_VGG"] > 0
    after = trainer.generator.trainable_variables
    assert any(not np.array_equal(a, b.numpy()) for a, b in zip(before, after))


def test_training_run_logs_the_official_vgg_loss(tmp_path, monkeypatch):
    """`train.vgg_weights=<torchvision .pth>`: a run's logged G_VGG at step 1 is the official
    VGGLoss * lambda_vgg on that step's fake and real images, recomputed here in PyTorch."""
    torch = require_torch()
    state = torchvision_state_dict(seed=3)
    pth = tmp_path / "vgg19-dcbb9e9d.pth"
    torch.save({k: torch.from_numpy(v) for k, v in state.items()}, pth)
    monkeypatch.setenv("SPADE_TF_CACHE", str(tmp_path / "cache"))
    config = get_config("small")
    config.train.vgg_weights = str(pth)
    config.train.lambda_vgg = 10.0
    config.train.max_steps = 1
    config.train.log_every = 1
    config.train.image_every = 0
    config.train.deterministic = True
    config.eval.oracle = False
    config.eval.gallery_size = 2
    # The generator as the run starts: restored below to recompute step 1's fake.
    initial = {}
    real_from_config = train_lib.trainer_from_config

    def spy(*args, **kwargs):
        trainer = real_from_config(*args, **kwargs)
        initial["weights"] = [v.numpy() for v in trainer.generator.weights]
        return trainer

    monkeypatch.setattr(train_lib, "trainer_from_config", spy)
    result = train_lib.train(config, str(tmp_path / "run"), out=lambda *a: None)
    logged = _tensorboard_scalar(tmp_path / "run" / "tensorboard", "G_VGG", step=1)

    trainer = result["trainer"]
    trainer.generator.set_weights(initial["weights"])
    setup = data_setup.prepare_data(config, run_check=False)
    ds = data_setup.make_dataset(
        config, setup, setup.train.examples, training=True, batch_size=config.train.batch_size
    )
    batch = next(iter(ds))
    fake = trainer.generator(trainer.semantics(batch), None, training=True, one_hot=True).numpy()
    real = batch["image"].numpy()
    nchw = (0, 3, 1, 2)
    official, _ = _torch_official_loss(torch, state, fake.transpose(nchw).copy(), real.transpose(nchw).copy())
    assert logged == pytest.approx(10 * official, rel=LOSS_RTOL)


def _tensorboard_scalar(folder, tag, step):
    for name in sorted(os.listdir(folder)):
        for event in tf.compat.v1.train.summary_iterator(os.path.join(folder, name)):
            for value in event.summary.value:
                if value.tag == tag and event.step == step:
                    return float(tf.make_ndarray(value.tensor))
    raise AssertionError(f"no {tag} at step {step} in {folder}")
