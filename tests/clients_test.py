"""export.py end to end, then the example clients: gRPC against an in-test PredictionService that runs the
SavedModel (the TF Serving proto contract), REST against the project's own server (serve.py)."""

import importlib.util
import io
import os
import socket
import subprocess
import sys
import time
import urllib.request
from concurrent import futures

import grpc
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image
from tensorflow.python.tools import saved_model_utils
from tensorflow_serving.apis import get_model_metadata_pb2, predict_pb2, prediction_service_pb2_grpc

from spade_tf.serving.inference import load_synthesizer
from tests.export_test import assert_close_uint8, coarse_labels, grey_png, png_bytes, shared_bundle

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = os.path.join(REPO, "examples")


def _example(name):
    spec = importlib.util.spec_from_file_location(name, os.path.join(EXAMPLES, name + ".py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A VAE model exported by `export.py` (SavedModel only); returns (synth, export_dir, stdout, label png)."""
    root = tmp_path_factory.mktemp("clients")
    workdir = os.path.dirname(shared_bundle(tmp_path_factory, use_vae=True, contain_dontcare_label=True))
    export_dir = root / "export"
    run = subprocess.run(
        [sys.executable, os.path.join(REPO, "export.py"), f"--model={workdir}", f"--export_dir={export_dir}"]
        + ["--notflite"],
        capture_output=True,
        text=True,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"),
    )
    assert run.returncode == 0, run.stderr[-3000:]
    labels = coarse_labels(1, seed=11)
    labels[0, :8, :8] = 255
    label_png = root / "label.png"
    label_png.write_bytes(grey_png(labels[0]))
    return load_synthesizer(str(workdir)), str(export_dir), run.stdout, labels, str(label_png)


def test_export_script_prints_what_it_wrote(exported):
    _, export_dir, stdout, _, _ = exported
    assert f"wrote {os.path.join(export_dir, '1')} (" in stdout
    assert f"wrote {os.path.join(export_dir, 'metadata.json')} (" in stdout
    assert "SavedModel signatures: serving_default, predict_png, style, style_png" in stdout
    # --notflite: no tflite/; models.config (TF Serving) and MODEL_CARD.md beside the version.
    assert sorted(os.listdir(export_dir)) == ["1", "MODEL_CARD.md", "metadata.json", "models.config"]


class PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):
    """TF Serving's gRPC Predict and GetModelMetadata over one SavedModel, as the real server answers them."""

    def __init__(self, version_dir, name):
        self.name = name
        self.model = tf.saved_model.load(version_dir)
        self.signature_defs = saved_model_utils.get_meta_graph_def(version_dir, "serve").signature_def

    def _check_name(self, spec, context):
        if spec.name != self.name:
            context.abort(grpc.StatusCode.NOT_FOUND, f"Servable not found for request: Latest({spec.name})")

    def Predict(self, request, context):
        self._check_name(request.model_spec, context)
        name = request.model_spec.signature_name or "serving_default"
        if name not in self.model.signatures:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f'Serving signature name: "{name}" not found')
        feed = {k: tf.constant(tf.make_ndarray(v)) for k, v in request.inputs.items()}
        try:
            out = self.model.signatures[name](**feed)
        except tf.errors.InvalidArgumentError as e:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, e.message)
        response = predict_pb2.PredictResponse()
        response.model_spec.CopyFrom(request.model_spec)
        for key, value in out.items():
            response.outputs[key].CopyFrom(tf.make_tensor_proto(value.numpy()))
        return response

    def GetModelMetadata(self, request, context):
        self._check_name(request.model_spec, context)
        defs = get_model_metadata_pb2.SignatureDefMap()
        for key, value in self.signature_defs.items():
            defs.signature_def[key].CopyFrom(value)
        response = get_model_metadata_pb2.GetModelMetadataResponse()
        response.model_spec.CopyFrom(request.model_spec)
        response.metadata["signature_def"].Pack(defs)
        return response


@pytest.fixture(scope="module")
def grpc_server(exported):
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
        PredictionService(os.path.join(exported[1], "1"), "spade"), server
    )
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield f"127.0.0.1:{port}"
    server.stop(grace=None)


def _png_array(data):
    return np.array(Image.open(io.BytesIO(data)))[None]


def test_grpc_client_script(exported, grpc_server, tmp_path):
    synth, _, _, labels, label_png = exported
    out = tmp_path / "image.png"
    run = subprocess.run(
        [sys.executable, os.path.join(EXAMPLES, "grpc_client.py"), f"--server={grpc_server}"]
        + [f"--labels={label_png}", f"--output={out}"],
        capture_output=True,
        text=True,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"),
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert f"wrote {out}" in run.stdout
    # No --seed: the client read the signature from GetModelMetadata and sent seed 0.
    assert_close_uint8(_png_array(out.read_bytes()), synth.generate(labels, seeds=[0]))


def test_grpc_seed_style_and_errors(exported, grpc_server):
    client = _example("grpc_client")
    synth, _, _, labels, label_png = exported
    png = open(label_png, "rb").read()
    seven = _png_array(client.predict_png(grpc_server, "spade", png, seed=7))
    assert_close_uint8(seven, synth.generate(labels, seeds=[7]))
    style = np.random.default_rng(3).integers(0, 256, (24, 40, 3)).astype(np.uint8)
    styled = client.predict_png(grpc_server, "spade", png, seed=7, style_png=png_bytes(style))
    assert_close_uint8(_png_array(styled), synth.generate(labels, seeds=[7], style_images=style[None]))
    with pytest.raises(grpc.RpcError) as error:
        client.predict_png(grpc_server, "spade", b"GIF89a", seed=1)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "label_png_bytes: not a PNG file" in error.value.details()
    with pytest.raises(grpc.RpcError) as error:
        client.predict_png(grpc_server, "other", png, seed=1)
    assert error.value.code() == grpc.StatusCode.NOT_FOUND


@pytest.fixture(scope="module")
def rest_server(exported):
    """`python serve.py` on a free port, ready."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    process = subprocess.Popen(
        [sys.executable, os.path.join(REPO, "serve.py"), f"--model={exported[1]}", f"--port={port}"],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"),
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while True:
        try:
            with urllib.request.urlopen(f"{url}/v1/models/spade", timeout=2):
                break
        except OSError:
            if process.poll() is not None or time.time() > deadline:
                process.kill()
                raise RuntimeError(
                    f"serve.py did not start: {process.stderr.read().decode()[-3000:]}"
                ) from None
            time.sleep(0.5)
    yield url
    process.terminate()
    process.wait(timeout=30)


def test_rest_client_against_the_project_server(exported, rest_server, tmp_path):
    synth, _, _, labels, label_png = exported
    out = tmp_path / "image.png"
    run = subprocess.run(
        [sys.executable, os.path.join(EXAMPLES, "rest_client.py"), f"--server={rest_server}"]
        + [f"--labels={label_png}", f"--output={out}", "--seed=7"],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert_close_uint8(_png_array(out.read_bytes()), synth.generate(labels, seeds=[7]))
    client = _example("rest_client")
    png = open(label_png, "rb").read()
    # No seed: read from GET /v1/models/spade/metadata, seed 0 sent.
    assert_close_uint8(
        _png_array(client.predict_png(rest_server, "spade", png)), synth.generate(labels, seeds=[0])
    )
    with pytest.raises(RuntimeError, match="HTTP 400: label_png_bytes: not a PNG file"):
        client.predict_png(rest_server, "spade", b"GIF89a", seed=1)
    bad = subprocess.run(
        [sys.executable, os.path.join(EXAMPLES, "rest_client.py"), f"--server={rest_server}"]
        + [f"--labels={tmp_path / 'missing.png'}"],
        capture_output=True,
        text=True,
    )
    assert bad.returncode != 0 and "rest_client.py: error: cannot read" in bad.stderr
