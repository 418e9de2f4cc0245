"""Serve an exported SPADE model over HTTP: TF Serving's REST API and the paint-a-scene page (GauGAN's demo).

    python serve.py --model exports/demo            # then open http://127.0.0.1:8501/

`--model` is an export folder written by `spade_tf.serving.export_lib.export_saved_model` (TF Serving's model base
path: `<dir>/<version>/` SavedModels and `metadata.json`). The highest numeric version is served unless
`--version` says otherwise. Only the standard library's HTTP server is used: this is a demo and a test double
for TF Serving, not a production server (put TF Serving behind the page for that; see `static/painter.js`).

Endpoints (the `/v1` ones speak TF Serving's REST API, https://www.tensorflow.org/tfx/serving/api_rest):

    GET  /                                       the painter (spade_tf/serving/static/index.html)
    GET  /static/<file>                          files of spade_tf/serving/static only
    GET  /v1/models/<name>[/versions/<v>]        model status
    GET  /v1/models/<name>[/versions/<v>]/metadata         signature defs, as TF Serving returns them
    GET  /v1/models/<name>[/versions/<v>]/spade_metadata   the export's metadata.json (classes, palette, ...)
    GET  /v1/models/<name>[/versions/<v>]/examples/<file>  the export's example label maps and style exemplars
    POST /v1/models/<name>[/versions/<v>]:predict          {"signature_name", "instances" | "inputs"}

Every error is JSON `{"error": "<message>"}`, one line of text (input bytes appear as hex, never raw): 400 bad
request (JSON, signature, inputs, shapes, ids, PNGs), 404 unknown model, version or path, 405 wrong method, 411
no Content-Length, 413 body over `--max_body_bytes` or work over a limit, 503 busy (more than `--max_concurrent`
running and `--max_queue` waiting), 500 only for a fault of the server itself.

Work per request is bounded, not only bytes (a 20 kB PNG can claim 4000x4000 pixels): before the model runs,
the server counts the label maps (`--max_maps`), the label pixels N x H x W (`--max_pixels`) and the style
pixels (`--max_style_pixels`) from the JSON arrays' shapes and the PNG/JPEG headers, and answers 413 naming the
flag. The limits default to the ones the export recorded (`export_lib.Limits`, metadata.json), which the
SavedModel's signatures enforce themselves too.
"""

import base64
import binascii
import contextlib
import dataclasses
import html
import json
import logging
import os
import re
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import tensorflow as tf
from tensorflow.core.framework import types_pb2
from tensorflow.core.protobuf import saved_model_pb2

from spade_tf.data import labels as label_maps
from spade_tf.serving import export_lib

STATIC_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static")
METADATA_FILE = "metadata.json"
SAVED_MODEL_FILE = "saved_model.pb"
DEFAULT_PORT = 8501
DEFAULT_MODEL_NAME = "spade"
DEFAULT_MAX_BODY_BYTES = 4 * 1024 * 1024
# Bodies up to this many times the limit are read and dropped before the 413, so the client sees the answer
# instead of a reset connection; bigger ones are refused without reading.
DRAIN_FACTOR = 4
MAX_ERROR_CHARS = 600
# Client-supplied text (names, paths) quoted in an error is cut to this many characters.
MAX_QUOTED_CHARS = 80
_PRINTABLE = re.compile(r"[\x20-\x7e]+")
# JPEG start-of-frame markers (they hold the size): C0-CF except DHT (C4), JPG (C8) and DAC (CC).
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
# Markers without a length field: TEM, RST0-7, SOI.
_JPEG_NO_LENGTH = frozenset([0x01, *range(0xD0, 0xD8), 0xD8])
# The page reads the model name from this tag; `/` serves index.html with the served name filled in.
MODEL_NAME_TAG = '<meta name="spade-model-name" content="spade">'
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".png": "image/png",
    ".svg": "image/svg+xml",
    ".json": "application/json",
    ".ico": "image/x-icon",
}
# No inline scripts or styles in the page; images come back as data: URLs; the predict URL may point at a
# proxy on another origin (`?predict=`), so connections are not limited to this origin.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' data: blob:; connect-src 'self' http: https:; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)

log = logging.getLogger("spade_tf.serving.server")


class RequestError(Exception):
    """An HTTP error answer: `status` and a message for the client (sent as `{"error": message}`)."""

    def __init__(self, status, message, headers=None):
        super().__init__(message)
        self.status = int(status)
        self.message = str(message)
        self.headers = dict(headers or {})


# -- the model ------------------------------------------------------------------------------------------------


def find_version(export_dir, version=None):
    """The SavedModel version folder to serve: `version`, or the highest numeric one (as TF Serving picks).

    Args:
        export_dir: the export folder (holding `1/`, `2/`, ... and metadata.json).
        version: a version number, or None for the highest.

    Returns:
        (version int, folder path).
    """
    if not os.path.isdir(export_dir):
        raise FileNotFoundError(
            f"--model {export_dir} is not a folder; pass the export folder written by export.py "
            "(it holds 1/saved_model.pb and metadata.json)."
        )
    versions = sorted(
        int(d)
        for d in os.listdir(export_dir)
        if d.isdigit() and os.path.isfile(os.path.join(export_dir, d, SAVED_MODEL_FILE))
    )
    if not versions:
        raise FileNotFoundError(
            f"{export_dir} holds no SavedModel version folder (a number like 1/ with {SAVED_MODEL_FILE}); "
            "export one with export.py, or pass the folder above the version folder."
        )
    if version is None:
        version = versions[-1]
    elif int(version) not in versions:
        raise FileNotFoundError(
            f"--version {version}: {export_dir} has versions {versions}; pick one of them or leave --version out."
        )
    return int(version), os.path.join(export_dir, str(int(version)))


def _signature_defs_json(saved_model_dir, names):
    """The signature defs of `saved_model.pb` (serve tag) as TF Serving's metadata API writes them."""
    proto = saved_model_pb2.SavedModel()
    with open(os.path.join(saved_model_dir, SAVED_MODEL_FILE), "rb") as f:
        proto.ParseFromString(f.read())
    graphs = [g for g in proto.meta_graphs if "serve" in g.meta_info_def.tags] or list(proto.meta_graphs)

    def tensors(infos):
        return {
            key: {
                "dtype": types_pb2.DataType.Name(info.dtype),
                "tensor_shape": {
                    "dim": [{"size": str(d.size), "name": d.name} for d in info.tensor_shape.dim],
                    "unknown_rank": bool(info.tensor_shape.unknown_rank),
                },
                "name": info.name,
            }
            for key, info in sorted(infos.items())
        }

    return {
        name: {
            "inputs": tensors(sig.inputs),
            "outputs": tensors(sig.outputs),
            "method_name": sig.method_name,
        }
        for name, sig in sorted(graphs[0].signature_def.items())
        if name in names
    }


class _Limiter:
    """At most `max_concurrent` predictions at once and `max_queue` waiting; anyone beyond gets a 503 at once."""

    def __init__(self, max_concurrent, max_queue, queue_timeout_s):
        if max_concurrent < 1 or max_queue < 0 or queue_timeout_s <= 0:
            raise ValueError(
                f"max_concurrent={max_concurrent}, max_queue={max_queue}, queue_timeout_s={queue_timeout_s}: "
                "use max_concurrent >= 1, max_queue >= 0 and queue_timeout_s > 0."
            )
        self.max_concurrent = max_concurrent
        self.max_queue = max_queue
        self.queue_timeout_s = queue_timeout_s
        self._slots = threading.BoundedSemaphore(max_concurrent)
        self._lock = threading.Lock()
        self.waiting = 0

    def _busy(self, why):
        return RequestError(
            503,
            f"server busy: {why} ({self.max_concurrent} predictions run at once, {self.max_queue} may wait); "
            "retry in a moment.",
            headers={"Retry-After": "1"},
        )

    @contextlib.contextmanager
    def slot(self):
        if not self._slots.acquire(blocking=False):
            with self._lock:
                if self.waiting >= self.max_queue:
                    raise self._busy("the wait queue is full")
                self.waiting += 1
            try:
                acquired = self._slots.acquire(timeout=self.queue_timeout_s)
            finally:
                with self._lock:
                    self.waiting -= 1
            if not acquired:
                raise self._busy(f"no prediction slot came free within {self.queue_timeout_s:g} s")
        try:
            yield
        finally:
            self._slots.release()


class ModelServable:
    """One SavedModel version, answering TF Serving's REST requests (thread-safe).

    Args:
        export_dir: the export folder (see `find_version`).
        name: the model name in the URLs (TF Serving's --model_name).
        version: the version to serve; None for the highest.
        max_concurrent: predictions running at once.
        max_queue: predictions waiting for a slot; more get 503 at once.
        queue_timeout_s: how long a waiting prediction waits before it gets 503.
        max_maps, max_pixels, max_style_pixels: work bounds of one request (see `export_lib.Limits`); None:
            the export's (metadata.json), or the defaults for an export that recorded none.

    Example:

        servable = ModelServable("exports/demo")
        servable.predict(b'{"signature_name": "predict_png", "instances": [{"b64": "iVBORw0..."}]}')
        # -> {"predictions": [{"b64": "<the synthesized PNG>"}]}; bad requests raise RequestError(400, ...)
    """

    def __init__(
        self,
        export_dir,
        name=DEFAULT_MODEL_NAME,
        version=None,
        max_concurrent=2,
        max_queue=8,
        queue_timeout_s=30.0,
        max_maps=None,
        max_pixels=None,
        max_style_pixels=None,
    ):
        self.export_dir = os.path.abspath(export_dir)
        self.name = name
        self.version, self.version_dir = find_version(self.export_dir, version)
        self.model = tf.saved_model.load(self.version_dir)
        self.signatures = dict(self.model.signatures)
        if not self.signatures:
            raise ValueError(f"{self.version_dir} has no signatures; re-export it with export.py.")
        self.input_specs = {}
        self.output_specs = {}
        for sig_name, fn in self.signatures.items():
            self.input_specs[sig_name] = dict(sorted(fn.structured_input_signature[1].items()))
            self.output_specs[sig_name] = dict(sorted(fn.structured_outputs.items()))
        self.signature_defs = _signature_defs_json(self.version_dir, set(self.signatures))
        self.spade_metadata = self._read_spade_metadata()
        # Example label maps and style exemplars (export_lib.export_examples), listed in metadata.json with
        # paths relative to it: under /v1/models/<name>/ they resolve against the spade_metadata URL.
        self.examples_dir = os.path.join(self.export_dir, export_lib.EXAMPLES_DIR)
        self.export_limits = export_lib.Limits.from_json((self.spade_metadata or {}).get("limits"))
        given = {"max_maps": max_maps, "max_pixels": max_pixels, "max_style_pixels": max_style_pixels}
        self.limits = dataclasses.replace(
            self.export_limits, **{k: v for k, v in given.items() if v is not None}
        )
        self.limiter = _Limiter(max_concurrent, max_queue, queue_timeout_s)

    def _read_spade_metadata(self):
        path = os.path.join(self.export_dir, METADATA_FILE)
        if not os.path.isfile(path):
            return None
        with open(path) as f:
            meta = json.load(f)
        # Clients need the classes and palette, not where the model sat on the server's disk.
        source = meta.get("source")
        if isinstance(source, dict) and source.get("path"):
            source["path"] = os.path.basename(source["path"])
        return meta

    # -- status and metadata ---------------------------------------------------------------------------

    def check_version(self, version):
        """None or the served version pass; another version is a 404 as in TF Serving."""
        if version is not None and version != self.version:
            raise RequestError(
                404,
                f"Servable not found for request: Specific({self.name}, {version}); this server serves "
                f"version {self.version} only.",
            )

    def status(self):
        return {
            "model_version_status": [
                {
                    "version": str(self.version),
                    "state": "AVAILABLE",
                    "status": {"error_code": "OK", "error_message": ""},
                }
            ]
        }

    def metadata(self):
        return {
            "model_spec": {"name": self.name, "signature_name": "", "version": str(self.version)},
            "metadata": {
                "signature_def": {
                    "signature_def": self.signature_defs,
                    "@type": "type.googleapis.com/tensorflow.serving.SignatureDefMap",
                }
            },
        }

    # -- predict ---------------------------------------------------------------------------------------

    def predict(self, body):
        """A predict request body (bytes) -> the response dict. Raises `RequestError`."""
        request = _parse_json(body)
        sig_name = request.get("signature_name", "serving_default")
        if not isinstance(sig_name, str) or sig_name not in self.signatures:
            raise RequestError(
                400,
                f"Serving signature name: {_quote(json.dumps(sig_name))} not found in signature def; this model has "
                f"{', '.join(sorted(self.signatures))}.",
            )
        specs = self.input_specs[sig_name]
        if ("instances" in request) == ("inputs" in request):
            raise RequestError(
                400,
                "give exactly one of 'instances' (row format: a list with one entry per example) or 'inputs' "
                f"(columnar format); signature {sig_name} takes {_describe_inputs(specs)}.",
            )
        row_format = "instances" in request
        if row_format:
            columns = _columns_from_rows(request["instances"], specs, sig_name)
        else:
            columns = _columns_from_inputs(request["inputs"], specs, sig_name)
        self._check_maps(columns)
        try:
            arrays = {name: _to_array(columns[name], spec, name, row_format) for name, spec in specs.items()}
        except RecursionError:
            raise RequestError(400, "inputs nested too deeply: no input has more than 4 axes.") from None
        self._check_pixels(arrays)
        tensors = {name: tf.constant(arrays[name], dtype=spec.dtype) for name, spec in specs.items()}
        with self.limiter.slot():
            outputs = self._call(sig_name, tensors)
        return _format_outputs(outputs, row_format)

    def _check_maps(self, columns):
        """413 when any input holds more entries (label maps) than `max_maps`, before anything is converted."""
        limit = self.limits.max_maps
        counts = [len(v) for v in columns.values() if isinstance(v, list)]
        if counts and max(counts) > limit:
            raise RequestError(
                413,
                f"{max(counts)} label maps in one request; this server takes at most {limit} (--max_maps). "
                "Send them in several requests.",
            )

    def _check_pixels(self, arrays):
        """413 when the label or style pixels of a request are over the limits, before anything is decoded.

        Sizes come from the arrays' shapes and from the PNG and JPEG headers; a string that is neither counts
        nothing here (the signature refuses it without decoding).
        """
        label_pixels = style_pixels = 0
        for name, array in arrays.items():
            if name in ("labels", "instances"):
                label_pixels = max(label_pixels, array.size)
            elif name == "style_images":
                style_pixels += array.size // 3 if array.ndim == 4 else 0
            elif name == "label_png_bytes":
                label_pixels += sum(_image_pixels(data) for data in array.flat)
            elif name == "style_png_bytes":
                style_pixels += sum(_image_pixels(data, jpeg=True) for data in array.flat)
        for pixels, limit, flag, kind in (
            (label_pixels, self.limits.max_pixels, "max_pixels", "label map"),
            (style_pixels, self.limits.max_style_pixels, "max_style_pixels", "style image"),
        ):
            if pixels > limit:
                raise RequestError(
                    413,
                    f"{pixels:,} {kind} pixels in one request (height x width summed over its images); this "
                    f"server takes at most {limit:,} (--{flag}). Send fewer or smaller images.",
                )

    def _call(self, sig_name, tensors):
        try:
            result = self.signatures[sig_name](**tensors)
        except tf.errors.InvalidArgumentError as e:
            raise RequestError(400, tf_error_message(e)) from None
        except tf.errors.ResourceExhaustedError as e:
            log.error("out of memory in %s: %s", sig_name, tf_error_message(e))
            raise RequestError(
                500,
                "the server ran out of memory for this request: its limits (--max_pixels, --max_style_pixels, "
                "--max_concurrent) are set too high for this machine; send a smaller request.",
            ) from None
        except tf.errors.OpError as e:
            raise RequestError(500, tf_error_message(e)) from None
        except UnicodeDecodeError:
            # TF could not decode the text of an op error (bytes of the input inside it): the op refused
            # the input, but its message is lost. The signatures print input bytes as hex, so this is a
            # safety net for messages of TF's own ops.
            log.warning("%s: an op error whose message is not UTF-8", sig_name)
            raise RequestError(
                400, f"signature {sig_name} refused the input (TF's error text was not readable)."
            ) from None
        return {name: value.numpy() for name, value in result.items()}


def _parse_json(body):
    try:
        request = json.loads(body.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise RequestError(
            400, f"JSON Parse error: the body is not UTF-8 text ({e.reason} at byte {e.start})."
        ) from None
    except json.JSONDecodeError as e:
        raise RequestError(
            400, f"JSON Parse error: {e.msg} at line {e.lineno}, column {e.colno} (offset {e.pos})."
        ) from None
    except RecursionError:
        raise RequestError(400, "JSON Parse error: arrays or objects nested too deeply.") from None
    if not isinstance(request, dict):
        raise RequestError(
            400,
            'the request body must be a JSON object like {"signature_name": ..., "instances": [...]}; '
            f"got a JSON {type(request).__name__}.",
        )
    return request


def _describe_inputs(specs):
    return ", ".join(f"{name} ({spec.dtype.name} {_shape_text(spec.shape)})" for name, spec in specs.items())


def _shape_text(shape):
    return "[" + ", ".join("-1" if d is None else str(d) for d in shape) + "]"


def _is_b64(value):
    return isinstance(value, dict) and set(value) == {"b64"}


def _check_names(given, specs, sig_name, where):
    missing = sorted(set(specs) - set(given))
    extra = sorted(set(given) - set(specs))
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"missing input(s) {', '.join(map(_quote, missing))}")
        if extra:
            parts.append(f"unknown input(s) {', '.join(map(_quote, extra))}")
        raise RequestError(
            400, f"{where}: {'; '.join(parts)}. Signature {sig_name} takes {_describe_inputs(specs)}."
        )


def _columns_from_rows(instances, specs, sig_name):
    """Row format: one entry per example; a bare value when the signature has a single input."""
    if not isinstance(instances, list) or not instances:
        raise RequestError(400, "'instances' must be a non-empty list with one entry per example.")
    names = list(specs)
    columns = {name: [] for name in names}
    for i, row in enumerate(instances):
        if isinstance(row, dict) and not _is_b64(row):
            _check_names(row, specs, sig_name, f"instances[{i}]")
            for name in names:
                columns[name].append(row[name])
        elif len(names) == 1:
            columns[names[0]].append(row)
        else:
            raise RequestError(
                400,
                f"instances[{i}]: signature {sig_name} has several inputs, so each instance must be an object "
                f"naming them: {_describe_inputs(specs)}.",
            )
    return columns


def _columns_from_inputs(inputs, specs, sig_name):
    """Columnar format: {name: batched value}, or the bare batched value of a single-input signature."""
    if isinstance(inputs, dict) and not _is_b64(inputs):
        _check_names(inputs, specs, sig_name, "inputs")
        return dict(inputs)
    if len(specs) == 1:
        return {next(iter(specs)): inputs}
    raise RequestError(
        400,
        f"'inputs': signature {sig_name} has several inputs, so 'inputs' must be an object naming them: "
        f"{_describe_inputs(specs)}.",
    )


def _nested_strings(value, where, shape_out, depth=0):
    """Nested lists of strings / {"b64": ...} -> flat list of bytes; records the shape in `shape_out`."""
    if isinstance(value, list):
        if len(shape_out) <= depth:
            shape_out.append(len(value))
        elif shape_out[depth] != len(value):
            raise RequestError(400, f"{where}: nested lists of different lengths; every row must be as long.")
        flat = []
        for v in value:
            flat.extend(_nested_strings(v, where, shape_out, depth + 1))
        if not value and len(shape_out) > depth + 1:
            raise RequestError(400, f"{where}: nested lists of different lengths; every row must be as long.")
        return flat
    if len(shape_out) != depth:
        raise RequestError(
            400, f"{where}: nested lists of different depths; every entry must have the same shape."
        )
    if _is_b64(value):
        if not isinstance(value["b64"], str):
            raise RequestError(400, f"{where}: the 'b64' value must be a base64 string.")
        try:
            return [base64.b64decode(value["b64"], validate=True)]
        except (binascii.Error, ValueError):
            raise RequestError(400, f"{where}: the 'b64' value is not valid base64.") from None
    if isinstance(value, str):
        try:
            return [value.encode("utf-8")]
        except UnicodeEncodeError as e:
            # JSON's \ud800-style escapes can write lone surrogates, which are not text.
            raise RequestError(
                400,
                f"{where}: the string holds {ascii(e.object[e.start : e.end])}, which is not text (a lone "
                'surrogate); send binary data as {"b64": <base64>}.',
            ) from None
    raise RequestError(
        400,
        f'{where}: expected strings or {{"b64": <base64>}} objects, got {type(value).__name__} '
        f"{_quote(repr(value))}.",
    )


def _quote(text, limit=MAX_QUOTED_CHARS):
    """Client-supplied text as one short line of printable ASCII for a message; such text stays as it is."""
    if len(text) <= limit and _PRINTABLE.fullmatch(text):
        return text
    return ascii(text[:limit]) + ("..." if len(text) > limit else "")


def _jpeg_size(data):
    """(width, height) of a JPEG from its first start-of-frame marker, or None where there is none to read."""
    pos = 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
        elif marker in _JPEG_NO_LENGTH:
            pos += 2
        elif marker in _JPEG_SOF:
            if pos + 9 > len(data):
                return None
            height, width = (
                int.from_bytes(data[pos + 5 : pos + 7], "big"),
                int.from_bytes(data[pos + 7 : pos + 9], "big"),
            )
            return width, height
        elif marker in (0xD9, 0xDA):  # end of image or start of scan: no frame header before them
            return None
        else:
            pos += 2 + int.from_bytes(data[pos + 2 : pos + 4], "big")
    return None


def _image_pixels(data, jpeg=False):
    """width x height from a PNG's IHDR (or, with `jpeg`, a JPEG's frame header); 0 when there is none."""
    header = label_maps.png_header(data)
    if header is not None:
        return header.width * header.height
    if jpeg and data.startswith(export_lib.JPEG_MAGIC):
        size = _jpeg_size(data)
        return 0 if size is None else size[0] * size[1]
    return 0


def _to_array(value, spec, name, row_format):
    """One input's JSON value -> a checked NumPy array of the spec's dtype (object for strings) and shape."""
    where = f"input {name}"
    if spec.dtype == tf.string:
        shape = []
        flat = _nested_strings(value, where, shape)
        array = np.array(flat, dtype=object).reshape(shape)
    else:
        try:
            array = np.asarray(value)
        except ValueError:
            raise RequestError(
                400, f"{where}: nested lists of different lengths (ragged); every row must be as long."
            ) from None
        want = spec.dtype.as_numpy_dtype
        if array.size and array.dtype.kind not in "iu" and np.issubdtype(want, np.integer):
            raise RequestError(
                400, f"{where}: expected integers ({spec.dtype.name}); got {_kind_text(array)}."
            )
        if array.size and array.dtype.kind not in "iuf" and np.issubdtype(want, np.floating):
            raise RequestError(
                400, f"{where}: expected numbers ({spec.dtype.name}); got {_kind_text(array)}."
            )
        if array.size and np.issubdtype(want, np.integer):
            info = np.iinfo(want)
            lo, hi = int(array.min()), int(array.max())
            if lo < info.min or hi > info.max:
                raise RequestError(
                    400,
                    f"{where}: values {lo}..{hi} do not fit {spec.dtype.name} ({info.min}..{info.max}).",
                )
        array = array.astype(want) if array.size else np.zeros(array.shape, want)
    expected = list(spec.shape)
    if array.ndim != len(expected) or any(e is not None and e != a for e, a in zip(expected, array.shape)):
        per = "each instance" if row_format else "the batch"
        raise RequestError(
            400,
            f"{where}: expected shape {_shape_text(expected)} ({spec.dtype.name}; -1 = any, the first axis is "
            f"the batch), got {list(array.shape)}"
            + (
                f" (the instances stacked; {per} needs shape {_shape_text(expected[1:])})"
                if row_format
                else ""
            )
            + ".",
        )
    return array


def _kind_text(array):
    return {"f": "non-integer numbers", "b": "booleans", "U": "strings", "O": "mixed values or objects"}.get(
        array.dtype.kind, str(array.dtype)
    )


def _json_output(name, array):
    if array.dtype == object:
        if name.endswith("_bytes"):
            # TF Serving's convention: string outputs whose alias ends in _bytes are binary, sent as base64.
            return np.vectorize(lambda b: {"b64": base64.b64encode(b).decode("ascii")}, otypes=[object])(
                array
            ).tolist()
        return np.vectorize(lambda b: b.decode("utf-8", "replace"), otypes=[object])(array).tolist()
    return array.tolist()


def _format_outputs(outputs, row_format):
    names = sorted(outputs)
    if not row_format:
        if len(names) == 1:
            return {"outputs": _json_output(names[0], outputs[names[0]])}
        return {"outputs": {name: _json_output(name, outputs[name]) for name in names}}
    sizes = {outputs[name].shape[0] if outputs[name].ndim else None for name in names}
    if len(sizes) != 1 or None in sizes:
        raise RequestError(
            400,
            "the signature's outputs differ in their first (batch) axis; use the columnar 'inputs' format.",
        )
    values = {name: _json_output(name, outputs[name]) for name in names}
    if len(names) == 1:
        return {"predictions": values[names[0]]}
    return {"predictions": [{name: values[name][i] for name in names} for i in range(sizes.pop())]}


def tf_error_message(error):
    """The useful line of a TF op error: an Assert's message and data, or the first line that is not noise."""
    text = getattr(error, "message", None) or str(error)
    match = re.search(r"assertion failed: (.*?)(?:\n\s*\[\[|\Z)", text, re.S)
    if match:
        message = " ".join(match.group(1).split())
        if message.startswith("[") and message.endswith("]"):
            message = message[1:-1]
        message = message.replace("] [", " ")
    else:
        noise = ("Graph execution error", "Detected at node", "<stack traces unavailable>")
        lines = [line.strip() for line in text.splitlines()]
        lines = [line for line in lines if line and not line.startswith(noise)] or [text.strip()]
        message = lines[0]
        message = re.sub(r"\{\{function_node [^}]*\}\}\s*", "", message)
        message = re.sub(r"\s*\[\[\{\{node [^]]*\]\]", "", message)
        message = re.sub(r"\s*\[Op:[^]]*\]\s*$", "", message)
    message = message.replace("\\'", "'")
    # One line of text: control characters never reach the client raw.
    message = "".join(c if c.isprintable() else "?" for c in message)
    if len(message) > MAX_ERROR_CHARS:
        message = message[: MAX_ERROR_CHARS - 3] + "..."
    return message


# -- HTTP -----------------------------------------------------------------------------------------------------

_EXAMPLE_PATH = re.compile(r"^(?P<model>/v1/models/[^:]+?)/examples/(?P<file>[^:]+)$")
_MODEL_PATH = re.compile(
    r"^/v1/models/(?P<name>[^/:]+)(?:/versions/(?P<version>[^/:]+))?(?P<rest>/[^/:]*|:[^/]*)?$"
)


class SpadeHTTPServer(ThreadingHTTPServer):
    """A threading HTTP server around one `ModelServable` and the painter's static files.

    Args:
        address: (host, port); port 0 picks a free port (see `server_address`).
        servable: the `ModelServable`.
        max_body_bytes: larger request bodies get 413.
        static_dir: the folder served under /static/.
        request_timeout_s: socket timeout of a connection (a stalled client frees its thread after it).
    """

    daemon_threads = True
    # Enough for bursts of clients: with the default 5, simultaneous connects past the backlog wait for
    # SYN retries (seconds) instead of getting a quick 503.
    request_queue_size = 128

    def __init__(
        self,
        address,
        servable,
        max_body_bytes=DEFAULT_MAX_BODY_BYTES,
        static_dir=STATIC_DIR,
        request_timeout_s=30.0,
    ):
        if max_body_bytes < 1:
            raise ValueError(f"max_body_bytes={max_body_bytes}: use a positive number of bytes.")
        self.servable = servable
        self.max_body_bytes = int(max_body_bytes)
        self.static_dir = os.path.realpath(static_dir)
        self.request_timeout_s = request_timeout_s
        super().__init__(address, _Handler)

    @property
    def url(self):
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"


class _Handler(BaseHTTPRequestHandler):
    server_version = "spade_tf-serve"
    protocol_version = "HTTP/1.1"

    def setup(self):
        self.timeout = self.server.request_timeout_s
        super().setup()

    def log_message(self, format, *args):
        log.info("%s %s", self.address_string(), format % args)

    # -- answers ---------------------------------------------------------------------------------------

    def _send(self, status, body, content_type, headers=None):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Content-Type-Options", "nosniff")
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _send_json(self, status, obj, headers=None):
        self._send(status, (json.dumps(obj) + "\n").encode("utf-8"), "application/json", headers)

    def _send_error_json(self, error):
        self._send_json(error.status, {"error": error.message}, error.headers)

    def send_error(self, code, message=None, explain=None):
        """The standard library's own errors (bad request line or headers, unknown method) as JSON too."""
        self.close_connection = True
        short = self.responses.get(code, ("error", ""))[0]
        text = f"{short}: {message}" if message else short
        # Its messages quote the request line, which may hold any byte: escaped, as printable ASCII.
        self._send_json(code, {"error": ascii(text[:MAX_ERROR_CHARS])[1:-1]})

    def _dispatch(self, handler):
        self._body_read = False
        try:
            handler()
        except RequestError as e:
            if self.command not in ("GET", "HEAD") and not self._body_read:
                # The unread body would be taken for the next request on this connection.
                self.close_connection = True
            self._send_error_json(e)
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            self.close_connection = True
        except Exception as e:  # a bug: answer 500 rather than drop the connection, and log it
            log.exception("error while answering %s %s", self.command, _quote(self.path))
            self.close_connection = True
            # The name and first line only: the traceback stays in the server's log.
            summary = (str(e).splitlines() or [""])[0]
            self._send_json(500, {"error": f"internal error: {type(e).__name__}: {_quote(summary, 200)}"})

    def do_GET(self):
        self._dispatch(self._get)

    def do_HEAD(self):
        self._dispatch(self._get)

    def do_POST(self):
        self._dispatch(self._post)

    def _method_not_allowed(self):
        self._dispatch(lambda: self._refuse_method())

    do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _method_not_allowed

    def _refuse_method(self):
        path = urllib.parse.urlsplit(self.path).path
        allowed = "POST" if path.startswith("/v1/models/") and ":" in path else "GET, HEAD"
        raise RequestError(
            405, f"method {self.command} not allowed on {_quote(path)}; use {allowed}.", {"Allow": allowed}
        )

    # -- routing ---------------------------------------------------------------------------------------

    def _model_route(self, path):
        """/v1/models/... -> (version or None, rest) after checking the model name; None if not a model path."""
        match = _MODEL_PATH.match(path)
        if not match:
            return None
        servable = self.server.servable
        name = urllib.parse.unquote(match["name"])
        if name != servable.name:
            raise RequestError(
                404,
                f"Servable not found for request: Latest({_quote(name)}); this server serves model '{servable.name}'.",
            )
        version = match["version"]
        if version is not None:
            if not version.isdigit():
                raise RequestError(
                    404,
                    f"version {_quote(version)} is not a number; this server serves version {servable.version}.",
                )
            version = int(version)
        servable.check_version(version)
        return version, match["rest"] or ""

    def _get(self):
        path = urllib.parse.urlsplit(self.path).path
        if path in ("/", "/index.html"):
            return self._send_index()
        if path == "/favicon.ico":
            return self._send(204, b"", "image/x-icon")
        if path.startswith("/static/"):
            return self._send_static(path[len("/static/") :])
        example = _EXAMPLE_PATH.match(path)
        if example and (self._model_route(example["model"]) or (None, None))[1] == "":
            return self._send_static(example["file"], self.server.servable.examples_dir)
        route = self._model_route(path)
        if route is None:
            raise RequestError(
                404, f"no such path: {_quote(path)}. See / for the painter and /v1/models/<name> for the API."
            )
        _, rest = route
        servable = self.server.servable
        if rest == "":
            return self._send_json(200, servable.status())
        if rest == "/metadata":
            return self._send_json(200, servable.metadata())
        if rest == "/spade_metadata":
            if servable.spade_metadata is None:
                raise RequestError(
                    404,
                    f"{servable.export_dir} has no {METADATA_FILE}; export with spade_tf.serving.export_lib to write it.",
                )
            return self._send_json(200, servable.spade_metadata)
        if rest.startswith(":"):
            raise RequestError(405, f"{_quote(rest[1:])} needs POST.", {"Allow": "POST"})
        raise RequestError(
            404, f"no such path: {_quote(path)}; try {_quote(path.rsplit('/', 1)[0])}/metadata."
        )

    def _post(self):
        path = urllib.parse.urlsplit(self.path).path
        route = self._model_route(path) if path.startswith("/v1/models/") else None
        if route is None:
            if path in ("/", "/index.html") or path.startswith("/static/"):
                raise RequestError(
                    405, f"method POST not allowed on {_quote(path)}; use GET.", {"Allow": "GET, HEAD"}
                )
            raise RequestError(404, f"no such path: {_quote(path)}. Predict at /v1/models/<name>:predict.")
        _, rest = route
        if rest != ":predict":
            if rest in ("", "/metadata", "/spade_metadata"):
                raise RequestError(
                    405, f"method POST not allowed on {_quote(path)}; use GET.", {"Allow": "GET, HEAD"}
                )
            raise RequestError(404, f"no such endpoint {_quote(rest)}: this server answers :predict only.")
        body = self._read_body()
        self._send_json(200, self.server.servable.predict(body))

    def _read_body(self):
        if self.headers.get("Transfer-Encoding", "").lower() not in ("", "identity"):
            self.close_connection = True
            raise RequestError(411, "chunked request bodies are not supported; send a Content-Length header.")
        length = self.headers.get("Content-Length")
        if length is None:
            self.close_connection = True
            raise RequestError(411, "a POST needs a Content-Length header.")
        try:
            length = int(length)
            if length < 0:
                raise ValueError
        except ValueError:
            self.close_connection = True
            raise RequestError(400, f"bad Content-Length {_quote(length)}.") from None
        limit = self.server.max_body_bytes
        if length > limit:
            self.close_connection = True
            if length <= DRAIN_FACTOR * limit:
                self._drain(length)
            raise RequestError(
                413,
                f"request body of {length} bytes is over the limit of {limit} bytes (--max_body_bytes); "
                "send fewer or smaller images per request.",
            )
        body = self.rfile.read(length)
        self._body_read = True
        return body

    def _drain(self, length):
        while length > 0:
            chunk = self.rfile.read(min(length, 1 << 16))
            if not chunk:
                break
            length -= len(chunk)

    # -- files -----------------------------------------------------------------------------------------

    def _static_file(self, relative, folder=None):
        """The real path of a file inside the static folder (or `folder`), or a 404 (never a file outside it)."""
        kind = "example" if folder else "static"
        not_found = RequestError(404, f"no such {kind} file: {relative[:200]!r}.")
        name = urllib.parse.unquote(relative)
        parts = name.replace("\\", "/").split("/")
        if not name or "\x00" in name or name.startswith(("/", "\\")) or ".." in parts or ":" in name:
            raise not_found
        root = os.path.realpath(folder) if folder else self.server.static_dir
        path = os.path.realpath(os.path.join(root, *parts))
        # realpath resolves symlinks, so a link inside the folder that points out of it is refused too.
        if os.path.commonpath([root, path]) != root or not os.path.isfile(path):
            raise not_found
        return path

    def _send_static(self, relative, folder=None):
        path = self._static_file(relative, folder)
        with open(path, "rb") as f:
            body = f.read()
        content_type = CONTENT_TYPES.get(os.path.splitext(path)[1].lower(), "application/octet-stream")
        self._send(
            200,
            body,
            content_type,
            {"Cache-Control": "no-cache", "Content-Security-Policy": CONTENT_SECURITY_POLICY},
        )

    def _send_index(self):
        with open(self._static_file("index.html"), encoding="utf-8") as f:
            page = f.read()
        name = html.escape(self.server.servable.name, quote=True)
        page = page.replace(MODEL_NAME_TAG, MODEL_NAME_TAG.replace('content="spade"', f'content="{name}"'))
        self._send(
            200,
            page.encode("utf-8"),
            CONTENT_TYPES[".html"],
            {"Cache-Control": "no-cache", "Content-Security-Policy": CONTENT_SECURITY_POLICY},
        )


# -- the server -------------------------------------------------------------------------------------------


def make_server(
    export_dir,
    host="127.0.0.1",
    port=DEFAULT_PORT,
    model_name=DEFAULT_MODEL_NAME,
    version=None,
    max_body_bytes=DEFAULT_MAX_BODY_BYTES,
    max_concurrent=2,
    max_queue=8,
    queue_timeout_s=30.0,
    max_maps=None,
    max_pixels=None,
    max_style_pixels=None,
):
    """Loads the model and binds the server (call `serve_forever()` on it); serve.py's flags are these arguments.

    Args:
        export_dir: the export folder (`<dir>/<version>/` SavedModels and metadata.json).
        host, port: the address to listen on.
        model_name: the <name> in /v1/models/<name>.
        version: the version to serve; None: the highest.
        max_body_bytes: larger request bodies get 413.
        max_concurrent, max_queue, queue_timeout_s: predictions running at once, waiting, and the longest
            wait; beyond them a request gets 503.
        max_maps, max_pixels, max_style_pixels: work bounds of one request (413 beyond them); None: the
            export's (metadata.json "limits").
    """
    servable = ModelServable(
        export_dir,
        name=model_name,
        version=version,
        max_concurrent=max_concurrent,
        max_queue=max_queue,
        queue_timeout_s=queue_timeout_s,
        max_maps=max_maps,
        max_pixels=max_pixels,
        max_style_pixels=max_style_pixels,
    )
    return SpadeHTTPServer((host, port), servable, max_body_bytes=max_body_bytes)
