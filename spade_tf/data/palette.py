"""Colour-coded label maps: a palette file maps class colours to class ids.

Many hand-made and exported datasets store label maps as RGB pictures with one colour per
class. The networks need class ids, so a palette file says which colour is which id:

    {"classes": [{"id": 0, "name": "sky", "color": [135, 206, 235]},
                 {"id": 1, "name": "tree", "color": [34, 139, 34]}]}

Ids run 0..K-1 without gaps and every colour is different. `default_colormap` is the
opposite direction for display: the colours the official code (pix2pixHD's `labelcolormap`)
gives to ids when no palette exists.
"""

import dataclasses
import json
import os

import numpy as np

from spade_tf.data import labels

PALETTE_FORMAT = '{"classes": [{"id": 0, "name": "sky", "color": [135, 206, 235]}, {"id": 1, ...}, ...]}'


@dataclasses.dataclass(frozen=True, eq=False)
class Palette:
    """Class names and colours; row i of `colors` is the colour of class id i.

    Args:
        names: one name per class id.
        colors: (K, 3) integer RGB colours in 0..255, all different. Stored as a read-only uint8 array.

    Example:

    ```python
    palette = Palette(names=("sky", "tree"), colors=[[135, 206, 235], [34, 139, 34]])
    ids = rgb_to_ids(rgb_label_map, palette)
    ```
    """

    names: tuple[str, ...]
    colors: np.ndarray

    def __post_init__(self):
        names = tuple(str(n) for n in self.names)
        colors = np.asarray(self.colors)
        if colors.ndim != 2 or colors.shape[1] != 3 or len(colors) == 0:
            raise ValueError(f"palette colors must have shape (K, 3) with K >= 1, got {colors.shape}")
        if len(names) != len(colors):
            raise ValueError(
                f"palette has {len(names)} names but {len(colors)} colours; give one name per colour"
            )
        if not np.issubdtype(colors.dtype, np.integer):
            raise ValueError(f"palette colours must be integers in 0..255, got dtype {colors.dtype}")
        if colors.min() < 0 or colors.max() > 255:
            row = int(np.argmax(np.any((colors < 0) | (colors > 255), axis=1)))
            raise ValueError(
                f"palette colour of id {row} is {colors[row].tolist()}; components must be in 0..255"
            )
        keys = labels.colour_keys(colors)
        unique, counts = np.unique(keys, return_counts=True)
        if np.any(counts > 1):
            key = unique[np.argmax(counts > 1)]
            ids = np.flatnonzero(keys == key).tolist()
            raise ValueError(
                f"palette ids {ids} share the colour {colors[ids[0]].tolist()}; "
                "give every class its own colour, otherwise a colour cannot say which class it is"
            )
        colors = colors.astype(np.uint8)
        colors.setflags(write=False)
        object.__setattr__(self, "names", names)
        object.__setattr__(self, "colors", colors)

    @property
    def num_classes(self):
        return len(self.names)

    def __eq__(self, other):
        if not isinstance(other, Palette):
            return NotImplemented
        return self.names == other.names and np.array_equal(self.colors, other.colors)

    __hash__ = None


def _class_entry(path, i, entry):
    """Validated (id, name, colour) of the i-th entry of a palette file."""
    where = f"{path}: classes[{i}]"
    if not isinstance(entry, dict):
        raise ValueError(
            f"{where} is {entry!r}; each class must be an object like {{'id': 0, 'color': [r, g, b]}}"
        )
    unknown = sorted(set(entry) - {"id", "name", "color"})
    if unknown:
        raise ValueError(f"{where} has unknown keys {unknown}; allowed keys: id, name, color")
    if "id" not in entry or "color" not in entry:
        raise ValueError(f"{where} needs 'id' and 'color' (name is optional); got {entry!r}")
    class_id = entry["id"]
    if isinstance(class_id, bool) or not isinstance(class_id, int) or class_id < 0:
        raise ValueError(f"{where}: id {class_id!r} must be a non-negative integer")
    color = entry["color"]
    if (
        not isinstance(color, list)
        or len(color) != 3
        or not all(isinstance(c, int) and not isinstance(c, bool) and 0 <= c <= 255 for c in color)
    ):
        raise ValueError(
            f"{where} (id {class_id}): color {color!r} must be [r, g, b] with integers in 0..255"
        )
    name = entry.get("name", str(class_id))
    if not isinstance(name, str):
        raise ValueError(f"{where} (id {class_id}): name {name!r} must be a string")
    return class_id, name, color


def load_palette(path):
    """Reads a palette JSON file (format in the module docstring).

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: bad JSON, bad entries, duplicate ids or colours, or gaps in the ids; the
            message names the file, the entry and the fix.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"palette file {path} does not exist; write one in the format {PALETTE_FORMAT}"
        )
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except json.JSONDecodeError as e:
        raise ValueError(
            f"{path} is not valid JSON ({e.msg} at line {e.lineno}, column {e.colno}); "
            f"expected the palette format {PALETTE_FORMAT}"
        ) from None
    if not isinstance(data, dict) or not isinstance(data.get("classes"), list) or not data["classes"]:
        raise ValueError(f"{path} must hold an object with a non-empty 'classes' list: {PALETTE_FORMAT}")
    by_id = {}
    for i, entry in enumerate(data["classes"]):
        class_id, name, color = _class_entry(path, i, entry)
        if class_id in by_id:
            raise ValueError(f"{path}: id {class_id} appears more than once; give every class its own id")
        by_id[class_id] = (name, color)
    missing = sorted(set(range(len(by_id))) - set(by_id))
    if missing:
        shown = ", ".join(map(str, missing[:10])) + (" ..." if len(missing) > 10 else "")
        raise ValueError(
            f"{path}: ids must run 0..K-1 without gaps (they are the label-map values); "
            f"{len(by_id)} classes but ids {shown} are missing, up to id {max(by_id)}"
        )
    ids = sorted(by_id)
    try:
        return Palette(names=tuple(by_id[i][0] for i in ids), colors=np.array([by_id[i][1] for i in ids]))
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None


def save_palette(palette, path):
    """Writes `palette` as a palette JSON file, one class per line."""
    lines = [
        "    " + json.dumps({"id": i, "name": name, "color": [int(c) for c in color]})
        for i, (name, color) in enumerate(zip(palette.names, palette.colors))
    ]
    with open(os.fspath(path), "w", encoding="utf-8") as f:
        f.write('{\n  "classes": [\n' + ",\n".join(lines) + "\n  ]\n}\n")


def rgb_to_ids(rgb, palette, path_for_errors=None):
    """Colour label map -> class ids of `palette` (`spade_tf.data.labels.colours_to_ids`).

    Args:
        rgb: (H, W, 3) RGB or (H, W, 4) RGBA array (alpha ignored), values 0..255.
        palette: a Palette.
        path_for_errors: the file the map came from, named in errors.

    Returns:
        (H, W) ids, uint8 when the palette has at most 256 classes, else int32.

    Raises:
        ValueError: some pixel has a colour that is not in the palette; the message gives the
            count, an example colour with its (row, col) and the fix.
    """
    ids = labels.colours_to_ids(rgb, palette.colors, path_for_errors)
    return ids.astype(np.uint8 if palette.num_classes <= 256 else np.int32)


def rgb_to_ids_tf(rgb, palette):
    """Colour label map -> class ids of `palette` as TF ops (`spade_tf.data.labels.colours_to_ids_tf`).

    Args:
        rgb: (..., H, W, 3) or (..., H, W, 4) integer tensor (alpha ignored).
        palette: a Palette.

    Returns:
        (..., H, W) int32 ids, -1 where the colour is not in the palette.
    """
    return labels.colours_to_ids_tf(rgb, palette.colors)


def default_colormap(n):
    """Display colours for ids 0..n-1 when there is no palette.

    The scheme of pix2pixHD / SPADE `labelcolormap` (also the PASCAL VOC colour map): the
    bits of the id are dealt out to R, G, B in turn, starting at each channel's most
    significant bit. Id 0 is black, 1 (128, 0, 0), 2 (0, 128, 0), 3 (128, 128, 0), 4 (0, 0, 128).

    Returns:
        (n, 3) uint8 colours.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    ids = np.arange(n, dtype=np.int64)
    cmap = np.zeros((n, 3), np.int64)
    # 8 rounds of 3 bits cover ids below 2**24; the official loop stops after 7 rounds,
    # which gives the same colours for every id below 2**21.
    for j in range(8):
        for channel in range(3):
            cmap[:, channel] |= ((ids >> (3 * j + channel)) & 1) << (7 - j)
    return cmap.astype(np.uint8)


def colorize(ids, colors):
    """Class ids -> RGB picture.

    Args:
        ids: (H, W) or (H, W, 1) integer ids.
        colors: (K, 3) uint8 colours, e.g. `palette.colors` or `default_colormap(K)`.

    Returns:
        (H, W, 3) uint8; ids outside 0..K-1 (e.g. 255, -1) are black.
    """
    ids = np.asarray(ids)
    if ids.ndim == 3 and ids.shape[-1] == 1:
        ids = ids[..., 0]
    colors = np.asarray(colors)
    if colors.ndim != 2 or colors.shape[1] != 3:
        raise ValueError(f"colors must have shape (K, 3), got {colors.shape}")
    if not np.issubdtype(ids.dtype, np.integer):
        raise ValueError(f"ids must be integers, got dtype {ids.dtype}")
    valid = (ids >= 0) & (ids < len(colors))
    out = np.zeros(ids.shape + (3,), np.uint8)
    out[valid] = colors[ids[valid]]
    return out
