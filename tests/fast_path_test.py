"""SPADE's fast path (shared conv as gathered kernel rows, codes shared per resolution) equals the plain one.

Each comparison builds the same weights twice, `fast=False` (the reference computation: every SPADE
resizes the float map and convolves it) and `fast=True`, and compares outputs and gradients.

Tolerances. float32 outputs, 1e-5 absolute on images in [-1, 1] (the issue's bound): the paths add the
same products in other orders (a conv's blocked sums vs nine gathered rows, each the sum of two kernel
rows where the last channel is set), so single ops differ by a few ulps; training-mode batch norm over
the tiny latent grid amplifies that to a measured ~2e-6, while a wrong row, tap or padding moves outputs
by 1e-2 or more. Generator gradients are compared in float64: in float32 a difference of one ulp
before a (leaky) ReLU flips the kink of any activation within 1e-6 of 0, and in a 14-layer generator
some activation always is, which moves some weight gradients by ~1% on either path (the plain path
differs from its own float64 gradients the same way). In float64 the paths agree to ~1e-13 of the
gradient scale, so 1e-9 tests that the maths is the same. The gradient scale of a weight is its
largest |gradient|, but at least 1e-3 of the model's largest: the biases of convs followed by batch
norm have an exact gradient of 0 in training mode and carry only rounding noise.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

from spade_tf.data.semantics import make_semantics, semantic_channels
from spade_tf.models.blocks import SPADEResBlock
from spade_tf.models.generator import SPADEGenerator
from spade_tf.models.normalization import SPADE, ParamFreeBatchNorm, encode_semantics, gather_table
from tests.test_case import assert_config_round_trip, two_cpu_strategy

TOL = 1e-5
TOL_FLOAT64 = 1e-9


def _inputs(num_classes=4, dontcare=False, instances=True, batch=2, size=64, seed=0, dtype="float32"):
    """Semantics from random blob labels and z; one id past the last label gives all-zero pixels."""
    rng = np.random.default_rng(seed)
    ids = num_classes + int(dontcare)
    coarse = rng.integers(0, ids + 1, (batch, size // 8, size // 8))
    labels = np.repeat(np.repeat(coarse, 8, 1), 8, 2)
    noise = rng.random(labels.shape) < 0.2
    labels = np.where(noise, rng.integers(0, ids + 1, labels.shape), labels).astype(np.int32)
    inst = rng.integers(0, 3, labels.shape).astype(np.int32) if instances else None
    semantics = make_semantics(labels, ids, inst, dtype=dtype)
    z = tf.constant(rng.normal(size=(batch, 8)).astype(dtype))
    return semantics, z


def _generators(
    num_classes=4,
    dontcare=False,
    instances=True,
    use_vae=False,
    size=64,
    dtype="float32",
    padding_mode="zeros",
):
    """(plain, fast) generators with equal weights whose labels visibly change the output.

    Modulation kernels are scaled up (the 0.02-gain init makes gamma, beta ~0) and batch-norm running
    statistics are set by one training call with momentum 1, so that eval outputs are not saturated
    by tanh (the initial mean 0, variance 1 are far from the activations').
    """
    keras.utils.set_random_seed(1)
    kw = dict(
        semantic_channels=semantic_channels(num_classes, dontcare, instances),
        base_filters=4,
        crop_size=size,
        use_vae=use_vae,
        latent_dim=8,
        dtype=dtype,
        padding_mode=padding_mode,
    )
    # The fast generator gathers with XLA (the other implementations: test_export_gather_implementations...).
    plain = SPADEGenerator(spade=dict(hidden_filters=8, fast=False), **kw)
    fast = SPADEGenerator(spade=dict(hidden_filters=8, fast=True, gather_impl="xla"), **kw)
    plain.build()
    fast.build()
    weights = []
    for v in plain.weights:
        w = v.numpy()
        if w.ndim == 4 and "mlp_" in v.path:
            w = w * 5
        elif w.ndim == 4 and "conv_img" in v.path:
            w = w * 10
        weights.append(w)
    plain.set_weights(weights)
    norms = [la for la in plain._flatten_layers() if isinstance(la, ParamFreeBatchNorm)]
    for layer in norms:
        layer.momentum = 1.0
    semantics, z = _inputs(num_classes, dontcare, instances, size=size, seed=9, dtype=dtype)
    plain(semantics, z, training=True)
    for layer in norms:
        layer.momentum = 0.1
    fast.set_weights(plain.get_weights())
    return plain, fast


@pytest.fixture(scope="module")
def pair():
    return _generators()


def _loss(y):
    # Weights every pixel differently so that gradients see where each value went.
    w = tf.sin(tf.reshape(tf.range(tf.size(y), dtype=y.dtype), tf.shape(y)))
    return tf.reduce_sum(y * w)


def _grads(model, call):
    with tf.GradientTape() as tape:
        loss = _loss(call())
    return [t.numpy() for t in tape.gradient(loss, model.trainable_weights)]


def _assert_grads_close(got, expected, names, tol):
    scale = max(np.abs(e).max() for e in expected)
    assert scale > 0
    for g, e, name in zip(got, expected, names):
        own = max(np.abs(e).max(), 1e-3 * scale)
        np.testing.assert_allclose(g, e, atol=tol * own, rtol=0, err_msg=name)


# With "reflect" padding the fast path's codes are mirrored instead of read as "no label" at the borders.
@pytest.mark.parametrize(
    "use_vae,dontcare,instances,padding_mode",
    [
        (False, False, True, "zeros"),
        (False, True, False, "zeros"),
        (True, True, True, "zeros"),
        (False, False, True, "reflect"),
        (True, True, True, "reflect"),
    ],
)
def test_fast_generator_outputs_equal_plain(use_vae, dontcare, instances, padding_mode):
    plain, fast = _generators(
        dontcare=dontcare, instances=instances, use_vae=use_vae, padding_mode=padding_mode
    )
    semantics, z = _inputs(dontcare=dontcare, instances=instances)
    z = z if use_vae else None
    for training in (False, True):
        y_plain = plain(semantics, z, training=training).numpy()
        y_fast = fast(semantics, z, training=training).numpy()
        # Not saturated by tanh, so that the comparison means something.
        assert np.mean(np.abs(y_plain) > 0.99) < 0.01
        np.testing.assert_allclose(y_fast, y_plain, atol=TOL, rtol=0)
    # The control: other labels change the output far beyond the tolerance.
    other, _ = _inputs(dontcare=dontcare, instances=instances, seed=1)
    assert np.abs(fast(other, z, training=True).numpy() - y_fast).max() > 1e-2


# "reflect" at 64 pixels: at 32 this random model's inference output is all tanh-saturated (gradient 0).
@pytest.mark.parametrize(
    "use_vae,dontcare,instances,padding_mode,size",
    [(True, False, True, "zeros", 32), (False, True, False, "zeros", 32), (True, False, True, "reflect", 64)],
)
def test_fast_generator_gradients_equal_plain(use_vae, dontcare, instances, padding_mode, size):
    plain, fast = _generators(
        dontcare=dontcare,
        instances=instances,
        use_vae=use_vae,
        size=size,
        dtype="float64",
        padding_mode=padding_mode,
    )
    semantics, z = _inputs(dontcare=dontcare, instances=instances, size=size, dtype="float64")
    z = z if use_vae else None
    names = [v.path for v in plain.trainable_weights]
    for training in (False, True):
        expected = _grads(plain, lambda t=training: plain(semantics, z, training=t))
        got = _grads(fast, lambda t=training: fast(semantics, z, training=t))
        _assert_grads_close(got, expected, names, TOL_FLOAT64)


@pytest.mark.parametrize("impl", ["segment_sum", "gather_sum"])
def test_export_gather_implementations_equal_plain(impl):
    # The SavedModel (segment_sum) and TFLite/ONNX (gather_sum) graphs: the same sums without XLA.
    plain, fast = _generators(dontcare=True, use_vae=True, size=32, dtype="float64")
    other = SPADEGenerator.from_config({**fast.get_config(), "spade": {**fast.spade, "gather_impl": impl}})
    other.build()
    other.set_weights(fast.get_weights())
    assert all(n.gather_impl == impl for b in other.blocks() for n in b._norms())
    semantics, z = _inputs(dontcare=True, size=32, dtype="float64")
    names = [v.path for v in plain.trainable_weights]
    for s in (semantics, semantics * 0.5):  # the gather path and the fallback branch
        for training in (False, True):
            expected = plain(s, z, training=training).numpy()
            np.testing.assert_allclose(other(s, z, training=training).numpy(), expected, atol=TOL_FLOAT64)
    # Inside XLA (jit_compile, train.xla) the gather is XLA's whatever the choice.
    jit = tf.function(lambda s: other(s, z, training=True), jit_compile=True)
    np.testing.assert_allclose(
        jit(semantics).numpy(), plain(semantics, z, training=True).numpy(), atol=TOL_FLOAT64
    )
    # TF's own gradients of the gather (training configs use segment_sum).
    _assert_grads_close(
        _grads(other, lambda: other(semantics, z, training=True)),
        _grads(plain, lambda: plain(semantics, z, training=True)),
        names,
        TOL_FLOAT64,
    )
    with pytest.raises(ValueError, match="gather_impl='tpu' is not supported; choose one of 'xla', "):
        SPADE(4, 3, gather_impl="tpu")


def test_not_one_hot_falls_back_to_the_conv(pair):
    plain, fast = pair
    semantics, _ = _inputs()
    first_label = tf.one_hot(tf.zeros(semantics.shape[:3], tf.int32), semantics.shape[-1])
    for name, soft in [
        ("soft", semantics * 0.7),
        ("two labels", tf.maximum(semantics, first_label)),
        ("edge 0.5", tf.concat([semantics[..., :-1], semantics[..., -1:] * 0.5], -1)),
    ]:
        assert not bool(encode_semantics(soft)[1]), name
        for training in (False, True):
            np.testing.assert_allclose(
                fast(soft, training=training).numpy(),
                plain(soft, training=training).numpy(),
                atol=TOL,
                rtol=0,
                err_msg=name,
            )


def _if_ops(fn, *args):
    graph = fn.get_concrete_function(*args).graph.as_graph_def()
    nodes = [*graph.node, *(n for f in graph.library.function for n in f.node_def)]
    return [n.name for n in nodes if n.op in ("If", "StatelessIf")]


def test_one_hot_maps_skip_the_check_and_the_fallback(pair):
    # `one_hot=True` (maps made from ids, as training and inference make them) gives the same images
    # with no tf.cond in the graph; without it the graph keeps the fallback for soft maps, which it
    # takes when a map is soft. Values in eval mode: a training call advances the spectral norms' power
    # iterations, so repeated training calls would drift from the plain model's single one.
    plain, fast = pair
    semantics, _ = _inputs()
    checked = tf.function(lambda s: fast(s, training=False))
    trusted = tf.function(lambda s: fast(s, training=False, one_hot=True))
    for s, graph in [(semantics, trusted), (semantics, checked), (semantics * 0.7, checked)]:
        np.testing.assert_allclose(graph(s).numpy(), plain(s).numpy(), atol=TOL, rtol=0)
    for training in (False, True):
        assert not _if_ops(tf.function(lambda s, t=training: fast(s, training=t, one_hot=True)), semantics)
        assert _if_ops(tf.function(lambda s, t=training: fast(s, training=t)), semantics)
    codes, exact = encode_semantics(semantics, one_hot=True)
    assert tf.get_static_value(exact) is not None and bool(exact)
    np.testing.assert_array_equal(codes.numpy(), encode_semantics(semantics)[0].numpy())


def test_encode_semantics_codes_and_exactness():
    # 3 labels + edge (C = 4): code = label + 4 * edge, label 3 = none.
    labels = np.array([[[0, 1], [2, 3]]], np.int32)  # 3 is out of range: an all-zero pixel
    edges = np.array([[[0, 1], [1, 0]]], np.float32)[..., None]
    semantics = tf.concat([tf.one_hot(labels, 3), edges], -1)
    codes, exact = encode_semantics(semantics)
    np.testing.assert_array_equal(codes.numpy()[0, ..., 0], [[0, 5], [6, 3]])
    assert bool(exact)
    assert not bool(encode_semantics(semantics * 0.5)[1])
    two_labels = tf.concat([tf.ones([1, 2, 2, 2]), tf.zeros([1, 2, 2, 2])], -1)
    assert not bool(encode_semantics(two_labels)[1])
    assert not bool(encode_semantics(semantics + 1e-30)[1])
    # A single channel is all "bit".
    codes, exact = encode_semantics(tf.constant([[[[0.0], [1.0]]]]))
    np.testing.assert_array_equal(codes.numpy().ravel(), [0, 1])
    assert bool(exact)


def test_gather_table_rows():
    kernel = np.random.default_rng(2).normal(size=(3, 3, 4, 5)).astype(np.float32)
    rows = kernel.reshape(9, 4, 5)
    # Slices outside XLA, a product with a 0/1 selection matrix inside: both bit for bit the rows.
    for jit in (False, True):
        table = tf.function(gather_table, jit_compile=jit)(tf.constant(kernel)).numpy()
        table = table.reshape(9, 2, 4, 5)  # tap, bit, label, filter
        np.testing.assert_array_equal(table[:, 0, :3], rows[:, :3])
        np.testing.assert_array_equal(table[:, 0, 3], 0)  # no label, bit 0: the padding row
        np.testing.assert_array_equal(table[:, 1, :3], rows[:, :3] + rows[:, 3:])
        np.testing.assert_array_equal(table[:, 1, 3], rows[:, 3])


def _layer_pair(make, scale=20.0):
    layers = [make(False), make(True)]
    for layer in layers:
        layer.build()
    layers[0].set_weights([w * scale if w.ndim == 4 else w for w in layers[0].get_weights()])
    layers[1].set_weights(layers[0].get_weights())
    return layers


@pytest.mark.parametrize(
    "kernel_size,norm,padding_mode",
    [(3, "sync_batch", "zeros"), (5, "instance", "zeros"), (1, "batch", "zeros"), (5, "instance", "reflect")],
)
def test_spade_layer_and_block_equal_plain(kernel_size, norm, padding_mode):
    semantics, _ = _inputs(num_classes=5, size=32)
    x = tf.random.stateless_normal([2, 16, 16, 6], [1, 2])
    plain, fast = _layer_pair(
        lambda f: SPADE(
            6,
            6,
            param_free_norm=norm,
            kernel_size=kernel_size,
            hidden_filters=8,
            fast=f,
            padding_mode=padding_mode,
        )
    )
    for training in (False, True):
        expected = plain(x, semantics, training=training).numpy()
        np.testing.assert_allclose(
            fast(x, semantics, training=training).numpy(), expected, atol=TOL * np.abs(expected).max()
        )
        # One layer has few kinks near 0: float32 gradients compare directly (measured up to 1.2e-6).
        names = [v.path for v in plain.trainable_weights]
        _assert_grads_close(
            _grads(fast, lambda t=training: fast(x, semantics, training=t)),
            _grads(plain, lambda t=training: plain(x, semantics, training=t)),
            names,
            TOL,
        )
    plain, fast = _layer_pair(
        lambda f: SPADEResBlock(
            6,
            4,
            6,
            spade=dict(param_free_norm=norm, kernel_size=kernel_size, hidden_filters=8, fast=f),
            padding_mode=padding_mode,
        ),
        scale=1.0,
    )
    expected = plain(x, semantics, training=True).numpy()
    np.testing.assert_allclose(
        fast(x, semantics, training=True).numpy(), expected, atol=TOL * np.abs(expected).max()
    )


def _spades(model):
    return [n for b in model.blocks() for n in b._norms()]


def test_config_round_trip_and_old_configs():
    g = SPADEGenerator(
        semantic_channels=5, base_filters=4, crop_size=32, spade=dict(hidden_filters=8, fast=False)
    )
    assert all(n.fast is False and n.hidden_filters == 8 for n in _spades(assert_config_round_trip(g)))
    config = g.get_config()
    del config["spade"]["fast"]  # a model saved before the switch existed
    assert all(n.fast is True for n in _spades(SPADEGenerator.from_config(config)))
    layer = SPADE(4, 3, fast=False)
    assert assert_config_round_trip(layer).fast is False
    config = layer.get_config()
    del config["fast"]
    assert SPADE.from_config(config).fast is True
    block = SPADEResBlock(4, 8, 3, spade=dict(fast=False))
    assert all(not n.fast for n in assert_config_round_trip(block)._norms())
    assert all(not n.fast for n in block._norms())
    g = SPADEGenerator(
        semantic_channels=5, base_filters=4, crop_size=32, spade=dict(gather_impl="gather_sum")
    )
    assert all(n.gather_impl == "gather_sum" for n in _spades(assert_config_round_trip(g)))
    # Generators and blocks saved before `spade={...}` took SPADE's options one by one; without a
    # gather_impl (saved before that option existed) they gathered with XLA.
    old = {k: v for k, v in g.get_config().items() if k != "spade"}
    old.update(param_free_norm="instance", spade_kernel_size=5, spade_hidden_filters=6, fast=False)
    for n in _spades(SPADEGenerator.from_config(old)):
        assert (n.param_free_norm_kind, n.kernel_size, n.hidden_filters, n.fast, n.gather_impl) == (
            "instance",
            5,
            6,
            False,
            "xla",
        )
    old_block = {k: v for k, v in block.get_config().items() if k != "spade"}
    old_block.update(spade_hidden_filters=6, gather_impl="gather_sum")
    assert all(
        (n.hidden_filters, n.gather_impl) == (6, "gather_sum")
        for n in SPADEResBlock.from_config(old_block)._norms()
    )


def test_jit_compile_equals_plain():
    # A residual block in float64 (see the module docstring); the generator under XLA is compared
    # with the official outputs in models_test (it takes minutes to compile on 2 cores).
    x = tf.random.stateless_normal([2, 16, 16, 6], [5, 6], dtype="float64")
    semantics, _ = _inputs(num_classes=5, size=32, dtype="float64")
    plain, fast = _layer_pair(
        lambda f: SPADEResBlock(6, 4, 6, spade=dict(hidden_filters=8, fast=f), dtype="float64")
    )
    names = [v.path for v in plain.trainable_weights]

    def step(block, x, s):
        with tf.GradientTape() as tape:
            y = block(x, s, training=True)
            loss = _loss(y)
        return y, tape.gradient(loss, block.trainable_weights)

    jit_step = tf.function(lambda x, s: step(fast, x, s), jit_compile=True)
    for s in (semantics, semantics * 0.5):  # the gather path, and the fallback branch inside XLA
        y, grads = jit_step(x, s)
        y_plain, grads_plain = step(plain, x, s)
        np.testing.assert_allclose(y.numpy(), y_plain.numpy(), atol=TOL_FLOAT64 * np.abs(y_plain).max())
        _assert_grads_close([g.numpy() for g in grads], [g.numpy() for g in grads_plain], names, TOL_FLOAT64)


def test_mixed_bfloat16_close_to_plain(pair):
    """bfloat16 keeps 8 significant bits: a rounding moves a value by up to 2**-9 of itself.

    The fast path rounds at other places than the plain one (a kernel row plus the edge row rounded
    once, the nine rows summed in float32 where the plain conv rounds its output), so one SPADE's
    output differs from the plain path's by a few roundings of its magnitude: 4 * 2**-8 of the
    output scale bounds it (measured 1.0 * 2**-8). Through the generator's ~20 bfloat16 layers such
    differences compound as the bfloat16 error itself does: the bound is twice the plain path's own
    distance from float32 (measured ratio 0.6).
    """
    semantics, _ = _inputs(num_classes=5, size=32)
    x = tf.random.stateless_normal([2, 16, 16, 6], [3, 4])
    layers = _layer_pair(lambda f: SPADE(6, 6, hidden_filters=8, fast=f, dtype="mixed_bfloat16"))
    for training in (False, True):
        plain = layers[0](x, semantics, training=training).numpy().astype(np.float32)
        fast = layers[1](x, semantics, training=training).numpy().astype(np.float32)
        np.testing.assert_allclose(fast, plain, atol=4 * 2**-8 * np.abs(plain).max(), rtol=0)

    # Fresh copies: calls in training mode move batch-norm and spectral-norm state of the shared pair.
    weights = pair[0].get_weights()
    config = pair[0].get_config()
    ref, plain, fast = (
        SPADEGenerator(**{**config, "spade": {**config["spade"], "fast": f}, "dtype": d})
        for f, d in ((False, "float32"), (False, "mixed_bfloat16"), (True, "mixed_bfloat16"))
    )
    for g in (ref, plain, fast):
        g.build()
        g.set_weights(weights)
    s, _ = _inputs()
    for training in (False, True):
        y_ref = ref(s, training=training).numpy()
        y_plain = plain(s, training=training).numpy()
        y_fast = fast(s, training=training).numpy()
        assert y_fast.dtype == np.float32
        bf16_error = np.abs(y_plain - y_ref).max()
        assert 0 < bf16_error < 0.2
        assert np.abs(y_fast - y_plain).max() <= 2 * bf16_error
    with tf.GradientTape() as tape:
        loss = _loss(fast(s, training=True))
    grads = tape.gradient(loss, fast.trainable_weights)
    assert all(g is not None and g.dtype == tf.float32 for g in grads)


def test_one_training_step_on_two_replicas_equals_plain():
    # A residual block (three SPADE layers, synchronized batch norm) in float64 (see the module
    # docstring): two replicas of two examples compute what one device computes on the four.
    strategy = two_cpu_strategy()

    def block(fast):
        return SPADEResBlock(
            6, 4, 6, spade=dict(param_free_norm="sync_batch", hidden_filters=8, fast=fast), dtype="float64"
        )

    plain = block(False)
    plain.build()
    plain.set_weights([w * 20 if w.ndim == 4 else w for w in plain.get_weights()])
    with strategy.scope():
        fast = block(True)
        fast.build()
        opt = keras.optimizers.SGD(1.0)
        opt.build(fast.trainable_weights)
    fast.set_weights(plain.get_weights())
    x = tf.random.stateless_normal([4, 16, 16, 6], [7, 8], dtype="float64")
    semantics, _ = _inputs(num_classes=5, batch=4, size=32, dtype="float64")
    dist = strategy.experimental_distribute_values_from_function(
        lambda ctx: (
            x[ctx.replica_id_in_sync_group * 2 :][:2],
            semantics[ctx.replica_id_in_sync_group * 2 :][:2],
        )
    )

    @tf.function
    def step(inputs):
        def replica(x, s):
            with tf.GradientTape() as tape:
                loss = _loss(fast(x, s, training=True))
            opt.apply_gradients(zip(tape.gradient(loss, fast.trainable_weights), fast.trainable_weights))

        strategy.run(replica, args=inputs)

    before = [v.numpy() for v in fast.trainable_weights]
    step(dist)
    # Learning rate 1: the change is minus the gradient summed over the replicas.
    moved = [b - v.numpy() for v, b in zip(fast.trainable_weights, before)]
    with tf.GradientTape() as tape:
        y = plain(x, semantics, training=True)
        # _loss weights pixels by their index in the tensor it gets: per half, as on the replicas.
        loss = _loss(y[:2]) + _loss(y[2:])
    expected = [t.numpy() for t in tape.gradient(loss, plain.trainable_weights)]
    assert len(moved) == len(expected) and all(np.abs(m).max() > 0 for m in moved)
    _assert_grads_close(moved, expected, [v.path for v in plain.trainable_weights], TOL_FLOAT64)


@pytest.mark.parametrize("padding_mode", ["zeros", "reflect"])
def test_tflite_matches_keras(tmp_path, capsys, padding_mode):
    from ai_edge_litert.interpreter import Interpreter

    _, fast = _generators(size=32, padding_mode=padding_mode)
    semantics, _ = _inputs(batch=1, size=32)
    # Through a SavedModel, as spade_tf.serving.export_lib converts: the converter freezes its variables. The
    # module lists the tf.Variables under the Keras ones (it would track none of a Keras 3 model's).
    module = tf.Module()
    module.model_weights = [v.value for v in fast.weights]
    serve = tf.function(lambda s: fast(s, training=False), input_signature=[tf.TensorSpec(semantics.shape)])
    tf.saved_model.save(module, str(tmp_path), signatures={"serving_default": serve.get_concrete_function()})
    model = tf.lite.TFLiteConverter.from_saved_model(str(tmp_path)).convert()
    interpreter = Interpreter(model_content=model)
    interpreter.allocate_tensors()
    (inp,), (out,) = interpreter.get_input_details(), interpreter.get_output_details()
    for s in (semantics, semantics * 0.5):  # the gather path and the fallback branch
        interpreter.set_tensor(inp["index"], s.numpy())
        interpreter.invoke()
        # Float32 kernels of another library (XNNPACK / TFLite's own) summing in other orders.
        np.testing.assert_allclose(interpreter.get_tensor(out["index"]), fast(s).numpy(), atol=1e-4, rtol=0)
    capsys.readouterr()
    tf.lite.experimental.Analyzer.analyze(model_content=model)
    report = capsys.readouterr().out
    # A float map in: the graph keeps the IF with the conv fallback for soft maps.
    assert " GATHER(" in report and " IF(" in report, report[:2000]
    # TFLite's builtin mirror pad: the 1x1 latent grid's repeated pixel (SYMMETRIC) and REFLECT above it.
    assert (" MIRROR_PAD(" in report) == (padding_mode == "reflect")
