"""Ops and normalisation layers against NumPy re-statements of the PyTorch semantics."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from spade_tf.models import conv as conv_module
from spade_tf.models import ops
from spade_tf.models.normalization import SPADE, Conv2D, InstanceNorm, ParamFreeBatchNorm
from tests.test_case import assert_config_round_trip


def _torch_nearest_np(x, out_h, out_w):
    in_h, in_w = x.shape[1:3]

    def idx(n_in, n_out):
        scale = np.float32(n_in) / np.float32(n_out)
        i = np.floor((np.arange(n_out, dtype=np.float32) * scale).astype(np.float32))
        return np.minimum(i.astype(np.int64), n_in - 1)

    return x[:, idx(in_h, out_h)][:, :, idx(in_w, out_w)]


@pytest.mark.parametrize(
    "in_hw,out_hw",
    [
        ((8, 8), (4, 4)),
        ((8, 8), (16, 16)),
        ((6, 10), (4, 7)),
        ((3, 5), (7, 11)),
        ((2, 3), (82, 123)),
        ((64, 128), (2, 4)),
        ((5, 5), (5, 5)),
    ],
)
def test_nearest_resize_matches_torch_floor_rule(in_hw, out_hw):
    x = np.random.default_rng(0).normal(size=(2, *in_hw, 3)).astype(np.float32)
    expected = _torch_nearest_np(x, *out_hw)
    np.testing.assert_array_equal(ops.nearest_resize(tf.constant(x), out_hw).numpy(), expected)
    # The same with unknown static shapes (the gather path inside a graph).
    fn = tf.function(
        lambda t: ops.nearest_resize(t, out_hw), input_signature=[tf.TensorSpec([None, None, None, 3])]
    )
    np.testing.assert_array_equal(fn(tf.constant(x)).numpy(), expected)


def test_nearest_resize_differs_from_tf_half_pixel():
    # Guards the reason ops.nearest_resize exists: TF's own nearest picks other pixels.
    x = np.arange(36, dtype=np.float32).reshape(1, 6, 6, 1)
    ours = ops.nearest_resize(tf.constant(x), (4, 4)).numpy()
    tfs = tf.image.resize(x, (4, 4), method="nearest").numpy()
    assert not np.array_equal(ours, tfs)


@pytest.mark.parametrize("dtype", ["float32", "float64", "bfloat16"])
@pytest.mark.parametrize("jit", [False, True])
def test_upsample_nearest_2x_and_its_gradient(dtype, jit):
    # nn.Upsample(scale_factor=2) repeats each pixel into a 2x2 block; its gradient sums each block. The
    # values are small integers, exact in bfloat16, so every dtype is compared bit for bit.
    rng = np.random.default_rng(3)
    x = tf.constant(rng.integers(-8, 8, (2, 3, 5, 4)), dtype)
    dy = tf.constant(rng.integers(-8, 8, (2, 6, 10, 4)), dtype)

    @tf.function(jit_compile=jit, input_signature=[tf.TensorSpec([None, None, None, 4], dtype)] * 2)
    def fn(x, dy):  # unknown static shapes, as in an exported graph
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = ops.upsample_nearest_2x(x)
        return y, tape.gradient(y, x, output_gradients=dy)

    y, dx = fn(x, dy)
    assert y.dtype == dx.dtype == tf.as_dtype(dtype)
    xn, dyn = x.numpy().astype(np.float64), dy.numpy().astype(np.float64)
    np.testing.assert_array_equal(y.numpy().astype(np.float64), xn.repeat(2, 1).repeat(2, 2))
    blocks = dyn.reshape(2, 3, 2, 5, 2, 4).sum(axis=(2, 4))
    np.testing.assert_array_equal(dx.numpy().astype(np.float64), blocks)


def test_avg_pool_excludes_padding():
    x = np.random.default_rng(1).normal(size=(2, 7, 6, 3)).astype(np.float32)
    xp = np.pad(x, [(0, 0), (1, 1), (1, 1), (0, 0)])
    mask = np.pad(np.ones_like(x), [(0, 0), (1, 1), (1, 1), (0, 0)])
    out_h, out_w = (7 + 2 - 3) // 2 + 1, (6 + 2 - 3) // 2 + 1
    expected = np.zeros((2, out_h, out_w, 3), np.float32)
    for i in range(out_h):
        for j in range(out_w):
            win = (slice(None), slice(2 * i, 2 * i + 3), slice(2 * j, 2 * j + 3))
            expected[:, i, j] = xp[win].sum((1, 2)) / mask[win].sum((1, 2))
    np.testing.assert_allclose(ops.avg_pool_3x3_s2_exclude_pad(tf.constant(x)).numpy(), expected, atol=1e-6)


def _torch_w_mat(conv):
    k = conv.kernel.numpy()  # HWIO
    return np.transpose(k, (3, 2, 0, 1)).reshape(conv.filters, -1)  # (out, in*kh*kw)


def _torch_v(conv):
    k, cin = conv.kernel_size, conv.input_filters
    return conv.v.numpy().reshape(k, k, cin).transpose(2, 0, 1).reshape(-1)


def test_spectral_norm_power_iteration_and_eval():
    # Seeded: unseeded, a CI run drew weights whose float32 sigma (a sum of 36 products with cancellation)
    # differed from numpy's by 1.2e-6 relative, over the 1e-6 this compared at.
    keras.utils.set_random_seed(0)
    conv = Conv2D(5, 3, 4, padding=1, use_spectral_norm=True)
    x = tf.random.normal([2, 6, 6, 4])
    conv.build()
    w = _torch_w_mat(conv)
    u0, v0 = conv.u.numpy(), _torch_v(conv)

    # Eval: sigma from the stored u, v; nothing is updated. float32 dot products of 36 and 5 terms against
    # numpy's: a few ulps (6e-8 each), so 1e-5 relative; a wrong u, v or layout is off by far more.
    sigma = u0 @ (w @ v0)
    np.testing.assert_allclose(conv.normalized_kernel(False).numpy(), conv.kernel.numpy() / sigma, rtol=1e-5)
    conv(x, training=False)
    np.testing.assert_array_equal(conv.u.numpy(), u0)

    # Train: one power iteration written back, as torch.nn.utils.spectral_norm does.
    v1 = w.T @ u0
    v1 /= max(np.linalg.norm(v1), 1e-12)
    u1 = w @ v1
    u1 /= max(np.linalg.norm(u1), 1e-12)
    conv(x, training=True)
    np.testing.assert_allclose(conv.u.numpy(), u1, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(_torch_v(conv), v1, rtol=1e-5, atol=1e-7)


def test_spectral_norm_gradient_flows_through_sigma():
    # With u, v fixed, d/dW of f(W / (u.Wv)) has a term from sigma; compare with
    # central finite differences in float64. Seeded: with unseeded weights about 2% of draws had a
    # sigma so small that the gradients reached ~4e8, where a 1e-6 difference step is off by 3e-5.
    keras.utils.set_random_seed(0)
    conv = Conv2D(2, 2, 1, use_spectral_norm=True, use_bias=False, dtype="float64")
    conv.build()
    x = tf.constant(np.random.default_rng(2).normal(size=(1, 3, 3, 1)))
    target = tf.constant(np.random.default_rng(3).normal(size=(1, 2, 2, 2)))

    def loss():
        return tf.reduce_sum(tf.square(conv(x, training=False) - target))

    with tf.GradientTape() as tape:
        value = loss()
    grad = tape.gradient(value, conv.kernel).numpy()
    k0 = conv.kernel.numpy()
    numeric = np.zeros_like(k0)
    for idx in np.ndindex(k0.shape):
        for sign in (1, -1):
            k = k0.copy()
            k[idx] += sign * 1e-6
            conv.kernel.assign(k)
            numeric[idx] += sign * float(loss()) / 2e-6
    conv.kernel.assign(k0)
    np.testing.assert_allclose(grad, numeric, rtol=1e-5, atol=1e-8)
    # Without the sigma term the gradient would be this; it must differ.
    sigma = float(conv.u.numpy() @ (_torch_w_mat(conv) @ _torch_v(conv)))
    kernel = tf.constant(k0)
    with tf.GradientTape() as tape:
        tape.watch(kernel)
        y = tf.nn.conv2d(x, kernel / sigma, 1, "VALID")
        v2 = tf.reduce_sum(tf.square(y - target))
    assert not np.allclose(tape.gradient(v2, kernel).numpy(), grad, rtol=1e-3)


def test_conv_padding_and_stride_like_torch():
    conv = Conv2D(3, 4, 2, strides=2, padding=2)
    assert conv(tf.zeros([1, 64, 64, 2])).shape == (1, 33, 33, 3)
    assert Conv2D(3, 4, 2, strides=1, padding=2)(tf.zeros([1, 9, 9, 2])).shape == (1, 10, 10, 3)


def test_batch_norm_unbiased_running_var_and_eval():
    bn = ParamFreeBatchNorm(3, synchronized=True)
    x = np.random.default_rng(4).normal(2.0, 3.0, size=(2, 5, 4, 3)).astype(np.float32)
    y = bn(tf.constant(x), training=True).numpy()
    mean, var = x.mean((0, 1, 2)), x.var((0, 1, 2))
    np.testing.assert_allclose(y, (x - mean) / np.sqrt(var + 1e-5), atol=1e-5)
    n = 2 * 5 * 4
    np.testing.assert_allclose(bn.running_mean.numpy(), 0.1 * mean, rtol=1e-5)
    np.testing.assert_allclose(bn.running_var.numpy(), 0.9 + 0.1 * var * n / (n - 1), rtol=1e-5)
    y_eval = bn(tf.constant(x), training=False).numpy()
    rm, rv = bn.running_mean.numpy(), bn.running_var.numpy()
    np.testing.assert_allclose(y_eval, (x - rm) / np.sqrt(rv + 1e-5), atol=1e-5)


def test_instance_norm():
    x = np.random.default_rng(5).normal(1.0, 2.0, size=(2, 6, 5, 3)).astype(np.float32)
    y = InstanceNorm()(tf.constant(x)).numpy()
    mean, var = x.mean((1, 2), keepdims=True), x.var((1, 2), keepdims=True)
    np.testing.assert_allclose(y, (x - mean) / np.sqrt(var + 1e-5), atol=1e-5)


@pytest.mark.parametrize("norm", ["sync_batch", "batch", "instance"])
def test_spade_formula(norm):
    layer = SPADE(4, 3, param_free_norm=norm, hidden_filters=8)
    x = tf.random.normal([2, 4, 4, 4])
    seg = tf.one_hot(tf.random.uniform([2, 8, 8], 0, 3, tf.int32), 3)
    out = layer(x, seg, training=False).numpy()
    seg_small = ops.nearest_resize(seg, (4, 4))
    actv = tf.nn.relu(layer.mlp_shared(seg_small))
    normed = layer.param_free_norm(x, training=False)
    expected = normed * (1 + layer.mlp_gamma(actv)) + layer.mlp_beta(actv)
    np.testing.assert_allclose(out, expected.numpy(), atol=1e-6)


@pytest.mark.parametrize(
    "kernel_size,padding,strides,spectral",
    [
        (3, 1, 1, False),
        (3, 1, 1, True),
        (1, 0, 1, False),
        (5, 2, 1, True),
        (4, 2, 2, True),
        (4, 2, 2, False),
        (4, 2, 1, False),
        (4, 2, 1, True),
        (4, 0, 2, False),
        (3, 1, 2, True),
    ],
)
def test_forward_conv_gradients_equal_tf_gradients(monkeypatch, kernel_size, padding, strides, spectral):
    # Stride-1 convs compute their input and kernel gradients as forward convs (faster on CPU), stride-2
    # convs with even kernels run as stride-1 convs on the space-to-depth input and do the same; the
    # encoder's 3x3 stride-2 convs keep TF's Conv2DBackprop* kernels. Outputs and gradients must equal
    # TF's own: float64, so any wrong flip, transpose, padding or channel order shows far above rounding
    # (~1e-14 here; allowed 1e-10). The input is 9x8: at stride 2 one padded side is odd (an extra zero
    # row whose output row is cut off) and the other even.
    layer = Conv2D(
        5, kernel_size, 3, strides=strides, padding=padding, use_spectral_norm=spectral, dtype="float64"
    )
    x = tf.constant(np.random.default_rng(0).normal(size=(2, 9, 8, 3)))
    layer(x)

    def gradients(choice):
        monkeypatch.setenv(conv_module.CONV_GRADIENTS_ENV, choice)

        @tf.function
        def grads(x):
            with tf.GradientTape() as tape:
                tape.watch(x)
                y = layer(x, training=False)
                loss = tf.reduce_sum(y * tf.cos(y))
            return [y, *tape.gradient(loss, [x, layer.kernel])]

        graph = grads.get_concrete_function(x).graph
        types = {op.type for op in graph.get_operations()}
        return [g.numpy() for g in grads(x)], types & {"Conv2DBackpropInput", "Conv2DBackpropFilter"}

    (y, dx, dk), backprop_ops = gradients("forward")
    (y_tf, dx_tf, dk_tf), tf_ops = gradients("tf")
    assert tf_ops == {"Conv2DBackpropInput", "Conv2DBackpropFilter"}
    forward = strides == 1 or kernel_size % 2 == 0
    assert backprop_ops == (set() if forward else tf_ops)
    assert y.shape == y_tf.shape == layer.compute_output_shape(x.shape)
    np.testing.assert_allclose(y, y_tf, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(dx, dx_tf, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(dk, dk_tf, rtol=1e-10, atol=1e-10)


def test_conv_gradients_choice(monkeypatch):
    monkeypatch.delenv(conv_module.CONV_GRADIENTS_ENV, raising=False)
    # The suite runs on CPU, where auto picks the forward convs.
    assert conv_module.conv_gradients() == ("tf" if tf.config.list_physical_devices("GPU") else "forward")
    monkeypatch.setenv(conv_module.CONV_GRADIENTS_ENV, "tf")
    assert conv_module.conv_gradients() == "tf"
    monkeypatch.setenv(conv_module.CONV_GRADIENTS_ENV, "cudnn")
    with pytest.raises(ValueError, match="SPADE_TF_CONV_GRADIENTS='cudnn': choose one of auto, forward, tf"):
        conv_module.conv_gradients()


def test_unknown_norm_lists_choices():
    with pytest.raises(ValueError, match="'sync_batch', 'batch', 'instance'"):
        SPADE(4, 3, param_free_norm="syncbatch")


def test_layers_serialize():
    for layer in [
        Conv2D(4, 3, 2, strides=2, padding=1, use_spectral_norm=True),
        ParamFreeBatchNorm(4, synchronized=False),
        InstanceNorm(),
        SPADE(4, 3, param_free_norm="instance", kernel_size=5, hidden_filters=16),
    ]:
        clone = assert_config_round_trip(layer)
        restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
        assert type(restored) is type(layer) and restored.get_config() == clone.get_config()


def test_initialisation_is_official_xavier_gain_002():
    conv = Conv2D(256, 3, 256)
    conv.build()
    fan_in = fan_out = 9 * 256
    expected_std = 0.02 * np.sqrt(2.0 / (fan_in + fan_out))
    assert abs(conv.kernel.numpy().std() / expected_std - 1) < 0.02
