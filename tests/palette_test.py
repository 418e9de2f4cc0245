"""Palette files, colour <-> id conversion (numpy and TF) and the default colour map."""

import json

import numpy as np
import pytest
import tensorflow as tf

from spade_tf.data.palette import (
    Palette,
    colorize,
    default_colormap,
    load_palette,
    rgb_to_ids,
    rgb_to_ids_tf,
    save_palette,
)

PALETTE = Palette(
    names=("sky", "tree", "road", "car"),
    colors=np.array([[135, 206, 235], [34, 139, 34], [128, 64, 128], [0, 0, 142]]),
)


def write_json(path, data):
    path.write_text(json.dumps(data) if not isinstance(data, str) else data)
    return str(path)


def random_ids(shape, num_classes, seed=0):
    return np.random.default_rng(seed).integers(0, num_classes, shape).astype(np.uint8)


def test_save_load_round_trip(tmp_path):
    path = tmp_path / "palette.json"
    save_palette(PALETTE, path)
    loaded = load_palette(path)
    assert loaded == PALETTE
    assert loaded.colors.dtype == np.uint8 and loaded.colors.shape == (4, 3)
    assert loaded.num_classes == 4
    data = json.loads(path.read_text())
    assert data["classes"][1] == {"id": 1, "name": "tree", "color": [34, 139, 34]}


def test_load_sorts_ids_and_defaults_names(tmp_path):
    path = write_json(
        tmp_path / "p.json",
        {"classes": [{"id": 1, "name": "b", "color": [0, 0, 1]}, {"id": 0, "color": [9, 9, 9]}]},
    )
    palette = load_palette(path)
    assert palette.names == ("0", "b")
    np.testing.assert_array_equal(palette.colors, [[9, 9, 9], [0, 0, 1]])


def test_palette_is_read_only():
    with pytest.raises(ValueError):
        PALETTE.colors[0, 0] = 1


@pytest.mark.parametrize(
    "content, expected",
    [
        ('{"classes": [', "not valid JSON"),
        ({"labels": []}, "'classes' list"),
        (
            {"classes": [{"id": 0, "color": [1, 2, 3]}, {"id": 0, "color": [4, 5, 6]}]},
            "id 0 appears more than once",
        ),
        (
            {"classes": [{"id": 0, "color": [1, 2, 3]}, {"id": 1, "color": [1, 2, 3]}]},
            r"share the colour \[1, 2, 3\]",
        ),
        ({"classes": [{"id": 0, "color": [1, 2, 3]}, {"id": 2, "color": [4, 5, 6]}]}, "ids 1 are missing"),
        ({"classes": [{"id": 0, "color": [1, 2, 300]}]}, "integers in 0..255"),
        ({"classes": [{"id": 0, "colour": [1, 2, 3]}]}, "unknown keys"),
        ({"classes": [{"id": -1, "color": [1, 2, 3]}]}, "non-negative integer"),
    ],
)
def test_load_errors_name_the_file_and_problem(tmp_path, content, expected):
    path = write_json(tmp_path / "bad.json", content)
    with pytest.raises(ValueError, match=expected) as e:
        load_palette(path)
    assert path in str(e.value)


def test_load_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.json.*format"):
        load_palette(tmp_path / "missing.json")


def test_palette_validation():
    with pytest.raises(ValueError, match="one name per colour"):
        Palette(names=("a",), colors=[[0, 0, 0], [1, 1, 1]])
    with pytest.raises(ValueError, match=r"\(K, 3\)"):
        Palette(names=("a",), colors=[[0, 0]])


def test_rgb_to_ids_inverts_colorize():
    ids = random_ids((9, 7), 4)
    rgb = colorize(ids, PALETTE.colors)
    out = rgb_to_ids(rgb, PALETTE)
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, ids)
    rgba = np.concatenate([rgb, np.full((9, 7, 1), 7, np.uint8)], -1)  # alpha is ignored
    np.testing.assert_array_equal(rgb_to_ids(rgba, PALETTE), ids)


def test_rgb_to_ids_unknown_colour_error():
    rgb = colorize(np.zeros((6, 5), np.uint8), PALETTE.colors)
    rgb[2, 3] = rgb[4, 1] = (1, 2, 3)  # e.g. an anti-aliased edge pixel
    with pytest.raises(ValueError) as e:
        rgb_to_ids(rgb, PALETTE, path_for_errors="labels/a.png")
    message = str(e.value)
    assert message.startswith("labels/a.png: 2 pixels")
    assert "(1, 2, 3)" in message and "(row 2, col 3)" in message
    assert "Add these colours to the palette file" in message


def test_rgb_to_ids_tf_matches_numpy_eagerly_and_in_tf_data():
    ids = random_ids((2, 10, 12), 4, seed=1)
    rgb = colorize(ids, PALETTE.colors)
    expected = rgb_to_ids(rgb[0], PALETTE).astype(np.int32)

    eager = rgb_to_ids_tf(tf.constant(rgb[0]), PALETTE)
    assert eager.dtype == tf.int32
    np.testing.assert_array_equal(eager.numpy(), expected)
    # Batched input works too: the lookup flattens every leading dimension.
    np.testing.assert_array_equal(rgb_to_ids_tf(rgb, PALETTE).numpy(), ids)

    dataset = tf.data.Dataset.from_tensor_slices(rgb).map(lambda x: rgb_to_ids_tf(x, PALETTE))
    mapped = np.stack([x.numpy() for x in dataset])
    np.testing.assert_array_equal(mapped, ids)


def test_rgb_to_ids_tf_unknown_colour_is_minus_one():
    rgb = colorize(np.full((3, 3), 2, np.uint8), PALETTE.colors)
    rgb[1, 1] = (255, 255, 255)  # above every palette key: exercises the clamp of the search position
    rgb[0, 2] = (0, 0, 0)  # below every palette key
    out = rgb_to_ids_tf(rgb, PALETTE).numpy()
    expected = np.full((3, 3), 2)
    expected[1, 1] = expected[0, 2] = -1
    np.testing.assert_array_equal(out, expected)


def test_default_colormap_scheme():
    cmap = default_colormap(256)
    assert cmap.shape == (256, 3) and cmap.dtype == np.uint8
    np.testing.assert_array_equal(cmap[:5], [[0, 0, 0], [128, 0, 0], [0, 128, 0], [128, 128, 0], [0, 0, 128]])
    # The same scheme is the PASCAL VOC colour map, whose values are widely published:
    # 5 bottle, 12 dog, 15 person, 20 tv monitor.
    np.testing.assert_array_equal(
        cmap[[5, 12, 15, 20]], [[128, 0, 128], [64, 0, 128], [192, 128, 128], [0, 64, 128]]
    )
    assert len(np.unique(cmap.astype(np.int64) @ [65536, 256, 1])) == 256  # every id its own colour


def test_colorize_out_of_range_is_black():
    colors = default_colormap(3)
    ids = np.array([[0, 1, 2], [3, 255, -1]])
    out = colorize(ids[..., None], colors)
    assert out.shape == (2, 3, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out[0], colors)
    np.testing.assert_array_equal(out[1], np.zeros((3, 3)))
