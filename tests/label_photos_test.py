"""label_photos: photos -> a custom-layout dataset; filters, report, splits, and the Flickr recipe end to end."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from spade_tf.data import check, demo, layouts
from spade_tf.data.palette import default_colormap, load_palette
from spade_tf.evaluation import oracle, segmenter
from spade_tf.tools.label_photos import REPORT_FILE, label_photos, read_class_names
from spade_tf.training import train_lib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class FakeSegmenter:
    """Reads the answer off the photo: id = red // 100, confidence = green / 255, don't-care where blue > 200."""

    output = "logits"
    ignore_id = 255
    batch_size = 3
    class_map = None

    def __init__(self, num_classes=3, add=0):
        self.num_classes = num_classes
        self.add = add
        self.calls = []

    def describe(self):
        return "fake"

    def predict(self, images):
        self.calls.append(images.shape)
        ids = images[..., 0].astype(np.int32) // 100 + self.add
        ids[images[..., 2] > 200] = 255
        return ids, images[..., 1].astype(np.float32) / 255


def _photo(path, red=0, green=255, blue=0, size=(16, 16), ignore_rows=0, exif=None):
    """A flat-colour photo; the top `ignore_rows` rows get blue 255 (don't-care for FakeSegmenter)."""
    w, h = size
    a = np.zeros((h, w, 3), np.uint8)
    a[...] = (red, green, blue)
    a[:ignore_rows, :, 2] = 255
    os.makedirs(os.path.dirname(path), exist_ok=True)
    kwargs = {} if exif is None else {"exif": exif}
    if str(path).endswith(".jpg"):
        kwargs["quality"] = 95
    Image.fromarray(a).save(path, **kwargs)


def _scan(root, split="train"):
    return layouts.find_examples("custom", split=split, root=str(root))


def _labels(root, split="train"):
    out = {}
    for name in sorted(os.listdir(os.path.join(root, split, "labels"))):
        with Image.open(os.path.join(root, split, "labels", name)) as im:
            out[name] = (im.mode, np.asarray(im))
    return out


@pytest.fixture
def photos(tmp_path):
    d = tmp_path / "photos"
    _photo(d / "a.png", red=0)  # class 0
    _photo(d / "b.jpg", red=150)  # class 1 (a flat colour survives JPEG within a few levels)
    _photo(d / "low_conf.png", red=0, green=50)  # confidence 0.2
    _photo(d / "mostly_ignored.png", red=0, ignore_rows=12)  # 25% usable
    _photo(d / "partly_ignored.png", red=0, ignore_rows=4)  # 75% usable
    (d / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    (d / "notes.txt").write_text("not a photo")
    _photo(d / "sub" / "c.png", red=250)  # class 2, only found with recursive
    _photo(d / "sub" / ".hidden.png", red=250)
    return d


def test_filters_report_and_layout(photos, tmp_path):
    out = tmp_path / "out"
    names = tmp_path / "names.txt"
    names.write_text("sky\ngrass\n\nrock\n")
    printed = []
    report = label_photos(
        FakeSegmenter(),
        photos,
        out,
        recursive=True,
        class_names=read_class_names(names)[0],
        min_confidence=0.5,
        min_coverage=0.5,
        out=printed.append,
    )
    assert sorted(w["name"] for w in report.written) == ["a", "b", "partly_ignored", "sub__c"]
    reasons = {os.path.basename(s["photo"]): s["reason"] for s in report.skipped}
    assert reasons == {
        "broken.jpg": "unreadable",
        "low_conf.png": "low_confidence",
        "mostly_ignored.png": "low_coverage",
    }
    assert report.photos_found == 7
    # Pixel counts: class 0 = a (256) + partly_ignored (192); 1 = b; 2 = c; 64 don't-care pixels.
    assert (
        report.class_pixels == [448, 256, 256]
        and report.class_images == [2, 1, 1]
        and report.ignore_pixels == 64
    )
    on_disk = json.loads((out / REPORT_FILE).read_text())
    assert on_disk == json.loads(json.dumps(report.to_json()))
    assert on_disk["num_skipped"] == {
        "unreadable": 1,
        "duplicate_name": 0,
        "low_confidence": 1,
        "low_coverage": 1,
    }
    assert (
        "contain_dontcare_label=True" in on_disk["train_command"]
        and "num_classes=3" in on_disk["train_command"]
    )
    text = "\n".join(printed)
    assert "low_conf.png: low_confidence (mean confidence 0.196 < min_confidence 0.5)" in text
    assert "mostly_ignored.png: low_coverage (25.0% usable pixels" in text

    palette = load_palette(out / "palette.json")
    assert palette.names == ("sky", "grass", "rock")
    np.testing.assert_array_equal(palette.colors, default_colormap(3))
    labels = _labels(out)
    assert sorted(labels) == ["a.png", "b.png", "partly_ignored.png", "sub__c.png"]
    assert all(mode == "L" for mode, _ in labels.values())
    assert np.all(labels["b.png"][1] == 1) and np.all(labels["sub__c.png"][1] == 2)
    assert np.all(labels["partly_ignored.png"][1][:4] == 255) and np.all(
        labels["partly_ignored.png"][1][4:] == 0
    )
    # Photos that needed no change are copied byte for byte (no second JPEG compression).
    assert (out / "train" / "images" / "b.jpg").read_bytes() == (photos / "b.jpg").read_bytes()
    assert not os.path.exists(out / "val")
    assert not [f for _, _, files in os.walk(out) for f in files if ".tmp-" in f]

    scan = _scan(out)
    assert check.check_dataset(scan, 3, contain_dontcare_label=True, use_instance_map=False).ok
    # The don't-care pixels are why the report asks for contain_dontcare_label=True.
    assert not check.check_dataset(scan, 3, contain_dontcare_label=False, use_instance_map=False).ok


def test_not_recursive_and_batches_by_size(photos, tmp_path):
    _photo(photos / "wide.png", red=0, size=(24, 16))
    seg = FakeSegmenter()
    report = label_photos(seg, photos, tmp_path / "out", out=lambda *_: None)
    assert "sub__c" not in [w["name"] for w in report.written] and report.photos_found == 7
    # Sorted names: a, b, [broken], low_conf, mostly_ignored, partly_ignored, wide: 3 + 2 of 16x16, then 24x16.
    assert seg.calls == [(3, 16, 16, 3), (2, 16, 16, 3), (1, 16, 24, 3)]


def test_existing_dataset_needs_overwrite(photos, tmp_path):
    out = tmp_path / "out"
    label_photos(FakeSegmenter(), photos, out, out=lambda *_: None)
    stale = out / "train" / "labels" / "stale.png"
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(stale)
    with pytest.raises(FileExistsError, match=f"{out} already holds a dataset .*pass overwrite=True"):
        label_photos(FakeSegmenter(), photos, out, out=lambda *_: None)
    label_photos(FakeSegmenter(), photos, out, overwrite=True, out=lambda *_: None)
    assert not stale.exists() and (out / "train" / "labels" / "a.png").exists()
    # The output may live in the photos folder: its own splits are never read back as photos.
    first = label_photos(FakeSegmenter(), photos, photos, recursive=True, out=lambda *_: None)
    again = label_photos(FakeSegmenter(), photos, photos, recursive=True, overwrite=True, out=lambda *_: None)
    assert first.photos_found == again.photos_found == 7
    # Overwriting must not delete the photos themselves.
    with pytest.raises(ValueError, match="inside .*which overwriting would delete"):
        label_photos(FakeSegmenter(), out / "train" / "images", out, overwrite=True, out=lambda *_: None)


def test_resize_shorter_and_exif_rotation(tmp_path):
    photos = tmp_path / "photos"
    _photo(photos / "wide.png", size=(40, 20))
    exif = Image.Exif()
    exif[0x0112] = 6  # stored landscape, shown portrait (rotate 90 degrees)
    _photo(photos / "rotated.jpg", size=(16, 8), exif=exif)
    out = tmp_path / "out"
    label_photos(FakeSegmenter(), photos, out, resize_shorter=10, out=lambda *_: None)
    sizes = {}
    for sub in ("images", "labels"):
        for name in os.listdir(out / "train" / sub):
            with Image.open(out / "train" / sub / name) as im:
                sizes[f"{sub}/{name}"] = im.size
    assert sizes == {
        "images/wide.png": (20, 10),
        "labels/wide.png": (20, 10),
        "images/rotated.jpg": (10, 20),
        "labels/rotated.png": (10, 20),
    }
    assert check.check_dataset(_scan(out), 3, False, False).ok


def test_val_split_is_seeded(tmp_path):
    photos = tmp_path / "photos"
    for i in range(8):
        _photo(photos / f"{i}.png")
    a = label_photos(FakeSegmenter(), photos, tmp_path / "a", val_fraction=0.25, seed=3, out=lambda *_: None)
    b = label_photos(FakeSegmenter(), photos, tmp_path / "b", val_fraction=0.25, seed=3, out=lambda *_: None)
    assert a.count("train") == 6 and a.count("val") == 2
    assert [w["split"] for w in a.written] == [w["split"] for w in b.written]
    assert len(_scan(tmp_path / "a", "val").examples) == 2 and len(_scan(tmp_path / "a").examples) == 6


def test_sixteen_bit_labels_and_inferred_classes(tmp_path):
    photos = tmp_path / "photos"
    _photo(photos / "a.png", red=0)
    seg = FakeSegmenter(num_classes=None, add=300)
    report = label_photos(seg, photos, tmp_path / "out", out=lambda *_: None)
    assert report.num_classes == 301 and report.class_names[300] == "class_300"
    ((mode, ids),) = _labels(tmp_path / "out").values()
    assert mode.startswith("I;16") and np.all(ids == 300)
    assert check.check_dataset(_scan(tmp_path / "out"), 301, False, False).ok


def test_bad_arguments(photos, tmp_path):
    quiet = {"out": lambda *_: None}
    with pytest.raises(ValueError, match="2 class names given but the segmenter gives 3 classes"):
        label_photos(FakeSegmenter(), photos, tmp_path / "o1", class_names=["a", "b"], **quiet)
    with pytest.raises(ValueError, match="predicted class id 2, outside 0..1 .*the 2 class names"):
        label_photos(
            FakeSegmenter(None), photos, tmp_path / "o2", recursive=True, class_names=["a", "b"], **quiet
        )
    ids_only = FakeSegmenter()
    ids_only.output = "ids"
    with pytest.raises(ValueError, match="outputs ids without confidences"):
        label_photos(ids_only, photos, tmp_path / "o3", min_confidence=0.5, **quiet)
    with pytest.raises(ValueError, match=r"val_fraction=1.0 must be in \[0, 1\)"):
        label_photos(FakeSegmenter(), photos, tmp_path / "o4", val_fraction=1.0, **quiet)
    with pytest.raises(FileNotFoundError, match="photos folder .*nowhere does not exist"):
        label_photos(FakeSegmenter(), tmp_path / "nowhere", tmp_path / "o5", **quiet)
    with pytest.raises(FileNotFoundError, match="no photos .* in .*photos/sub/deeper.*pass recursive=True"):
        (photos / "sub" / "deeper" / "more").mkdir(parents=True)
        _photo(photos / "sub" / "deeper" / "more" / "x.png")
        label_photos(FakeSegmenter(), photos / "sub" / "deeper", tmp_path / "o6", **quiet)
    # Every photo filtered out: an error, with the report on disk saying why.
    for i in range(2):
        _photo(tmp_path / "dim" / f"{i}.png", green=50)
    with pytest.raises(ValueError, match="no photo was written"):
        label_photos(FakeSegmenter(), tmp_path / "dim", tmp_path / "o7", min_confidence=0.5, **quiet)
    assert json.loads((tmp_path / "o7" / REPORT_FILE).read_text())["num_skipped"]["low_confidence"] == 2


def test_read_class_names(tmp_path):
    (tmp_path / "list.json").write_text('["sky", "tree"]')
    assert read_class_names(tmp_path / "list.json") == (("sky", "tree"), None)
    (tmp_path / "pal.json").write_text(
        json.dumps({"classes": [{"id": 0, "name": "sky", "color": [1, 2, 3]}]})
    )
    names, colors = read_class_names(tmp_path / "pal.json")
    assert names == ("sky",) and colors.tolist() == [[1, 2, 3]]
    (tmp_path / "bad.json").write_text("[sky]")
    with pytest.raises(ValueError, match="bad.json is not valid JSON"):
        read_class_names(tmp_path / "bad.json")
    with pytest.raises(FileNotFoundError, match="class names file .*missing.txt does not exist"):
        read_class_names(tmp_path / "missing.txt")


def test_demo_oracle_labels_train_a_spade(tmp_path):
    """The issue's done-when: the demo oracle, exported as a SavedModel, labels demo images; the dataset
    passes the check and trains with the custom config's small variant."""
    from spade_tf.config import load_config_file

    data = demo.generate_demo_dataset(root=str(tmp_path / "demo"), num_train=16, num_val=2, size=32)
    images, truth = oracle.load_split(data, "train")
    # A briefly trained oracle (~5 s): it labels the demo with ~90% pixel accuracy, plenty for the recipe.
    model = oracle.train_oracle(images, truth, len(demo.CLASS_NAMES), steps=150, batch_size=8)
    saved = segmenter.export_oracle_saved_model(model, tmp_path / "oracle_savedmodel")
    seg = segmenter.Segmenter(saved, input_range=segmenter.ORACLE_INPUT_RANGE)
    names, colors = read_class_names(os.path.join(data, "palette.json"))
    out = tmp_path / "labelled"
    report = label_photos(
        seg,
        os.path.join(data, "train", "images"),
        out,
        val_fraction=0.25,
        class_names=names,
        colors=colors,
        out=lambda *_: None,
    )
    assert report.count("train") == 12 and report.count("val") == 4 and not report.skipped

    # The labels are the oracle's own predictions, not the demo's ground truth.
    written = {}
    for split in ("train", "val"):
        for e in _scan(out, split).examples:
            with Image.open(e.label) as im:
                written[e.name] = np.asarray(im)
    predicted = oracle.predict_labels(model, images)
    stems = sorted(os.path.splitext(f)[0] for f in os.listdir(os.path.join(data, "train", "images")))
    agree = np.mean([np.mean(written[s] == predicted[i]) for i, s in enumerate(stems)])
    assert agree > 0.999  # exact but for near-ties (float32 rounding of the [0, 1] -> [-1, 1] rescale)
    accuracy = np.mean([np.mean(written[s] == truth[i]) for i, s in enumerate(stems)])
    assert 0.6 < accuracy < 1.0

    for split in ("train", "val"):
        report_ok = check.check_dataset(_scan(out, split), len(names), False, False)
        check.require_valid(report_ok)

    # The command line does the same (here with the palette file as --class_names).
    cli_out = tmp_path / "cli"
    result = subprocess.run(
        [
            sys.executable,
            os.path.join(ROOT, "label_photos.py"),
            f"--segmenter={saved}",
            f"--photos={os.path.join(data, 'train', 'images')}",
            f"--output={cli_out}",
            f"--class_names={os.path.join(data, 'palette.json')}",
            "--val_fraction=0.25",
        ],
        capture_output=True,
        text=True,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=ROOT),
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "written: 12 train, 4 val" in result.stdout and "Train with: python train.py" in result.stdout
    for split in ("train", "val"):
        a, b = _labels(out, split), _labels(cli_out, split)
        assert a.keys() == b.keys() and all(np.array_equal(a[k][1], b[k][1]) for k in a)
    result = subprocess.run(
        [
            sys.executable,
            os.path.join(ROOT, "label_photos.py"),
            f"--segmenter={saved}",
            f"--photos={os.path.join(data, 'train', 'images')}",
            f"--output={cli_out}",
        ],
        capture_output=True,
        text=True,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=ROOT),
        timeout=300,
    )
    assert (
        result.returncode == 1
        and "label_photos.py: error:" in result.stderr
        and "--overwrite" in result.stderr
    )

    config = load_config_file(os.path.join(ROOT, "configs", "custom.py") + ":small")
    config.data.root = str(out)
    config.data.num_classes = report.num_classes
    config.data.palette = str(out / "palette.json")
    config.data.load_size = 36
    config.data.crop_size = 32
    config.model.base_filters = 8
    config.model.spade.hidden_filters = 16
    config.discriminator.base_filters = 16
    config.encoder.image_size = 32
    config.train.batch_size = 2
    config.train.max_steps = 2
    config.train.log_every = 1
    config.train.image_every = 0
    config.eval.gallery_size = 2
    printed = []
    result = train_lib.train(config, str(tmp_path / "work"), out=printed.append)
    assert result["step"] == 2
    assert any("Result: OK" in p for p in printed)
    from spade_tf.models.bundle import load_bundle

    assert tuple(load_bundle(result["bundle"]).options["class_names"]) == names
