"""SavedModel export: layout and metadata, reload in a fresh process vs the Keras model, saved_model_cli,
and the INVALID_ARGUMENT message of each bad input."""

import io
import json
import os
import pickle
import struct
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from spade_tf.models.bundle import load_bundle, save_bundle
from spade_tf.serving import export_lib
from spade_tf.serving.inference import Synthesizer, load_synthesizer
from spade_tf.utils import file_sha256
from tests.test_case import run_script, tiny_bundle

# Graph and eager float rounding may differ by ~1e-6, which can move a value across a uint8 truncation
# boundary: exported and Keras images agree within one grey level.
UINT8_STEP = 1
# Small work bounds, so that going over them is cheap: every other input of these tests fits them.
PLAIN_LIMITS = export_lib.Limits(max_maps=4, max_pixels=8192, max_style_pixels=3000)
VAE_LIMITS = export_lib.Limits(max_maps=3, max_pixels=8192, max_style_pixels=3000)


def calibrated_bundle(path, **kwargs):
    """A `tiny_bundle` whose outputs are not saturated, so comparisons of images mean something.

    A random-weight generator in eval mode has activations of ~1e16 (initial running variance 1, random
    spectral-norm vectors): every pixel is 0 or 255 and any two models "agree". Scaling the SPADE convs
    (`mlp_*`, no spectral norm) 10x makes labels and instance edges change the image by ~10 grey levels
    instead of ~0.1; a few training-mode calls then set the batch-norm statistics and spectral-norm vectors;
    scaling conv_img (no spectral norm) and the encoder's fc_mu spreads the images over the grey levels and
    makes the style latents matter.
    """
    path = tiny_bundle(path, **kwargs)
    bundle = load_bundle(path)
    synth = Synthesizer(bundle)
    g, e = bundle.generator, bundle.encoder
    # Calibrated through the twin without XLA (same weights): the XLA gather would compile here.
    plain = export_lib.serving_synthesizer(synth, "segment_sum").generator
    labels = coarse_labels(4, seed=99)
    z = tf.random.stateless_normal([4, g.latent_dim], seed=[1, 2]) if g.use_vae else None
    semantics = synth.semantics(labels)
    for w in plain.weights:
        if "mlp_" in w.path and "kernel" in w.path:
            w.assign(w * 10.0)
    for _ in range(3):
        plain(semantics, z, training=True)
    out = plain(semantics, z, training=False)
    plain.conv_img.weights[0].assign(plain.conv_img.weights[0] * (0.5 / float(tf.math.reduce_std(out))))
    by_path = {w.path: w for w in plain.weights}
    for w in g.weights:
        w.assign(by_path[w.path])
    if e is not None:
        styles = tf.random.stateless_uniform([4, 32, 32, 3], seed=[3, 4], minval=-1, maxval=1)
        for _ in range(2):
            e(styles, training=True)
        mu, _ = e(styles, training=False)
        e.fc_mu.kernel.assign(e.fc_mu.kernel * (1.0 / float(tf.math.reduce_std(mu))))
    return save_bundle(path, g, bundle.discriminator, e, bundle.options)


def shared_bundle(tmp_path_factory, **kwargs):
    """`calibrated_bundle(**kwargs)` made once per test session (the test modules share it, read-only)."""
    key = "-".join(f"{k}={v}" for k, v in sorted(kwargs.items())) or "default"
    folder = tmp_path_factory.getbasetemp() / f"calibrated-{key}"
    path = folder / "model.keras"
    return str(path) if path.exists() else calibrated_bundle(folder, **kwargs)


def coarse_labels(n, size=(32, 32), classes=4, seed=0, block=8):
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, classes, (n, size[0] // block, size[1] // block))
    return np.repeat(np.repeat(coarse, block, 1), block, 2).astype(np.int32)


def png_bytes(array, mode=None):
    buf = io.BytesIO()
    Image.fromarray(array, mode).save(buf, "PNG")
    return buf.getvalue()


def grey_png(labels, bits=8):
    return png_bytes(labels.astype(np.uint16 if bits == 16 else np.uint8))


def colour_png(labels, palette, alpha=False):
    rgb = np.asarray(palette, np.uint8)[np.where(labels == 255, len(palette) - 1, labels)]
    if alpha:
        rgb = np.concatenate([rgb, np.full(rgb.shape[:2] + (1,), 255, np.uint8)], -1)
    return png_bytes(rgb)


def claimed_png(width, height):
    """A 32x32 grey PNG whose header claims another size: a decompression bomb's header on a tiny body."""
    data = grey_png(coarse_labels(1)[0])
    return data[:16] + struct.pack(">II", width, height) + data[24:]


def claimed_jpeg(width, height):
    """An 8x8 JPEG whose frame header (SOF0) claims another size."""
    buf = io.BytesIO()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(buf, "JPEG")
    data = buf.getvalue()
    sof = data.index(b"\xff\xc0")
    return data[: sof + 5] + struct.pack(">HH", height, width) + data[sof + 9 :]


def decode_pngs(strings):
    return np.stack([np.array(Image.open(io.BytesIO(s))) for s in strings])


def assert_close_uint8(actual, expected):
    assert actual.dtype == np.uint8 and actual.shape == expected.shape
    assert np.abs(actual.astype(int) - expected.astype(int)).max() <= UINT8_STEP


@pytest.fixture(scope="module")
def plain(tmp_path_factory):
    """Non-VAE model with instance maps, exported as version 1."""
    root = tmp_path_factory.mktemp("plain")
    synth = load_synthesizer(shared_bundle(tmp_path_factory))
    version_dir = export_lib.export_saved_model(synth, str(root / "export"), limits=PLAIN_LIMITS)
    return synth, str(root / "export"), version_dir


@pytest.fixture(scope="module")
def vae(tmp_path_factory):
    """VAE model with a don't-care label and instance maps."""
    root = tmp_path_factory.mktemp("vae")
    synth = load_synthesizer(shared_bundle(tmp_path_factory, use_vae=True, contain_dontcare_label=True))
    version_dir = export_lib.export_saved_model(synth, str(root / "export"), limits=VAE_LIMITS)
    return synth, str(root / "export"), version_dir


@pytest.fixture(scope="module")
def loaded(plain, vae):
    return {"plain": tf.saved_model.load(plain[2]), "vae": tf.saved_model.load(vae[2])}


def test_layout_and_metadata(plain, vae):
    synth, export_dir, version_dir = vae
    assert version_dir == os.path.join(export_dir, "1")
    assert os.path.isfile(os.path.join(version_dir, "saved_model.pb"))
    # Only the version folder and the metadata: the temporary folder was renamed, not left behind.
    assert sorted(os.listdir(export_dir)) == ["1", "metadata.json"]
    meta = export_lib.read_metadata(export_dir)
    assert meta["model"] == json.loads(json.dumps(synth.info.to_json()))
    assert meta["source"]["path"] == synth.source
    assert meta["source"]["sha256"] == file_sha256(synth.source) and len(meta["source"]["sha256"]) == 64
    assert meta["options"]["config"]["model"]["use_vae"] is True
    assert meta["files"]["saved_model_versions"] == [1]
    assert sorted(meta["signatures"]) == ["predict_png", "serving_default", "style", "style_png"]
    sd = meta["signatures"]["serving_default"]
    assert sd["method_name"] == "tensorflow/serving/predict"
    assert sd["inputs"] == {
        "labels": {"dtype": "int32", "shape": [-1, 32, 32]},
        "instances": {"dtype": "int32", "shape": [-1, 32, 32]},
        "seed": {"dtype": "int32", "shape": [-1]},
    }
    assert sd["outputs"] == {"images": {"dtype": "uint8", "shape": [-1, 32, 32, 3]}}
    assert meta["signatures"]["style_png"]["inputs"]["style_png_bytes"] == {"dtype": "string", "shape": [-1]}
    assert meta["spade_tf_version"] == "0.1.0" and meta["exported_at"]
    assert meta["limits"] == {"max_maps": 3, "max_pixels": 8192, "max_style_pixels": 3000}
    plain_meta = export_lib.read_metadata(plain[1])
    assert sorted(plain_meta["signatures"]) == ["predict_png", "serving_default"]
    # Non-VAE models take any multiple of 32: H and W are dynamic.
    assert plain_meta["signatures"]["serving_default"]["inputs"] == {
        "labels": {"dtype": "int32", "shape": [-1, -1, -1]},
        "instances": {"dtype": "int32", "shape": [-1, -1, -1]},
    }
    assert plain_meta["signatures"]["predict_png"]["inputs"] == {
        "label_png_bytes": {"dtype": "string", "shape": [-1]}
    }


def test_saved_model_owns_the_weights_and_has_no_xla_functions(plain, vae, loaded):
    from tensorflow.core.protobuf import saved_model_pb2

    for name, (synth, _, version_dir) in (("plain", plain), ("vae", vae)):
        expected = len(synth.generator.weights) + (len(synth.encoder.weights) if synth.info.use_vae else 0)
        assert len(loaded[name].model_weights) == expected
        proto = saved_model_pb2.SavedModel()
        with open(os.path.join(version_dir, "saved_model.pb"), "rb") as f:
            proto.ParseFromString(f.read())
        functions = proto.meta_graphs[0].graph_def.library.function
        assert functions
        # TF Serving refuses XLA-compiled functions unless started with --xla_cpu_compilation_enabled.
        assert not [f.signature.name for f in functions if "_XlaMustCompile" in f.attr]
        # The fast path is there, without XLA: SPADE's shared conv as a sparse segment sum of kernel rows.
        ops = {node.op for f in functions for node in f.node_def}
        assert "SparseSegmentSum" in ops, sorted(ops)
    assert vae[0].generator.first_spade.fast  # the Keras model uses the fast path too


def test_versions_are_refused_replaced_and_written_atomically(plain, tmp_path, monkeypatch):
    synth = plain[0]

    def fake_writer(marker, fail=False):
        """Stands in for the (slow) real writer: writes one marker file, or fails half-way."""

        def write(synthesizer, path, limits=None):
            os.makedirs(path, exist_ok=True)
            with open(os.path.join(path, "marker"), "w") as f:
                f.write(marker)
            if fail:
                raise RuntimeError("disk full")

        return write

    export_dir = str(tmp_path)
    monkeypatch.setattr(export_lib, "write_saved_model", fake_writer("first"))
    path = export_lib.export_saved_model(synth, export_dir, version=3)
    with pytest.raises(FileExistsError, match=r"3 exists: pass overwrite=True \(--overwrite\)"):
        export_lib.export_saved_model(synth, export_dir, version=3)
    monkeypatch.setattr(export_lib, "write_saved_model", fake_writer("second", fail=True))
    with pytest.raises(RuntimeError, match="disk full"):
        export_lib.export_saved_model(synth, export_dir, version=3, overwrite=True)
    # A failed write leaves the served version untouched and no temporary folder behind.
    assert open(os.path.join(path, "marker")).read() == "first"
    assert sorted(os.listdir(export_dir)) == ["3", "metadata.json"]
    monkeypatch.setattr(export_lib, "write_saved_model", fake_writer("third"))
    export_lib.export_saved_model(synth, export_dir, version=3, overwrite=True)
    export_lib.export_saved_model(synth, export_dir, version=10)
    assert open(os.path.join(path, "marker")).read() == "third"
    assert sorted(os.listdir(export_dir)) == ["10", "3", "metadata.json"]
    assert export_lib.read_metadata(export_dir)["files"]["saved_model_versions"] == [3, 10]
    for bad in (0, -1, "2", True):
        with pytest.raises(ValueError, match="use a positive integer"):
            export_lib.export_saved_model(synth, export_dir, version=bad)


_FRESH_PROCESS = """
import os, pickle, sys
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
import tensorflow as tf
jobs = pickle.load(open(sys.argv[1], "rb"))
results = {}
for path, calls in jobs.items():
    model = tf.saved_model.load(path)
    for key, (signature, feed) in calls.items():
        out = model.signatures[signature](**{k: tf.constant(v) for k, v in feed.items()})
        results[key] = {k: v.numpy() for k, v in out.items()}
pickle.dump(results, open(sys.argv[2], "wb"))
"""


@pytest.fixture(scope="module")
def fresh(plain, vae, tmp_path_factory):
    """Runs every signature of both exports in a new Python process; returns (inputs, outputs)."""
    tmp = tmp_path_factory.mktemp("fresh")
    p_synth, v_synth = plain[0], vae[0]
    labels = coarse_labels(2)
    instances = coarse_labels(2, classes=50, seed=1, block=4)  # finer than the labels: extra edges
    big = coarse_labels(1, size=(64, 96), seed=2)
    v_labels = coarse_labels(3, seed=3)
    v_labels[:, :8, :8] = 255  # raw don't-care
    palette = v_synth.info.palette
    style = np.random.default_rng(4).integers(0, 256, (3, 40, 24, 3)).astype(np.uint8)
    jpeg = io.BytesIO()
    Image.fromarray(style[1]).save(jpeg, "JPEG", quality=90)
    seeds = np.array([3, 3, 4], np.int32)
    inputs = {
        "plain_ids": ("serving_default", {"labels": labels, "instances": instances}),
        "plain_big": ("serving_default", {"labels": big, "instances": big}),
        "plain_png": (
            "predict_png",
            {"label_png_bytes": np.array([grey_png(labels[0]), grey_png(labels[1])])},
        ),
        "plain_png_colour": (
            "predict_png",
            {
                "label_png_bytes": np.array(
                    [
                        colour_png(labels[0], p_synth.info.palette),
                        colour_png(labels[1], p_synth.info.palette, True),
                    ]
                )
            },
        ),
        "plain_png_16bit": ("predict_png", {"label_png_bytes": np.array([grey_png(labels[0], 16)])}),
        "vae_ids": ("serving_default", {"labels": v_labels, "instances": v_labels, "seed": seeds}),
        "vae_seeds": (
            "predict_png",
            {"label_png_bytes": np.array([grey_png(v_labels[0])] * 3), "seed": seeds},
        ),
        "vae_png_colour": (
            "predict_png",
            {"label_png_bytes": np.array([colour_png(v_labels[0], palette)]), "seed": seeds[:1]},
        ),
        "vae_style": (
            "style",
            {
                "labels": v_labels,
                "instances": instances[:1].repeat(3, 0),
                "style_images": style,
                "seed": seeds,
            },
        ),
        "vae_style_png": (
            "style_png",
            {
                "label_png_bytes": np.array([grey_png(v_labels[0])] * 2),
                "style_png_bytes": np.array([png_bytes(style[0][:20]), jpeg.getvalue()]),
                "seed": seeds[:2],
            },
        ),
    }
    jobs = {plain[2]: {}, vae[2]: {}}
    for key, call in inputs.items():
        jobs[plain[2] if key.startswith("plain") else vae[2]][key] = call
    with open(tmp / "jobs.pkl", "wb") as f:
        pickle.dump(jobs, f)
    subprocess.run(
        [sys.executable, "-c", _FRESH_PROCESS, str(tmp / "jobs.pkl"), str(tmp / "out.pkl")], check=True
    )
    with open(tmp / "out.pkl", "rb") as f:
        outputs = pickle.load(f)
    return inputs, outputs


def test_fresh_process_non_vae_matches_keras(plain, fresh):
    synth = plain[0]
    inputs, out = fresh
    feed = inputs["plain_ids"][1]
    assert_close_uint8(out["plain_ids"]["images"], synth.generate(feed["labels"], feed["instances"]))
    big = inputs["plain_big"][1]["labels"]
    assert_close_uint8(out["plain_big"]["images"], synth.generate(big, big))
    # PNG signatures: no instance map, so the labels are their own (class boundaries are the edges).
    expected = synth.generate(feed["labels"])
    assert_close_uint8(decode_pngs(out["plain_png"]["image_png_bytes"]), expected)
    # The same label map as palette colours (RGB, RGBA) or a 16-bit PNG gives the same image.
    np.testing.assert_array_equal(
        decode_pngs(out["plain_png_colour"]["image_png_bytes"]),
        decode_pngs(out["plain_png"]["image_png_bytes"]),
    )
    np.testing.assert_array_equal(
        decode_pngs(out["plain_png_16bit"]["image_png_bytes"])[0],
        decode_pngs(out["plain_png"]["image_png_bytes"])[0],
    )
    # The explicit instance map's extra edges change the image (by more than the rounding tolerance): the
    # instances input is wired in.
    assert np.abs(out["plain_ids"]["images"].astype(int) - expected).max() > 4 * UINT8_STEP


def test_fresh_process_vae_matches_keras_and_seeds(vae, fresh):
    synth = vae[0]
    inputs, out = fresh
    feed = inputs["vae_ids"][1]
    labels = feed["labels"]
    assert_close_uint8(
        out["vae_ids"]["images"], synth.generate(labels, feed["instances"], seeds=feed["seed"])
    )
    # One label map three times with seeds [3, 3, 4]: same seed -> same image, another seed -> another.
    seeded = decode_pngs(out["vae_seeds"]["image_png_bytes"])
    assert_close_uint8(seeded, synth.generate(labels[[0, 0, 0]], seeds=[3, 3, 4]))
    np.testing.assert_array_equal(seeded[0], seeded[1])
    # Rounding moves a few pixels by one step (mean ~0.05); a mean change above one grey level is real.
    assert np.abs(seeded[2].astype(int) - seeded[0].astype(int)).mean() > 1.0
    # The same map painted in palette colours, seed 3 again: the same image.
    np.testing.assert_array_equal(decode_pngs(out["vae_png_colour"]["image_png_bytes"])[0], seeded[0])
    style = inputs["vae_style"][1]
    assert_close_uint8(
        out["vae_style"]["images"],
        synth.generate(labels, style["instances"], seeds=style["seed"], style_images=style["style_images"]),
    )
    # One label map and seed, two style photos of different sizes (PNG 20x24, JPEG 40x24) in one request.
    sp = inputs["vae_style_png"][1]
    got = decode_pngs(out["vae_style_png"]["image_png_bytes"])
    for i, data in enumerate(sp["style_png_bytes"]):
        photo = tf.io.decode_image(data, channels=3).numpy()[None]
        expected = synth.generate(labels[:1], seeds=sp["seed"][i : i + 1], style_images=photo)
        assert_close_uint8(got[i : i + 1], expected)
    assert np.abs(got[0].astype(int) - got[1].astype(int)).mean() > 1.0  # the style matters


def _cli():
    exe = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
    return [exe] if os.path.exists(exe) else [sys.executable, "-m", "tensorflow.python.tools.saved_model_cli"]


def test_saved_model_cli_show_and_run(plain, vae, tmp_path):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    show = subprocess.run(
        _cli() + ["show", "--all", "--dir", vae[2]], capture_output=True, text=True, check=True, env=env
    ).stdout
    for name in ("serving_default", "predict_png", "style", "style_png"):
        assert f"signature_def['{name}']" in show
    assert show.count("Method name is: tensorflow/serving/predict") >= 4
    for text in (
        "inputs['label_png_bytes']",
        "inputs['style_images']",
        "outputs['image_png_bytes']",
        "DT_STRING",
    ):
        assert text in show
    assert "shape: (-1, 32, 32)" in show  # VAE label maps: fixed size
    synth = plain[0]
    labels = coarse_labels(1, size=(32, 64), seed=5)
    np.save(tmp_path / "labels.npy", labels)
    np.save(tmp_path / "instances.npy", labels)
    subprocess.run(
        _cli()
        + ["run", "--dir", plain[2], "--tag_set", "serve", "--signature_def", "serving_default"]
        + ["--inputs", f"labels={tmp_path / 'labels.npy'};instances={tmp_path / 'instances.npy'}"]
        + ["--outdir", str(tmp_path / "out")],
        capture_output=True,
        check=True,
        env=env,
    )
    assert_close_uint8(np.load(tmp_path / "out" / "images.npy"), synth.generate(labels))


def _bad_feeds(plain_synth, vae_synth):
    ok = coarse_labels(1)
    seed = np.array([1], np.int32)
    wrong_colour = np.zeros((32, 32, 3), np.uint8) + np.array([1, 2, 3], np.uint8)

    def styled(style_png):
        return {
            "label_png_bytes": np.array([grey_png(ok[0])]),
            "style_png_bytes": np.array([style_png]),
            "seed": seed,
        }

    return [
        (
            "plain",
            "serving_default",
            {"labels": np.full_like(ok, 7), "instances": ok},
            r"labels: ids must be in 0\.\.3; found:\] \[7",
        ),
        (
            "plain",
            "serving_default",
            {"labels": np.full_like(ok, -1), "instances": ok},
            r"labels: ids must be in 0\.\.3; found:\] \[-1",
        ),
        (
            "plain",
            "serving_default",
            {"labels": coarse_labels(1, (40, 32)), "instances": coarse_labels(1, (40, 32))},
            r"labels: height and width must be multiples of 32 .*\] \[40\] \[32\]",
        ),
        (
            "plain",
            "serving_default",
            {"labels": ok, "instances": coarse_labels(1, (64, 32))},
            "instances: shape differs from the shape of labels",
        ),
        (
            "plain",
            "predict_png",
            {"label_png_bytes": np.array([b"GIF89a not a png"])},
            "label_png_bytes: not a PNG",
        ),
        ("plain", "predict_png", {"label_png_bytes": np.array([b""])}, "label_png_bytes: not a PNG"),
        (
            "plain",
            "predict_png",
            {"label_png_bytes": np.array([png_bytes(wrong_colour)])},
            r"label_png_bytes: 1024 pixels have colours that are not in the palette, e\.g\. RGB \(1, 2, 3\).*"
            r"metadata\.json",
        ),
        (
            "plain",
            "predict_png",
            {"label_png_bytes": np.array([grey_png(ok[0]), grey_png(coarse_labels(1, (64, 32))[0])])},
            "label_png_bytes: all label maps of one request must have the same size",
        ),
        (
            "plain",
            "predict_png",
            {"label_png_bytes": np.array([grey_png(ok[0] + 5)])},
            "labels: ids must be in 0..3",
        ),
        (
            "plain",
            "predict_png",
            {"label_png_bytes": np.array([grey_png(coarse_labels(1, (48, 32))[0])])},
            "label_png_bytes: height and width must be multiples of 32",
        ),
        (
            "vae",
            "serving_default",
            {"labels": np.full_like(ok, 11), "instances": ok, "seed": seed},
            r"0\.\.3, 4 or 255 \(dontcare\); found:\] \[11",
        ),
        (
            "vae",
            "serving_default",
            {"labels": ok, "instances": ok, "seed": np.array([1, 2], np.int32)},
            "seed: needs one",
        ),
        (
            "vae",
            "predict_png",
            {"label_png_bytes": np.array([grey_png(coarse_labels(1, (64, 64))[0])]), "seed": seed},
            "label_png_bytes: this VAE model takes only 32x32 label maps",
        ),
        (
            "vae",
            "style",
            {"labels": ok, "instances": ok, "style_images": np.zeros((2, 8, 8, 3), np.uint8), "seed": seed},
            "style_images: needs one entry per label map",
        ),
        (
            "vae",
            "style_png",
            {
                "label_png_bytes": np.array([grey_png(ok[0])]),
                "style_png_bytes": np.array([b"BM..."]),
                "seed": seed,
            },
            "style_png_bytes: not a PNG or JPEG image",
        ),
        # Work bounds (PLAIN_LIMITS, VAE_LIMITS), checked before anything is decoded: a 10^10-pixel header
        # on a 32x32 body gets the limit's message, not a decoder's error or an allocation of 40 GB.
        (
            "plain",
            "predict_png",
            {"label_png_bytes": np.array([grey_png(ok[0])] * 5)},
            r"label_png_bytes: at most 4 label maps per request \(set at export: export\.py --max_maps\); "
            r"got:\] \[5\]",
        ),
        (
            "plain",
            "serving_default",
            {"labels": coarse_labels(5), "instances": coarse_labels(5)},
            r"labels: at most 4 label maps per request",
        ),
        (
            "plain",
            "serving_default",
            {"labels": coarse_labels(1, (96, 96)), "instances": coarse_labels(1, (96, 96))},
            r"labels: at most 8192 label map pixels per request .*export\.py --max_pixels\); got:\] \[9216\]",
        ),
        (
            "plain",
            "predict_png",
            {"label_png_bytes": np.array([grey_png(coarse_labels(1, (96, 96))[0])])},
            r"label_png_bytes: at most 8192 label map pixels .*\[9216\]",
        ),
        (
            "plain",
            "predict_png",
            {"label_png_bytes": np.array([claimed_png(100000, 100000)])},
            r"label_png_bytes: at most 8192 label map pixels .*\[10000000000\]",
        ),
        (
            # A size with its top bit set (negative as int32) counts as the unsigned number it is.
            "plain",
            "predict_png",
            {"label_png_bytes": np.array([claimed_png(2**31, 64)])},
            r"at most 8192 label map pixels .*\[137438953472\]",
        ),
        (
            # The message shows the first bytes in hex: raw 0xff bytes would make TF's error text unreadable
            # (a UnicodeDecodeError instead of this InvalidArgumentError).
            "plain",
            "predict_png",
            {"label_png_bytes": np.array([claimed_jpeg(8, 8)])},
            r"label_png_bytes: not a PNG file.*in hex:.*ffd8ffe0",
        ),
        (
            "vae",
            "style",
            {"labels": ok, "instances": ok, "style_images": np.zeros((1, 60, 60, 3), np.uint8), "seed": seed},
            r"style_images: at most 3000 style image pixels .*export\.py --max_style_pixels\); got:\] \[3600\]",
        ),
        (
            "vae",
            "style_png",
            styled(claimed_png(100000, 100000)),
            r"style_png_bytes: at most 3000 style image pixels .*\[10000000000\]",
        ),
        (
            "vae",
            "style_png",
            styled(claimed_jpeg(60000, 60000)),
            r"style_png_bytes: at most 3000 style image pixels .*\[3600000000\]",
        ),
    ]


def test_bad_inputs_are_invalid_argument_errors_naming_the_problem(plain, vae, loaded):
    for model, signature, feed, message in _bad_feeds(plain[0], vae[0]):
        fn = loaded[model].signatures[signature]
        with pytest.raises(tf.errors.InvalidArgumentError, match=message):
            fn(**{k: tf.constant(v) for k, v in feed.items()})


def test_wrong_rank_and_vae_size_fail_as_invalid_argument(loaded):
    # The SavedModel runtime (like TF Serving) does not check a fed tensor against the signature's shape (a
    # Python caller falls back to the flat signature): a rank-2 map fails in the graph's first shape slice.
    labels = tf.constant(coarse_labels(1)[0])
    with pytest.raises(tf.errors.InvalidArgumentError, match="out of bounds"):
        loaded["plain"].signatures["serving_default"](labels=labels, instances=labels)
    big = tf.constant(coarse_labels(1, (64, 64)))
    with pytest.raises(tf.errors.InvalidArgumentError, match="this VAE model takes only 32x32 label maps"):
        loaded["vae"].signatures["serving_default"](labels=big, instances=big, seed=tf.constant([1]))


def test_limits_are_positive_integers(tmp_path):
    assert export_lib.Limits.from_json(None) == export_lib.Limits()
    assert export_lib.Limits.from_json({"max_pixels": 5, "later_field": 1}).max_pixels == 5
    for bad in ({"max_maps": 0}, {"max_pixels": 2.5}, {"max_style_pixels": True}, {"max_pixels": 2**41}):
        with pytest.raises(ValueError, match="use a positive integer"):
            export_lib.Limits(**bad)
    proc = run_script("export.py", "--model", str(tmp_path), "--max_pixels", "0")
    assert proc.returncode != 0 and "max_pixels=0: use a positive integer" in proc.stderr
