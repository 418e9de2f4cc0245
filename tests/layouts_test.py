"""Dataset layouts: finding and pairing files on tiny generated datasets."""

import os

import numpy as np
import pytest
from PIL import Image

from spade_tf.data import layouts
from spade_tf.data.layouts import Example, find_examples


def write_png(path, array=None, mode=None):
    """Writes an 8x8 picture (zeros unless `array` is given), creating folders."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if array is None:
        array = np.zeros((8, 8), np.uint8)
    Image.fromarray(array, mode).save(path)
    return str(path)


def write_photo(path):
    return write_png(path, np.full((8, 8, 3), 100, np.uint8))


def test_ade20k_selects_split_by_name_and_pairs_recursively(tmp_path):
    root = tmp_path / "ADEChallengeData2016"
    for split, folder in (("train", "training"), ("val", "validation")):
        for i in (1, 2):
            write_photo(root / "images" / folder / f"ADE_{split}_0000000{i}.jpg")
            write_png(root / "annotations" / folder / f"ADE_{split}_0000000{i}.png")
    orphan = write_photo(root / "images" / "training" / "ADE_train_00000003.jpg")

    scan = find_examples("ade20k", split="train", root=root)
    assert [e.name for e in scan.examples] == ["ADE_train_00000001", "ADE_train_00000002"]
    assert scan.examples[0] == Example(
        name="ADE_train_00000001",
        label=str(root / "annotations" / "training" / "ADE_train_00000001.png"),
        image=str(root / "images" / "training" / "ADE_train_00000001.jpg"),
        instance=None,
    )
    assert len(scan.unpaired) == 1
    assert orphan in scan.unpaired[0] and "no label" in scan.unpaired[0]
    assert "ADE_train_00000003.png" in scan.unpaired[0]
    assert scan.searched == [str(root / "images"), str(root / "annotations")]
    assert "ade20k" in scan.description and "split train" in scan.description

    val = find_examples("ade20k", split="val", root=root)
    assert [e.name for e in val.examples] == ["ADE_val_00000001", "ADE_val_00000002"]
    assert val.unpaired == []


def test_ade20k_has_no_instance_maps(tmp_path):
    with pytest.raises(ValueError, match="use_instance_map=False"):
        find_examples("ade20k", root=tmp_path, use_instance_map=True)


def test_cityscapes_pairs_by_prefix_with_16_bit_instances(tmp_path):
    gt = tmp_path / "gtFine" / "train"
    left = tmp_path / "leftImg8bit" / "train"
    key = "aachen_000000_000019"
    label = write_png(gt / "aachen" / f"{key}_gtFine_labelIds.png")
    instance_ids = np.full((8, 8), 26001, np.uint16)  # Cityscapes: class 26 * 1000 + instance 1
    instance = write_png(gt / "aachen" / f"{key}_gtFine_instanceIds.png", instance_ids)
    write_png(
        gt / "aachen" / f"{key}_gtFine_color.png", np.zeros((8, 8, 3), np.uint8)
    )  # not a label: ignored
    image = write_photo(left / "aachen" / f"{key}_leftImg8bit.png")
    # A second frame in another city lacks its instance map.
    write_png(gt / "bochum" / "bochum_000000_000313_gtFine_labelIds.png")
    write_photo(left / "bochum" / "bochum_000000_000313_leftImg8bit.png")

    scan = find_examples("cityscapes", root=tmp_path, use_instance_map=True)
    assert scan.examples == [Example(name=key, label=label, image=image, instance=instance)]
    assert len(scan.unpaired) == 1
    message = scan.unpaired[0]
    assert "bochum_000000_000313_gtFine_labelIds.png" in message
    assert str(gt / "bochum" / "bochum_000000_000313_gtFine_instanceIds.png") in message
    assert "use_instance_map=False" in message

    without = find_examples("cityscapes", root=tmp_path, use_instance_map=False)
    assert [e.name for e in without.examples] == [key, "bochum_000000_000313"]  # sorted by name
    assert all(e.instance is None for e in without.examples)
    assert without.unpaired == []


def test_coco_stuff_pairs_by_stem(tmp_path):
    for name in ("a", "b"):
        write_photo(tmp_path / "train_img" / f"{name}.jpg")
        write_png(tmp_path / "train_inst" / f"{name}.png")
    for name in ("a", "b", "c"):
        write_png(tmp_path / "train_label" / f"{name}.png")

    scan = find_examples("coco_stuff", root=tmp_path, use_instance_map=True)
    assert [e.name for e in scan.examples] == ["a", "b"]
    assert scan.examples[1].instance == str(tmp_path / "train_inst" / "b.png")
    assert scan.examples[1].image == str(tmp_path / "train_img" / "b.jpg")
    assert len(scan.unpaired) == 1
    assert str(tmp_path / "train_label" / "c.png") in scan.unpaired[0]
    assert "no image" in scan.unpaired[0] and "no instance" in scan.unpaired[0]

    with pytest.raises(FileNotFoundError) as e:
        find_examples("coco_stuff", split="val", root=tmp_path)
    assert str(tmp_path / "val_label") in str(e.value) and str(tmp_path / "val_img") in str(e.value)


def test_coco_stuff_missing_instance_folder(tmp_path):
    write_photo(tmp_path / "train_img" / "a.jpg")
    write_png(tmp_path / "train_label" / "a.png")
    assert len(find_examples("coco_stuff", root=tmp_path).examples) == 1
    with pytest.raises(FileNotFoundError) as e:
        find_examples("coco_stuff", root=tmp_path, use_instance_map=True)
    assert str(tmp_path / "train_inst") in str(e.value) and "coco_stuff" in str(e.value)


def test_custom_explicit_folders_and_image_extensions(tmp_path):
    labels, images = tmp_path / "labels", tmp_path / "photos"
    for name, ext in (
        ("a", ".jpg"),
        ("b", ".jpeg"),
        ("c", ".png"),
        ("d", ".bmp"),
        ("e", ".webp"),
        ("f", ".JPG"),
    ):
        write_png(labels / f"{name}.png")
        write_png(images / f"{name}{ext}", np.zeros((8, 8, 3), np.uint8))
    write_png(labels / "._a.png")  # macOS resource fork: skipped
    (images / "notes.txt").write_text("not an image")
    scan = find_examples("custom", label_dir=labels, image_dir=images)
    assert [e.name for e in scan.examples] == ["a", "b", "c", "d", "e", "f"]
    assert scan.examples[4].image == str(images / "e.webp")
    assert scan.unpaired == []
    assert scan.searched == [str(labels), str(images)]


def test_custom_root_layout_with_instances(tmp_path):
    split = tmp_path / "val"
    for name in ("x", "y"):
        write_png(split / "labels" / f"{name}.png")
        write_photo(split / "images" / f"{name}.jpg")
    write_png(split / "instances" / "x.png")
    scan = find_examples("custom", split="val", root=tmp_path, use_instance_map=True)
    assert [e.name for e in scan.examples] == ["x"]
    assert scan.examples[0].instance == str(split / "instances" / "x.png")
    assert len(scan.unpaired) == 1
    assert str(split / "labels" / "y.png") in scan.unpaired[0]
    assert str(split / "instances" / "y.png") in scan.unpaired[0]


def test_custom_duplicate_stems_are_reported(tmp_path):
    write_png(tmp_path / "l" / "a.png")
    write_photo(tmp_path / "i" / "a.jpg")
    write_photo(tmp_path / "i" / "a.png")
    scan = find_examples("custom", label_dir=tmp_path / "l", image_dir=tmp_path / "i")
    assert scan.examples == []
    assert len(scan.unpaired) == 1
    assert "a.jpg" in scan.unpaired[0] and "a.png" in scan.unpaired[0] and "keep one" in scan.unpaired[0]


def test_custom_needs_folders(tmp_path):
    with pytest.raises(ValueError, match="label_dir and image_dir"):
        find_examples("custom")
    with pytest.raises(ValueError, match="instance_dir"):
        find_examples("custom", label_dir=tmp_path, image_dir=tmp_path, use_instance_map=True)


def test_empty_folders_give_an_empty_scan(tmp_path):
    os.makedirs(tmp_path / "train" / "labels")
    os.makedirs(tmp_path / "train" / "images")
    scan = find_examples("custom", root=tmp_path)
    assert scan.examples == [] and scan.unpaired == []
    assert scan.searched == [str(tmp_path / "train" / "labels"), str(tmp_path / "train" / "images")]


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError) as e:
        find_examples("facades", root=tmp_path)
    for name in layouts.LAYOUTS:
        assert name in str(e.value)
    with pytest.raises(FileNotFoundError) as e:
        find_examples("cityscapes", root=tmp_path)
    assert str(tmp_path / "gtFine" / "train") in str(e.value) and "cityscapes" in str(e.value)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        find_examples("ade20k", root=tmp_path / "missing")
    with pytest.raises(ValueError, match="needs root"):
        find_examples("coco_stuff")
    with pytest.raises(ValueError, match="only apply to the custom layout"):
        find_examples("ade20k", root=tmp_path, label_dir=tmp_path)
