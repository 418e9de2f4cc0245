"""Segmenter: SavedModel contracts (input ranges, output kinds, resolutions), errors, class maps, oracle export."""

import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from spade_tf.evaluation import oracle, segmenter
from spade_tf.evaluation.segmenter import Segmenter

# Test photos: the left half dark (40), the right half bright (215). The tiny networks below put
# bright pixels in class 0 and dark ones in class 1, but only when the pixels arrive in the range
# they expect: fed the wrong range, every pixel falls on one side of the threshold.
DARK, BRIGHT = 40, 215
RANGE_MIDPOINT = {"0_1": 0.5, "0_255": 127.5, "-1_1": 0.0}
RANGE_SCALE = {"0_1": 1 / 255, "0_255": 1.0, "-1_1": 1 / 127.5}


def _photos(n=2, size=16):
    images = np.full((n, size, size, 3), BRIGHT, np.uint8)
    images[:, :, : size // 2] = DARK
    return images


def _expected_ids(n=2, size=16):
    ids = np.zeros((n, size, size), np.int32)
    ids[:, :, : size // 2] = 1
    return ids


def _threshold_model(midpoint, num_classes=2):
    """Keras 1x1 conv: logits (mean(rgb) - midpoint, midpoint - mean(rgb))."""
    inputs = keras.Input((None, None, 3))
    conv = keras.layers.Conv2D(num_classes, 1)
    model = keras.Model(inputs, conv(inputs))
    kernel = np.zeros((1, 1, 3, num_classes), np.float32)
    kernel[..., 0], kernel[..., 1] = 1 / 3, -1 / 3
    bias = np.zeros(num_classes, np.float32)
    bias[:2] = -midpoint, midpoint
    conv.set_weights([kernel, bias])
    return model


def _export(path, model, kind="logits", dtype=tf.float32, shape=(None, None, None, 3), pool=1, extra=False):
    """Exports `model` behind a signature `serving_default` with one input `image`."""
    archive = keras.export.ExportArchive()
    archive.track(model)

    @tf.function(input_signature=[tf.TensorSpec(shape, dtype, name="image")])
    def serve(image):
        logits = model(tf.cast(image, tf.float32))
        if pool > 1:  # a network that predicts at 1/pool of the input resolution
            logits = tf.nn.avg_pool2d(logits, pool, pool, "VALID")
        if kind == "probabilities":
            out = {"probabilities": tf.nn.softmax(logits)}
        elif kind == "ids":
            out = {"ids": tf.argmax(logits, -1)}
        else:
            out = {"logits": logits}
        if extra:
            out["features"] = logits * 2.0
        return out

    archive.add_endpoint("serving_default", serve)
    archive.add_endpoint("other", serve)
    archive.write_out(str(path), verbose=False)
    return str(path)


@pytest.mark.parametrize(
    "dtype, input_range, kind",
    [
        (tf.float32, "0_1", "logits"),
        (tf.float32, "0_255", "probabilities"),
        (tf.float32, "-1_1", "ids"),
        (tf.uint8, None, "logits"),
    ],
)
def test_input_ranges_and_output_kinds(tmp_path, dtype, input_range, kind):
    model_range = input_range or "0_255"
    path = _export(tmp_path / "m", _threshold_model(RANGE_MIDPOINT[model_range]), kind, dtype)
    seg = Segmenter(path, input_range=input_range, output=kind)
    assert seg.input_dtype == dtype and seg.input_range == model_range
    ids, conf = seg.predict(_photos(3))
    assert ids.dtype == np.int32
    np.testing.assert_array_equal(ids, _expected_ids(3))
    if kind == "ids":
        assert conf is None
    else:
        # The 2-class softmax of (d, -d) has max 1 / (1 + exp(-2|d|)), d the pixel's distance from the
        # midpoint in the model's units; float32 softmax rounding is ~1e-7.
        d = np.abs(np.where(_expected_ids(3) == 1, DARK, BRIGHT) - 127.5) * RANGE_SCALE[model_range]
        np.testing.assert_allclose(conf, 1 / (1 + np.exp(-2 * d)), atol=1e-5)
        assert conf.dtype == np.float32


def test_wrong_input_range_changes_the_labels(tmp_path):
    # The contract matters: a [-1, 1] network fed [0, 1] sees every pixel as bright.
    path = _export(tmp_path / "m", _threshold_model(0.0))
    ids, _ = Segmenter(path, input_range="0_1").predict(_photos())
    assert np.all(ids == 0)
    ids, _ = Segmenter(path, input_range="-1_1").predict(_photos())
    np.testing.assert_array_equal(ids, _expected_ids())


def test_low_resolution_prediction_is_resized_to_the_photo(tmp_path):
    model = _threshold_model(0.5)
    seg = Segmenter(_export(tmp_path / "logits", model, pool=4), input_range="0_1")
    ids, conf = seg.predict(_photos(2, 16))
    # 4x4 logits, columns 0-1 bright and 2-3 dark; bilinear resizing (half-pixel centres) crosses zero
    # between output columns 7 and 8, so the 16 px labels are exact.
    np.testing.assert_array_equal(ids, _expected_ids(2, 16))
    # Logits are interpolated before the argmax: confidence dips next to the boundary.
    assert np.all(conf[:, :, 7] < conf[:, :, 0] - 0.01) and np.all(conf[:, :, 8] < conf[:, :, 15] - 0.01)
    seg = Segmenter(_export(tmp_path / "ids", model, kind="ids", pool=4), input_range="0_1", output="ids")
    ids, conf = seg.predict(_photos(2, 16))
    np.testing.assert_array_equal(ids, _expected_ids(2, 16))  # nearest neighbours: 4x4 blocks
    assert conf is None


def test_fixed_input_size_and_batch(tmp_path):
    # Exported for 8x8 photos in batches of exactly 2: 16 px photos are resized in and out, and an odd
    # batch is padded.
    path = _export(tmp_path / "m", _threshold_model(0.5), shape=(2, 8, 8, 3))
    seg = Segmenter(path, batch_size=5)
    assert seg.model_size == (8, 8) and seg.batch_size == 2
    ids, conf = seg.predict(_photos(3, 16))
    np.testing.assert_array_equal(ids, _expected_ids(3, 16))
    assert conf.shape == (3, 16, 16)


def test_errors_name_the_problem(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError, match=str(missing)):
        Segmenter(missing)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no saved_model.pb"):
        Segmenter(tmp_path / "empty")
    path = _export(tmp_path / "m", _threshold_model(0.5), extra=True)
    with pytest.raises(
        ValueError, match="no signature 'serve'; available signatures: other, serving_default"
    ):
        Segmenter(path, signature="serve")
    with pytest.raises(
        ValueError, match=r"2 outputs \(features float32.*logits float32.*\); pick one with output_key"
    ):
        Segmenter(path)
    assert Segmenter(path, output_key="logits").output_key == "logits"
    with pytest.raises(ValueError, match="no output named 'prob'; its outputs: features"):
        Segmenter(path, output_key="prob")
    with pytest.raises(
        ValueError, match="input_range='0-1' is not valid; choose one of: '0_1', '0_255', '-1_1'"
    ):
        Segmenter(path, input_range="0-1", output_key="logits")
    with pytest.raises(ValueError, match="output='labels' is not valid; choose one of: 'logits'"):
        Segmenter(path, output="labels")

    grey = tmp_path / "grey"
    one_channel = keras.Sequential([keras.Input((None, None, 1)), keras.layers.Conv2D(2, 1)])
    _export(grey, one_channel, shape=(None, None, None, 1))
    with pytest.raises(
        ValueError, match=r"input 'image' has shape \[None, None, None, 1\]; expected .*\(N, H, W, 3\)"
    ):
        Segmenter(grey)

    ids_model = _export(tmp_path / "ids", _threshold_model(0.5), kind="ids")
    with pytest.raises(
        ValueError, match="is int64, not float scores|integer outputs are ids: use output='ids'"
    ):
        Segmenter(ids_model)
    uint8_model = _export(tmp_path / "u8", _threshold_model(127.5), dtype=tf.uint8)
    with pytest.raises(ValueError, match="takes uint8 images.*input_range='0_1' does not apply"):
        Segmenter(uint8_model, input_range="0_1")
    seg = Segmenter(uint8_model)
    with pytest.raises(ValueError, match="images must be uint8"):
        seg.predict(_photos().astype(np.float32))
    with pytest.raises(ValueError, match=r"images must be \(N, H, W, 3\) RGB, got shape \(16, 16, 3\)"):
        seg.predict(_photos()[0])


def test_input_rank_must_be_four(tmp_path):
    module = tf.Module()
    module.f = tf.function(
        lambda image: {"logits": tf.stack([image[..., 0], -image[..., 0]], -1)},
        input_signature=[tf.TensorSpec([None, None, 3], tf.float32, name="image")],
    )
    tf.saved_model.save(module, str(tmp_path / "m"), signatures=module.f)
    with pytest.raises(ValueError, match=r"input 'image' has shape \[None, None, 3\]; expected a batch"):
        Segmenter(tmp_path / "m")


def test_cityscapes_class_map():
    table = segmenter.CITYSCAPES_LABEL_TO_TRAIN_ID
    assert len(table) == 34
    # cityscapesScripts: the 19 evaluated classes get train ids 0..18 in label-id order, the rest 255.
    label_ids = np.flatnonzero(table != 255)
    assert label_ids.tolist() == [7, 8, 11, 12, 13, 17, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 31, 32, 33]
    assert table[label_ids].tolist() == list(range(19))
    assert len(segmenter.CITYSCAPES_TRAIN_CLASS_NAMES) == 19
    assert segmenter.CITYSCAPES_TRAIN_CLASS_NAMES[13] == "car" and segmenter.CITYSCAPES_TRAIN_COLORS[
        13
    ].tolist() == [
        0,
        0,
        142,
    ]
    assert len(np.unique(segmenter.CITYSCAPES_TRAIN_COLORS, axis=0)) == 19


def _constant_class_model(num_classes, winner):
    """Logits that always pick `winner`, with confidence softmax([5, 0, ...])."""
    inputs = keras.Input((None, None, 3))
    conv = keras.layers.Conv2D(num_classes, 1)
    model = keras.Model(inputs, conv(inputs))
    bias = np.zeros(num_classes, np.float32)
    bias[winner] = 5.0
    conv.set_weights([np.zeros((1, 1, 3, num_classes), np.float32), bias])
    return model


def test_segmenter_applies_class_maps(tmp_path):
    path = _export(tmp_path / "m", _constant_class_model(34, winner=26))  # Cityscapes "car"
    seg = Segmenter(path, class_map=segmenter.CITYSCAPES_LABEL_TO_TRAIN_ID)
    assert seg.num_model_classes == 34 and seg.num_classes == 19
    ids, conf = seg.predict(_photos(1, 8))
    assert np.all(ids == 13)
    # softmax max = e^5 / (e^5 + 33); float32 rounding ~1e-7.
    np.testing.assert_allclose(conf, np.exp(5) / (np.exp(5) + 33), atol=1e-6)
    # A dict (JSON-style keys) sends every id it leaves out to ignore (255).
    ids, _ = Segmenter(path, class_map={"7": 0, "26": 1}).predict(_photos(1, 8))
    assert np.all(ids == 1)
    ids, _ = Segmenter(path, class_map={"7": 0}).predict(_photos(1, 8))
    assert np.all(ids == 255)
    with pytest.raises(ValueError, match="has 20 entries but the network predicts 34 classes"):
        Segmenter(path, class_map=list(range(20)))
    with pytest.raises(ValueError, match=r"class_map\[3\] is -1"):
        segmenter.make_class_map([0, 1, 2, -1])


def test_load_class_map(tmp_path):
    assert segmenter.load_class_map("cityscapes") is segmenter.CITYSCAPES_LABEL_TO_TRAIN_ID
    path = tmp_path / "map.json"
    path.write_text(json.dumps({"3": 0, "5": 1}))
    table = segmenter.make_class_map(segmenter.load_class_map(str(path)), num_ids=8)
    assert table.tolist() == [255, 255, 255, 0, 255, 1, 255, 255]
    path.write_text("{3: 0}")
    with pytest.raises(ValueError, match=f"class map file {path} is not valid JSON"):
        segmenter.load_class_map(str(path))
    path.write_text(json.dumps({"road": 0}))
    with pytest.raises(ValueError, match="key 'road' is not an integer class id"):
        segmenter.load_class_map(str(path))
    with pytest.raises(FileNotFoundError, match="neither a known name \\(cityscapes\\)"):
        segmenter.load_class_map("citiscapes")


def test_exported_oracle_matches_keras(tmp_path):
    model = oracle.build_oracle(4, width=8, seed=1)
    path = segmenter.export_oracle_saved_model(model, tmp_path / "oracle")
    assert not [e for e in os.listdir(tmp_path) if ".tmp-" in e]
    images = np.random.default_rng(0).integers(0, 256, (2, 12, 12, 3), dtype=np.uint8)
    keras_logits = model(images.astype(np.float32) / 127.5 - 1.0, training=False).numpy()
    loaded = tf.saved_model.load(path).signatures[segmenter.ORACLE_SIGNATURE]
    served = loaded(**{segmenter.ORACLE_INPUT: images.astype(np.float32) / 255.0})[segmenter.ORACLE_OUTPUT]
    # Same graph and weights; only the [0, 1] -> [-1, 1] rescale happens in another order (float32 rounding).
    np.testing.assert_allclose(served.numpy(), keras_logits, atol=1e-5)
    seg = Segmenter(path, input_range=segmenter.ORACLE_INPUT_RANGE)
    assert seg.num_classes == 4
    ids, _ = seg.predict(images)
    top2 = np.sort(keras_logits, -1)[..., -2:]
    # Where the top two logits differ by > 2e-5, an error within the 1e-5 checked above cannot swap them.
    clear = top2[..., 1] - top2[..., 0] > 2e-5
    assert clear.mean() > 0.95
    np.testing.assert_array_equal(ids[clear], keras_logits.argmax(-1)[clear])
    with pytest.raises(FileExistsError, match="already exists"):
        segmenter.export_oracle_saved_model(model, path)
    segmenter.export_oracle_saved_model(model, path, overwrite=True)
