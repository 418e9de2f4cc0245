"""One label-map rule everywhere: the same PNGs give the same ids at every entry point.

The files encode one id map (with raw 255, don't care) as a palette-indexed PNG whose colours are not the
model's (and one whose colours are the model's, in another order), 8-bit grey, 16-bit grey, grey+alpha, RGB
and RGBA in the model's colours. Each entry point must read the ids, not the colours, of the palette PNGs:
`spade_tf.data.labels` (NumPy and TF), the tf.data pipeline, the dataset check, synthesize.py's reader, the
SavedModel's predict_png (against serving_default on the expected ids), TFLite fed from the NumPy reader,
and the painter page in a browser.
"""

import io
import os

import numpy as np
import pytest
import tensorflow as tf
from ai_edge_litert.interpreter import Interpreter
from PIL import Image

from spade_tf.data import check, labels, layouts, pipeline
from spade_tf.data.palette import Palette
from spade_tf.serving import export_lib, synthesis
from spade_tf.serving import server as serve
from spade_tf.serving.inference import load_synthesizer
from tests.painter_browser_test import driver, open_page, upload, wait_for  # noqa: F401 (driver: a fixture)
from tests.serve_test import running
from tests.test_case import tiny_bundle

NUM_CLASSES = 4
DONTCARE = NUM_CLASSES  # the don't-care id of a model with a don't-care label
SIZE = 32


def raw_ids():
    """The id map the files encode: 4x4 blocks of ids 0..3 and a block of raw 255 (don't care)."""
    coarse = np.random.default_rng(5).integers(0, NUM_CLASSES, (SIZE // 4, SIZE // 4))
    coarse[0, :2] = coarse[-1, -1] = 255
    coarse[1, :NUM_CLASSES] = np.arange(NUM_CLASSES)  # every class present
    return np.repeat(np.repeat(coarse, 4, 0), 4, 1).astype(np.uint8)


RAW = raw_ids()
EXPECTED = np.where(RAW == 255, DONTCARE, RAW).astype(np.int32)  # the model's ids


def _png(image):
    buf = io.BytesIO()
    image.save(buf, "PNG")
    return buf.getvalue()


def _palette_png(entries):
    image = Image.fromarray(RAW, "P")
    image.putpalette(np.asarray(entries, np.uint8).ravel().tolist())
    return _png(image)


def label_pngs(model_colours):
    """{kind: (PNG bytes, the raw ids the rule reads from it)}."""
    model_colours = np.asarray(model_colours, np.uint8)
    index = np.arange(256)
    # Not greys (r != g everywhere) and none of the model's colours: read as colours, they would fail.
    foreign = np.stack([index, 255 - index, (7 * index + 100) % 256], -1)
    assert not np.isin(labels.colour_keys(foreign), labels.colour_keys(model_colours)).any()
    # The model's own colours, shifted by one id: read as colours, they would give other ids.
    shifted = foreign.copy()
    shifted[:NUM_CLASSES] = model_colours[(np.arange(NUM_CLASSES) + 1) % NUM_CLASSES]
    rgb = model_colours[EXPECTED]  # don't care painted in its own colour (black), so read as id 4
    alpha = np.full((SIZE, SIZE, 1), 255, np.uint8)
    return {
        "palette_foreign_colours": (_palette_png(foreign), RAW),
        "palette_model_colours_shifted": (_palette_png(shifted), RAW),
        "grey_8_bit": (_png(Image.fromarray(RAW, "L")), RAW),
        "grey_16_bit": (_png(Image.fromarray(RAW.astype(np.uint16))), RAW),
        "grey_alpha": (_png(Image.fromarray(np.concatenate([RAW[..., None], alpha], -1), "LA")), RAW),
        "rgb": (_png(Image.fromarray(rgb, "RGB")), EXPECTED),
        "rgba": (_png(Image.fromarray(np.concatenate([rgb, alpha], -1), "RGBA")), EXPECTED),
    }


KINDS = (
    "palette_foreign_colours",
    "palette_model_colours_shifted",
    "grey_8_bit",
    "grey_16_bit",
    "grey_alpha",
    "rgb",
    "rgba",
)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A 32 px model with a don't-care label, exported once as a SavedModel and a float32 TFLite file."""
    root = tmp_path_factory.mktemp("labels")
    synth = load_synthesizer(
        tiny_bundle(
            root / "workdir",
            responsive=True,
            num_classes=NUM_CLASSES,
            contain_dontcare_label=True,
            use_instance_map=False,
            size=SIZE,
        )
    )
    export_dir = str(root / "export")
    version_dir = export_lib.export_saved_model(synth, export_dir)
    tflite = export_lib.export_tflite(synth, export_dir, variants=("float32",))["float32"]
    return synth, export_dir, version_dir, tflite


@pytest.fixture(scope="module")
def files(exported, tmp_path_factory):
    """The label PNGs on disk: {kind: (label path, raw ids)}, each with a photo beside it."""
    synth = exported[0]
    assert synth.info.palette.shape == (NUM_CLASSES + 1, 3)
    folder = tmp_path_factory.mktemp("label_pngs")
    photo = np.random.default_rng(1).integers(0, 256, (SIZE, SIZE, 3), np.uint8)
    out = {}
    for kind, (data, raw) in label_pngs(synth.info.palette).items():
        path = folder / kind / "train" / "labels" / "a.png"
        os.makedirs(path.parent)
        path.write_bytes(data)
        os.makedirs(folder / kind / "train" / "images")
        Image.fromarray(photo).save(folder / kind / "train" / "images" / "a.png")
        out[kind] = (str(path), raw)
    return out


@pytest.fixture(scope="module")
def model_palette(exported):
    info = exported[0].info
    return Palette(names=info.class_names, colors=info.palette)


def test_the_files_are_what_they_claim(files):
    modes = {kind: Image.open(path).mode for kind, (path, _) in files.items()}
    assert modes == {
        "palette_foreign_colours": "P",
        "palette_model_colours_shifted": "P",
        "grey_8_bit": "L",
        "grey_16_bit": "I;16",
        "grey_alpha": "LA",
        "rgb": "RGB",
        "rgba": "RGBA",
    }


@pytest.mark.parametrize("kind", KINDS)
def test_numpy_and_graph_readers_agree(kind, files, exported):
    path, raw = files[kind]
    colours = exported[0].info.palette
    np.testing.assert_array_equal(labels.read_label_ids(path, colours), raw)
    data = tf.io.read_file(path)
    np.testing.assert_array_equal(labels.decode_label_png_tf(data, colours, path).numpy(), raw)
    graph = tf.function(
        lambda d: labels.decode_label_png_tf(d, colours, strict_colours=True), autograph=False
    )
    np.testing.assert_array_equal(graph(data).numpy(), raw)
    np.testing.assert_array_equal(labels.dontcare_to_id(raw, NUM_CLASSES, True), EXPECTED)
    if kind.startswith("palette"):
        # Read as colours, the palette PNGs would give other ids or none: the index is what counts.
        as_rgb = np.asarray(Image.open(path).convert("RGB"))
        try:
            assert not np.array_equal(labels.colours_to_ids(as_rgb, colours), EXPECTED)
        except ValueError as e:
            assert "not in the palette" in str(e)


@pytest.mark.parametrize("kind", KINDS)
def test_tf_data_pipeline(kind, files, model_palette):
    path, _ = files[kind]
    photo = path.replace(os.sep + "labels" + os.sep, os.sep + "images" + os.sep)
    ds = pipeline.build_dataset(
        [(path, photo)],
        num_classes=NUM_CLASSES,
        contain_dontcare_label=True,
        use_instance_map=False,
        preprocess_mode="none",
        load_size=SIZE,
        crop_size=SIZE,
        aspect_ratio=1.0,
        flip=False,
        training=False,
        batch_size=1,
        repeat=False,
        palette=model_palette,
    )
    np.testing.assert_array_equal(next(iter(ds))["label"].numpy()[0], EXPECTED)


@pytest.mark.parametrize("kind", KINDS)
def test_dataset_check(kind, files, model_palette):
    path, raw = files[kind]
    root = os.path.dirname(os.path.dirname(os.path.dirname(path)))
    scan = layouts.find_examples("custom", root=root)
    report = check.check_dataset(scan, NUM_CLASSES, True, False, palette=model_palette, num_threads=1)
    assert report.ok, report.format()
    assert report.label_ids == np.unique(raw).tolist()
    assert report.has_255 == (raw == 255).any()


def test_synthesize_reader(files, exported, tmp_path):
    synth = exported[0]
    for kind, (path, _) in files.items():
        np.testing.assert_array_equal(synthesis.read_label_ids(path, synth), EXPECTED, err_msg=kind)
    folder = tmp_path / "labels"
    os.makedirs(folder)
    for kind, (path, _) in files.items():
        (folder / f"{kind}.png").write_bytes(open(path, "rb").read())
    items = synthesis.load_label_folder(synth, str(folder), out=str)
    assert sorted(item.name for item in items) == sorted(KINDS)
    for item in items:
        np.testing.assert_array_equal(item.label, EXPECTED, err_msg=item.name)


@pytest.fixture(scope="module")
def saved_model_images(exported, files):
    """predict_png of every file in one request, and serving_default of the expected ids, as uint8 images."""
    loaded = tf.saved_model.load(exported[2])
    pngs = tf.constant([open(files[kind][0], "rb").read() for kind in KINDS])
    out = loaded.signatures["predict_png"](label_png_bytes=pngs)["image_png_bytes"].numpy()
    from_png = np.stack([np.asarray(Image.open(io.BytesIO(s))) for s in out])
    ids = np.repeat(EXPECTED[None], len(KINDS), 0)
    from_ids = loaded.signatures["serving_default"](labels=tf.constant(ids))["images"].numpy()
    # Another id map (all class 0), to show that the images depend on the ids.
    other = loaded.signatures["serving_default"](labels=tf.constant(ids[:1] * 0))["images"].numpy()
    return from_png, from_ids, other


def test_saved_model_signatures(saved_model_images):
    from_png, from_ids, other = saved_model_images
    assert from_png.shape == (len(KINDS), SIZE, SIZE, 3)
    for i, kind in enumerate(KINDS):
        np.testing.assert_array_equal(from_png[i], from_ids[i], err_msg=kind)
    # The image depends on the ids, so the equality above means something.
    assert np.abs(from_ids[0].astype(int) - other[0].astype(int)).mean() > 1


def test_tflite_fed_from_the_numpy_reader(exported, files, saved_model_images):
    # TFLite has no PNG op: the documented path reads the PNG with spade_tf.data.labels and feeds ids.
    ids = np.stack([labels.read_label_ids(files[kind][0], exported[0].info.palette) for kind in KINDS])
    runner = Interpreter(model_path=exported[3]).get_signature_runner("serving_default")
    images = runner(labels=ids.astype(np.int32))["images"]
    # Same float32 math in another kernel library: truncation to uint8 may move a value by one grey level.
    assert images.shape == saved_model_images[0].shape
    assert np.abs(images.astype(int) - saved_model_images[0].astype(int)).max() <= 1


@pytest.fixture(scope="module")
def painter_server(exported):
    servable = serve.ModelServable(exported[1], max_concurrent=2, max_queue=4, queue_timeout_s=30)
    with running(serve.SpadeHTTPServer(("127.0.0.1", 0), servable)) as srv:
        yield srv


def test_painter_upload(files, painter_server, driver):  # noqa: F811 (driver: the imported fixture)
    open_page(driver, painter_server.url + "/")
    for kind in KINDS:
        # Cleared, the map is all don't care; the upload is done when any other id appears (or an error).
        driver.find_element("id", "clear").click()
        assert set(driver.execute_script("return window.painter.ids()")) == {DONTCARE}
        upload(driver, "upload-label", files[kind][0])
        wait_for(
            driver,
            f"return window.painter.ids().some((v) => v !== {DONTCARE}) || "
            "document.getElementById('status').classList.contains('error')",
            f"the upload of {kind}",
        )
        status = driver.find_element("id", "status")
        assert "error" not in status.get_attribute("class"), (kind, status.text)
        ids = np.array(driver.execute_script("return window.painter.ids()"), np.int64).reshape(SIZE, SIZE)
        np.testing.assert_array_equal(ids, EXPECTED, err_msg=kind)
