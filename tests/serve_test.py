"""The HTTP server: TF Serving's REST API over an exported model, its errors, limits and static files."""

import base64
import contextlib
import dataclasses
import http.client
import io
import json
import os
import resource
import socket
import threading
import time
import urllib.error
import urllib.request

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from spade_tf.serving import export_lib
from spade_tf.serving import server as serve
from spade_tf.serving.export_lib import export_saved_model
from spade_tf.serving.inference import load_synthesizer
from tests.export_test import claimed_jpeg, claimed_png
from tests.test_case import run_script, tiny_bundle

CLASS_NAMES = ("sky", "grass", "tree", "water")
SIZE = 32
MAX_BODY = 256 * 1024
# Generous: a hang shows up as a timeout, not as a stuck test run.
TIMEOUT_S = 60
_EXPORTS = {}
_SERVABLES = {}


def exported_model(tmp_path_factory, use_vae):
    """A random-weight 32 px model exported once per test session (the painter test shares them).

    The VAE model has a don't-care label; the plain one has none.
    """
    if use_vae not in _EXPORTS:
        root = tmp_path_factory.mktemp("vae_export" if use_vae else "plain_export")
        bundle = tiny_bundle(
            root / "workdir",
            class_names=CLASS_NAMES,
            use_vae=use_vae,
            contain_dontcare_label=use_vae,
            size=SIZE,
        )
        export_dir = str(root / "export")
        export_saved_model(responsive(load_synthesizer(bundle)), export_dir)
        _EXPORTS[use_vae] = export_dir
    return _EXPORTS[use_vae]


def responsive(synthesizer, gain=50.0):
    """Makes a random-weight model's image depend on its label map, as a trained model's does.

    At initialisation the SPADE convs are tiny (xavier gain 0.02), so gamma and beta are ~0 and the labels barely
    move the image; and the batch norms' running statistics are the initial (0, 1), so at inference nothing is
    normalised: activations grow to ~1e15 and tanh saturates every pixel. Scaling the SPADE convs by `gain`
    (gamma and beta become O(1)), taking the running statistics from one training-mode pass and scaling the
    output conv to a 0.5 standard deviation gives images that change where the label map changes.
    """
    from spade_tf.models.normalization import ParamFreeBatchNorm

    g = synthesizer.generator
    spades = [
        n for b in g.blocks() for n in (b.norm_0, b.norm_1, b.norm_s if b.learned_shortcut else None) if n
    ]
    for spade in spades:
        for conv in (spade.mlp_shared, spade.mlp_gamma, spade.mlp_beta):
            conv.kernel.assign(conv.kernel * gain)
    ids = labels(8)
    z = synthesizer.latent_from_seeds(np.arange(8)) if synthesizer.info.use_vae else None
    norms = [n.param_free_norm for n in spades if isinstance(n.param_free_norm, ParamFreeBatchNorm)]
    momenta = [n.momentum for n in norms]
    for n in norms:
        n.momentum = 1.0  # the running statistics become this pass's batch statistics
    g(synthesizer.semantics(ids), z, training=True)
    for n, m in zip(norms, momenta):
        n.momentum = m
    spread = float(np.std(synthesizer.generate_float(ids, None, z)))
    g.conv_img.kernel.assign(g.conv_img.kernel * (0.5 / spread))
    return synthesizer


@contextlib.contextmanager
def running(server):
    """Serves in a background thread until the block ends."""
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(TIMEOUT_S)


def served_model(tmp_path_factory, use_vae):
    """The `ModelServable` of `exported_model`, loaded once per session: 2 predictions at once, 4 waiting."""
    if use_vae not in _SERVABLES:
        export_dir = exported_model(tmp_path_factory, use_vae)
        _SERVABLES[use_vae] = serve.ModelServable(
            export_dir, max_concurrent=2, max_queue=4, queue_timeout_s=30
        )
    return _SERVABLES[use_vae]


@pytest.fixture(scope="module")
def plain(tmp_path_factory):
    servable = served_model(tmp_path_factory, use_vae=False)
    with running(serve.SpadeHTTPServer(("127.0.0.1", 0), servable, max_body_bytes=MAX_BODY)) as server:
        yield server


@pytest.fixture(scope="module")
def vae(tmp_path_factory):
    servable = served_model(tmp_path_factory, use_vae=True)
    with running(serve.SpadeHTTPServer(("127.0.0.1", 0), servable, max_body_bytes=MAX_BODY)) as server:
        yield server


def request(server, path, body=None, method=None, headers=None):
    """(status, headers, body bytes); a dict body is sent as JSON."""
    if isinstance(body, dict):
        body = json.dumps(body).encode()
    req = urllib.request.Request(server.url + path, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=TIMEOUT_S) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def raw_get(server, path):
    """GET with the path sent exactly as given (urllib would normalise some of it)."""
    conn = http.client.HTTPConnection(*server.server_address[:2], timeout=TIMEOUT_S)
    try:
        conn.request("GET", path)
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


def predict(server, body, path="/v1/models/spade:predict"):
    return request(server, path, body)


def json_error(status, headers, body):
    assert headers["Content-Type"] == "application/json", body
    message = json.loads(body)["error"]
    assert isinstance(message, str) and message
    return status, message


def png(array):
    buf = io.BytesIO()
    Image.fromarray(np.asarray(array, np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def b64(data):
    return {"b64": base64.b64encode(data).decode()}


def labels(n, seed=0):
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, len(CLASS_NAMES), (n, SIZE // 8, SIZE // 8))
    return np.repeat(np.repeat(coarse, 8, 1), 8, 2).astype(np.int32)


def example_inputs(server, signature, n=2):
    """Numpy inputs for every input of a signature: ids, PNGs (one grey-id, one palette-coloured), styles."""
    servable = server.servable
    palette = np.asarray(servable.spade_metadata["model"]["palette"], np.uint8)
    ids = labels(n)
    rng = np.random.default_rng(1)
    styles = rng.integers(0, 256, (n, 20, 24, 3), dtype=np.uint8)
    values = {
        "labels": ids,
        "instances": ids * 7 + 1,
        "seed": np.array([3, 11, 5][:n], np.int32),
        "style_images": styles,
        "label_png_bytes": np.array([png(ids[0]), png(palette[ids[1]])][:n], object),
        "style_png_bytes": np.array([png(s) for s in styles], object),
    }
    return {name: values[name] for name in servable.input_specs[signature]}


def to_json(value):
    if isinstance(value, np.ndarray) and value.dtype == object:
        return [to_json(v) for v in value]
    if isinstance(value, bytes):
        return b64(value)
    return value.tolist()


def from_json(value):
    """Response values -> numpy (the {"b64": ...} objects back to bytes)."""
    if isinstance(value, dict):
        return base64.b64decode(value["b64"])
    if isinstance(value, list) and value and isinstance(value[0], (dict, list)) and _holds_b64(value):
        return np.array([from_json(v) for v in value], object)
    return np.asarray(value)


def _holds_b64(value):
    while isinstance(value, list):
        value = value[0]
    return isinstance(value, dict)


# -- status and metadata ---------------------------------------------------------------------------------------


def test_status_and_metadata_follow_tf_serving(vae):
    status, _, body = request(vae, "/v1/models/spade")
    assert status == 200
    assert json.loads(body) == {
        "model_version_status": [
            {"version": "1", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}
        ]
    }
    assert request(vae, "/v1/models/spade/versions/1")[0] == 200
    status, _, body = request(vae, "/v1/models/spade/versions/1/metadata")
    meta = json.loads(body)
    assert status == 200 and meta["model_spec"] == {"name": "spade", "signature_name": "", "version": "1"}
    defs = meta["metadata"]["signature_def"]["signature_def"]
    assert set(defs) == {"serving_default", "predict_png", "style", "style_png"}
    labels_def = defs["serving_default"]["inputs"]["labels"]
    assert labels_def["dtype"] == "DT_INT32"
    assert [d["size"] for d in labels_def["tensor_shape"]["dim"]] == ["-1", "32", "32"]
    assert defs["predict_png"]["outputs"]["image_png_bytes"]["dtype"] == "DT_STRING"
    assert defs["predict_png"]["method_name"] == "tensorflow/serving/predict"
    status, _, body = request(vae, "/v1/models/spade/spade_metadata")
    spade = json.loads(body)
    assert status == 200
    assert spade["model"]["class_names"] == [*CLASS_NAMES, "dontcare"]
    assert len(spade["model"]["palette"]) == 5 and spade["model"]["use_vae"] is True
    # The bundle's place on the server's disk is not sent, only its name.
    assert spade["source"]["path"] == "model.keras"


@pytest.mark.parametrize(
    "path, status, needle",
    [
        ("/v1/models/other", 404, "Servable not found for request: Latest(other)"),
        ("/v1/models/spade/versions/2", 404, "Specific(spade, 2)"),
        ("/v1/models/spade/versions/2/metadata", 404, "version 1 only"),
        ("/v1/models/spade/labels/stable", 404, "no such path"),
        ("/nothing", 404, "no such path"),
        ("/v1/models/spade:predict", 405, "needs POST"),
    ],
)
def test_unknown_paths_and_methods_on_get(plain, path, status, needle):
    got, message = json_error(*request(plain, path))
    assert got == status and needle in message


@pytest.mark.parametrize(
    "method, path, status",
    [
        ("POST", "/v1/models/spade", 405),
        ("POST", "/", 405),
        ("PUT", "/v1/models/spade:predict", 405),
        ("DELETE", "/v1/models/spade", 405),
        ("POST", "/v1/models/spade:classify", 404),
        ("POST", "/v1/models/other:predict", 404),
    ],
)
def test_wrong_methods_and_endpoints(plain, method, path, status):
    got, message = json_error(*request(plain, path, b"{}", method=method))
    assert got == status, message
    # The connection is still usable: the next request is answered normally.
    assert request(plain, "/v1/models/spade")[0] == 200


# -- predict -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("model", ["plain", "vae"])
def test_every_signature_in_both_formats_equals_the_savedmodel(model, request_fixture):
    server = request_fixture(model)
    servable = server.servable
    expected_signatures = {"serving_default", "predict_png"} | (
        {"style", "style_png"} if model == "vae" else set()
    )
    assert set(servable.signatures) == expected_signatures
    for signature in sorted(servable.signatures):
        inputs = example_inputs(server, signature)
        direct = servable.signatures[signature](**{k: tf.constant(v) for k, v in inputs.items()})
        direct = {k: v.numpy() for k, v in direct.items()}
        (out_name,) = direct
        single = len(inputs) == 1
        rows = [
            to_json(next(iter(inputs.values()))[i])
            if single
            else {k: to_json(v[i]) for k, v in inputs.items()}
            for i in range(2)
        ]
        status, _, body = predict(server, {"signature_name": signature, "instances": rows})
        assert status == 200, (signature, body[:300])
        got = from_json(json.loads(body)["predictions"])
        status, _, body = predict(
            server, {"signature_name": signature, "inputs": {k: to_json(v) for k, v in inputs.items()}}
        )
        assert status == 200, (signature, body[:300])
        got_columnar = from_json(json.loads(body)["outputs"])
        for result in (got, got_columnar):
            if direct[out_name].dtype == object:
                # PNG bytes: the same encoder on the same pixels gives the same file.
                assert list(result) == list(direct[out_name]), signature
            else:
                np.testing.assert_array_equal(result.astype(np.uint8), direct[out_name], err_msg=signature)


@pytest.fixture
def request_fixture(request):
    return request.getfixturevalue


def test_single_input_signature_takes_bare_and_named_values(plain):
    ids = labels(1)[0]
    answers = [
        predict(plain, {"signature_name": "predict_png", "instances": [b64(png(ids))]}),
        predict(plain, {"signature_name": "predict_png", "instances": [{"label_png_bytes": b64(png(ids))}]}),
        predict(plain, {"signature_name": "predict_png", "inputs": [b64(png(ids))]}),
        predict(plain, {"signature_name": "predict_png", "inputs": {"label_png_bytes": [b64(png(ids))]}}),
    ]
    assert [a[0] for a in answers] == [200] * 4
    images = [
        base64.b64decode((json.loads(a[2]).get("predictions") or json.loads(a[2])["outputs"])[0]["b64"])
        for a in answers
    ]
    assert len(set(images)) == 1
    decoded = np.asarray(Image.open(io.BytesIO(images[0])))
    assert decoded.shape == (SIZE, SIZE, 3) and decoded.dtype == np.uint8


def test_default_signature_and_versioned_path(plain):
    ids = labels(1)
    body = {"instances": [{"labels": ids[0].tolist(), "instances": ids[0].tolist()}]}
    status, _, out = predict(plain, body, path="/v1/models/spade/versions/1:predict")
    assert status == 200
    images = np.asarray(json.loads(out)["predictions"], np.uint8)
    assert images.shape == (1, SIZE, SIZE, 3)
    status, message = json_error(*predict(plain, body, path="/v1/models/spade/versions/7:predict"))
    assert status == 404 and "Specific(spade, 7)" in message


def _not_palette_png():
    rgb = np.zeros((SIZE, SIZE, 3), np.uint8)
    rgb[:] = (1, 2, 3)
    return png(rgb)


def _bad_requests():
    ids = labels(1)[0].tolist()
    row = {"labels": ids, "instances": ids}
    wrong = np.zeros((1, 16, 16), np.int32).tolist()
    out_of_range = np.full((SIZE, SIZE), 7).tolist()
    gif = b"GIF89a" + bytes(40)
    return [
        ("bad JSON", b'{"instances": [1, 2', 400, "JSON Parse error"),
        ("not an object", b"[1, 2]", 400, "must be a JSON object"),
        ("not UTF-8", b'{"instances": "\xff"}', 400, "not UTF-8"),
        (
            "unknown signature",
            {"signature_name": "paint", "instances": [row]},
            400,
            'name: "paint" not found',
        ),
        ("no instances or inputs", {"signature_name": "serving_default"}, 400, "exactly one of 'instances'"),
        ("both formats", {"instances": [row], "inputs": {}}, 400, "exactly one of 'instances'"),
        ("empty instances", {"instances": []}, 400, "non-empty list"),
        ("missing input", {"instances": [{"labels": ids}]}, 400, "missing input(s) instances"),
        ("extra input", {"instances": [{**row, "seed": 3}]}, 400, "unknown input(s) seed"),
        ("bare value, several inputs", {"instances": [ids]}, 400, "several inputs"),
        ("wrong rank", {"inputs": {"labels": ids, "instances": ids}}, 400, "expected shape [-1, -1, -1]"),
        ("size not a multiple", {"inputs": {"labels": wrong, "instances": wrong}}, 400, "multiples of 32"),
        ("ragged", {"inputs": {"labels": [[[0, 1], [0]]], "instances": [[[0, 1], [0]]]}}, 400, "ragged"),
        ("floats", {"inputs": {"labels": [[[0.5]]], "instances": [[[0]]]}}, 400, "expected integers (int32)"),
        (
            "int32 overflow",
            {"inputs": {"labels": [[[2**40]]], "instances": [[[0]]]}},
            400,
            "do not fit int32",
        ),
        (
            "ids out of range",
            {"instances": [{"labels": out_of_range, "instances": out_of_range}]},
            400,
            "labels: ids must be in 0..3; found: 7",
        ),
        ("non-PNG body", {"signature_name": "predict_png", "instances": [b64(gif)]}, 400, "not a PNG file"),
        (
            "bad base64",
            {"signature_name": "predict_png", "instances": [{"b64": "@@@"}]},
            400,
            "not valid base64",
        ),
        (
            "colours not in the palette",
            {"signature_name": "predict_png", "instances": [b64(_not_palette_png())]},
            400,
            "palette",
        ),
        (
            "number for a string input",
            {"signature_name": "predict_png", "instances": [3]},
            400,
            'expected strings or {"b64"',
        ),
    ]


@pytest.mark.parametrize("case", _bad_requests(), ids=lambda c: c[0])
def test_bad_requests_get_400_with_a_clear_message(plain, case):
    _, body, status, needle = case
    if isinstance(body, dict):
        body = json.dumps(body).encode()
    got, message = json_error(*predict(plain, body))
    assert (got, needle in message) == (status, True), message
    # One short line, not a TF stack trace.
    assert "\n" not in message and len(message) <= serve.MAX_ERROR_CHARS and "Graph execution" not in message


def test_vae_inputs_are_checked(vae):
    ids = labels(1)[0]
    cases = [
        # VAE models take only their training size.
        (
            {"inputs": {"labels": [[[0] * 16] * 16], "instances": [[[0] * 16] * 16], "seed": [1]}},
            "[-1, 32, 32]",
        ),
        (
            {"instances": [{"labels": ids.tolist(), "instances": ids.tolist(), "seed": 2**31}]},
            "do not fit int32",
        ),
        (
            {"signature_name": "predict_png", "inputs": {"label_png_bytes": [b64(png(ids))], "seed": [1, 2]}},
            "seed: needs one entry per label map",
        ),
        (
            {
                "signature_name": "style_png",
                "instances": [
                    {"label_png_bytes": b64(png(ids)), "seed": 1, "style_png_bytes": b64(b"BM not an image")}
                ],
            },
            "style_png_bytes: not a PNG or JPEG",
        ),
    ]
    for body, needle in cases:
        status, message = json_error(*predict(vae, body))
        assert status == 400 and needle in message, message
    # Don't care: raw 255 in a grey PNG is accepted (it is the don't-care id).
    ids = ids.copy()
    ids[:4] = 255
    status, _, body = predict(
        vae, {"signature_name": "predict_png", "instances": [{"label_png_bytes": b64(png(ids)), "seed": 1}]}
    )
    assert status == 200, body


def test_oversized_bodies_get_413(plain):
    # A body a little over the limit is read and dropped, so the client sees the answer.
    big = b'{"instances": ["' + b"x" * MAX_BODY + b'"]}'
    status, message = json_error(*predict(plain, big))
    assert status == 413 and f"limit of {MAX_BODY} bytes" in message
    # A huge announced body is refused at once, without waiting for it.
    conn = http.client.HTTPConnection(*plain.server_address[:2], timeout=TIMEOUT_S)
    try:
        conn.putrequest("POST", "/v1/models/spade:predict")
        conn.putheader("Content-Length", str(10**10))
        conn.putheader("Content-Type", "application/json")
        conn.endheaders()
        response = conn.getresponse()
        assert response.status == 413 and b"over the limit" in response.read()
    finally:
        conn.close()
    # No Content-Length at all: 411.
    conn = http.client.HTTPConnection(*plain.server_address[:2], timeout=TIMEOUT_S)
    try:
        conn.putrequest("POST", "/v1/models/spade:predict")
        conn.endheaders()
        response = conn.getresponse()
        assert response.status == 411 and b"Content-Length" in response.read()
    finally:
        conn.close()


# -- load ----------------------------------------------------------------------------------------------------------


def test_fifty_concurrent_requests_are_answered_or_refused_cleanly(plain):
    body = json.dumps({"signature_name": "predict_png", "instances": [b64(png(labels(1)[0]))]}).encode()
    n = 50
    start = threading.Barrier(n)
    results = [None] * n

    def client(i):
        start.wait(TIMEOUT_S)
        results[i] = predict(plain, body)

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(n)]
    began = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(TIMEOUT_S)
    assert not any(t.is_alive() for t in threads), "some requests hung"
    statuses = [r[0] for r in results]
    assert set(statuses) <= {200, 503}, statuses
    assert 200 in statuses
    for status, headers, out in results:
        assert headers["Content-Type"] == "application/json"
        if status == 503:
            assert "server busy" in json.loads(out)["error"] and headers["Retry-After"] == "1"
        else:
            assert base64.b64decode(json.loads(out)["predictions"][0]["b64"]).startswith(b"\x89PNG")
    # Refusals are immediate, so the burst takes about as long as the predictions that ran.
    assert time.monotonic() - began < TIMEOUT_S
    assert plain.servable.limiter.waiting == 0
    status, _, _ = predict(plain, body)
    assert status == 200


def test_a_full_server_refuses_at_once_and_a_slow_queue_times_out(plain, monkeypatch):
    limiter = plain.servable.limiter
    body = {"signature_name": "predict_png", "instances": [b64(png(labels(1)[0]))]}
    with contextlib.ExitStack() as held:
        for _ in range(limiter.max_concurrent):
            held.enter_context(limiter.slot())
        monkeypatch.setattr(limiter, "max_queue", 0)
        began = time.monotonic()
        status, message = json_error(*predict(plain, body))
        assert status == 503 and "wait queue is full" in message
        # Refused at once, not after a prediction's time (a 32 px prediction alone takes ~0.02-1 s here).
        assert time.monotonic() - began < 5
        monkeypatch.setattr(limiter, "max_queue", 1)
        monkeypatch.setattr(limiter, "queue_timeout_s", 0.2)
        status, message = json_error(*predict(plain, body))
        assert status == 503 and "within 0.2 s" in message
    monkeypatch.undo()
    assert predict(plain, body)[0] == 200


# -- the page and static files -------------------------------------------------------------------------------


def test_page_and_static_files(plain, monkeypatch):
    status, headers, page = request(plain, "/")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert b'<meta name="spade-model-name" content="spade">' in page
    assert "default-src 'self'" in headers["Content-Security-Policy"]
    for name in ("painter.js", "painter.css", "index.html"):
        status, headers, data = request(plain, "/static/" + name)
        with open(os.path.join(serve.STATIC_DIR, name), "rb") as f:
            assert (status, data) == (200, f.read())
    assert request(plain, "/static/painter.js")[1]["Content-Type"].startswith("text/javascript")
    # The served model name goes into the page, escaped.
    monkeypatch.setattr(plain.servable, "name", 'my"model')
    page = request(plain, "/")[2]
    assert b'content="my&quot;model"' in page


def test_static_files_never_come_from_outside_the_folder(plain, tmp_path):
    server_py = os.path.join(os.path.dirname(serve.STATIC_DIR), "server.py")
    attempts = [
        "/static/../server.py",
        "/static/%2e%2e/server.py",
        "/static/%2E%2E%2Fserver.py",
        "/static/..%2fserver.py",
        "/static/..%5cserver.py",
        "/static/..\\server.py",
        "/static/static/../../server.py",
        "/static/%252e%252e/server.py",
        "/static/" + server_py,
        "/static//" + server_py.lstrip("/"),
        "/static/" + server_py.replace("/", "%2f"),
        "/static/%00painter.js",
        "/static/",
        "/static/missing.js",
    ]
    for path in attempts:
        status, body = raw_get(plain, path)
        assert status == 404, path
        assert b"ModelServable" not in body and json.loads(body)["error"].startswith("no such"), path
    # A symlink inside the folder that points out of it is refused too; a plain file is served.
    static = tmp_path / "static"
    static.mkdir()
    (static / "ok.js").write_text("ok")
    (static / "escape.js").symlink_to(server_py)
    server = serve.SpadeHTTPServer(("127.0.0.1", 0), plain.servable, static_dir=str(static))
    with running(server):
        assert request(server, "/static/ok.js")[:3:2] == (200, b"ok")
        status, body = raw_get(server, "/static/escape.js")
        assert status == 404 and b"ModelServable" not in body


# -- command line and version choice ---------------------------------------------------------------------------


def test_find_version_picks_the_highest_number(tmp_path):
    for name in ("1", "2", "10", "3_old"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "saved_model.pb").write_bytes(b"")
    (tmp_path / "11").mkdir()  # no saved_model.pb: half-written, not a version
    assert serve.find_version(str(tmp_path)) == (10, str(tmp_path / "10"))
    assert serve.find_version(str(tmp_path), 2)[0] == 2
    with pytest.raises(FileNotFoundError, match=r"has versions \[1, 2, 10\]"):
        serve.find_version(str(tmp_path), 5)
    with pytest.raises(FileNotFoundError, match="holds no SavedModel version folder"):
        serve.find_version(str(tmp_path / "11"))
    with pytest.raises(FileNotFoundError, match="is not a folder"):
        serve.find_version(str(tmp_path / "nowhere"))


def test_command_line_errors_name_the_problem(tmp_path):
    proc = run_script("serve.py", "--model", str(tmp_path))
    assert proc.returncode != 0
    assert "holds no SavedModel version folder" in proc.stderr
    proc = run_script("serve.py")
    assert proc.returncode != 0
    assert "--model" in proc.stderr
    with pytest.raises(ValueError, match="max_concurrent >= 1"):
        serve._Limiter(0, 1, 1.0)


# -- work bounds and hostile input --------------------------------------------------------------------------


def call(signature, **row):
    """A one-instance request body of `signature`."""
    return {"signature_name": signature, "instances": [row]}


def assert_still_serving(server):
    """The next normal request is answered: the bad one neither killed nor wedged the server."""
    seed = {"seed": 1} if "seed" in server.servable.input_specs["predict_png"] else {}
    status, _, out = predict(server, call("predict_png", label_png_bytes=b64(png(labels(1)[0])), **seed))
    assert status == 200, out[:300]


def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def test_a_png_claiming_a_huge_size_is_refused_from_its_header(plain, monkeypatch):
    before = peak_rss_mb()
    for width, height in ((4000, 4000), (100000, 100000), (2**32 - 1, 2**32 - 1)):
        began = time.monotonic()
        status, message = json_error(
            *predict(plain, call("predict_png", label_png_bytes=b64(claimed_png(width, height))))
        )
        assert status == 413 and f"{width * height:,} label map pixels" in message, message
        assert "(--max_pixels)" in message
        assert time.monotonic() - began < 5  # refused from the header, not after decoding
        assert_still_serving(plain)
    # Past a server limit set too high, the SavedModel refuses it itself, still before decoding (TF Serving's
    # case): the message is the export's bound, not a decoder's error, and no 40 GB were allocated.
    monkeypatch.setattr(plain.servable, "limits", export_lib.Limits(max_pixels=2**40))
    status, message = json_error(
        *predict(plain, call("predict_png", label_png_bytes=b64(claimed_png(100000, 100000))))
    )
    assert status == 400 and "export.py --max_pixels" in message and "10000000000" in message, message
    assert peak_rss_mb() - before < 500
    monkeypatch.undo()
    assert_still_serving(plain)


def test_many_small_maps_are_refused_before_decoding(plain, monkeypatch):
    one = b64(png(labels(1)[0]))
    limits = plain.servable.limits
    status, message = json_error(
        *predict(plain, {"signature_name": "predict_png", "instances": [one] * (limits.max_maps + 1)})
    )
    assert status == 413 and f"{limits.max_maps + 1} label maps" in message and "(--max_maps)" in message
    assert_still_serving(plain)
    # The pixel bound counts every map: three 32x32 maps are over a two-map bound, as PNGs or as id arrays.
    monkeypatch.setattr(plain.servable, "limits", dataclasses.replace(limits, max_pixels=2 * SIZE * SIZE))
    ids = labels(3)
    for body in (
        {"signature_name": "predict_png", "instances": [one] * 3},
        {"inputs": {"labels": ids.tolist(), "instances": ids.tolist()}},
    ):
        status, message = json_error(*predict(plain, body))
        assert status == 413 and "3,072 label map pixels" in message and "(--max_pixels)" in message, message
        assert_still_serving(plain)


def _garbage_requests():
    """(case, model, body, status, text the message holds): garbage in every string field of a request."""
    ids = labels(1)[0].tolist()
    label = b64(png(labels(1)[0]))
    noise = np.random.default_rng(7).integers(0, 256, 300, dtype=np.uint8).tobytes()
    jpeg = claimed_jpeg(8, 8)
    return [
        ("non-UTF-8 body", "plain", b'{"signature_name": "\xff\xfe"}', 400, "not UTF-8"),
        (
            "NUL and 0xff in signature_name",
            "plain",
            {"signature_name": "\x00\xff", "instances": [1]},
            400,
            "not found",
        ),
        (
            "lone surrogate in signature_name",
            "plain",
            b'{"signature_name": "\\udcff", "instances": [1]}',
            400,
            "not found",
        ),
        (
            "garbage input name",
            "plain",
            b'{"instances": [{"labels": [[0]], "\\u0000\\udcff\\n": 1}]}',
            400,
            "unknown input(s)",
        ),
        (
            "binary in a plain string",
            "plain",
            call("predict_png", label_png_bytes="\x00\xff"),
            400,
            "not a PNG",
        ),
        (
            "lone surrogate in a plain string",
            "plain",
            b'{"signature_name": "predict_png", "instances": ["\\ud800"]}',
            400,
            "lone surrogate",
        ),
        ("random bytes", "plain", call("predict_png", label_png_bytes=b64(noise)), 400, "not a PNG file"),
        ("a JPEG as a label map", "plain", call("predict_png", label_png_bytes=b64(jpeg)), 400, "ffd8ff"),
        (
            "a PNG header, then noise",
            "plain",
            call("predict_png", label_png_bytes=b64(png(labels(1)[0])[:40] + noise)),
            400,
            "",
        ),
        ("b64 not a string", "plain", call("predict_png", label_png_bytes={"b64": 7}), 400, "base64 string"),
        (
            "b64 of control bytes",
            "plain",
            call("predict_png", label_png_bytes={"b64": "\x00\xff"}),
            400,
            "base64",
        ),
        ("labels as text", "plain", {"inputs": {"labels": "\x00\xff", "instances": "x"}}, 400, "expected"),
        ("seed as text", "vae", call("predict_png", label_png_bytes=label, seed="\x00\xff"), 400, "integers"),
        (
            "style: random bytes",
            "vae",
            call("style_png", label_png_bytes=label, seed=1, style_png_bytes=b64(noise)),
            400,
            "not a PNG or JPEG",
        ),
        (
            "style: a JPEG header, then noise",
            "vae",
            call("style_png", label_png_bytes=label, seed=1, style_png_bytes=b64(jpeg[:30] + noise)),
            400,
            "",
        ),
        (
            "style: a JPEG claiming 60000x60000",
            "vae",
            call("style_png", label_png_bytes=label, seed=1, style_png_bytes=b64(claimed_jpeg(60000, 60000))),
            413,
            "(--max_style_pixels)",
        ),
        (
            "style: a PNG claiming 100000x100000",
            "vae",
            call(
                "style_png", label_png_bytes=label, seed=1, style_png_bytes=b64(claimed_png(100000, 100000))
            ),
            413,
            "10,000,000,000 style image pixels",
        ),
        ("nested too deeply", "plain", b'{"instances": ' + b"[" * 50000 + b"]" * 50000 + b"}", 400, "nested"),
        (
            "ids too deep",
            "plain",
            {"inputs": {"labels": [[[[[[ids]]]]]], "instances": [[[[[[ids]]]]]]}},
            400,
            "shape",
        ),
    ]


@pytest.mark.parametrize("case", _garbage_requests(), ids=lambda c: c[0])
def test_garbage_in_any_string_field_gets_a_readable_4xx(case, request_fixture):
    _, model, body, status, needle = case
    server = request_fixture(model)
    got, message = json_error(*predict(server, json.dumps(body).encode() if isinstance(body, dict) else body))
    assert (got, needle in message) == (status, True), message
    # One line of printable ASCII: no raw input bytes, no stack trace.
    assert message.isascii() and message.isprintable() and "Traceback" not in message, message
    assert_still_serving(server)


def test_garbage_in_the_url_and_the_request_line_gets_json(plain):
    for path in ("/v1/models/%ff%fe%00:predict", "/v1/models/spade/versions/%ff:predict", "/\xff\xfe"):
        status, body = raw_request(
            plain, f"POST {path} HTTP/1.1\r\nContent-Length: 2\r\n\r\n{{}}".encode("latin-1")
        )
        assert status == 404 and json.loads(body)["error"].isascii(), body
    # The standard library's own refusals (here: an unknown method) are JSON too.
    status, body = raw_request(plain, b"\xff\xfe / HTTP/1.1\r\n\r\n")
    message = json.loads(body)["error"]
    assert status == 501 and message == "Not Implemented: Unsupported method ('\\xff\\xfe')", message
    status, body = raw_request(
        plain, b"POST /v1/models/spade:predict HTTP/1.1\r\nContent-Length: \xff1\r\n\r\n"
    )
    assert status == 400 and "bad Content-Length" in json.loads(body)["error"]
    assert_still_serving(plain)


def raw_request(server, data):
    """Sends raw bytes on a new connection; (status, body) of the answer."""
    with socket.create_connection(server.server_address[:2], timeout=TIMEOUT_S) as sock:
        sock.sendall(data)
        response = http.client.HTTPResponse(sock)
        response.begin()
        return response.status, response.read()
