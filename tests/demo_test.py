"""The procedural demo dataset: determinism, on-disk layout, instance ids, caching, textures, looks."""

import json
import os

import numpy as np
import pytest
from PIL import Image

from spade_tf.data import demo

SMALL = {"num_train": 3, "num_val": 2, "size": 32}


def _files(root):
    out = {}
    for folder, _, names in os.walk(root):
        for name in names:
            path = os.path.join(folder, name)
            with open(path, "rb") as f:
                out[os.path.relpath(path, root)] = f.read()
    return out


def _examples(count, size=32, seed=11):
    return [
        demo.render_example(np.random.default_rng([seed, i]), size, demo.look_of_index(i))
        for i in range(count)
    ]


def test_same_seed_same_bytes_other_seed_differs(tmp_path):
    a = _files(demo.generate_demo_dataset(str(tmp_path / "a"), seed=5, **SMALL))
    b = _files(demo.generate_demo_dataset(str(tmp_path / "b"), seed=5, **SMALL))
    c = _files(demo.generate_demo_dataset(str(tmp_path / "c"), seed=6, **SMALL))
    assert a == b
    assert sorted(a) == sorted(c)
    images = [k for k in a if "images" in k]
    assert all(a[k] != c[k] for k in images)


def test_layout_and_file_modes(tmp_path):
    root = demo.generate_demo_dataset(str(tmp_path / "d"), seed=0, **SMALL)
    for split, count in (("train", 3), ("val", 2)):
        for kind, mode in (("labels", "L"), ("images", "RGB"), ("instances", "I;16")):
            folder = os.path.join(root, split, kind)
            assert sorted(os.listdir(folder)) == [f"{i:04d}.png" for i in range(count)]
            for name in os.listdir(folder):
                with Image.open(os.path.join(folder, name)) as im:
                    assert im.mode == mode
                    assert im.size == (32, 32)
    with open(os.path.join(root, "palette.json")) as f:
        palette = json.load(f)
    assert [c["id"] for c in palette["classes"]] == list(range(len(demo.CLASS_NAMES)))
    assert [c["name"] for c in palette["classes"]] == list(demo.CLASS_NAMES)
    assert all(len(c["color"]) == 3 for c in palette["classes"])
    assert len({tuple(c["color"]) for c in palette["classes"]}) == len(demo.CLASS_NAMES)
    assert os.path.isfile(os.path.join(root, "README.md"))
    assert not [n for n in os.listdir(tmp_path) if ".tmp" in n]


def test_files_hold_what_render_example_draws(tmp_path):
    root = demo.generate_demo_dataset(str(tmp_path / "d"), seed=2, **SMALL)
    # Seed 2, val, #1, in the second look.
    label, instance, image = demo.render_example(np.random.default_rng([2, 1, 1]), 32, demo.LOOKS[1])
    np.testing.assert_array_equal(np.asarray(Image.open(os.path.join(root, "val/labels/0001.png"))), label)
    np.testing.assert_array_equal(np.asarray(Image.open(os.path.join(root, "val/images/0001.png"))), image)
    np.testing.assert_array_equal(
        np.asarray(Image.open(os.path.join(root, "val/instances/0001.png"))), instance
    )


def test_instance_ids_follow_class_rule():
    objects = 0
    for label, instance, image in _examples(30):
        assert label.dtype == np.uint8 and instance.dtype == np.int32 and image.dtype == np.uint8
        assert label.max() < len(demo.CLASS_NAMES)
        np.testing.assert_array_equal(instance // demo.INSTANCE_STRIDE, label)
        things = np.isin(label, demo.THING_CLASSES)
        assert np.all(instance[~things] % demo.INSTANCE_STRIDE == 0)
        assert np.all(instance[things] % demo.INSTANCE_STRIDE >= 1)
        objects += len(np.unique(instance[things]))
    # Not vacuous: the sample holds many separate clouds and trees.
    assert objects >= 30


def test_every_class_appears_often():
    seen = np.zeros(len(demo.CLASS_NAMES))
    for label, _, _ in _examples(60):
        seen += np.bincount(label.ravel(), minlength=len(demo.CLASS_NAMES)) > 0
    # The scheme probabilities put every class in ~40% of images or more; 20% of 60 leaves a wide margin.
    assert np.all(seen >= 12), dict(zip(demo.CLASS_NAMES, seen))


def test_textures_are_not_flat():
    # 30 examples cycle through the four looks, the dim ones (overcast, dusk) included.
    for label, _, image in _examples(30):
        luminance = image.astype(np.float64).mean(-1)
        for cls in np.unique(label):
            mask = label == cls
            if mask.sum() < 16:
                continue
            # A flat colour under the whole-image light ramp and jitter has a std of about 3 at most;
            # every texture measured at >= 4.8 (trees under an overcast sky) over 400 images of 32 and 64 px
            # in the four looks.
            assert luminance[mask].std() > 4.0, demo.CLASS_NAMES[cls]


def test_complete_folder_is_reused_incomplete_one_regenerated(tmp_path):
    root = demo.generate_demo_dataset(str(tmp_path / "d"), seed=1, **SMALL)
    reference = _files(root)
    image = os.path.join(root, "train", "images", "0000.png")
    Image.new("RGB", (32, 32)).save(image)
    # Complete: returned as is, the edited file survives.
    assert demo.generate_demo_dataset(root, seed=1, **SMALL) == root
    assert (
        _files(root)[os.path.join("train", "images", "0000.png")]
        != reference[os.path.join("train", "images", "0000.png")]
    )
    # Incomplete (no marker, a file missing): regenerated from scratch.
    os.remove(os.path.join(root, demo._MARKER))
    os.remove(os.path.join(root, "val", "labels", "0001.png"))
    demo.generate_demo_dataset(root, seed=1, **SMALL)
    assert _files(root) == reference
    # Other parameters than the marker records: regenerated too.
    demo.generate_demo_dataset(root, seed=1, num_train=4, num_val=2, size=32)
    assert len(os.listdir(os.path.join(root, "train", "images"))) == 4


def test_overwrite_regenerates(tmp_path):
    root = demo.generate_demo_dataset(str(tmp_path / "d"), seed=1, **SMALL)
    reference = _files(root)
    Image.new("RGB", (32, 32)).save(os.path.join(root, "train", "images", "0000.png"))
    demo.generate_demo_dataset(root, seed=1, overwrite=True, **SMALL)
    assert _files(root) == reference


def test_a_generation_that_finishes_second_keeps_the_first(tmp_path, monkeypatch):
    """Two processes generating the same folder (two trainings, parallel tests): the one that finishes second
    must not delete the folder the first is already using (here: an oracle it cached there)."""
    root = str(tmp_path / "d")
    write_split = demo._write_split
    calls = []

    def racing_write_split(*args, **kwargs):
        if not calls:
            calls.append(1)
            # "The other process" generates the same dataset completely, then caches an oracle in it.
            demo.generate_demo_dataset(root, seed=1, **SMALL)
            with open(os.path.join(root, "oracle-cached.npz"), "w") as f:
                f.write("in use")
        return write_split(*args, **kwargs)

    monkeypatch.setattr(demo, "_write_split", racing_write_split)
    assert demo.generate_demo_dataset(root, seed=1, **SMALL) == root
    with open(os.path.join(root, "oracle-cached.npz")) as f:
        assert f.read() == "in use"
    assert not [e for e in os.listdir(tmp_path) if ".tmp-" in e]


def test_foreign_folder_is_left_alone(tmp_path):
    root = tmp_path / "mine"
    root.mkdir()
    (root / "thesis.tex").write_text("keep me")
    with pytest.raises(ValueError, match="thesis.tex.*nothing of yours is deleted"):
        demo.generate_demo_dataset(str(root), **SMALL)
    assert (root / "thesis.tex").read_text() == "keep me"


def test_default_root_uses_cache_env(tmp_path, monkeypatch):
    monkeypatch.setenv("SPADE_TF_CACHE", str(tmp_path))
    assert demo.default_cache_dir() == str(tmp_path)
    root = demo.generate_demo_dataset(seed=4, **SMALL)
    assert root == os.path.join(str(tmp_path), f"demo-v{demo.DEMO_VERSION}-seed4-32px")
    assert os.path.isfile(os.path.join(root, demo._MARKER))


@pytest.mark.parametrize(
    "kwargs, message",
    [({"size": 8}, "size must be an integer >= 16"), ({"seed": -1}, "seed"), ({"num_train": 0}, "num_train")],
)
def test_bad_arguments_are_named(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        demo.generate_demo_dataset(str(tmp_path / "d"), **{**SMALL, **kwargs})


def test_colorize_labels():
    labels = np.array([[0, 8], [3, 3]])
    colors = demo.colorize_labels(labels)
    assert colors.shape == (2, 2, 3) and colors.dtype == np.uint8
    np.testing.assert_array_equal(colors[0, 1], demo.PALETTE_COLORS[8])
    with pytest.raises(ValueError, match="label ids must be in"):
        demo.colorize_labels(np.array([9]))


def test_looks_json_is_written_and_balanced(tmp_path):
    root = demo.generate_demo_dataset(str(tmp_path / "d"), seed=0, num_train=10, num_val=8, size=32)
    with open(os.path.join(root, demo.LOOKS_FILE)) as f:
        recorded = json.load(f)
    assert sorted(recorded) == ["train", "val"]
    for split, count in (("train", 10), ("val", 8)):
        looks = demo.read_looks(root, split)
        assert looks == recorded[split]
        assert sorted(looks) == sorted(os.listdir(os.path.join(root, split, "images")))
        assert [looks[f"{i:04d}.png"] for i in range(count)] == [demo.look_of_index(i) for i in range(count)]
        counts = [list(looks.values()).count(look) for look in demo.LOOKS]
        # Round robin: every look, shares within one image of each other.
        assert min(counts) >= 1 and max(counts) - min(counts) <= 1, counts
    assert len(demo.LOOKS) >= 4
    with pytest.raises(ValueError, match="split must be one of"):
        demo.read_looks(root, "test")
    os.remove(os.path.join(root, demo.LOOKS_FILE))
    with pytest.raises(FileNotFoundError, match="regenerate"):
        demo.read_looks(root, "val")


def test_look_changes_colours_not_the_label_map():
    for layout in range(5):
        drawn = [demo.render_example(np.random.default_rng([7, 0, layout]), 64, look) for look in demo.LOOKS]
        for label, instance, _ in drawn[1:]:
            np.testing.assert_array_equal(label, drawn[0][0])
            np.testing.assert_array_equal(instance, drawn[0][1])
        images = [image.astype(np.float64) for _, _, image in drawn]
        # Every pair of looks differs in the mean colour of the top third (mostly sky) by far more than the
        # per-image jitter: measured 15.8 to 145 grey levels (largest channel) over 20 layouts.
        means = [im[: im.shape[0] // 3].reshape(-1, 3).mean(0) for im in images]
        for i in range(len(means)):
            for j in range(i):
                assert np.abs(means[i] - means[j]).max() > 10, (layout, demo.LOOKS[i], demo.LOOKS[j])
    with pytest.raises(ValueError, match="look must be one of"):
        demo.render_example(np.random.default_rng(0), 32, "noon")


def test_version_bump_regenerates_old_folders(tmp_path, monkeypatch):
    # Version 2 added the looks; a folder written by version 1 (its marker says so) is not reused.
    assert demo.DEMO_VERSION >= 2
    monkeypatch.setenv("SPADE_TF_CACHE", str(tmp_path))
    assert os.path.basename(demo.default_demo_root(0, 32)) == f"demo-v{demo.DEMO_VERSION}-seed0-32px"
    root = demo.generate_demo_dataset(str(tmp_path / "d"), seed=1, **SMALL)
    with open(os.path.join(root, demo._MARKER)) as f:
        marker = json.load(f)
    os.remove(os.path.join(root, demo.LOOKS_FILE))
    with open(os.path.join(root, demo._MARKER), "w") as f:
        json.dump({**marker, "version": 1}, f)
    demo.generate_demo_dataset(root, seed=1, **SMALL)
    assert os.path.isfile(os.path.join(root, demo.LOOKS_FILE))
