"""Export a `Synthesizer` for serving: a TF Serving SavedModel, TFLite files and (optionally) ONNX.

Layout written under one export folder (TF Serving's model base path):

    <export_dir>/
      1/                    SavedModel, one folder per version (TF Serving picks the highest)
      metadata.json         ModelInfo, the source bundle and its sha256, the weights' license, signatures, files
      tflite/spade_<variant>.tflite
      onnx/spade.onnx
      models.config         TF Serving's --model_config_file (export.py, `spade_tf.serving.serving_config`)
      MODEL_CARD.md         what the model is, its figures, signatures, limits, license (`spade_tf.serving.model_card`)
      examples/             a few label maps of the model's dataset (+ instance maps) and, for VAE models, style
                            exemplars (real photos): the painter opens on them (`export_examples`)

SavedModel signatures (method `tensorflow/serving/predict`; see `signature_specs` for the exact specs):

- `serving_default`: `labels` int32 (N, H, W) [+ `instances` int32 (N, H, W) for instance-map models]
  [+ `seed` int32 (N,) for VAE models] -> `images` uint8 (N, H, W, 3).
- `predict_png`: `label_png_bytes` string (N,) [+ `seed`] -> `image_png_bytes` string (N,). TF Serving's
  REST API base64-decodes and encodes tensors whose alias ends in `_bytes`.
- VAE models with a style encoder: `style` (labels [, instances], `style_images` uint8 (N, h, w, 3), seed ->
  images) and `style_png` (`label_png_bytes`, `style_png_bytes`, seed -> `image_png_bytes`).

Every signature bounds the work of one call (`Limits`, recorded in metadata.json): at most `max_maps` label maps,
`max_pixels` label pixels (N x H x W) and `max_style_pixels` style-image pixels. PNG and JPEG sizes are read from
their headers and checked before anything is decoded, so a small file that claims a huge size (a decompression
bomb) fails with INVALID_ARGUMENT instead of exhausting memory: TF Serving itself bounds neither.

One-hot, instance edges, the colour -> id mapping and resizing run in the graph, so a client sends what it
has. Label PNGs are read by the rule of `spade_tf.data.labels`, as training reads them: grey and
palette-indexed PNGs hold ids (the index of a palette PNG is the id), RGB(A) PNGs the model's palette colours. Bad
inputs fail with InvalidArgumentError naming the input and the allowed values; messages show input bytes as hex,
never raw (TF Serving and the Python runtime pass error text on as UTF-8).

Reference: the export pattern of TF Model Garden (`official/core/export_base.py`): a module with explicit
`tf.TensorSpec` signatures, reloaded and compared with the in-memory model in the tests.
"""

import copy
import dataclasses
import datetime
import importlib.metadata
import json
import logging
import os
import shutil
import tempfile

import numpy as np
import tensorflow as tf
from PIL import Image

from spade_tf.data import demo
from spade_tf.data import labels as label_maps
from spade_tf.serving import synthesis
from spade_tf.utils import file_sha256

METADATA_FILE = "metadata.json"
PREDICT_METHOD = "tensorflow/serving/predict"
TFLITE_VARIANTS = ("float32", "float16", "int8")
JPEG_MAGIC = b"\xff\xd8\xff"
# Work bounds of one request. The label pixel bound is what keeps memory in check: the generator holds ~1 kB of
# activations per label pixel on the demo model (64 px, base_filters 16; README, "Export and serving"). Style
# images cost ~20 bytes a pixel (decoded, cast, resized to the encoder's size), hence a 16x larger bound.
DEFAULT_MAX_MAPS = 64
DEFAULT_MAX_PIXELS = 1 << 20
DEFAULT_MAX_STYLE_PIXELS = 1 << 24
# The graph compares pixel sums as float64, exact far beyond this; no machine holds such a request anyway.
_MAX_LIMIT = 1 << 40
_HEX_DIGITS = tuple(f"{i:02x}" for i in range(256))


def _spade_tf_version():
    try:
        return importlib.metadata.version("spade_tf")
    except Exception:  # not installed (run from a checkout): read pyproject.toml
        try:
            import tomllib  # Python 3.11+ (pyproject allows 3.10): only a checkout needs it

            path = os.path.join(os.path.dirname(__file__), "..", "..", "pyproject.toml")
            with open(path, "rb") as f:
                return tomllib.load(f)["project"]["version"]
        except Exception:
            return "unknown"


@dataclasses.dataclass(frozen=True)
class Limits:
    """The most work one signature call may ask for; a call over a limit fails before anything is decoded.

    Args:
        max_maps: label maps (the batch N) per call.
        max_pixels: label pixels per call, N x H x W summed over the maps.
        max_style_pixels: style-image pixels per call, height x width summed over the images (they are
            resized to the encoder's size, so any size is accepted up to this).
    """

    max_maps: int = DEFAULT_MAX_MAPS
    max_pixels: int = DEFAULT_MAX_PIXELS
    max_style_pixels: int = DEFAULT_MAX_STYLE_PIXELS

    def __post_init__(self):
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if (
                isinstance(value, bool)
                or not isinstance(value, (int, np.integer))
                or not 0 < value <= _MAX_LIMIT
            ):
                raise ValueError(f"{field.name}={value!r}: use a positive integer up to {_MAX_LIMIT}.")
            object.__setattr__(self, field.name, int(value))

    def to_json(self):
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data):
        """The limits recorded in metadata.json; defaults for any missing (an export older than the limits)."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in (data or {}).items() if k in names})


# -- signature specs ---------------------------------------------------------------------------------------


def signature_specs(info):
    """The input and output specs of every SavedModel signature of a model, as `tf.TensorSpec`s.

    Args:
        info: the model's `ModelInfo`.

    Returns:
        {signature name: {"inputs": [TensorSpec, ...], "outputs": [TensorSpec, ...]}}, inputs in the order
        the signature functions take them. Spec names are the signature's input and output keys.
    """
    # VAE generators start from a fixed latent grid, so only the training size works; the others take any
    # multiple of their grid (checked in the graph).
    h, w = (info.height, info.width) if info.use_vae else (None, None)
    labels = [tf.TensorSpec([None, h, w], tf.int32, name="labels")]
    if info.use_instance_map:
        labels.append(tf.TensorSpec([None, h, w], tf.int32, name="instances"))
    seed = [tf.TensorSpec([None], tf.int32, name="seed")] if info.use_vae else []
    png_in = tf.TensorSpec([None], tf.string, name="label_png_bytes")
    images = tf.TensorSpec([None, h, w, 3], tf.uint8, name="images")
    png_out = tf.TensorSpec([None], tf.string, name="image_png_bytes")
    specs = {
        "serving_default": {"inputs": labels + seed, "outputs": [images]},
        "predict_png": {"inputs": [png_in] + seed, "outputs": [png_out]},
    }
    if info.use_vae:
        style = tf.TensorSpec([None, None, None, 3], tf.uint8, name="style_images")
        style_png = tf.TensorSpec([None], tf.string, name="style_png_bytes")
        specs["style"] = {"inputs": labels + [style] + seed, "outputs": [images]}
        specs["style_png"] = {"inputs": [png_in, style_png] + seed, "outputs": [png_out]}
    return specs


def _spec_json(spec):
    return {"dtype": spec.dtype.name, "shape": [-1 if d is None else int(d) for d in spec.shape]}


# -- the graph pieces ------------------------------------------------------------------------------------


def hex_prefix(data, n=8):
    """(N,) strings -> their first `n` bytes as hex text, for error messages.

    Never the raw bytes: TF hands error text to Python (and TF Serving to its clients) as UTF-8, so a message
    holding a JPEG's 0xff bytes fails to decode and the caller sees a UnicodeDecodeError instead of the error.
    """
    head = tf.strings.substr(data, 0, n)
    length = tf.strings.length(head)
    padded = tf.strings.substr(tf.strings.join([head, b"\0" * n]), 0, n)
    digits = tf.gather(tf.constant(_HEX_DIGITS), tf.cast(tf.io.decode_raw(padded, tf.uint8), tf.int32))
    digits = tf.where(tf.range(n) < length[..., None], digits, "")
    return tf.where(length > 0, tf.strings.reduce_join(digits, axis=-1), "(empty)")


def _unsigned(size):
    """int32 sizes read from 4 header bytes -> float64 of the unsigned value (a top bit set reads negative)."""
    size = tf.cast(size, tf.float64)
    return tf.where(size < 0, size + 2.0**32, size)


class _Signatures:
    """Builds the signature functions of one synthesizer (plain TF ops: they trace without autograph)."""

    def __init__(self, synthesizer, limits=None):
        self.model = synthesizer
        self.info = synthesizer.info
        self.limits = limits or Limits()
        self.specs = signature_specs(self.info)

    # checks

    def check_ids(self, labels, what="labels"):
        info = self.info
        ok = label_maps.valid_ids(labels, info.num_classes, info.contain_dontcare_label)
        bad = tf.unique(tf.boolean_mask(labels, tf.logical_not(ok))).y[:8]
        allowed = label_maps.allowed_ids(info.num_classes, info.contain_dontcare_label)
        return tf.debugging.Assert(
            tf.reduce_all(ok), [f"{what}: ids must be in {allowed}; found:", bad], summarize=8
        )

    def check_size(self, height, width, what="labels"):
        info = self.info
        if info.use_vae:
            ok = tf.logical_and(tf.equal(height, info.height), tf.equal(width, info.width))
            message = (
                f"{what}: this VAE model takes only {info.height}x{info.width} label maps (its latent grid is "
                "fixed); resize with nearest-neighbour first. Got height, width:"
            )
        else:
            m = info.size_multiple
            ok = (height > 0) & (width > 0) & tf.equal(height % m, 0) & tf.equal(width % m, 0)
            message = (
                f"{what}: height and width must be multiples of {m} (trained at {info.height}x{info.width}). "
                "Got height, width:"
            )
        return tf.debugging.Assert(ok, [message, height, width])

    @staticmethod
    def check_batch(tensor, n, what):
        return tf.debugging.Assert(
            tf.equal(tf.shape(tensor)[0], n),
            [f"{what}: needs one entry per label map; got, for label maps:", tf.shape(tensor)[0], n],
        )

    def check_maps(self, n, what):
        limit = self.limits.max_maps
        return tf.debugging.Assert(
            n <= limit,
            [
                f"{what}: at most {limit} label maps per request (set at export: export.py --max_maps); got:",
                n,
            ],
        )

    def check_pixels(self, heights, widths, what, style=False):
        """Asserts that sum(heights x widths) is within the label (or style) pixel limit.

        Args:
            heights, widths: int32 sizes of the same shape; header fields count as unsigned 32-bit numbers.
            what: the input named in the message.
            style: check against `max_style_pixels` instead of `max_pixels`.
        """
        limit, flag = (
            (self.limits.max_style_pixels, "max_style_pixels")
            if style
            else (self.limits.max_pixels, "max_pixels")
        )
        # float64: products of two 32-bit sizes overflow int32 and their sums int64; far below 2^53 (where the
        # comparison becomes inexact) they are exact.
        total = tf.reduce_sum(_unsigned(heights) * _unsigned(widths))
        kind = "style image" if style else "label map"
        return tf.debugging.Assert(
            total <= limit,
            [
                f"{what}: at most {limit} {kind} pixels per request (height x width summed over the request; "
                f"set at export: export.py --{flag}); got:",
                tf.cast(tf.minimum(total, 2.0**62), tf.int64),
            ],
        )

    # id maps, latents, images

    def synthesize(self, labels, instances=None, seed=None, style_images=None):
        """Checked label ids -> uint8 images (the body of every signature)."""
        n = tf.shape(labels)[0]
        height, width = tf.shape(labels)[1], tf.shape(labels)[2]
        # The runtime does not check a fed tensor's rank against the signature. Everything reads labels
        # (and instances) after these slices, so a map of the wrong rank fails here ("out of bounds"),
        # not in whichever other op the executor happens to run first.
        with tf.control_dependencies([height, width]):
            labels = tf.identity(labels)
            instances = None if instances is None else tf.identity(instances)
        # The bounds first, so that a request over them gets their message whatever else is wrong with it.
        bounds = [self.check_maps(n, "labels"), self.check_pixels(n * height, width, "labels")]
        if style_images is not None:
            style_shape = tf.shape(style_images)
            bounds.append(
                self.check_pixels(style_shape[0] * style_shape[1], style_shape[2], "style_images", style=True)
            )
        with tf.control_dependencies(bounds):
            labels = tf.identity(labels)
        checks = [self.check_ids(labels), self.check_size(height, width)]
        if instances is not None:
            checks.append(
                tf.debugging.Assert(
                    tf.reduce_all(tf.equal(tf.shape(instances), tf.shape(labels))),
                    [
                        "instances: shape differs from the shape of labels; got, labels:",
                        tf.shape(instances),
                        tf.shape(labels),
                    ],
                )
            )
        if seed is not None:
            checks.append(self.check_batch(seed, n, "seed"))
        if style_images is not None:
            checks.append(self.check_batch(style_images, n, "style_images"))
            checks.append(
                tf.debugging.Assert(
                    tf.reduce_all(style_shape[1:3] > 0),
                    ["style_images: empty image; shape:", style_shape],
                )
            )
        with tf.control_dependencies(checks):
            labels = tf.identity(labels)
            style_images = None if style_images is None else tf.identity(style_images)
        z = None
        if self.info.use_vae:
            if style_images is not None:
                z = self.model.latent_from_styles(style_images, seed, sample=True)
            else:
                z = self.model.latent_from_seeds(seed)
        return self.model.to_uint8(self.model.generate_float(labels, instances, z))

    def png_header(self, png, what):
        """(N,) PNG strings -> checked (height, width), each (N,) int32."""
        is_png, width, height, _, _ = label_maps.png_header_tf(png)
        check = tf.debugging.Assert(
            tf.reduce_all(is_png),
            [
                f"{what}: not a PNG file. Send label maps as PNG: {label_maps.LABEL_PNG_KINDS} of the model "
                "(metadata.json). First bytes of each, in hex:",
                hex_prefix(png),
            ],
        )
        with tf.control_dependencies([check]):
            return tf.identity(height), tf.identity(width)

    def decode_label_pngs(self, png, what="label_png_bytes"):
        """(N,) label PNGs of one size -> (N, H, W) int32 raw ids, by the rule of `spade_tf.data.labels`.

        The count, the sizes and the pixel total are checked from the headers before any PNG is decoded.
        """
        with tf.control_dependencies([self.check_maps(tf.shape(png)[0], what)]):
            height, width = self.png_header(png, what)
        # The bound first: a header claiming a huge (or negative, top bit set) size gets its message.
        with tf.control_dependencies([self.check_pixels(height, width, what)]):
            height, width = tf.identity(height), tf.identity(width)
        same = tf.debugging.Assert(
            tf.reduce_all(tf.equal(height, height[0]) & tf.equal(width, width[0])),
            [
                f"{what}: all label maps of one request must have the same size; heights, widths:",
                height,
                width,
            ],
        )
        with tf.control_dependencies([same, self.check_size(height[0], width[0], what)]):
            png = tf.identity(png)
        palette = self.info.palette
        hint = (
            "Paint with the model's palette colours (metadata.json palette) or send ids (grey or "
            "palette-indexed PNG)."
        )
        return tf.map_fn(
            lambda one: label_maps.decode_label_png_tf(one, palette, what, hint, strict_colours=True),
            png,
            fn_output_signature=tf.TensorSpec([None, None], tf.int32),
        )

    def decode_style_pngs(self, data, what="style_png_bytes"):
        """(N,) PNG or JPEG strings, any sizes -> (N, s, s, 3) float 0..255 at the encoder's input size.

        Resizing here (bilinear, as the encoder does) lets images of different sizes form one batch; the
        encoder's own [-1, 1] scaling commutes with it. The sizes are read from the headers (PNG IHDR, JPEG
        SOF) and their pixel total checked before any image is decoded.
        """
        is_png = tf.equal(tf.strings.substr(data, 0, 8), label_maps.PNG_SIGNATURE)
        ok = is_png | tf.equal(tf.strings.substr(data, 0, 3), JPEG_MAGIC)
        check = tf.debugging.Assert(
            tf.reduce_all(ok),
            [f"{what}: not a PNG or JPEG image. First bytes of each, in hex:", hex_prefix(data)],
        )
        with tf.control_dependencies([check]):
            data = tf.identity(data)

        def size(one):
            header_ok, width, height, _, _ = label_maps.png_header_tf(one)
            png_size = tf.stack([height, width])
            # A truncated PNG header reads as zeros (decoding then fails on its own); a JPEG's SOF is parsed.
            return tf.cond(
                tf.equal(tf.strings.substr(one, 0, 8), label_maps.PNG_SIGNATURE),
                lambda: tf.where(header_ok, png_size, 0),
                lambda: tf.io.extract_jpeg_shape(one)[:2],
            )

        sizes = tf.map_fn(size, data, fn_output_signature=tf.TensorSpec([2], tf.int32))
        with tf.control_dependencies([self.check_pixels(sizes[:, 0], sizes[:, 1], what, style=True)]):
            data = tf.identity(data)
        s = self.model.encoder.image_size

        def decode(one):
            image = tf.io.decode_image(one, channels=3, dtype=tf.uint8, expand_animations=False)
            return tf.image.resize(tf.cast(image, tf.float32), (s, s), method="bilinear", antialias=False)

        return tf.map_fn(decode, data, fn_output_signature=tf.TensorSpec([s, s, 3], tf.float32))

    @staticmethod
    def encode_pngs(images):
        return tf.map_fn(tf.io.encode_png, images, fn_output_signature=tf.TensorSpec([], tf.string))

    # signature functions (positional arguments in `signature_specs` order)

    def _split(self, name, args):
        return {spec.name: arg for spec, arg in zip(self.specs[name]["inputs"], args)}

    def serving_default(self, *args):
        a = self._split("serving_default", args)
        return {"images": self.synthesize(a["labels"], a.get("instances"), a.get("seed"))}

    def predict_png(self, *args):
        a = self._split("predict_png", args)
        labels = self.decode_label_pngs(a["label_png_bytes"])
        seed = a.get("seed")
        # Instance-map models: the label map is its own instance map (class boundaries are the edges).
        return {"image_png_bytes": self.encode_pngs(self.synthesize(labels, None, seed))}

    def style(self, *args):
        a = self._split("style", args)
        images = self.synthesize(a["labels"], a.get("instances"), a["seed"], a["style_images"])
        return {"images": images}

    def style_png(self, *args):
        a = self._split("style_png", args)
        labels = self.decode_label_pngs(a["label_png_bytes"])
        n = tf.shape(labels)[0]
        with tf.control_dependencies([self.check_batch(a["style_png_bytes"], n, "style_png_bytes")]):
            styles = self.decode_style_pngs(a["style_png_bytes"])
        return {"image_png_bytes": self.encode_pngs(self.synthesize(labels, None, a["seed"], styles))}


def serving_synthesizer(synthesizer, gather_impl):
    """The synthesizer with a generator whose fast SPADE path runs without XLA.

    A generator whose fast path gathers with `gather_impl="xla"` runs XLA-compiled functions: TF Serving
    refuses those unless started with `--xla_cpu_compilation_enabled` (and its GPU image has no XLA
    compiler at all), and TFLite and ONNX have no XLA. The export copies the generator with the same
    weights and another implementation of the same sums: "segment_sum" for SavedModels, "gather_sum" for
    TFLite and ONNX (see `spade_tf.models.fast_spade.gather_conv_relu`). A generator built with
    `spade={"fast": False}` stays plain.
    """
    g = synthesizer.generator
    spade = g.first_spade
    if not spade.fast or spade.gather_impl == gather_impl:
        return synthesizer
    copy_ = g.__class__.from_config({**g.get_config(), "spade": {**g.spade, "gather_impl": gather_impl}})
    copy_.build()
    by_path = {v.path: v for v in g.weights}
    if sorted(by_path) != sorted(v.path for v in copy_.weights):
        raise ValueError(
            f"{g.name}: the {gather_impl} generator has other weights than the original; cannot export."
        )
    for v in copy_.weights:
        v.assign(by_path[v.path])
    out = copy.copy(synthesizer)
    out.generator = copy_
    return out


def _signature_names(synthesizer):
    names = ["serving_default", "predict_png"]
    if synthesizer.info.use_vae and synthesizer.encoder is not None:
        names += ["style", "style_png"]
    return names


def _module(models):
    """A `tf.Module` that owns the models' weights.

    Listed explicitly: a `tf.Module` holding a Keras 3 model tracks none of its variables, so the SavedModel
    would still serve in TF but its TFLite conversion would silently have no weights.
    """
    module = tf.Module()
    # The tf.Variables under the Keras variables: those are what the traced functions read. Saving the Keras
    # wrappers instead writes a copy of each that TF1-style loaders (saved_model_cli run, TF Serving's
    # session) restore while the graph reads the original, left uninitialized.
    module.model_weights = [_tf_variable(v) for m in models for v in m.weights]
    return module


def _tf_variable(variable):
    value = variable.value
    if not isinstance(value, tf.Variable):
        raise TypeError(
            f"{variable.path}: expected a Keras variable backed by a tf.Variable, got {type(value)}."
        )
    return value


def build_module(synthesizer, limits=None):
    """The SavedModel's module (weights + signature functions) and its {name: concrete function} signatures.

    Each function is traced once, with its explicit `tf.TensorSpec`s. They are kept off the module's
    attributes: saving would trace attached functions again (doubling the export time), and clients use
    the signatures.

    Args:
        synthesizer: a `spade_tf.serving.inference.Synthesizer`.
        limits: the `Limits` the signatures enforce; None for the defaults.
    """
    synthesizer = serving_synthesizer(synthesizer, "segment_sum")
    names = _signature_names(synthesizer)
    models = [synthesizer.generator] + ([synthesizer.encoder] if "style" in names else [])
    module = _module(models)
    sigs = _Signatures(synthesizer, limits)
    signatures = {}
    for name in names:
        # autograph=False: the bodies are plain TF ops; converting them would only slow tracing down.
        fn = tf.function(getattr(sigs, name), input_signature=sigs.specs[name]["inputs"], autograph=False)
        signatures[name] = fn.get_concrete_function()
    return module, signatures


def write_saved_model(synthesizer, path, limits=None):
    """Writes the SavedModel (all signatures, enforcing `limits`: a `Limits` or None for the defaults) to `path`."""
    module, signatures = build_module(synthesizer, limits)
    tf.saved_model.save(module, path, signatures=signatures)


# -- SavedModel --------------------------------------------------------------------------------------------


def _check_version(version):
    if isinstance(version, bool) or not isinstance(version, (int, np.integer)) or version < 1:
        raise ValueError(
            f"version={version!r}: use a positive integer (TF Serving serves the highest number)."
        )
    return int(version)


def export_saved_model(synthesizer, export_dir, version=1, overwrite=False, limits=None):
    """Writes the SavedModel as `<export_dir>/<version>/` (TF Serving's layout) and `metadata.json`.

    The version folder appears at once (written beside it under a dot name, then renamed), so a running
    TF Serving never loads a half-written model.

    Args:
        synthesizer: a `spade_tf.serving.inference.Synthesizer`.
        export_dir: the model base path (created if missing).
        version: positive int, the version folder name.
        overwrite: replace an existing version folder; otherwise an existing one is an error.
        limits: the `Limits` every signature enforces (recorded in metadata.json); None for the defaults.

    Returns:
        The version folder path.
    """
    version = _check_version(version)
    limits = limits or Limits()
    os.makedirs(export_dir, exist_ok=True)
    final = os.path.join(export_dir, str(version))
    if os.path.exists(final) and not overwrite:
        raise FileExistsError(
            f"{final} exists: pass overwrite=True (--overwrite) to replace it, or export a new --version."
        )
    tmp = tempfile.mkdtemp(prefix=f".tmp-{version}-", dir=export_dir)
    try:
        write_saved_model(synthesizer, tmp, limits=limits)
        if os.path.exists(final):
            old = tempfile.mkdtemp(prefix=f".old-{version}-", dir=export_dir)
            os.replace(final, os.path.join(old, "v"))
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
    finally:
        if os.path.exists(tmp):
            shutil.rmtree(tmp, ignore_errors=True)
    write_metadata(synthesizer, export_dir, limits=limits)
    return final


def _versions(export_dir):
    return sorted(
        int(d) for d in os.listdir(export_dir) if d.isdigit() and os.path.isdir(os.path.join(export_dir, d))
    )


def write_metadata(synthesizer, export_dir, tflite=None, onnx=None, limits=None, examples=None):
    """Writes `<export_dir>/metadata.json`, keeping the TFLite/ONNX/examples entries of an earlier call.

    Args:
        synthesizer: the exported `Synthesizer`.
        export_dir: the model base path.
        tflite: {variant: path} written by `export_tflite`, or None to keep the recorded ones.
        onnx: the ONNX file path, or None to keep the recorded one.
        limits: the SavedModel's `Limits`, or None to keep the recorded ones.
        examples: the entry written by `export_examples`, or None to keep the recorded one.

    Returns:
        The metadata file path.
    """
    path = os.path.join(export_dir, METADATA_FILE)
    old = {}
    if os.path.isfile(path):
        with open(path) as f:
            old = json.load(f)
    info = synthesizer.info
    signatures = {}
    for name in _signature_names(synthesizer):
        spec = signature_specs(info)[name]
        signatures[name] = {
            "method_name": PREDICT_METHOD,
            "inputs": {s.name: _spec_json(s) for s in spec["inputs"]},
            "outputs": {s.name: _spec_json(s) for s in spec["outputs"]},
        }
    source = synthesizer.source

    def rel(p):
        return os.path.relpath(p, export_dir)

    files = dict(old.get("files", {}))
    files["saved_model_versions"] = _versions(export_dir)
    if tflite is not None:
        files["tflite"] = {k: rel(v) for k, v in tflite.items()}
    if onnx is not None:
        files["onnx"] = rel(onnx)
    meta = {
        "model": info.to_json(),
        "source": {
            "path": source,
            "sha256": file_sha256(source) if source and os.path.isfile(source) else None,
        },
        "options": synthesizer.options,
        # The weights' license: Apache-2.0 when trained here, CC BY-NC-SA 4.0 when converted from (or
        # fine-tuned on) an official NVIDIA checkpoint. MODEL_CARD.md and the painter's header show it.
        "license": synthesizer.license,
        "signatures": signatures,
        # What the SavedModel's signatures refuse (INVALID_ARGUMENT); serve.py's limits default to these.
        "limits": (limits or Limits.from_json(old.get("limits"))).to_json(),
        "tflite_signatures": tflite_signature_json(info),
        "files": files,
        # Example label maps and style exemplars for the painter (`export_examples`); null: none exported.
        "examples": examples if examples is not None else old.get("examples"),
        "labels": {
            "ids": f"0..{info.num_classes - 1}"
            + (
                f"; don't care: {info.num_classes} or {label_maps.DONTCARE_VALUE}"
                if info.contain_dontcare_label
                else ""
            ),
            "png": f"{label_maps.LABEL_PNG_KINDS} ('palette' row i = the colour of id i; see spade_tf.data.labels)",
            "seeds": "VAE: z = tf.random.stateless_normal([latent_dim], seed=[seed, 0])",
        },
        "spade_tf_version": _spade_tf_version(),
        "tensorflow_version": tf.__version__,
        "exported_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(meta, f, indent=2, default=_json_default)
    os.replace(tmp, path)
    return path


def _json_default(o):
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, np.generic):
        return o.item()
    raise TypeError(f"metadata: {type(o).__name__} is not JSON-serialisable")


def read_metadata(export_dir):
    """The dict written by `write_metadata`."""
    with open(os.path.join(export_dir, METADATA_FILE)) as f:
        return json.load(f)


# -- TFLite -------------------------------------------------------------------------------------------------


def tflite_signature_json(info):
    """The TFLite `serving_default` specs (fixed H, W; dynamic batch) as JSON-ready dicts."""
    return {
        "serving_default": {
            "inputs": {s.name: _spec_json(s) for s in _tflite_specs(info)},
            "outputs": {
                "images": {"dtype": "uint8", "shape": [-1, info.height, info.width, 3]},
                "images_float": {"dtype": "float32", "shape": [-1, info.height, info.width, 3]},
            },
        }
    }


def _tflite_specs(info):
    h, w = info.height, info.width
    specs = [tf.TensorSpec([None, h, w], tf.int32, name="labels")]
    if info.use_instance_map:
        specs.append(tf.TensorSpec([None, h, w], tf.int32, name="instances"))
    if info.use_vae:
        # A latent input, not seeds: TFLite has no stateless random op, and a device has its own RNG.
        specs.append(tf.TensorSpec([None, info.latent_dim], tf.float32, name="z"))
    return specs


def _tflite_module(synthesizer):
    """The TFLite/ONNX graph: fixed size, no checks (TFLite has no Assert op), a `z` input for VAE models.

    Returns:
        (module owning the weights, tf.function).
    """
    synthesizer = serving_synthesizer(synthesizer, "gather_sum")
    info = synthesizer.info
    specs = _tflite_specs(info)

    def serve(*args):
        a = {spec.name: arg for spec, arg in zip(specs, args)}
        x = synthesizer.generate_float(a["labels"], a.get("instances"), a.get("z"))
        return {"images": synthesizer.to_uint8(x), "images_float": x}

    return _module([synthesizer.generator]), tf.function(serve, input_signature=specs, autograph=False)


def _converter(saved_model_dir, variant):
    converter = tf.lite.TFLiteConverter.from_saved_model(saved_model_dir, signature_keys=["serving_default"])
    if variant == "float16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif variant == "int8":
        # Dynamic-range quantization: int8 weights, float activations; needs no calibration data.
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    return converter


def check_tflite_variants(variants):
    variants = tuple(variants)
    unknown = [v for v in variants if v not in TFLITE_VARIANTS]
    if unknown or not variants:
        raise ValueError(
            f"TFLite variants {list(unknown) or '(none)'}: choose from {', '.join(TFLITE_VARIANTS)}."
        )
    return variants


def export_tflite(synthesizer, out_dir, variants=TFLITE_VARIANTS):
    """Writes `<out_dir>/tflite/spade_<variant>.tflite` at the model's training resolution.

    Each file has one signature, `serving_default`: `labels` int32 (N, H, W) [+ `instances` int32 (N, H, W)]
    [+ `z` float32 (N, latent_dim) for VAE models] -> `images` uint8 (N, H, W, 3) and `images_float` float32
    in [-1, 1]. H, W are fixed (TFLite cannot convert convolutions over a dynamic size); the batch is dynamic
    (`Interpreter.resize_tensor_input`). Ids are not checked: validate them before calling.

    Args:
        synthesizer: a `spade_tf.serving.inference.Synthesizer`.
        out_dir: the export folder (the one holding the SavedModel versions and metadata.json).
        variants: any of "float32", "float16" (float16 weights) and "int8" (dynamic-range int8 weights).

    Returns:
        {variant: path}.
    """
    variants = check_tflite_variants(variants)
    folder = os.path.join(out_dir, "tflite")
    os.makedirs(folder, exist_ok=True)
    paths = {}
    with tempfile.TemporaryDirectory() as tmp:
        saved = os.path.join(tmp, "saved_model")
        module, fn = _tflite_module(synthesizer)
        tf.saved_model.save(module, saved, signatures={"serving_default": fn.get_concrete_function()})
        for variant in variants:
            flat = _converter(saved, variant).convert()
            path = os.path.join(folder, f"spade_{variant}.tflite")
            with open(path + ".tmp", "wb") as f:
                f.write(flat)
            os.replace(path + ".tmp", path)
            paths[variant] = path
    write_metadata(synthesizer, out_dir, tflite=paths)
    return paths


# -- ONNX ---------------------------------------------------------------------------------------------------

ONNX_OPSET = 17


def export_onnx(synthesizer, out_dir, opset=ONNX_OPSET):
    """Writes `<out_dir>/onnx/spade.onnx` with tf2onnx: the TFLite graph (same inputs and outputs).

    Inputs `labels` int32 (N, H, W) [+ `instances`] [+ `z` float32 (N, latent_dim)] at the training size,
    outputs `images` uint8 and `images_float` float32. Needs `pip install -r requirements-onnx.txt`.

    Args:
        synthesizer: a `spade_tf.serving.inference.Synthesizer`.
        out_dir: the export folder.
        opset: ONNX opset.

    Returns:
        The .onnx path.
    """
    try:
        import tf2onnx  # optional dependency: only --onnx needs it
    except ImportError as e:
        raise ImportError(
            "ONNX export needs tf2onnx (and onnxruntime to run the file): pip install -r requirements-onnx.txt"
        ) from e
    # tf2onnx logs every optimizer pass at INFO.
    logging.getLogger("tf2onnx").setLevel(logging.WARNING)
    _, fn = _tflite_module(synthesizer)
    folder = os.path.join(out_dir, "onnx")
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, "spade.onnx")
    specs = _tflite_specs(synthesizer.info)
    model_proto, _ = tf2onnx.convert.from_function(fn, input_signature=specs, opset=opset)
    with open(path + ".tmp", "wb") as f:
        f.write(model_proto.SerializeToString())
    os.replace(path + ".tmp", path)
    write_metadata(synthesizer, out_dir, onnx=path)
    return path


# -- examples for the painter ---------------------------------------------------------------------------------

# Beside metadata.json, not in a version folder: TF Serving takes only the all-digit children of the base path
# as versions and skips the others without an error (as it skips tflite/ and onnx/), and the painter finds the
# files relative to metadata.json, whichever version is served.
EXAMPLES_DIR = "examples"
EXAMPLES_SPLIT = "val"
DEFAULT_NUM_EXAMPLES = 4
MAX_EXAMPLES = 64


def dataset_looks(config, split):
    """Each example's look (a global style, e.g. "golden_hour") in a split, where the dataset records one.

    The one place the export learns looks: the demo dataset records them (`spade_tf.data.demo.read_looks`);
    other datasets have none (an empty dict), and their exemplars are the first photos of the split.

    Returns:
        {example name (the file stem): look name}.
    """
    d = config.data
    if d.dataset != "demo":
        return {}
    # The folder reading the split uses: generated once, found at once afterwards.
    root = demo.generate_demo_dataset(num_train=d.demo_num_train, num_val=d.demo_num_val, size=d.demo_size)
    return {os.path.splitext(name)[0]: look for name, look in demo.read_looks(root, split).items()}


def _exemplar_names(names, looks, count):
    """The examples whose photos become style exemplars: the first of each look, else the first `count`."""
    if not looks:
        return list(names[:count])
    first = {}
    for name in names:
        if looks.get(name) is not None:
            first.setdefault(looks[name], name)
    return list(first.values())


def _id_png_image(ids, info):
    """A label map of model ids as the PNG training reads: 8-bit grey (don't care = 255), 16-bit past 256 ids."""
    ids = np.asarray(ids, np.int64)
    if len(info.class_names) > 256:
        return Image.fromarray(ids.astype(np.uint16))
    if info.contain_dontcare_label:
        ids = np.where(ids == info.num_classes, label_maps.DONTCARE_VALUE, ids)
    return Image.fromarray(ids.astype(np.uint8), mode="L")


def _save(image, folder, relative):
    path = os.path.join(folder, *relative.split("/"))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    image.save(path)


def _read_examples(synthesizer, num_examples, dataset, dataset_root):
    """(label maps, exemplars as [(LabelMap, look or None)], source description) from the model's dataset."""
    config = synthesis.data_config(synthesizer, dataset, dataset_root)
    looks = dataset_looks(config, EXAMPLES_SPLIT)
    wants_styles = "style_png" in _signature_names(synthesizer)
    limit = num_examples
    if wants_styles and looks:
        # Enough examples (in name order, as load_split reads them) to hold the first of every look.
        names = sorted(looks)
        limit = max(limit, 1 + max(names.index(n) for n in _exemplar_names(names, looks, 0)))
    items = synthesis.load_split(
        synthesizer, EXAMPLES_SPLIT, dataset, dataset_root, limit=limit, out=lambda *_: None
    )
    if not items:
        raise ValueError(f"the {EXAMPLES_SPLIT} split holds no examples")
    exemplars = []
    if wants_styles:
        by_name = {item.name: item for item in items}
        chosen = _exemplar_names([item.name for item in items], looks, num_examples)
        exemplars = [(by_name[name], looks.get(name)) for name in chosen]
    source = f"{config.data.dataset} dataset, {EXAMPLES_SPLIT} split"
    return items[:num_examples], exemplars, source


def check_num_examples(num_examples):
    if (
        isinstance(num_examples, bool)
        or not isinstance(num_examples, (int, np.integer))
        or not 0 <= num_examples <= MAX_EXAMPLES
    ):
        raise ValueError(f"num_examples={num_examples!r}: use an integer from 0 (none) to {MAX_EXAMPLES}.")
    return int(num_examples)


def export_examples(
    synthesizer, export_dir, num_examples=DEFAULT_NUM_EXAMPLES, dataset=None, dataset_root=None
):
    """Writes a few label maps of the model's dataset and style exemplars to `<export_dir>/examples/`.

    The painter opens on the first label map and shows the exemplars as style thumbnails. From the validation
    split, read as synthesis reads it (the model's size and preprocessing): `num_examples` label maps as id
    PNGs (`labels/NN.png`, the format train.py reads) with their instance maps (`instances/NN.png`, 16-bit)
    when the model takes them; for VAE models with a style encoder, real photos as exemplars
    (`styles/NN.png`): one per look where the dataset records looks (`dataset_looks`), else the first
    `num_examples` photos. Written to a temporary folder and renamed, then listed in metadata.json.

    Data that cannot be read (not on this machine, a converted model whose dataset is not given) is not an
    error: the export has no examples, the entry says why, and the painter opens on an empty canvas.

    Args:
        synthesizer: the exported `Synthesizer`.
        export_dir: the export folder (holding metadata.json).
        num_examples: label maps to write, 0..MAX_EXAMPLES; 0 writes none.
        dataset, dataset_root: the dataset of a converted official model, or another root for a trained
            model's data (see `spade_tf.serving.synthesis.data_config`).

    Returns:
        The metadata.json entry: {"source", "label_maps": [{"name", "file"[, "instances"]}],
        "style_exemplars": [{"name", "file", "look"}]} with files relative to `export_dir` and look None
        where unknown; with "missing": the reason when nothing was written.
    """
    num_examples = check_num_examples(num_examples)
    info = synthesizer.info
    entry = {"source": None, "label_maps": [], "style_exemplars": []}
    folder = os.path.join(export_dir, EXAMPLES_DIR)
    items, exemplars = [], []
    if num_examples == 0:
        entry["missing"] = "none asked for (num_examples=0)"
    else:
        try:
            items, exemplars, entry["source"] = _read_examples(
                synthesizer, num_examples, dataset, dataset_root
            )
        except (OSError, ValueError, tf.errors.OpError) as e:
            lines = [line.strip() for line in str(e).splitlines() if line.strip()] or [type(e).__name__]
            # A dataset check lists its errors as "- ..." lines under a header: the first error says most.
            reason = next((line[2:] for line in lines if line.startswith("- ")), lines[0])
            entry["missing"] = f"the model's dataset could not be read: {reason}"
    os.makedirs(export_dir, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".tmp-examples-", dir=export_dir)
    try:
        for i, item in enumerate(items):
            record = {"name": item.name, "file": f"{EXAMPLES_DIR}/labels/{i:02d}.png"}
            _save(_id_png_image(item.label, info), tmp, record["file"][len(EXAMPLES_DIR) + 1 :])
            instance = item.instance
            if (
                info.use_instance_map
                and instance is not None
                and 0 <= np.min(instance) <= np.max(instance) < 1 << 16
            ):
                record["instances"] = f"{EXAMPLES_DIR}/instances/{i:02d}.png"
                _save(
                    Image.fromarray(np.asarray(instance).astype(np.uint16)),
                    tmp,
                    record["instances"][len(EXAMPLES_DIR) + 1 :],
                )
            entry["label_maps"].append(record)
        for i, (item, look) in enumerate(exemplars):
            record = {"name": item.name, "file": f"{EXAMPLES_DIR}/styles/{i:02d}.png", "look": look}
            _save(Image.fromarray(item.real), tmp, record["file"][len(EXAMPLES_DIR) + 1 :])
            entry["style_exemplars"].append(record)
        # Old examples go even when there are no new ones: they may be of another model.
        old = tempfile.mkdtemp(prefix=".old-examples-", dir=export_dir)
        if os.path.exists(folder):
            os.replace(folder, os.path.join(old, "examples"))
        if items:
            os.replace(tmp, folder)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    write_metadata(synthesizer, export_dir, examples=entry)
    return entry


def examples_summary(entry):
    """One line for the export's printed summary: what `export_examples` wrote, or why it wrote nothing."""
    if not entry or not entry.get("label_maps"):
        reason = (entry or {}).get("missing", "not exported")
        return f"Painter examples: none ({reason}); the painter opens on an empty canvas."
    styles = entry.get("style_exemplars") or []
    looks = [s["look"] for s in styles if s.get("look")]
    text = f"Painter examples: {len(entry['label_maps'])} label maps"
    if styles:
        text += f" and {len(styles)} style exemplars" + (f" ({', '.join(looks)})" if looks else "")
    return f"{text} from the {entry['source']}, in {EXAMPLES_DIR}/."
