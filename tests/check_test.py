"""The dataset check: every bad-data case names the file and the fix; a clean dataset passes."""

import os

import numpy as np
import pytest
from PIL import Image

from spade_tf.data.check import DatasetError, check_dataset, require_valid
from spade_tf.data.layouts import find_examples
from spade_tf.data.palette import Palette, colorize

PALETTE = Palette(names=("sky", "grass", "cow"), colors=[[135, 206, 235], [0, 160, 0], [120, 60, 20]])


def save(path, array, mode=None):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(array, mode).save(path)
    return str(path)


def ids_map(values, size=(8, 8)):
    """An 8-bit label map holding each of `values` at least once."""
    flat = np.resize(np.asarray(values, np.uint8), size[0] * size[1])
    return flat.reshape(size)


def make_custom(root, labels, image_size=(8, 8), instances=None):
    """A custom-layout dataset: labels is {name: array}; photos are grey, of `image_size` (H, W)."""
    for name, label in labels.items():
        save(root / "train" / "labels" / f"{name}.png", label)
        save(root / "train" / "images" / f"{name}.jpg", np.full(image_size + (3,), 90, np.uint8))
    for name, instance in (instances or {}).items():
        save(root / "train" / "instances" / f"{name}.png", instance)
    return find_examples("custom", root=root, use_instance_map=instances is not None)


def check(scan, num_classes=6, contain_dontcare_label=False, use_instance_map=False, **kwargs):
    return check_dataset(scan, num_classes, contain_dontcare_label, use_instance_map, num_threads=2, **kwargs)


def only_error(report):
    assert len(report.errors) == 1, report.format()
    return report.errors[0]


def test_clean_dataset_is_ok(tmp_path):
    scan = make_custom(tmp_path, {"a": ids_map([0, 1]), "b": ids_map([2, 5]), "c": ids_map([1])})
    report = check(scan)
    assert report.ok, report.format()
    assert report.num_pairs == 3
    assert report.label_ids == [0, 1, 2, 5]
    assert not report.has_255 and report.instances_available == 0
    assert report.errors == report.unpaired == report.unreadable == report.size_mismatches == []
    text = report.format()
    assert "pairs found: 3" in text and "0-2, 5" in text and "Result: OK" in text
    require_valid(report)  # does not raise


def test_palette_indexed_and_16_bit_labels_are_ids(tmp_path):
    p_mode = Image.fromarray(ids_map([0, 3]), "L").convert("P")  # the index is the id, as officially read
    os.makedirs(tmp_path / "train" / "labels")
    p_mode.save(tmp_path / "train" / "labels" / "p.png")
    save(tmp_path / "train" / "labels" / "wide.png", ids_map([1, 2]).astype(np.uint16))
    for name in ("p", "wide"):
        save(tmp_path / "train" / "images" / f"{name}.png", np.zeros((8, 8, 3), np.uint8))
    report = check(find_examples("custom", root=tmp_path))
    assert report.ok, report.format()
    assert report.label_ids == [0, 1, 2, 3]


def test_id_at_least_num_classes(tmp_path):
    scan = make_custom(tmp_path, {"a": ids_map([0, 1]), "b": ids_map([0, 7, 9])})
    report = check(scan, num_classes=6)
    message = only_error(report)
    assert str(tmp_path / "train" / "labels" / "b.png") in message
    assert "7, 9" in message and "set num_classes (label_nc) to at least 10" in message
    assert report.label_ids == [0, 1, 7, 9]


def test_255_needs_contain_dontcare_label(tmp_path):
    scan = make_custom(tmp_path, {"a": ids_map([0, 255])})
    report = check(scan)
    message = only_error(report)
    assert str(tmp_path / "train" / "labels" / "a.png") in message
    assert "don't-care" in message and "contain_dontcare_label=True" in message
    assert report.has_255

    allowed = check(scan, contain_dontcare_label=True)
    assert allowed.ok and allowed.has_255 and allowed.label_ids == [0, 255]


def test_dontcare_id_equal_to_num_classes_is_valid(tmp_path):
    # ADE20K: raw ids 0..150 with num_classes=150 and the don't-care channel at id 150.
    scan = make_custom(tmp_path, {"a": ids_map([0, 6])})
    assert check(scan, num_classes=6, contain_dontcare_label=True).ok
    assert not check(scan, num_classes=6, contain_dontcare_label=False).ok


def test_rgb_label_without_palette(tmp_path):
    scan = make_custom(tmp_path, {"a": colorize(ids_map([0, 1, 2]), PALETTE.colors)})
    message = only_error(check(scan))
    assert str(tmp_path / "train" / "labels" / "a.png") in message
    assert "single-channel class ids" in message and "palette file" in message and '"classes"' in message


def test_rgb_label_with_palette(tmp_path):
    rgba = np.concatenate([colorize(ids_map([0, 2]), PALETTE.colors), np.full((8, 8, 1), 255, np.uint8)], -1)
    scan = make_custom(tmp_path, {"a": colorize(ids_map([0, 1]), PALETTE.colors), "b": rgba})
    report = check(scan, num_classes=3, palette=PALETTE)
    assert report.ok, report.format()
    assert report.label_ids == [0, 1, 2]


def test_rgb_label_with_unknown_colour(tmp_path):
    rgb = colorize(ids_map([0, 1]), PALETTE.colors)
    rgb[3, 4] = (250, 0, 250)
    scan = make_custom(tmp_path, {"a": rgb})
    message = only_error(check(scan, num_classes=3, palette=PALETTE))
    assert str(tmp_path / "train" / "labels" / "a.png") in message
    assert "(250, 0, 250)" in message and "(row 3, col 4)" in message and "palette file" in message


def test_missing_partner(tmp_path):
    make_custom(tmp_path, {"a": ids_map([0])})
    save(tmp_path / "train" / "labels" / "lonely.png", ids_map([1]))
    scan = find_examples("custom", root=tmp_path)
    report = check(scan)
    message = only_error(report)
    assert str(tmp_path / "train" / "labels" / "lonely.png") in message
    assert "no image" in message and "add the missing file" in message
    assert report.unpaired == [message] and report.num_pairs == 1


def test_corrupt_files(tmp_path):
    scan = make_custom(tmp_path, {"a": ids_map([0]), "b": ids_map([1]), "c": ids_map([1])})
    label = tmp_path / "train" / "labels" / "a.png"
    label.write_bytes(b"this is not a png")
    image = tmp_path / "train" / "images" / "b.jpg"
    image.write_bytes(b"\xff\xd8 broken")
    truncated = tmp_path / "train" / "labels" / "c.png"
    truncated.write_bytes(truncated.read_bytes()[:-30])  # cut inside the image data
    report = check(scan)
    assert len(report.unreadable) == 3, report.format()
    for path in (label, image, truncated):
        assert any(str(path) in m and "re-export or re-download" in m for m in report.unreadable), path
    assert set(report.unreadable) <= set(report.errors)


def test_truncated_jpeg_needs_decode_images(tmp_path):
    scan = make_custom(tmp_path, {"a": ids_map([0], (32, 32))}, image_size=(32, 32))
    photo = tmp_path / "train" / "images" / "a.jpg"
    noise = np.random.default_rng(0).integers(0, 256, (32, 32, 3)).astype(np.uint8)
    save(photo, noise)
    photo.write_bytes(photo.read_bytes()[: len(photo.read_bytes()) // 2])
    assert check(scan).ok  # the header is intact; only a full decode finds the cut
    report = check(scan, decode_images=True)
    assert any(str(photo) in m for m in report.unreadable), report.format()


def test_size_mismatches(tmp_path):
    scan = make_custom(
        tmp_path,
        {"a": ids_map([0]), "b": ids_map([0])},
        image_size=(8, 10),
        instances={"a": np.zeros((8, 8), np.uint8), "b": np.zeros((6, 8), np.uint8)},
    )
    report = check(scan, use_instance_map=True)
    assert len(report.size_mismatches) == 3, report.format()
    label_a = str(tmp_path / "train" / "labels" / "a.png")
    assert any(label_a in m and "8x8" in m and "10x8" in m and "resize" in m for m in report.size_mismatches)
    instance_b = str(tmp_path / "train" / "instances" / "b.png")
    assert any(instance_b in m and "8x6" in m and "8x8" in m for m in report.size_mismatches)
    assert set(report.size_mismatches) <= set(report.errors)


def test_rgb_instance_map(tmp_path):
    scan = make_custom(tmp_path, {"a": ids_map([0])}, instances={"a": np.zeros((8, 8, 3), np.uint8)})
    message = only_error(check(scan, use_instance_map=True))
    assert str(tmp_path / "train" / "instances" / "a.png") in message and "single-channel" in message


def test_use_instance_map_with_a_scan_without_instances(tmp_path):
    scan = make_custom(tmp_path, {"a": ids_map([0])})
    message = only_error(check(scan, use_instance_map=True))
    assert "find_examples with use_instance_map=True" in message


def test_empty_folders(tmp_path):
    os.makedirs(tmp_path / "train" / "labels")
    os.makedirs(tmp_path / "train" / "images")
    report = check(find_examples("custom", root=tmp_path))
    message = only_error(report)
    assert str(tmp_path / "train" / "labels") in message and str(tmp_path / "train" / "images") in message
    assert "expected layout (custom)" in message
    with pytest.raises(DatasetError) as e:
        require_valid(report)
    assert str(e.value) == report.format() and e.value.report is report


def test_cityscapes_with_16_bit_instances(tmp_path):
    gt = tmp_path / "gtFine" / "train" / "ulm"
    for i in range(2):
        key = f"ulm_000000_00000{i}"
        save(gt / f"{key}_gtFine_labelIds.png", ids_map([7, 26, 33]))
        instance = np.where(np.arange(64).reshape(8, 8) < 32, 26000 + i, 7).astype(np.uint16)
        save(gt / f"{key}_gtFine_instanceIds.png", instance)
        save(
            tmp_path / "leftImg8bit" / "train" / "ulm" / f"{key}_leftImg8bit.png",
            np.zeros((8, 8, 3), np.uint8),
        )
    scan = find_examples("cityscapes", root=tmp_path, use_instance_map=True)
    report = check(scan, num_classes=35, use_instance_map=True)
    assert report.ok, report.format()
    assert report.instances_available == 2 and report.label_ids == [7, 26, 33]


def test_format_caps_long_lists(tmp_path):
    scan = make_custom(tmp_path, {f"x{i:02d}": ids_map([255]) for i in range(30)})
    report = check(scan)
    assert len(report.errors) == 30
    text = report.format()
    assert "... and 10 more" in text
    assert text.count("don't-care") == 20
    assert "Result: 30 errors" in text


def test_largest_id_below_num_classes_warns(tmp_path):
    report = check(make_custom(tmp_path, {"a": ids_map([0, 2])}), num_classes=10)
    assert report.ok
    assert len(report.warnings) == 1 and "num_classes=3" in report.warnings[0]


def test_palette_indexed_label_with_other_colours_warns(tmp_path):
    img = Image.fromarray(ids_map([0, 1]), "P")
    img.putpalette([1, 2, 3, 4, 5, 6])  # not PALETTE's colours
    os.makedirs(tmp_path / "train" / "labels")
    img.save(tmp_path / "train" / "labels" / "a.png")
    save(tmp_path / "train" / "images" / "a.png", np.zeros((8, 8, 3), np.uint8))
    report = check(find_examples("custom", root=tmp_path), num_classes=3, palette=PALETTE)
    assert report.ok and report.label_ids == [0, 1]
    assert len(report.warnings) == 2 and "save the label map as RGB" in report.warnings[0]
