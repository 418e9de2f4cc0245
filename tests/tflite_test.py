"""TFLite export: float32 / float16 / dynamic-range int8 files vs the Keras model, run with LiteRT."""

import os
import sys

import numpy as np
import pytest
import tensorflow as tf
from ai_edge_litert.interpreter import Interpreter

from spade_tf.serving import export_lib
from spade_tf.serving.inference import load_synthesizer
from tests.export_test import coarse_labels, shared_bundle
from tests.test_case import fill_weights, tiny_bundle


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A VAE model with don't-care and instance maps (every input kind), converted once to all variants."""
    root = tmp_path_factory.mktemp("tflite")
    synth = load_synthesizer(shared_bundle(tmp_path_factory, use_vae=True, contain_dontcare_label=True))
    paths = export_lib.export_tflite(synth, str(root / "export"))
    return synth, str(root / "export"), paths


@pytest.fixture(scope="module")
def batch():
    labels = coarse_labels(2, seed=7)
    labels[1, :8] = 255  # raw don't-care
    instances = coarse_labels(2, classes=50, seed=8, block=4)
    z = np.random.default_rng(9).standard_normal((2, 16)).astype(np.float32)
    return {"labels": labels, "instances": instances, "z": z}


def _run(path, feed):
    # The signature runner resizes the dynamic batch axis to the fed arrays.
    return Interpreter(model_path=path).get_signature_runner("serving_default")(**feed)


@pytest.fixture(scope="module")
def outputs(exported, batch):
    synth, _, paths = exported
    keras_float = synth.generate_float(batch["labels"], batch["instances"], batch["z"]).numpy()
    return keras_float, {variant: _run(path, batch) for variant, path in paths.items()}


def test_files_signature_and_metadata(exported):
    synth, export_dir, paths = exported
    assert sorted(paths) == ["float16", "float32", "int8"]
    for variant, path in paths.items():
        assert path == os.path.join(export_dir, "tflite", f"spade_{variant}.tflite")
    signatures = Interpreter(model_path=paths["float32"]).get_signature_list()
    assert signatures == {
        "serving_default": {"inputs": ["instances", "labels", "z"], "outputs": ["images", "images_float"]}
    }
    meta = export_lib.read_metadata(export_dir)
    assert meta["files"]["tflite"] == {v: f"tflite/spade_{v}.tflite" for v in paths}
    assert meta["tflite_signatures"]["serving_default"]["inputs"]["z"] == {
        "dtype": "float32",
        "shape": [-1, 16],
    }
    with pytest.raises(ValueError, match=r"TFLite variants \['int4'\]: choose from float32, float16, int8"):
        export_lib.export_tflite(synth, export_dir, variants=("float32", "int4"))


def test_float32_matches_keras(outputs):
    keras_float, out = outputs
    f32 = out["float32"]
    assert f32["images_float"].shape == keras_float.shape == (2, 32, 32, 3)
    # Same float32 math in another kernel library (XNNPACK): summation order only; measured 4e-6.
    np.testing.assert_allclose(f32["images_float"], keras_float, atol=1e-4, rtol=0)
    expected = tf.cast(tf.clip_by_value((keras_float + 1) / 2 * 255, 0, 255), tf.uint8).numpy()
    assert f32["images"].dtype == np.uint8
    # Truncation to uint8 can move a value within 1e-4 of a step boundary by one grey level.
    assert np.abs(f32["images"].astype(int) - expected).max() <= 1


def test_float16_and_int8_stay_close(outputs):
    keras_float, out = outputs
    # float16 weights (dequantized to float32 at load): ~3 significant digits per weight; measured 2.2e-3.
    np.testing.assert_allclose(out["float16"]["images_float"], keras_float, atol=1e-2, rtol=0)
    # Dynamic-range int8 weights: 46 dB against float32 on this tiny model, 50.5 dB on the trained 64 px demo
    # model; 30 dB is the bound.
    f32 = out["float32"]["images"].astype(np.float64)
    mse = np.mean((out["int8"]["images"].astype(np.float64) - f32) ** 2)
    psnr = 10 * np.log10(255.0**2 / mse)
    assert psnr >= 30.0, psnr
    assert not np.array_equal(out["int8"]["images"], out["float32"]["images"])  # it is quantized


def test_float32_runs_the_fast_path(exported, capsys):
    # SPADE's shared conv as gathered kernel rows (GATHER + SUM). The map is one-hot by construction (ids
    # in), so there is no IF with the conv fallback for soft maps. Upsampling is RESIZE_NEAREST_NEIGHBOR:
    # a broadcast became the single-threaded reference BROADCAST_TO (~0.28 s of the ADE20K forward); small
    # BROADCAST_TOs remain in the instance-edge computation.
    capsys.readouterr()
    tf.lite.experimental.Analyzer.analyze(model_path=exported[2]["float32"])
    report = capsys.readouterr().out
    assert " GATHER(" in report and " SUM(" in report, report[:2000]
    assert report.count(" RESIZE_NEAREST_NEIGHBOR(") == 5, report  # the generator's 5 upsamplings
    assert " IF(" not in report, report


def test_the_files_hold_the_weights(exported):
    synth, _, paths = exported
    g = synth.generator
    parameters = sum(int(np.prod(v.shape)) for v in g.weights)
    sizes = {v: os.path.getsize(p) for v, p in paths.items()}
    # Every weight is a constant buffer: 4 / 2 / ~1 bytes per parameter (spectral-norm vectors and
    # batch-norm statistics fold into the kernels, so slightly fewer than the parameter count).
    assert 0.9 * 4 * parameters < sizes["float32"] < 1.2 * 4 * parameters
    assert 0.9 * 2 * parameters < sizes["float16"] < 1.2 * 2 * parameters
    assert 0.9 * parameters < sizes["int8"] < 0.4 * 4 * parameters
    # conv_img (no spectral norm) is stored as is, in TFLite's (out, h, w, in) kernel layout.
    kernel = np.transpose(g.conv_img.weights[0].numpy(), (3, 0, 1, 2))
    interpreter = Interpreter(model_path=paths["float32"])
    interpreter.allocate_tensors()
    found = False
    for detail in interpreter.get_tensor_details():
        if tuple(detail["shape"]) == kernel.shape and detail["dtype"] == np.float32:
            try:
                found |= np.array_equal(interpreter.get_tensor(detail["index"]), kernel)
            except ValueError:  # intermediate tensors without data
                pass
    assert found


def test_onnx_matches_keras(exported, batch):
    import onnxruntime

    synth, export_dir, _ = exported
    path = export_lib.export_onnx(synth, export_dir)
    assert path == os.path.join(export_dir, "onnx", "spade.onnx")
    assert export_lib.read_metadata(export_dir)["files"]["onnx"] == "onnx/spade.onnx"
    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    assert sorted(i.name for i in session.get_inputs()) == ["instances", "labels", "z"]
    images, images_float = session.run(["images", "images_float"], batch)
    keras_float = synth.generate_float(batch["labels"], batch["instances"], batch["z"]).numpy()
    # float32 in another runtime: summation order only; uint8 truncation may then differ by one step.
    np.testing.assert_allclose(images_float, keras_float, atol=1e-4, rtol=0)
    expected = tf.cast(tf.clip_by_value((keras_float + 1) / 2 * 255, 0, 255), tf.uint8).numpy()
    assert images.dtype == np.uint8 and np.abs(images.astype(int) - expected).max() <= 1


def test_onnx_of_a_reflect_padded_model_matches_keras(tmp_path, batch):
    # The demo's generator mirrors its convs' inputs (model.padding_mode="reflect"): tf2onnx turns MirrorPad
    # into ONNX's Pad in "reflect" mode, and the 2x2 latent grid's SYMMETRIC pad must come out the same.
    import onnx
    import onnxruntime

    synth = load_synthesizer(
        tiny_bundle(tmp_path / "reflect", use_vae=True, padding_mode="reflect", responsive=True)
    )
    path = export_lib.export_onnx(synth, str(tmp_path / "export"))
    assert "Pad" in {node.op_type for node in onnx.load(path).graph.node}
    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    feed = {k: v for k, v in batch.items() if k != "labels"}
    feed["labels"] = np.where(batch["labels"] == 255, 0, batch["labels"]).astype(batch["labels"].dtype)
    (images_float,) = session.run(["images_float"], feed)
    keras_float = synth.generate_float(feed["labels"], feed["instances"], feed["z"]).numpy()
    # Most pixels off tanh's flat ends, and varied: a comparison that a wrong pad could fail.
    assert np.mean(np.abs(keras_float) > 0.999) < 0.5 and keras_float.std() > 0.05
    # As test_onnx_matches_keras: another runtime's summation order.
    np.testing.assert_allclose(images_float, keras_float, atol=1e-4, rtol=0)


def test_onnx_without_tf2onnx_says_what_to_install(exported, monkeypatch):
    monkeypatch.setitem(sys.modules, "tf2onnx", None)  # makes `import tf2onnx` raise ImportError
    with pytest.raises(ImportError, match=r"pip install -r requirements-onnx\.txt"):
        export_lib.export_onnx(exported[0], exported[1])


def test_noise_and_position_injection_export(tmp_path):
    # A generator with noise injection (model.noise_injection) synthesizes with fixed noise maps (constants
    # in the graph), and position injection adds a function of the pixel position: the SavedModel and the
    # TFLite file give the Keras model's images, call after call.
    path = tiny_bundle(
        tmp_path / "noise", use_vae=True, noise_injection=True, position_injection=True, responsive=True
    )
    synth = load_synthesizer(path)
    fill_weights(synth.generator, ("noise_strength", "position_kernel"), 0.3)
    labels = coarse_labels(2, seed=3)
    seeds = np.array([4, 5], np.int32)
    expected = synth.generate(labels, labels, seeds=seeds)
    np.testing.assert_array_equal(synth.generate(labels, labels, seeds=seeds), expected)
    saved = str(tmp_path / "saved_model")
    export_lib.write_saved_model(synth, saved)
    served = tf.saved_model.load(saved).signatures["serving_default"]
    out = served(labels=tf.constant(labels), instances=tf.constant(labels), seed=tf.constant(seeds))["images"]
    # Graph and eager rounding may differ by ~1e-6: one grey level at a uint8 truncation boundary.
    assert np.abs(out.numpy().astype(int) - expected.astype(int)).max() <= 1
    paths = export_lib.export_tflite(synth, str(tmp_path / "export"), variants=("float32",))
    z = synth.latent_from_seeds(seeds).numpy()
    lite = _run(paths["float32"], {"labels": labels, "instances": labels, "z": z})
    keras_float = synth.generate_float(labels, labels, z).numpy()
    # As test_float32_matches_keras: another kernel library's summation order; measured ~4e-6.
    np.testing.assert_allclose(lite["images_float"], keras_float, atol=1e-4, rtol=0)
    # Both are in the image: without either (weights 0) the pixels move by more than the tolerance.
    for kind in ("noise_strength", "position_kernel"):
        fill_weights(synth.generator, (kind,), 0.0)
        assert np.abs(synth.generate_float(labels, labels, z).numpy() - keras_float).max() > 1e-2
        fill_weights(synth.generator, (kind,), 0.3)
