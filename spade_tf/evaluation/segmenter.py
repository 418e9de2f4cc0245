"""A user-supplied semantic segmentation SavedModel as a plain callable.

The paper's Flickr recipe trains SPADE on photos that an existing segmentation network has
labelled. `Segmenter` wraps such a network, exported as a TF SavedModel, behind one call:
uint8 photos in, per-pixel class ids (and the network's confidence) out. The wrapper reads
the input dtype and shape from the signature, scales pixels into the range the network was
trained with, resizes the prediction back to the photo size when the network predicts at
another resolution, and optionally maps the network's class ids to the ones SPADE should
see (`CITYSCAPES_LABEL_TO_TRAIN_ID` turns Cityscapes' 34 label ids into its 19 train ids).

`export_oracle_saved_model` writes the bundled demo oracle (`spade_tf.evaluation.oracle`) with the
contract a third-party network typically has (float32 images in [0, 1] -> logits), so the
whole recipe can be tried on the demo dataset.

Example:

    seg = Segmenter("/models/deeplab_cityscapes", input_range="0_255",
                    class_map=CITYSCAPES_LABEL_TO_TRAIN_ID)
    ids, confidence = seg.predict(photos_uint8)      # (N, H, W) int32, (N, H, W) float32
"""

import json
import os
import shutil

import keras
import numpy as np
import tensorflow as tf
from absl import flags

from spade_tf.data.labels import DONTCARE_VALUE

INPUT_RANGES = ("0_1", "0_255", "-1_1")
OUTPUT_KINDS = ("logits", "probabilities", "ids")
# Class-map entries with the label maps' don't-care value mark pixels that SPADE treats as "no label".
IGNORE_ID = DONTCARE_VALUE

# Cityscapes label id (the value in *_gtFine_labelIds.png, 0..33) -> train id (0..18, 255 = ignored),
# the trainId column of cityscapesScripts' helpers/labels.py. The 35th label, "license plate", has
# id -1, which no network predicts as a class index, so it has no row here.
CITYSCAPES_LABEL_TO_TRAIN_ID = np.array(
    [
        255,  # 0 unlabeled
        255,  # 1 ego vehicle
        255,  # 2 rectification border
        255,  # 3 out of roi
        255,  # 4 static
        255,  # 5 dynamic
        255,  # 6 ground
        0,  # 7 road
        1,  # 8 sidewalk
        255,  # 9 parking
        255,  # 10 rail track
        2,  # 11 building
        3,  # 12 wall
        4,  # 13 fence
        255,  # 14 guard rail
        255,  # 15 bridge
        255,  # 16 tunnel
        5,  # 17 pole
        255,  # 18 polegroup
        6,  # 19 traffic light
        7,  # 20 traffic sign
        8,  # 21 vegetation
        9,  # 22 terrain
        10,  # 23 sky
        11,  # 24 person
        12,  # 25 rider
        13,  # 26 car
        14,  # 27 truck
        15,  # 28 bus
        255,  # 29 caravan
        255,  # 30 trailer
        16,  # 31 train
        17,  # 32 motorcycle
        18,  # 33 bicycle
    ],
    dtype=np.int32,
)
CITYSCAPES_LABEL_TO_TRAIN_ID.setflags(write=False)
CITYSCAPES_TRAIN_CLASS_NAMES = (
    "road",
    "sidewalk",
    "building",
    "wall",
    "fence",
    "pole",
    "traffic light",
    "traffic sign",
    "vegetation",
    "terrain",
    "sky",
    "person",
    "rider",
    "car",
    "truck",
    "bus",
    "train",
    "motorcycle",
    "bicycle",
)
# The official display colours of the 19 train classes (cityscapesScripts labels.py).
CITYSCAPES_TRAIN_COLORS = np.array(
    [
        (128, 64, 128),
        (244, 35, 232),
        (70, 70, 70),
        (102, 102, 156),
        (190, 153, 153),
        (153, 153, 153),
        (250, 170, 30),
        (220, 220, 0),
        (107, 142, 35),
        (152, 251, 152),
        (70, 130, 180),
        (220, 20, 60),
        (255, 0, 0),
        (0, 0, 142),
        (0, 0, 70),
        (0, 60, 100),
        (0, 80, 100),
        (0, 0, 230),
        (119, 11, 32),
    ],
    dtype=np.uint8,
)
CITYSCAPES_TRAIN_COLORS.setflags(write=False)
# Names `load_class_map` accepts instead of a file.
NAMED_CLASS_MAPS = {"cityscapes": CITYSCAPES_LABEL_TO_TRAIN_ID}

# The contract of `export_oracle_saved_model`.
ORACLE_SIGNATURE = "serving_default"
ORACLE_INPUT = "images"
ORACLE_OUTPUT = "logits"
ORACLE_INPUT_RANGE = "0_1"


def _choice(name, value, allowed):
    if value not in allowed:
        raise ValueError(f"{name}={value!r} is not valid; choose one of: {', '.join(map(repr, allowed))}")


def _non_negative_int(value, where):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < 0:
        raise ValueError(f"{where} is {value!r}; class ids must be non-negative integers")
    return int(value)


def make_class_map(mapping, num_ids=None, ignore_id=IGNORE_ID, source="class_map"):
    """A lookup table from the network's class ids to the ids written to label maps.

    Args:
        mapping: a 1-D sequence (entry i is the new id of network id i) or a dict
            {network id: new id}; JSON-style string keys ("7") are accepted. Ids a dict does not
            mention become `ignore_id`.
        num_ids: how many ids the network predicts, when known; a dict's table is extended to
            cover them, and a sequence shorter than that is an error.
        ignore_id: the value for ids a dict leaves out.
        source: what to call the mapping in errors (e.g. the file it came from).

    Returns:
        A read-only 1-D int32 array.
    """
    if isinstance(mapping, dict):
        if not mapping:
            raise ValueError(f"{source} is an empty dict; give at least one {{network id: new id}} entry")
        pairs = {}
        for key, value in mapping.items():
            if isinstance(key, str):
                try:
                    key = int(key)
                except ValueError:
                    raise ValueError(f"{source}: key {key!r} is not an integer class id") from None
            key = _non_negative_int(key, f"{source}: key {key!r}")
            pairs[key] = _non_negative_int(value, f"{source}[{key}]")
        size = max(max(pairs) + 1, int(num_ids or 0))
        table = np.full(size, ignore_id, np.int32)
        for key, value in pairs.items():
            table[key] = value
    else:
        values = np.asarray(mapping)
        if values.ndim != 1 or values.size == 0:
            raise ValueError(
                f"{source} must be a non-empty 1-D list (entry i = new id of network id i) or a dict, "
                f"got shape {values.shape}"
            )
        if not np.issubdtype(values.dtype, np.integer):
            raise ValueError(f"{source} must hold integers, got dtype {values.dtype}")
        if values.min() < 0:
            i = int(np.argmax(values < 0))
            raise ValueError(f"{source}[{i}] is {int(values[i])}; class ids must be non-negative integers")
        if num_ids is not None and len(values) < num_ids:
            raise ValueError(
                f"{source} has {len(values)} entries but the network predicts {num_ids} classes; "
                f"give one entry per network class (use {ignore_id} for classes to ignore), or a dict"
            )
        table = values.astype(np.int32)
    table.setflags(write=False)
    return table


def load_class_map(spec):
    """A class map from a name in NAMED_CLASS_MAPS ("cityscapes") or a JSON file (list or dict).

    Returns:
        What `make_class_map` accepts: an array or a dict.
    """
    if spec in NAMED_CLASS_MAPS:
        return NAMED_CLASS_MAPS[spec]
    if not os.path.isfile(spec):
        raise FileNotFoundError(
            f"class map {spec!r} is neither a known name ({', '.join(NAMED_CLASS_MAPS)}) nor an existing "
            'file; write a JSON list (entry i = new id of network id i) or object ({"7": 0, "8": 1})'
        )
    try:
        with open(spec, encoding="utf-8") as f:
            data = json.load(f)
    except json.JSONDecodeError as e:
        raise ValueError(
            f"class map file {spec} is not valid JSON ({e.msg} at line {e.lineno}); write a JSON list "
            '(entry i = new id of network id i) or object ({"7": 0, "8": 1})'
        ) from None
    if not isinstance(data, (list, dict)):
        raise ValueError(f"class map file {spec} must hold a JSON list or object, got {type(data).__name__}")
    make_class_map(data, source=f"class map file {spec}")  # validate now, with the file in the message
    return data


def _describe(specs):
    return ", ".join(f"{name} {spec.dtype.name}{list(spec.shape)}" for name, spec in sorted(specs.items()))


def _pick(specs, key, kind, flag, where):
    """The (name, spec) of the one input/output, or of `key`."""
    if key is not None:
        if key not in specs:
            raise ValueError(f"{where} has no {kind} named {key!r}; its {kind}s: {_describe(specs)}")
        return key, specs[key]
    if len(specs) != 1:
        raise ValueError(
            f"{where} has {len(specs)} {kind}s ({_describe(specs)}); pick one with {flag}=<name>"
        )
    return next(iter(specs.items()))


class Segmenter:
    """A segmentation SavedModel: uint8 photos -> class ids and confidences.

    Args:
        path: the SavedModel folder (holding saved_model.pb).
        signature: the serving signature to call.
        input_range: the pixel range the network expects for float inputs: "0_1" (x / 255),
            "0_255" (x as float) or "-1_1" (x / 127.5 - 1). None: "0_1" for float inputs,
            "0_255" for uint8 inputs (which are passed as they are; other ranges are an error).
        output: what the chosen output holds: "logits" or "probabilities" (N, h, w, K), or
            "ids" (N, h, w) or (N, h, w, 1). Predictions at another resolution than the photo
            are resized to it: logits and probabilities bilinearly before the argmax, ids with
            nearest neighbours.
        output_key: the output to use when the signature has several.
        input_key: the input to feed when the signature has several.
        batch_size: photos per call (a signature with a fixed batch size overrides it).
        class_map: optional mapping from the network's ids to the ids to write (see
            `make_class_map`), e.g. CITYSCAPES_LABEL_TO_TRAIN_ID.
        ignore_id: the don't-care id, which a dict class map gives to ids it leaves out.

    Raises:
        FileNotFoundError: `path` does not exist.
        ValueError: not a SavedModel, unknown signature (the message lists the available ones),
            an input that is not (N, H, W, 3) float32/uint8, several inputs or outputs without a
            key, or an output that does not fit `output`.
    """

    def __init__(
        self,
        path,
        signature="serving_default",
        input_range=None,
        output="logits",
        output_key=None,
        input_key=None,
        batch_size=8,
        class_map=None,
        ignore_id=IGNORE_ID,
    ):
        path = os.fspath(path)
        if input_range is not None:
            _choice("input_range", input_range, INPUT_RANGES)
        _choice("output", output, OUTPUT_KINDS)
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        if not os.path.exists(path):
            raise FileNotFoundError(
                f"segmentation model {path} does not exist; pass the SavedModel folder (the one holding "
                "saved_model.pb)"
            )
        if not os.path.isfile(os.path.join(path, "saved_model.pb")):
            raise ValueError(
                f"{path} is not a TF SavedModel folder (no saved_model.pb in it); export a Keras model with "
                "model.export(path), or a TF model with tf.saved_model.save(model, path, signatures=...)"
            )
        self.path = path
        self.signature = signature
        self.output = output
        self.ignore_id = int(ignore_id)
        self._loaded = tf.saved_model.load(path)
        signatures = dict(self._loaded.signatures)
        if signature not in signatures:
            available = ", ".join(sorted(signatures)) or "none (re-export the model with a serving signature)"
            raise ValueError(f"{path} has no signature {signature!r}; available signatures: {available}")
        self._fn = signatures[signature]
        where = f"{path} signature {signature!r}"

        args, kwargs = self._fn.structured_input_signature
        if args:
            raise ValueError(
                f"{where} takes positional inputs; export it with named inputs (a TensorSpec name)"
            )
        self.input_key, spec = _pick(kwargs, input_key, "input", "input_key", where)
        shape = spec.shape
        if shape.rank is not None and (shape.rank != 4 or shape[-1] not in (None, 3)):
            raise ValueError(
                f"{where} input {self.input_key!r} has shape {list(shape)}; expected a batch of RGB images "
                "(N, H, W, 3) with channels last"
            )
        if spec.dtype not in (tf.float32, tf.uint8):
            raise ValueError(
                f"{where} input {self.input_key!r} has dtype {spec.dtype.name}; supported: float32, uint8"
            )
        self.input_dtype = spec.dtype
        if spec.dtype == tf.uint8:
            if input_range not in (None, "0_255"):
                raise ValueError(
                    f"{where} takes uint8 images, which are always in 0..255; input_range={input_range!r} "
                    "does not apply (leave it out or pass '0_255')"
                )
            input_range = "0_255"
        self.input_range = input_range or "0_1"
        dims = [None] * 4 if shape.rank is None else list(shape)
        self.model_batch = dims[0]
        # A network exported for one resolution gets resized photos; its prediction is resized back.
        self.model_size = (dims[1], dims[2]) if dims[1] is not None and dims[2] is not None else None
        self.batch_size = self.model_batch or batch_size

        self.output_key, out_spec = _pick(
            self._fn.structured_outputs, output_key, "output", "output_key", where
        )
        out_shape, out_dtype = out_spec.shape, out_spec.dtype
        self.num_model_classes = None
        if output == "ids":
            if not out_dtype.is_integer:
                raise ValueError(
                    f"{where} output {self.output_key!r} is {out_dtype.name}, not integer ids; "
                    "use output='logits' or 'probabilities'"
                )
            if out_shape.rank is not None and not (
                out_shape.rank == 3 or (out_shape.rank == 4 and out_shape[-1] in (None, 1))
            ):
                raise ValueError(
                    f"{where} output {self.output_key!r} has shape {list(out_shape)}; ids must be (N, H, W) or "
                    "(N, H, W, 1)"
                )
        else:
            if not out_dtype.is_floating:
                raise ValueError(
                    f"{where} output {self.output_key!r} is {out_dtype.name}; output={output!r} needs "
                    "float scores per class (integer outputs are ids: use output='ids')"
                )
            if out_shape.rank is not None and out_shape.rank != 4:
                raise ValueError(
                    f"{where} output {self.output_key!r} has shape {list(out_shape)}; {output} must be "
                    "(N, H, W, K) with classes last"
                )
            if out_shape.rank is not None and out_shape[-1] is not None:
                self.num_model_classes = int(out_shape[-1])
        self.class_map = (
            None if class_map is None else make_class_map(class_map, self.num_model_classes, self.ignore_id)
        )

    @property
    def num_classes(self):
        """Classes of the written ids (ignore excluded), or None when only predictions will tell."""
        if self.class_map is not None:
            kept = self.class_map[self.class_map != self.ignore_id]
            return int(kept.max()) + 1 if kept.size else 0
        return self.num_model_classes

    def describe(self):
        """One line for logs: where the model is and the contract being used."""
        size = f", resized to {self.model_size[0]}x{self.model_size[1]}" if self.model_size else ""
        mapped = f", class map of {len(self.class_map)} ids" if self.class_map is not None else ""
        return (
            f"{self.path} [{self.signature}]: {self.input_key} {self.input_dtype.name} in "
            f"{self.input_range}{size} -> output {self.output_key!r} read as {self.output}{mapped}"
        )

    def _prepare(self, images):
        x = tf.convert_to_tensor(images)
        if self.model_size is not None and tuple(images.shape[1:3]) != self.model_size:
            x = tf.image.resize(tf.cast(x, tf.float32), self.model_size, method="bilinear", antialias=True)
            if self.input_dtype == tf.uint8:
                return tf.cast(tf.clip_by_value(tf.round(x), 0, 255), tf.uint8)
        if self.input_dtype == tf.uint8:
            return x
        x = tf.cast(x, tf.float32)
        if self.input_range == "0_1":
            return x / 255.0
        if self.input_range == "-1_1":
            return x / 127.5 - 1.0
        return x

    def _run(self, images):
        """(ids int32 (n, H, W), confidence float32 or None) of one batch, at the photos' size."""
        n, height, width = images.shape[:3]
        x = self._prepare(images)
        if self.model_batch is not None and n < self.model_batch:
            # A fixed batch size: pad with zeros and drop their predictions.
            x = tf.concat([x, tf.zeros([self.model_batch - n, *x.shape[1:]], x.dtype)], 0)
        y = self._fn(**{self.input_key: x})[self.output_key][:n]
        where = f"{self.path} output {self.output_key!r}"
        if self.output == "ids":
            if y.shape.rank == 4 and y.shape[-1] == 1:
                y = y[..., 0]
            if y.shape.rank != 3:
                raise ValueError(
                    f"{where} gave shape {y.shape.as_list()}; ids must be (N, H, W) or (N, H, W, 1)"
                )
            if tuple(y.shape[1:]) != (height, width):
                y = tf.image.resize(y[..., None], (height, width), method="nearest")[..., 0]
            return tf.cast(y, tf.int32).numpy(), None
        if y.shape.rank != 4:
            raise ValueError(f"{where} gave shape {y.shape.as_list()}; {self.output} must be (N, H, W, K)")
        y = tf.cast(y, tf.float32)
        if tuple(y.shape[1:3]) != (height, width):
            y = tf.image.resize(y, (height, width), method="bilinear")
        probs = tf.nn.softmax(y, axis=-1) if self.output == "logits" else y
        ids = tf.argmax(y, axis=-1, output_type=tf.int32)
        return ids.numpy(), tf.reduce_max(probs, axis=-1).numpy()

    def map_ids(self, ids):
        """Applies the class map (if any) to network ids."""
        if self.class_map is None:
            return ids
        if ids.size and (ids.min() < 0 or ids.max() >= len(self.class_map)):
            bad = int(ids.max()) if ids.max() >= len(self.class_map) else int(ids.min())
            raise ValueError(
                f"{self.path} predicted class id {bad}, but the class map covers ids 0..{len(self.class_map) - 1}; "
                "extend the class map to every id the network predicts"
            )
        return self.class_map[ids]

    def predict(self, images):
        """Segments a batch of photos.

        Args:
            images: (N, H, W, 3) uint8 RGB photos.

        Returns:
            ids: (N, H, W) int32 class ids (after the class map).
            confidence: (N, H, W) float32 probability of the predicted class, or None when the
                network outputs ids.
        """
        images = np.asarray(images)
        if images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError(f"images must be (N, H, W, 3) RGB, got shape {images.shape}")
        if images.dtype != np.uint8:
            raise ValueError(
                f"images must be uint8 in 0..255, got dtype {images.dtype}; the Segmenter scales them "
                f"into the network's range ({self.input_range}) itself"
            )
        ids, conf = [], []
        for start in range(0, len(images), self.batch_size):
            batch_ids, batch_conf = self._run(images[start : start + self.batch_size])
            ids.append(self.map_ids(batch_ids))
            conf.append(batch_conf)
        if not ids:
            empty = np.zeros(images.shape[:3], np.int32)
            return empty, (None if self.output == "ids" else empty.astype(np.float32))
        ids = np.concatenate(ids).astype(np.int32)
        return ids, (None if self.output == "ids" else np.concatenate(conf).astype(np.float32))

    __call__ = predict


def export_oracle_saved_model(oracle, path, overwrite=False):
    """Writes the demo oracle as a SavedModel with a typical third-party contract.

    The signature `serving_default` takes `images`, float32 (N, H, W, 3) in [0, 1] of any size,
    and returns `logits`, float32 (N, H, W, K); inside, the images are mapped to the oracle's
    [-1, 1]. Read it back with `Segmenter(path, input_range="0_1", output="logits")`.

    Args:
        oracle: a Keras model from `spade_tf.evaluation.oracle.build_oracle` / `load_or_train_oracle`.
        path: the SavedModel folder to write; written to a temporary sibling and renamed, so
            an interrupted export leaves no half-written model.
        overwrite: replace an existing `path`.

    Returns:
        `path`.
    """
    path = os.path.abspath(os.fspath(path))
    if os.path.exists(path) and not overwrite:
        raise FileExistsError(f"{path} already exists; pass overwrite=True or choose another folder")
    archive = keras.export.ExportArchive()
    # Tracking the model (not a plain tf.Module around it) puts its variables into the SavedModel.
    archive.track(oracle)

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32, name=ORACLE_INPUT)])
    def serve(images):
        return {ORACLE_OUTPUT: oracle(images * 2.0 - 1.0, training=False)}

    archive.add_endpoint(ORACLE_SIGNATURE, serve)
    tmp = f"{path}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    archive.write_out(tmp, verbose=False)
    if os.path.exists(path):
        shutil.rmtree(path)
    os.replace(tmp, path)
    return path


class SegmenterFlags:
    """The command-line flags that make a `Segmenter`, for the scripts that take one (evaluate.py,
    label_photos.py): defined when constructed, read by `segmenter()`.

    The SavedModel folder is always `--segmenter`; the other flags are named after the `Segmenter`
    arguments they set (signature, input_range, output, output_key, input_key, class_map), with `prefix`
    in front, unless `names` renames them.

    Args:
        prefix: put before each flag name except --segmenter ("segmenter_": --segmenter_signature, ...).
        names: {Segmenter argument: flag name} where the name is not prefix + argument (a script whose
            --output is its own output folder names the segmenter's `output` flag otherwise).
        flag_values: the absl FlagValues the flags are defined in.
    """

    # Segmenter argument -> (default, allowed values or None for any string, help).
    _FLAGS = {
        "signature": ("serving_default", None, "Signature of the segmentation SavedModel to call."),
        "input_range": (
            None,
            INPUT_RANGES,
            "Pixel range of its float inputs (default 0_1; uint8 inputs: 0_255).",
        ),
        "output": ("logits", OUTPUT_KINDS, "What its output holds."),
        "output_key": (None, None, "Its output to use, when the signature has several."),
        "input_key": (None, None, "Its input to feed, when the signature has several."),
        "class_map": (
            None,
            None,
            "Maps its predicted ids to the ids used: 'cityscapes' (34 label ids -> 19 train ids) or a JSON file.",
        ),
    }

    def __init__(self, prefix="", names=None, flag_values=flags.FLAGS):
        self.flag_values = flag_values
        self.names = {arg: prefix + arg for arg in self._FLAGS}
        self.names.update(names or {})
        flags.DEFINE_string(
            "segmenter",
            None,
            "Segmentation SavedModel folder (holding saved_model.pb).",
            flag_values=flag_values,
        )
        for arg, (default, choices, help_text) in self._FLAGS.items():
            if choices:
                flags.DEFINE_enum(self.names[arg], default, list(choices), help_text, flag_values=flag_values)
            else:
                flags.DEFINE_string(self.names[arg], default, help_text, flag_values=flag_values)

    def value(self, arg):
        """The value of the flag that sets Segmenter argument `arg` ("segmenter" for the folder)."""
        return self.flag_values[self.names.get(arg, arg)].value

    def segmenter(self, **kwargs):
        """The `Segmenter` the flags describe, or None without --segmenter.

        Args:
            **kwargs: further `Segmenter` arguments (e.g. batch_size).
        """
        if not self.value("segmenter"):
            return None
        class_map = self.value("class_map")
        return Segmenter(
            self.value("segmenter"),
            signature=self.value("signature"),
            input_range=self.value("input_range"),
            output=self.value("output"),
            output_key=self.value("output_key"),
            input_key=self.value("input_key"),
            class_map=load_class_map(class_map) if class_map else None,
            **kwargs,
        )
