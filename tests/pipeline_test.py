"""The tf.data pipeline: decoding, determinism, resume and the official label handling."""

import os

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from spade_tf.data import pipeline, transforms
from spade_tf.data.layouts import Example
from spade_tf.data.palette import Palette

NUM_CLASSES = 4
H, W = 16, 24


def _write_example(root, i, h=H, w=W):
    rng = np.random.default_rng(i)
    label = rng.integers(0, NUM_CLASSES, (h, w)).astype(np.uint8)
    label[rng.random((h, w)) < 0.15] = 255  # don't-care pixels
    image = rng.integers(0, 256, (h, w, 3)).astype(np.uint8)
    instance = rng.integers(0, 60000, (h, w)).astype(np.uint16)  # needs all 16 bits
    paths = [os.path.join(str(root), f"{kind}_{i}.png") for kind in ("label", "image", "instance")]
    Image.fromarray(label, mode="L").save(paths[0])
    Image.fromarray(image, mode="RGB").save(paths[1])
    Image.fromarray(instance).save(paths[2])
    return Example(name=str(i), label=paths[0], image=paths[1], instance=paths[2])


def _dataset(root, n=5, **sizes):
    return [_write_example(root, i, **sizes) for i in range(n)]


def _config(**overrides):
    config = dict(
        num_classes=NUM_CLASSES,
        contain_dontcare_label=True,
        use_instance_map=True,
        preprocess_mode="resize_and_crop",
        load_size=20,
        crop_size=12,
        aspect_ratio=1.0,
        flip=True,
        training=True,
        batch_size=2,
        seed=3,
        num_parallel_calls=3,
    )
    config.update(overrides)
    return config


def _take(ds, n):
    return [{k: v.numpy() for k, v in batch.items()} for batch in ds.take(n)]


def _assert_batches_equal(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert x.keys() == y.keys()
        for k in x:
            np.testing.assert_array_equal(x[k], y[k], err_msg=k)


def test_decode_example_gives_raw_values_eagerly_and_in_tf_data(tmp_path):
    ex = _write_example(tmp_path, 0)
    label, image, instance = pipeline.decode_example(ex.label, ex.image, ex.instance)
    np.testing.assert_array_equal(label.numpy(), np.asarray(Image.open(ex.label)))
    np.testing.assert_array_equal(image.numpy(), np.asarray(Image.open(ex.image)))
    raw_instance = np.asarray(Image.open(ex.instance))
    assert raw_instance.dtype == np.uint16 and raw_instance.max() > 255
    np.testing.assert_array_equal(instance.numpy(), raw_instance)  # 16-bit ids, not scaled to 8 bits
    assert (label.dtype, image.dtype, instance.dtype) == (tf.int32, tf.uint8, tf.int32)

    paths = tf.data.Dataset.from_tensors((ex.label, ex.image, ex.instance))
    in_graph = next(iter(paths.map(lambda a, b, c: pipeline.decode_example(a, b, c))))
    for g, e in zip(in_graph, (label, image, instance), strict=True):
        np.testing.assert_array_equal(g.numpy(), e.numpy())
    assert pipeline.decode_example(ex.label, ex.image)[2] is None


def test_palette_indexed_label_gives_indices(tmp_path):
    # The official code reads a palette-mode label's index as the id, even when colours repeat.
    ids = np.random.default_rng(1).integers(0, 7, (H, W)).astype(np.uint8)
    img = Image.fromarray(ids, mode="P")
    img.putpalette([10, 20, 30] * 3 + [200, 0, 0] * 4)  # ids 0-2 share one colour, 3-6 another
    path = str(tmp_path / "indexed.png")
    img.save(path)
    assert Image.open(path).mode == "P"
    label, _, _ = pipeline.decode_example(path, _write_example(tmp_path, 0).image)
    np.testing.assert_array_equal(label.numpy(), ids)
    in_graph = next(iter(tf.data.Dataset.from_tensors(path).map(lambda p: pipeline.decode_example(p, p)[0])))
    np.testing.assert_array_equal(in_graph.numpy(), ids)


def test_rgb_label_with_palette_gives_ids(tmp_path):
    palette = Palette(names=("sky", "tree", "rock"), colors=[[135, 206, 235], [34, 139, 34], [90, 90, 90]])
    ids = np.random.default_rng(2).integers(0, 3, (H, W))
    rgb = palette.colors[ids]
    rgb[0, 0] = (1, 2, 3)  # not in the palette
    path = str(tmp_path / "rgb_label.png")
    Image.fromarray(rgb, mode="RGB").save(path)
    image = _write_example(tmp_path, 0).image
    label, _, _ = pipeline.decode_example(path, image, palette=palette)
    want = ids.copy()
    want[0, 0] = -1
    np.testing.assert_array_equal(label.numpy(), want)
    # A one-channel map is ids whether or not a palette is given (as spade_tf.data.check reads it).
    grey = _write_example(tmp_path, 1).label
    np.testing.assert_array_equal(
        pipeline.decode_example(grey, image, palette=palette)[0].numpy(), np.asarray(Image.open(grey))
    )
    with pytest.raises(tf.errors.InvalidArgumentError, match="rgb_label.png.*palette"):
        pipeline.decode_example(path, image)


def test_size_mismatch_names_both_files(tmp_path):
    ex = _write_example(tmp_path, 0)
    other = _write_example(tmp_path, 1, h=H + 2)
    with pytest.raises(tf.errors.InvalidArgumentError, match="image_1.png.*label_0.png.*same size"):
        pipeline.decode_example(ex.label, other.image)


def test_eval_batches_are_the_official_values(tmp_path):
    examples = _dataset(tmp_path, n=3)
    config = _config(preprocess_mode="crop", crop_size=H, training=False, repeat=False, drop_remainder=False)
    batches = _take(pipeline.build_dataset(examples, **config), 5)
    assert [len(b["index"]) for b in batches] == [2, 1]
    for k, ex in enumerate(examples):
        b, row = batches[k // 2], k % 2
        raw_label = np.asarray(Image.open(ex.label)).astype(np.int32)[:, :H]  # crop at (0, 0), no flip
        want_label = np.where(raw_label == 255, NUM_CLASSES, raw_label)
        np.testing.assert_array_equal(b["label"][row], want_label)
        assert (b["label"][row] == NUM_CLASSES).any()  # the 255 -> num_classes mapping happened
        want_image = (np.asarray(Image.open(ex.image))[:, :H].astype(np.float32) / 255 - 0.5) / 0.5
        np.testing.assert_array_equal(b["image"][row], want_image)
        np.testing.assert_array_equal(b["instance"][row], np.asarray(Image.open(ex.instance))[:, :H])
        assert b["index"][row] == k
    first = batches[0]
    assert first["label"].dtype == np.int32 and first["label"].shape == (2, H, H)
    assert first["image"].dtype == np.float32 and first["image"].shape == (2, H, H, 3)
    assert first["instance"].dtype == np.int32 and first["index"].dtype == np.int64


def test_training_stream_is_transform_of_the_ordered_examples(tmp_path):
    examples = _dataset(tmp_path, n=5)
    config = _config()
    ds = pipeline.build_dataset(examples, **config)
    assert ds.element_spec["label"].shape.as_list() == [2, 12, 12]
    got = _take(ds.unbatch(), 7)
    order = list(pipeline.example_stream_order(5, seed=3, start_index=0, training=True).take(7))
    flips = set()
    for element, (position, index, _) in zip(got, order, strict=True):
        ex = examples[int(index)]
        label, image, instance = pipeline.decode_example(ex.label, ex.image, ex.instance)
        params = transforms.get_params(
            "resize_and_crop", tf.shape(label), 20, 12, tf.stack([tf.constant(3, tf.int64), position])
        )
        flips.add(bool(params["flip"]))
        label, image, instance = transforms.transform(
            label, image, instance, params, "resize_and_crop", 20, 12
        )
        np.testing.assert_array_equal(
            element["label"], np.where(label.numpy() == 255, NUM_CLASSES, label.numpy())
        )
        np.testing.assert_array_equal(element["image"], transforms.normalize_image(image).numpy())
        np.testing.assert_array_equal(element["instance"], instance.numpy())
        assert element["index"] == position
    assert flips == {True, False}  # both branches were exercised


def test_two_builds_give_the_same_stream(tmp_path):
    examples = _dataset(tmp_path, n=5)
    a = _take(pipeline.build_dataset(examples, **_config()), 4)
    b = _take(pipeline.build_dataset(examples, **_config(num_parallel_calls=1)), 4)
    _assert_batches_equal(a, b)
    c = _take(pipeline.build_dataset(examples, **_config(seed=4)), 4)
    assert not all(np.array_equal(x["image"], y["image"]) for x, y in zip(a, c, strict=True))


def test_start_index_continues_the_stream_exactly(tmp_path):
    examples = _dataset(tmp_path, n=5)
    k = 7  # inside the second epoch
    fresh = pipeline.build_dataset(examples, **_config()).unbatch().skip(k).batch(2)
    resumed = pipeline.build_dataset(examples, **_config(start_index=k))
    a, b = _take(fresh, 4), _take(resumed, 4)
    _assert_batches_equal(a, b)
    assert list(b[0]["index"]) == [7, 8]


def test_skipped_positions_are_not_decoded(tmp_path):
    examples = _dataset(tmp_path, n=5)
    missing = str(tmp_path / "does_not_exist.png")
    broken = [Example(e.name, missing, missing, missing) for e in examples[:3]] + examples[3:]
    config = _config(training=False, repeat=False, preprocess_mode="crop", crop_size=H)
    batch = _take(pipeline.build_dataset(broken, **_config(**config, start_index=3)), 1)[0]
    assert list(batch["index"]) == [3, 4]
    with pytest.raises(tf.errors.NotFoundError, match="does_not_exist"):
        _take(pipeline.build_dataset(broken, **config), 1)


def test_epochs_are_permutations(tmp_path):
    n = 7
    rows = [
        tuple(int(v) for v in t) for t in pipeline.example_stream_order(n, seed=5, training=True).take(4 * n)
    ]
    positions, indices, epochs = zip(*rows, strict=True)
    assert list(positions) == list(range(4 * n))
    assert list(epochs) == [p // n for p in range(4 * n)]
    perms = [indices[e * n : (e + 1) * n] for e in range(4)]
    assert all(sorted(p) == list(range(n)) for p in perms)
    assert len(set(perms)) > 1
    other = [int(t[1]) for t in pipeline.example_stream_order(n, seed=6, training=True).take(n)]
    assert tuple(other) != perms[0]
    resumed = [tuple(int(v) for v in t) for t in pipeline.example_stream_order(n, 5, start_index=10).take(5)]
    assert resumed == rows[10:15]
    serial = [int(t[1]) for t in pipeline.example_stream_order(n, 5, training=False).take(2 * n)]
    assert serial == list(range(n)) * 2
    one_epoch = list(pipeline.example_stream_order(n, 5, start_index=3, repeat=False))
    assert [int(t[0]) for t in one_epoch] == list(range(3, n))


def test_255_stays_without_dontcare_label(tmp_path):
    examples = _dataset(tmp_path, n=2)
    config = _config(
        contain_dontcare_label=False, num_classes=256, training=False, preprocess_mode="crop", crop_size=H
    )
    label = _take(pipeline.build_dataset(examples, **config), 1)[0]["label"][0]
    raw = np.asarray(Image.open(examples[0].label))[:, :H]
    np.testing.assert_array_equal(label, raw)
    assert (label == 255).any()


def test_out_of_range_label_names_the_file(tmp_path):
    examples = _dataset(tmp_path, n=2)
    # 255 is not the don't-care value here, and ids 0..3 exceed num_classes=2.
    config = _config(contain_dontcare_label=False, num_classes=2)
    with pytest.raises(
        tf.errors.InvalidArgumentError, match=r"label_\d.png: label ids range over.*num_classes"
    ):
        _take(pipeline.build_dataset(examples, **config), 1)


def test_bad_arguments(tmp_path):
    examples = _dataset(tmp_path, n=2)
    no_instances = [Example(e.name, e.label, e.image, None) for e in examples]
    with pytest.raises(ValueError, match="no instance map but use_instance_map=True"):
        pipeline.build_dataset(no_instances, **_config())
    ds = pipeline.build_dataset(no_instances, **_config(use_instance_map=False))
    assert "instance" not in ds.element_spec
    with pytest.raises(ValueError, match="preprocess_mode must be one of"):
        pipeline.build_dataset(examples, **_config(preprocess_mode="scale"))
    with pytest.raises(ValueError, match="examples is empty"):
        pipeline.build_dataset([], **_config())
    tuples = [(e.label, e.image, e.instance) for e in examples]
    _assert_batches_equal(
        _take(pipeline.build_dataset(tuples, **_config()), 1),
        _take(pipeline.build_dataset(examples, **_config()), 1),
    )
