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

from spade_tf.models.losses import VGG_LAYERS, VGGPerceptualLoss
from spade_tf.models.state_dict import StateDictMismatch
from spade_tf.tools import convert
from tests.test_case import require_torch

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
