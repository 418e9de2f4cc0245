"""The label map: how a PNG becomes class ids, in one place for every reader.

The rule is the official one (`Pix2pixDataset` reads label maps with PIL):

- an 8- or 16-bit grey PNG holds ids (16-bit maps keep all 16 bits; 1-bit grey reads 0 and 1, 2- and 4-bit
  grey are scaled to 8 bits, as PIL reads them);
- a palette-indexed PNG holds ids: the index is the id, whatever the colours of its palette;
- a grey+alpha PNG holds ids in its grey channel (the high byte at 16 bits, as PIL reads it);
- an RGB or RGBA PNG holds colours, looked up in a colour table (row i = the colour of id i; where colours
  repeat, the lowest id wins); at 16 bits the high byte of each sample counts, as in PIL;
- raw `DONTCARE_VALUE` (255) becomes the don't-care id `num_classes` when the model or dataset has a
  don't-care label (`dontcare_to_id`).

Two implementations of that rule: NumPy/PIL (`read_label`, `label_ids`, `colours_to_ids`) for the dataset
check, synthesize.py and photo labelling, and TF ops (`decode_label_png_tf`, `colours_to_ids_tf`) for the
tf.data pipeline and the exported signatures. The painter (serving/static/painter.js) follows it in the
browser. `valid_ids` and `allowed_ids` are the range check of every entry point, and `label_channels` /
`semantic_channels` say how many one-hot and semantic channels a model takes.

Example:

```python
ids = read_label_ids("labels/0001.png", colors=palette.colors)         # raw ids, 255 kept
ids = dontcare_to_id(ids, num_classes=150, contain_dontcare_label=True)
assert valid_ids(ids, 150, True).all(), allowed_ids(150, True)
```
"""

import dataclasses
import io
import os
import struct
import zlib

import numpy as np
import tensorflow as tf
from PIL import Image

DONTCARE_VALUE = 255

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# PNG colour types (IHDR byte 25).
PNG_GREY, PNG_RGB, PNG_PALETTE, PNG_GREY_ALPHA, PNG_RGBA = 0, 2, 3, 4, 6
_PNG_COLOUR_TYPES = (PNG_RGB, PNG_RGBA)
# Signature and IHDR chunk (length, type, 13 data bytes, CRC): the shortest prefix that says what a PNG holds.
_PNG_HEADER_BYTES = 33

# Why a label map must be a PNG whatever its name says: said wherever a non-PNG label file is refused.
LOSSLESS_REASON = (
    "label maps must be lossless PNG files (JPEG or WebP compression changes the ids near every edge), whatever "
    "the file's name says"
)
LABEL_PNG_KINDS = (
    "8/16-bit grey or palette-indexed PNG of ids (the index is the id), grey+alpha (ids in the grey channel), "
    "or RGB(A) in the palette colours"
)


# -- channel counts ---------------------------------------------------------------------------------------


def label_channels(num_classes, contain_dontcare_label=False):
    """One-hot label channels (distinct ids): num_classes, plus the don't-care id num_classes."""
    return int(num_classes) + int(bool(contain_dontcare_label))


def semantic_channels(num_classes, contain_dontcare_label=False, use_instance_map=False):
    """Channels of the semantic map: label_nc (+1 don't-care) (+1 instance edge)."""
    return label_channels(num_classes, contain_dontcare_label) + int(bool(use_instance_map))


# -- ids: don't care and range ----------------------------------------------------------------------------


def dontcare_to_id(ids, num_classes, contain_dontcare_label):
    """Raw `DONTCARE_VALUE` -> the don't-care id `num_classes` when there is a don't-care label.

    Args:
        ids: integer NumPy array or tensor.
        num_classes: label_nc.
        contain_dontcare_label: whether the model or dataset has a don't-care label; without one, 255 stays.

    Returns:
        `ids` of the same type; a NumPy dtype too narrow for `num_classes` is widened (a copy either way).
    """
    if not contain_dontcare_label:
        return ids
    if tf.is_tensor(ids):
        return tf.where(tf.equal(ids, DONTCARE_VALUE), tf.cast(num_classes, ids.dtype), ids)
    dtype = np.promote_types(np.asarray(ids).dtype, np.min_scalar_type(num_classes))
    ids = np.array(ids, dtype)
    ids[ids == DONTCARE_VALUE] = num_classes
    return ids


def valid_ids(ids, num_classes, contain_dontcare_label):
    """Boolean mask of the ids a model or dataset takes, for NumPy arrays and tensors alike.

    Valid: 0..num_classes-1, and with a don't-care label also num_classes and raw `DONTCARE_VALUE`.
    (Without one, 255 is valid only as a class id, i.e. when num_classes > 255.)
    """
    ok = (ids >= 0) & (ids < num_classes)
    if contain_dontcare_label:
        ok = ok | (ids == num_classes) | (ids == DONTCARE_VALUE)
    return ok


def allowed_ids(num_classes, contain_dontcare_label):
    """The valid ids in words, for error messages: "0..149" or "0..149, 150 or 255 (dontcare)"."""
    text = f"0..{int(num_classes) - 1}"
    if contain_dontcare_label:
        text += f", {int(num_classes)} or {DONTCARE_VALUE} (dontcare)"
    return text


# -- colours -> ids -----------------------------------------------------------------------------------------


def colour_keys(colors):
    """(..., 3) RGB -> one int per colour, r * 65536 + g * 256 + b."""
    colors = np.asarray(colors).astype(np.int64)
    return (colors[..., 0] << 16) | (colors[..., 1] << 8) | colors[..., 2]


def _colour_table(colors):
    """(sorted colour keys, id of each sorted key); a stable sort puts the lowest id first among equal colours."""
    colors = np.asarray(colors)
    if colors.ndim != 2 or colors.shape[-1] != 3 or not len(colors):
        raise ValueError(f"colour table must have shape (K, 3) with K >= 1, got {colors.shape}")
    keys = colour_keys(colors)
    order = np.argsort(keys, kind="stable")
    return keys[order], order


def _check_rgb(rgb):
    if rgb.ndim != 3 or rgb.shape[-1] not in (3, 4):
        raise ValueError(f"expected an (H, W, 3) RGB or (H, W, 4) RGBA label map, got shape {rgb.shape}")
    if rgb.dtype != np.uint8 and rgb.size and (rgb.min() < 0 or rgb.max() > 255):
        raise ValueError(f"RGB values must be in 0..255, got {rgb.min()}..{rgb.max()}")


def colours_to_ids(rgb, colors, path_for_errors=None):
    """Colour label map -> class ids (NumPy).

    Args:
        rgb: (H, W, 3) RGB or (H, W, 4) RGBA array (alpha ignored), values 0..255.
        colors: (K, 3) colour table, row i the colour of id i; where colours repeat the lowest id wins
            (a painted map cannot tell such ids apart, and the real class is the likelier).
        path_for_errors: the file the map came from, named in errors.

    Returns:
        (H, W) int32 ids.

    Raises:
        ValueError: some pixel has a colour that is not in the table; the message gives the count, the
            most common such colours, an example with its (row, col) and the fix.
    """
    rgb = np.asarray(rgb)
    _check_rgb(rgb)
    sorted_keys, id_of_sorted = _colour_table(colors)
    keys = colour_keys(rgb[..., :3])
    pos = np.minimum(np.searchsorted(sorted_keys, keys), len(sorted_keys) - 1)
    found = sorted_keys[pos] == keys
    if not found.all():
        unknown = ~found
        row, col = (int(v) for v in np.argwhere(unknown)[0])
        distinct, counts = np.unique(keys[unknown], return_counts=True)
        top = distinct[np.argsort(-counts, kind="stable")[:3]]
        examples = ", ".join(str(((k >> 16) & 255, (k >> 8) & 255, k & 255)) for k in top.tolist())
        where = path_for_errors if path_for_errors is not None else "label map"
        raise ValueError(
            f"{where}: {int(unknown.sum())} pixels have colours that are not in the palette "
            f"({len(distinct)} distinct, most common {examples}); e.g. RGB {tuple(int(v) for v in rgb[row, col, :3])} "
            f"at (row {row}, col {col}). Add these colours to the palette file, or repaint those pixels with "
            "palette colours (anti-aliased edges, resizing with smoothing and JPEG compression create "
            "in-between colours: save label maps as PNG and resize them with NEAREST)"
        )
    return id_of_sorted[pos].astype(np.int32)


def colours_to_ids_tf(rgb, colors):
    """Colour label map -> class ids as TF ops, for tf.data and exported graphs.

    Unknown colours give -1 instead of an error: a data op cannot raise per pixel usefully; callers check
    (`decode_label_png_tf(..., strict_colours=True)`, the pipeline's range check).

    Args:
        rgb: (..., H, W, 3) or (..., H, W, 4) integer tensor (alpha ignored).
        colors: (K, 3) colour table, as in `colours_to_ids` (the lowest id wins where colours repeat).

    Returns:
        (..., H, W) int32 ids, -1 where the colour is not in the table.
    """
    sorted_keys, id_of_sorted = _colour_table(colors)
    last = len(sorted_keys) - 1
    sorted_keys = tf.constant(sorted_keys, tf.int32)
    id_of_sorted = tf.constant(id_of_sorted, tf.int32)
    rgb = tf.convert_to_tensor(rgb)
    if rgb.shape.rank is not None and rgb.shape[-1] is not None and rgb.shape[-1] not in (3, 4):
        raise ValueError(f"expected RGB or RGBA channels last, got shape {rgb.shape}")
    rgb = tf.cast(rgb[..., :3], tf.int32)
    keys = rgb[..., 0] * 65536 + rgb[..., 1] * 256 + rgb[..., 2]
    flat = tf.reshape(keys, [1, -1])
    # Binary search over the sorted keys: no lookup-table resource to track in tf.data or a SavedModel, and
    # O(log K) per pixel rather than an (H, W, K) comparison. The leftmost match is the lowest id.
    pos = tf.minimum(tf.searchsorted(sorted_keys[None], flat)[0], last)
    found = tf.equal(tf.gather(sorted_keys, pos), flat[0])
    ids = tf.where(found, tf.gather(id_of_sorted, pos), -1)
    return tf.reshape(ids, tf.shape(keys))


# -- PNG -> ids, NumPy / PIL --------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class PngHeader:
    """The IHDR fields that decide how a PNG's pixels are read."""

    width: int
    height: int
    bit_depth: int
    colour_type: int

    @property
    def holds_colours(self):
        """RGB or RGBA: the pixels are colours of a colour table, not ids."""
        return self.colour_type in _PNG_COLOUR_TYPES


def png_header(data):
    """`PngHeader` of the first bytes of a file, or None when they are not a PNG signature and IHDR."""
    data = bytes(data[:_PNG_HEADER_BYTES])
    if len(data) < _PNG_HEADER_BYTES or not data.startswith(PNG_SIGNATURE) or data[12:16] != b"IHDR":
        return None
    width, height, bit_depth, colour_type = struct.unpack(">IIBB", data[16:26])
    return PngHeader(width, height, bit_depth, colour_type)


class UnreadableLabelError(ValueError):
    """A label file that is not a PNG or that PIL cannot decode (damaged, truncated)."""


@dataclasses.dataclass(frozen=True, eq=False)
class LabelPng:
    """A decoded label PNG, as the rule reads it.

    Args:
        values: (H, W) int64 raw ids, or (H, W, 3) uint8 colours when `holds_colours`.
        header: its `PngHeader`.
        mode: PIL's mode (for messages).
        source: the file (or what the bytes were called), named in errors.
        png_palette: (K, 3) uint8 colours of a palette PNG's entries (entry i = index i), else None.
    """

    values: np.ndarray
    header: PngHeader
    mode: str
    source: str
    png_palette: np.ndarray | None = None

    @property
    def holds_colours(self):
        return self.header.holds_colours

    @property
    def size(self):
        """(width, height), as PIL's `Image.size`."""
        return self.header.width, self.header.height


def read_label(source, what=None):
    """Reads a label PNG with PIL and applies the rule's reading (not yet the colour lookup).

    Args:
        source: a path, or the file's bytes.
        what: the name used in errors (default: the path, or "label map").

    Returns:
        A `LabelPng`.

    Raises:
        UnreadableLabelError: not a PNG, or PIL cannot decode it; the message names the file.
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        data, what = bytes(source), what or "label map"
    else:
        what = what or os.fspath(source)
        with open(source, "rb") as f:
            data = f.read()
    header = png_header(data)
    if header is None:
        raise UnreadableLabelError(
            f"{what}: cannot be read as an image: not a PNG file ({LOSSLESS_REASON}); save it as a PNG: "
            f"{LABEL_PNG_KINDS}"
        )
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()  # decode everything, so truncated or corrupt data is found now
            mode, pixels = img.mode, np.asarray(img)
            palette = img.getpalette() if mode == "P" else None
    except Exception as e:  # any PIL failure means the file is unusable
        raise UnreadableLabelError(f"{what}: cannot be read as an image ({type(e).__name__}: {e})") from None
    if header.holds_colours:
        values = pixels[..., :3].astype(np.uint8)
    elif pixels.ndim == 3:
        # Grey+alpha: the grey channel. PIL opens 16-bit grey+alpha as RGBA holding the high byte of the grey.
        values = pixels[..., 0].astype(np.int64)
    else:
        # Grey (mode 1, L or I;16) or palette indices (mode P).
        values = pixels.astype(np.int64)
    png_palette = None if palette is None else np.asarray(palette, np.uint8).reshape(-1, 3)
    return LabelPng(values, header, mode, what, png_palette)


def label_ids(label, colors=None):
    """Raw ids of a `LabelPng`: its ids, or its colours looked up in `colors`.

    Args:
        label: from `read_label`.
        colors: (K, 3) colour table for RGB(A) label maps (a palette's colours, or a model's display colours);
            None when the maps must hold ids.

    Returns:
        (H, W) int64 raw ids (255 not yet mapped: see `dontcare_to_id`).

    Raises:
        ValueError: an RGB(A) map without a colour table, or colours that are not in it.
    """
    if not label.holds_colours:
        return label.values
    if colors is None:
        raise ValueError(
            f"{label.source}: label map is {label.mode} (colours) but there is no palette to look them up in; label maps "
            f"without a palette must hold single-channel class ids ({LABEL_PNG_KINDS})"
        )
    return colours_to_ids(label.values, colors, path_for_errors=label.source).astype(np.int64)


def read_label_ids(source, colors=None, what=None):
    """`label_ids(read_label(source, what), colors)`: a label PNG (path or bytes) -> (H, W) int64 raw ids."""
    return label_ids(read_label(source, what), colors)


def holds_colours(path):
    """Whether the label PNG at `path` is colour-coded (RGB/RGBA), from its header alone."""
    with open(path, "rb") as f:
        header = png_header(f.read(_PNG_HEADER_BYTES))
    return header is not None and header.holds_colours


# -- PNG -> ids, TF ops -------------------------------------------------------------------------------------


def _text(part):
    """A message part as a string scalar: sizes as HxW, other numbers as decimals."""
    if isinstance(part, str):
        return part
    part = tf.convert_to_tensor(part)
    if part.dtype == tf.string:
        return part
    text = tf.strings.as_string(part)
    return text if text.shape.rank == 0 else tf.strings.reduce_join(text, separator="x")


def with_check(value, condition, parts):
    """`value`, after checking `condition`; otherwise InvalidArgumentError with the joined message parts.

    Eagerly the error is raised at once with the plain message; in a graph (tf.data, a SavedModel) an Assert
    op carries it, and the error surfaces when the value is computed.

    Args:
        value: a tensor (or nested structure the caller passes on).
        condition: boolean scalar.
        parts: strings and tensors (string, or numbers: rank-1 numbers are joined as HxW).
    """
    message = tf.strings.join([_text(p) for p in parts])
    if tf.executing_eagerly():
        if not bool(condition):
            raise tf.errors.InvalidArgumentError(None, None, message.numpy().decode("utf-8", "replace"))
        return value
    with tf.control_dependencies([tf.debugging.Assert(condition, [message])]):
        return tf.identity(value)


def png_header_tf(data):
    """The IHDR fields of PNG strings (any shape), as TF ops.

    Returns:
        (is_png bool, width, height, bit_depth, colour_type int32), each of `data`'s shape. Fields of a
        string that is not a PNG are meaningless.
    """
    data = tf.convert_to_tensor(data, tf.string)
    padded = tf.strings.substr(tf.strings.join([tf.strings.substr(data, 0, 26), b"\0" * 26]), 0, 26)
    raw = tf.cast(tf.io.decode_raw(padded, tf.uint8), tf.int32)
    is_png = tf.equal(tf.strings.substr(padded, 0, 8), PNG_SIGNATURE) & (
        tf.strings.length(data) >= _PNG_HEADER_BYTES
    )
    scale = tf.constant([1 << 24, 1 << 16, 1 << 8, 1], tf.int32)
    width = tf.reduce_sum(raw[..., 16:20] * scale, axis=-1)
    height = tf.reduce_sum(raw[..., 20:24] * scale, axis=-1)
    return is_png, width, height, raw[..., 24], raw[..., 25]


def _grey_palette_chunks():
    """PLTE chunks whose entry i is (i, i, i), one per palette length 1..256, with their CRCs."""
    chunks = []
    for n in range(1, 257):
        body = b"PLTE" + bytes(v for i in range(n) for v in (i, i, i))
        chunks.append(struct.pack(">I", 3 * n) + body + struct.pack(">I", zlib.crc32(body)))
    return chunks


_GREY_PLTE_CHUNKS = _grey_palette_chunks()


def _be32(four_bytes):
    return tf.io.decode_raw(four_bytes, tf.int32, little_endian=False)[0]


def _palette_as_indices(data, source):
    """A palette PNG with its PLTE chunk replaced by greys (i, i, i): decoding it gives the indices.

    TF's PNG decoder always expands palette indices to colours, but the rule (PIL) reads the index of a
    palette PNG as the id, and colours need not be unique. Swapping in a grey palette of the same length
    (with a valid CRC) makes every decoded channel equal to the index; the pixel data is untouched.
    """
    length = tf.strings.length(data)

    def not_found_yet(pos, found):
        return tf.logical_and(tf.logical_not(found), pos + 8 <= length)

    def next_chunk(pos, found):
        is_plte = tf.equal(tf.strings.substr(data, pos + 4, 4), b"PLTE")
        chunk_size = _be32(tf.strings.substr(data, pos, 4))
        return tf.where(is_plte, pos, pos + 12 + chunk_size), is_plte

    pos, found = tf.while_loop(not_found_yet, next_chunk, [tf.constant(8), tf.constant(False)])
    pos = with_check(
        pos, found, [source, ": palette-indexed PNG without a PLTE chunk; the file is damaged, re-export it"]
    )
    size = _be32(tf.strings.substr(data, pos, 4))
    entries = tf.clip_by_value(size // 3, 1, 256)
    rest = pos + 12 + size
    return tf.strings.join(
        [
            tf.strings.substr(data, 0, pos),
            tf.gather(tf.constant(_GREY_PLTE_CHUNKS), entries - 1),
            tf.strings.substr(data, rest, length - rest),
        ]
    )


def _decode_samples(data, source, bit_depth, colour_type):
    """(H, W, C) int32 samples of one PNG as PIL holds them: what `np.asarray(Image.open(...))` gives.

    16-bit grey keeps its 16 bits, a palette PNG gives its indices (one channel), 1-bit grey gives 0 and 1;
    other 16-bit PNGs keep the high byte (PIL opens them as 8-bit RGB(A)).
    """

    def palette_indices():
        # Three equal channels; keep one (a grey conversion would add rounding for nothing).
        return tf.cast(tf.io.decode_png(_palette_as_indices(data, source), channels=3), tf.int32)[..., :1]

    def samples():
        sixteen = tf.equal(bit_depth, 16)
        values = tf.cond(
            sixteen,
            lambda: tf.cast(tf.io.decode_png(data, channels=0, dtype=tf.uint16), tf.int32),
            lambda: tf.cast(tf.io.decode_png(data, channels=0, dtype=tf.uint8), tf.int32),
        )
        # libpng expands 1-bit grey to 0/255; PIL (mode "1") gives 0/1. Other 16-bit types: the high byte.
        grey = tf.equal(colour_type, PNG_GREY)
        divisor = tf.where(grey, tf.where(tf.equal(bit_depth, 1), 255, 1), tf.where(sixteen, 256, 1))
        return values // divisor

    return tf.cond(tf.equal(colour_type, PNG_PALETTE), palette_indices, samples)


def decode_label_png_tf(data, colors=None, source="label map", hint="", strict_colours=False):
    """One label PNG -> (H, W) int32 raw ids, by the rule, as TF ops (eagerly, in tf.data or a SavedModel).

    Instance maps are read with it too (without `colors`): one channel of ids.

    Args:
        data: string scalar, the file's bytes.
        colors: (K, 3) colour table for RGB(A) maps (see `colours_to_ids_tf`); None when maps must hold ids,
            and then an RGB(A) map is an error.
        source: the file (string or string tensor), named in errors.
        hint: appended to the colour errors: what the colours must be, or what to do instead.
        strict_colours: colours that are not in `colors` are an error naming them; otherwise they give -1.

    Returns:
        (H, W) int32 raw ids (255 not yet mapped: see `dontcare_to_id`).

    Raises:
        tf.errors.InvalidArgumentError (when the value is computed): not a PNG, colours without a table,
            unknown colours with `strict_colours`.
    """
    is_png, _, _, bit_depth, colour_type = png_header_tf(data)
    data = with_check(
        data, is_png, [source, f": not a PNG file ({LOSSLESS_REASON}); save it as a PNG: {LABEL_PNG_KINDS}"]
    )
    native = _decode_samples(data, source, bit_depth, colour_type)

    def ids():
        return native[..., 0]

    def colours():
        if colors is None:
            return with_check(
                tf.fill(tf.shape(native)[:2], -1),
                False,
                [source, ": RGB colours, but there is no palette to map them to ids. ", hint],
            )
        rgb = native[..., :3]
        found = colours_to_ids_tf(rgb, colors)
        if not strict_colours:
            return found
        unknown = tf.less(found, 0)
        first = tf.argmax(tf.reshape(tf.cast(unknown, tf.int32), [-1]), output_type=tf.int32)
        width = tf.maximum(tf.shape(found)[1], 1)
        row, col = first // width, first % width
        example = tf.strings.reduce_join(tf.strings.as_string(rgb[row, col]), separator=", ")
        return with_check(
            found,
            tf.logical_not(tf.reduce_any(unknown)),
            [
                source,
                ": ",
                tf.reduce_sum(tf.cast(unknown, tf.int32)),
                " pixels have colours that are not in the palette, e.g. RGB (",
                example,
                ") at (row ",
                row,
                ", col ",
                col,
                "). ",
                hint,
            ],
        )

    holds_colours = tf.equal(colour_type, PNG_RGB) | tf.equal(colour_type, PNG_RGBA)
    label = tf.cond(holds_colours, colours, ids)
    label.set_shape([None, None])
    return label
