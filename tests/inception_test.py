"""The FID Inception feature extractor (spade_tf.evaluation.inception), tested without the real weights.

No weights can be downloaded here. The network is checked by its parameter count, by golden features
that pytorch-fid itself computed with a seeded random state dict, and through every loading path with
stand-in files written to tmp_path.
"""

import numpy as np
import pytest
import tensorflow as tf

from spade_tf.evaluation import inception
from spade_tf.tools.convert import StateDictMismatch
from tests.make_inception_goldens import OUTPUT as GOLDEN_FEATURES
from tests.make_inception_goldens import SIZES, golden_inputs, seeded_state_dict
from tests.test_case import require_torch

# torchvision's documented inception_v3 size (27,161,264 parameters) less the auxiliary classifier
# (3,326,696) and the 1000-class fc (2,049,000): conv weights and batch-norm gamma/beta of pytorch-fid's
# network. pytorch-fid's FID blocks only change pooling, so they add no parameters.
EXPECTED_PARAMETERS = 21_785_568
NUM_CONVS = 94


def golden_images():
    images = np.random.default_rng(1).integers(0, 256, (2, 64, 48, 3), dtype=np.uint8)
    yy, xx, cc = np.meshgrid(np.arange(64), np.arange(48), np.arange(3), indexing="ij")
    images[1] = (5 * xx + 3 * yy + 80 * cc) % 256
    return images


# pytorch_fid.inception.InceptionV3([3]) on golden_images() / 255 (NCHW) with seeded_state_dict.
GOLDEN_SUM = [8971.1070873481, 7048.8506381557]
GOLDEN_PROJECTION = [-174.3377036409, -119.1645366869]  # features @ default_rng(2).standard_normal(2048)
GOLDEN_ENTRIES = {
    0: [8.7328901291, 7.1072440147],
    1: [0.1553511471, 0.0899112895],
    2046: [10.2651853561, 8.5531311035],
}


@pytest.fixture(scope="module")
def seeded(tmp_path_factory):
    """(state dict, .npz path, InceptionFeatures loaded from it); one network build for the module."""
    model = inception.FIDInceptionV3().build_for_weights()
    shapes = {key: shape for key, _, shape, _ in inception.fid_state_dict_entries(model)}
    state = seeded_state_dict(shapes)
    path = str(tmp_path_factory.mktemp("weights") / "fid_inception_seeded.npz")
    np.savez(path, **state)
    return state, path, inception.load_inception(path, batch_size=2)


def test_network_matches_pytorch_fid_layer_structure(seeded):
    state, _, features = seeded
    model = features.model
    assert sum(int(np.prod(v.shape)) for v in model.trainable_weights) == EXPECTED_PARAMETERS
    assert len(model.named_convs()) == NUM_CONVS
    # pytorch-fid's file also holds 94 num_batches_tracked and fc.weight/fc.bias (566 keys in all).
    assert len(state) == 5 * NUM_CONVS
    assert model(tf.zeros([1, inception.MIN_INPUT_SIZE, inception.MIN_INPUT_SIZE, 3])).shape == (1, 2048)
    exported = inception.fid_state_dict(model)
    assert set(exported) - set(state) == {f"{p}.bn.num_batches_tracked" for p, _ in model.named_convs()}
    for key in (
        "Conv2d_1a_3x3.conv.weight",
        "Mixed_6b.branch7x7_2.conv.weight",
        "Mixed_7c.branch_pool.bn.running_var",
    ):
        np.testing.assert_array_equal(exported[key], state[key])
    assert exported["Mixed_6b.branch7x7_2.conv.weight"].shape == (128, 128, 1, 7)


def test_features_match_pytorch_fid_golden_values(seeded):
    _, _, features = seeded
    got = features(golden_images())
    assert got.dtype == np.float64 and got.shape == (2, 2048)
    projection = np.random.default_rng(2).standard_normal(2048)
    # float32 networks in two frameworks: ~1e-6 relative apart (measured 8e-7 of the largest feature).
    np.testing.assert_allclose(got.sum(1), GOLDEN_SUM, rtol=1e-5)
    np.testing.assert_allclose(got @ projection, GOLDEN_PROJECTION, rtol=1e-4)
    for index, values in GOLDEN_ENTRIES.items():
        np.testing.assert_allclose(got[:, index], values, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("height,width", SIZES)
def test_full_features_match_pytorch_fid_at_each_size(seeded, height, width):
    # All 2048 features of pytorch-fid's own network (tests/make_inception_goldens.py wrote them): at 299,
    # upsampled from an odd 37x51, and downsampled from 400x300 (both through the bilinear resize).
    _, _, features = seeded
    golden = np.load(GOLDEN_FEATURES)[f"features_{height}x{width}"]
    got = features(golden_inputs(height, width))
    # float32 networks in two frameworks: measured ~1e-6 of the largest feature apart.
    np.testing.assert_allclose(got, golden, rtol=0, atol=1e-5 * np.abs(golden).max())


def test_batched_features_equal_a_direct_call(seeded):
    _, _, features = seeded
    images = np.random.default_rng(3).integers(0, 256, (3, 20, 28, 3), dtype=np.uint8)
    direct = features.model(inception.pytorch_fid_preprocess(tf.constant(images))).numpy()
    # batch_size=2 splits 3 images into a full and a partial batch.
    np.testing.assert_allclose(features(images), direct, rtol=1e-5, atol=1e-5)  # float32 batch effects
    np.testing.assert_allclose(features(images, batch_size=1), direct, rtol=1e-5, atol=1e-5)
    assert features(images[:0]).shape == (0, 2048)


def test_average_pools_leave_padding_out():
    # pytorch-fid's count_include_pad=False: a constant map stays constant at the borders.
    ones = tf.ones([1, 5, 5, 2])
    np.testing.assert_array_equal(inception._avg_pool_3x3(ones).numpy(), ones.numpy())
    ramp = tf.reshape(tf.range(9.0), [1, 3, 3, 1])
    assert float(inception._avg_pool_3x3(ramp)[0, 0, 0, 0]) == pytest.approx((0 + 1 + 3 + 4) / 4)
    assert float(inception._max_pool_3x3(-ramp)[0, 0, 0, 0]) == 0.0  # the -inf padding is never the max


def test_mismatched_state_dict_is_refused_with_every_problem(seeded):
    state, _, features = seeded
    bad = dict(state)
    del bad["Mixed_5b.branch_pool.conv.weight"]
    bad["Mixed_6e.branch1x1.bn.bias"] = np.zeros(10, np.float32)
    bad["AuxLogits.fc.weight"] = np.zeros((1000, 768), np.float32)
    with pytest.raises(StateDictMismatch) as error:
        inception.load_fid_state_dict(features.model, bad, source="bad.npz")
    message = str(error.value)
    assert "bad.npz" in message and "3 problems" in message
    assert "missing key 'Mixed_5b.branch_pool.conv.weight' (expected shape (32, 192, 1, 1))" in message
    assert "key 'Mixed_6e.branch1x1.bn.bias': expected shape (192,), found (10,)" in message
    assert "unexpected key 'AuxLogits.fc.weight'" in message
    assert "torchvision's ImageNet inception_v3" in message
    # The failed load assigned nothing: features are unchanged.
    np.testing.assert_array_equal(
        features.model.Mixed_5b.branch_pool.conv.kernel.numpy(),
        np.transpose(state["Mixed_5b.branch_pool.conv.weight"], (2, 3, 1, 0)),
    )


def test_missing_weights_name_the_file_and_where_to_get_it(tmp_path):
    path = str(tmp_path / inception.PYTORCH_FID_WEIGHTS)
    with pytest.raises(FileNotFoundError) as error:
        inception.load_inception(path)
    message = str(error.value)
    assert path in message and "Nothing is downloaded" in message
    assert "pt_inception-2015-12-05-6726825d.pth" in message and "classify_image_graph_def.pb" in message
    (tmp_path / "weights.h5").write_bytes(b"")
    with pytest.raises(ValueError, match=r"'\.h5' is not supported; choose one of '\.pth'"):
        inception.load_inception(str(tmp_path / "weights.h5"))


def test_images_must_be_uint8_rgb(seeded):
    _, _, features = seeded
    with pytest.raises(ValueError, match="expected uint8 images"):
        features(np.zeros((1, 8, 8, 3), np.float32))
    with pytest.raises(ValueError, match=r"\(N, H, W, 3\), got \(1, 8, 8\)"):
        features(np.zeros((1, 8, 8), np.uint8))
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        features(np.zeros((1, 8, 8, 3), np.uint8), batch_size=0)


@pytest.mark.torch
def test_pth_file_gives_the_npz_features_and_is_hash_checked(seeded, tmp_path):
    torch = require_torch()
    state, _, features = seeded
    full = {k: torch.from_numpy(v) for k, v in state.items()}
    full["fc.weight"] = torch.zeros(1008, 2048)  # present in pytorch-fid's file, never read
    full["fc.bias"] = torch.zeros(1008)
    full["Conv2d_1a_3x3.bn.num_batches_tracked"] = torch.tensor(0)
    path = str(tmp_path / "fid_inception.pth")
    torch.save(full, path)
    from_pth = inception.load_inception(path)
    assert from_pth.identity == features.identity  # identity hashes the arrays, not the file format
    images = golden_images()[:1]
    np.testing.assert_array_equal(from_pth(images), features(images))

    # torch hub's name-<sha256 prefix>.pth convention catches a truncated or swapped file.
    wrong = str(tmp_path / "pt_inception-2015-12-05-6726825d.pth")
    torch.save({"x": torch.zeros(1)}, wrong)
    with pytest.raises(ValueError, match="promises sha256 6726825d"):
        inception.load_inception(wrong)


# ---------------------------------------------------------------------------
# TTUR's frozen graph (.pb), with a stand-in graph
# ---------------------------------------------------------------------------


def _stand_in_ttur_graph(path):
    """A tiny GraphDef with the tensor names and 2015-era ops of classify_image_graph_def.pb.

    DecodeJpeg -> Cast -> ExpandDims (batch 1) -> ResizeBilinear to 299 (TF1, no half-pixel centres)
    -> Sub 128 -> Mul 1/128 -> 13x13 average pool -> 1x1 conv to 2048 -> BatchNormWithGlobalNormalization
    -> ReLU -> pool_3 (average) -> pool_3/_reshape to [1, 2048]. The batch norm op was removed in GraphDef
    version 9, so the file claims producer version 3 like a 2015 graph; it is written in as a renamed
    identity because TF 2.21 refuses to build it.
    """
    rng = np.random.default_rng(9)
    params = {
        "kernel": rng.standard_normal((1, 1, 3, 2048)).astype(np.float32),
        "mean": rng.standard_normal(2048).astype(np.float32) * 0.1,
        "variance": rng.uniform(0.5, 1.5, 2048).astype(np.float32),
        "beta": rng.standard_normal(2048).astype(np.float32) * 0.1,
        "gamma": rng.uniform(0.5, 1.5, 2048).astype(np.float32),
    }
    graph = tf.Graph()
    with graph.as_default():
        contents = tf.compat.v1.placeholder(tf.string, [], name="DecodeJpeg/contents")
        x = tf.cast(tf.io.decode_jpeg(contents, channels=3, name="DecodeJpeg"), tf.float32, name="Cast")
        x = tf.expand_dims(x, 0, name="ExpandDims")
        x = tf.raw_ops.ResizeBilinear(images=x, size=[299, 299], name="ResizeBilinear")
        x = tf.multiply(tf.subtract(x, 128.0, name="Sub"), 1.0 / 128.0, name="Mul")
        x = tf.nn.avg_pool2d(x, 13, 13, "VALID", name="pool_0")
        x = tf.nn.conv2d(x, tf.constant(params["kernel"], name="conv/w"), 1, "VALID", name="conv/Conv2D")
        for name in ("mean", "variance", "beta", "gamma"):
            tf.constant(params[name], name=f"conv/batchnorm/{name}")
        x = tf.nn.relu(tf.identity(x, name="conv/batchnorm"), name="conv/relu")
        pool3 = tf.nn.avg_pool2d(x, 23, 1, "VALID", name="pool_3")
        tf.reshape(pool3, [1, 2048], name="pool_3/_reshape")
    graph_def = graph.as_graph_def()
    for node in graph_def.node:
        if node.name == "conv/batchnorm":
            node.op = "BatchNormWithGlobalNormalization"
            del node.input[:]
            node.input.extend(
                ["conv/Conv2D"] + [f"conv/batchnorm/{n}" for n in ("mean", "variance", "beta", "gamma")]
            )
            node.attr["variance_epsilon"].f = 1e-3
            node.attr["scale_after_normalization"].b = True
    graph_def.versions.producer = 3
    with open(path, "wb") as f:
        f.write(graph_def.SerializeToString())
    return graph_def, params


def _numpy_stand_in(images, params):
    x = tf.compat.v1.image.resize_bilinear(images.astype(np.float32), [299, 299]).numpy()
    x = (x - 128.0) / 128.0
    x = x.reshape(-1, 23, 13, 23, 13, 3).mean(axis=(2, 4)) @ params["kernel"][0, 0]
    x = (x - params["mean"]) / np.sqrt(params["variance"] + 1e-3) * params["gamma"] + params["beta"]
    return np.maximum(x, 0).mean(axis=(1, 2))


def test_ttur_graph_runs_batched_like_ttur_runs_it_image_by_image(tmp_path):
    path = str(tmp_path / inception.TTUR_GRAPH)
    graph_def, params = _stand_in_ttur_graph(path)
    images = np.random.default_rng(10).integers(0, 256, (3, 20, 30, 3), dtype=np.uint8)
    features = inception.load_inception(path, batch_size=2)
    got = features(images)
    assert got.shape == (3, 2048) and features.identity.startswith("ttur-inception-graph/sha256=")

    # TTUR's way without its shape patch: the untouched graph, one image at a time at ExpandDims:0.
    graph = tf.Graph()
    with graph.as_default():
        tf.compat.v1.import_graph_def(graph_def, name="")
    with tf.compat.v1.Session(graph=graph) as session:
        one_by_one = [
            session.run("pool_3:0", {"ExpandDims:0": image[None].astype(np.float32)}) for image in images
        ]
    # Same graph, same kernels; batching only reorders float32 sums.
    np.testing.assert_allclose(got, np.concatenate(one_by_one).reshape(3, 2048), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got, _numpy_stand_in(images, params), rtol=1e-4, atol=1e-5)


def test_graph_without_ttur_tensors_is_refused(tmp_path):
    graph = tf.Graph()
    with graph.as_default():
        tf.identity(tf.compat.v1.placeholder(tf.float32, [None, 4], name="input"), name="output")
    path = str(tmp_path / "other.pb")
    with open(path, "wb") as f:
        f.write(graph.as_graph_def().SerializeToString())
    with pytest.raises(ValueError, match="no node ExpandDims, pool_3: not TTUR's Inception graph"):
        inception.load_inception(path)
