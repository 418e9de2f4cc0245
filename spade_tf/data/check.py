"""Checks a whole dataset before training and reports every problem at once.

A broken file found by tf.data halfway through an epoch costs hours; an out-of-range
label id is worse, because one-hot encoding turns it into an all-zero pixel and training
carries on silently. `check_dataset` reads every label map (and the image and instance
headers) with a thread pool and returns a DatasetReport whose errors each name the file
and the fix; `require_valid` turns a failed report into an exception.

Label values are read by the rule of `spade_tf.data.labels` (the official `Pix2pixDataset`
reading, as the tf.data pipeline reads them): a grey (8 or 16 bit) or palette-indexed PNG (the
index is the id) holds class ids, RGB(A) maps need a palette (see `spade_tf.data.palette`). 255
is the don't-care value, which becomes id `num_classes`; so with `contain_dontcare_label` the
valid ids are 0..num_classes plus 255 (ADE20K uses raw values 0..150 with num_classes=150),
without it 0..num_classes-1.

Label and instance maps must be lossless: the file's signature (PNG magic), not its name, decides,
and a JPEG saved under a .png name is an error that says why (its ids are changed near every edge).
"""

import concurrent.futures
import dataclasses

import numpy as np
from PIL import Image

from spade_tf.data import labels
from spade_tf.data.labels import DONTCARE_VALUE
from spade_tf.data.layouts import LAYOUT_DESCRIPTIONS
from spade_tf.data.palette import PALETTE_FORMAT

# Items shown per list in DatasetReport.format(), so a broken 20k-image dataset stays readable.
MAX_LISTED = 20

_UNREADABLE_FIX = "re-export or re-download it, or remove the example"
JPEG_SIGNATURE = b"\xff\xd8\xff"


@dataclasses.dataclass
class DatasetReport:
    """What `check_dataset` found.

    Args:
        description: the scan's description (layout, root, split).
        num_pairs: complete examples found.
        unpaired: one message per file without its partner.
        unreadable: file + reason, for files PIL cannot open or decode.
        size_mismatches: file + both sizes, where image, label and instance sizes differ.
        label_ids: sorted ids present over all readable label files (after palette conversion).
        num_classes: the num_classes checked against.
        contain_dontcare_label: whether 255 is allowed.
        has_255: whether some label file contains 255.
        instances_available: examples whose instance map was read.
        errors: every problem that must stop training; each names the file and the fix.
        warnings: things worth a look that do not stop training.
    """

    description: str
    num_pairs: int
    unpaired: list[str]
    unreadable: list[str]
    size_mismatches: list[str]
    label_ids: list[int]
    num_classes: int
    contain_dontcare_label: bool
    has_255: bool
    instances_available: int
    errors: list[str]
    warnings: list[str]

    @property
    def ok(self):
        return not self.errors

    def format(self):
        """Human-readable report: counts, then errors and warnings (each list capped)."""
        lines = [
            f"Dataset check: {self.description}",
            f"  pairs found: {self.num_pairs}",
            f"  files without a partner: {len(self.unpaired)}",
            f"  unreadable files: {len(self.unreadable)}",
            f"  size mismatches: {len(self.size_mismatches)}",
            f"  label ids present: {_ranges(self.label_ids) or 'none'} "
            f"(num_classes={self.num_classes}, contain_dontcare_label={self.contain_dontcare_label})",
            f"  instance maps: {self.instances_available} of {self.num_pairs} examples",
        ]
        for title, items in (("Errors", self.errors), ("Warnings", self.warnings)):
            if items:
                lines.append(f"{title} ({len(items)}):")
                lines += [f"  - {item}" for item in items[:MAX_LISTED]]
                if len(items) > MAX_LISTED:
                    lines.append(f"  ... and {len(items) - MAX_LISTED} more")
        lines.append(
            "Result: OK" if self.ok else f"Result: {len(self.errors)} errors; fix them before training"
        )
        return "\n".join(lines)


class DatasetError(ValueError):
    """A dataset that fails `check_dataset`; str() is the formatted report.

    Args:
        report: the failed DatasetReport (kept as `.report`), or a plain message for
            problems found outside a check (then `.report` is None).
    """

    def __init__(self, report):
        is_report = isinstance(report, DatasetReport)
        super().__init__(report.format() if is_report else str(report))
        self.report = report if is_report else None


def _ranges(ids):
    """[0, 1, 2, 5, 255] -> "0-2, 5, 255"."""
    parts, start = [], None
    for i, v in enumerate(ids):
        if start is None:
            start = v
        if i + 1 == len(ids) or ids[i + 1] != v + 1:
            parts.append(str(start) if start == v else f"{start}-{v}")
            start = None
    return ", ".join(parts)


def _size(size):
    return f"{size[0]}x{size[1]}"


@dataclasses.dataclass
class _Result:
    """What one example's files gave (filled by a worker thread)."""

    ids: list[int] = dataclasses.field(default_factory=list)
    unreadable: list[str] = dataclasses.field(default_factory=list)
    size_mismatches: list[str] = dataclasses.field(default_factory=list)
    errors: list[str] = dataclasses.field(default_factory=list)
    warnings: list[str] = dataclasses.field(default_factory=list)
    has_instance: bool = False


def _present_ids(arr):
    arr = np.asarray(arr)
    if arr.size and 0 <= arr.min() and arr.max() < 1 << 16:
        # Counting is several times faster than sorting for 8/16-bit maps (e.g. 2048x1024 Cityscapes).
        return np.flatnonzero(np.bincount(arr.ravel())).tolist()
    return np.unique(arr).tolist()


def _unreadable(path, error, what="label map"):
    """The report line of a label or instance file that `labels.read_label` refused.

    The file's signature, not its name, says what it is: a JPEG saved under a .png name reads as an image
    to most tools, and with num_classes large enough its damaged ids would even pass the range check.
    """
    try:
        with open(path, "rb") as f:
            head = f.read(12)
    except OSError:
        head = b""
    lossy = "JPEG" if head.startswith(JPEG_SIGNATURE) else None
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        lossy = "WebP"
    if lossy is None:
        return f"{error}; {_UNREADABLE_FIX}"
    return (
        f"{path}: is a {lossy} file, not a PNG, whatever its name; a {what} must be a lossless PNG because "
        f"lossy compression changes the ids (pixels near every edge get other, often nonexistent, ids). Export "
        f"it again as PNG from its source: converting this file to PNG keeps the changed ids"
    )


def _read_label(path, palette, result):
    """Label ids of one file and its (W, H); ids are None after recording a problem."""
    try:
        label = labels.read_label(path)
    except labels.UnreadableLabelError as e:
        result.unreadable.append(_unreadable(path, e))
        return None, None
    if label.holds_colours and palette is None:
        result.errors.append(
            f"{path}: label map is {label.mode} (colours); label maps must be single-channel class ids "
            f"({labels.LABEL_PNG_KINDS}). Convert it to ids, or pass a palette file that maps each colour to "
            f"its id: {PALETTE_FORMAT}"
        )
        return None, label.size
    try:
        ids = _present_ids(labels.label_ids(label, None if palette is None else palette.colors))
    except ValueError as e:
        result.errors.append(str(e))
        return None, label.size
    if label.png_palette is not None and palette is not None:
        _check_embedded_palette(path, label.png_palette, ids, palette, result)
    return ids, label.size


def _check_embedded_palette(path, embedded, ids, palette, result):
    """Warns when a P-mode label's own colours disagree with the palette file.

    The index is the class id (as the official code reads it), but an editor that saved a
    colour-coded map as an indexed PNG gives indices in its own order, which the colours reveal.
    """
    for i in ids:
        if i < min(palette.num_classes, len(embedded)):
            own = tuple(int(c) for c in embedded[i])
            if own != tuple(int(c) for c in palette.colors[i]):
                result.warnings.append(
                    f"{path}: palette-indexed PNG whose colour for index {i} is {own} "
                    f"but the palette file says {tuple(int(c) for c in palette.colors[i])}; the index is used as "
                    "the class id. If the colours define the classes, save the label map as RGB"
                )
                return


def _read_size(path, decode, result, what):
    try:
        with Image.open(path) as img:
            if decode:
                img.load()
            return img.size, img.mode
    except Exception as e:  # any PIL failure means the file is unusable
        result.unreadable.append(
            f"{path}: {what} cannot be read ({type(e).__name__}: {e}); {_UNREADABLE_FIX}"
        )
        return None, None


def _check_example(example, palette, decode_images):
    result = _Result()
    ids, label_size = _read_label(example.label, palette, result)
    result.ids = ids or []
    image_size, _ = _read_size(example.image, decode_images, result, "image")
    if label_size and image_size and label_size != image_size:
        result.size_mismatches.append(
            f"{example.label}: label is {_size(label_size)} but image {example.image} is {_size(image_size)}; "
            "resize one to match (label and instance maps with NEAREST resampling)"
        )
    if example.instance is not None:
        # Instance maps are small PNGs like labels, so decode them fully to catch corruption; their ids are
        # read as label ids are, and colours are refused.
        try:
            instance = labels.read_label(example.instance)
        except labels.UnreadableLabelError as e:
            result.unreadable.append(_unreadable(example.instance, e, "instance map"))
            instance = None
        if instance is not None and instance.holds_colours:
            result.errors.append(
                f"{example.instance}: instance map is {instance.mode} (colours); expected single-channel ids "
                "(grey, e.g. 16-bit like Cityscapes' *_instanceIds.png); re-save it as a grayscale PNG"
            )
        elif instance is not None:
            size = instance.size
            result.has_instance = True
            if label_size and size != label_size:
                result.size_mismatches.append(
                    f"{example.instance}: instance map is {_size(size)} but label {example.label} is "
                    f"{_size(label_size)}; resize one to match with NEAREST resampling"
                )
    return result


def check_dataset(
    scan,
    num_classes,
    contain_dontcare_label,
    use_instance_map,
    palette=None,
    num_threads=4,
    decode_images=False,
):
    """Reads every example of `scan` and reports all problems.

    Args:
        scan: from `spade_tf.data.layouts.find_examples`.
        num_classes: label classes (official label_nc), not counting don't-care.
        contain_dontcare_label: whether 255 marks don't-care pixels.
        use_instance_map: whether training uses instance maps; every example then needs one.
        palette: a Palette for colour-coded (RGB) label maps, or None.
        num_threads: reader threads (PIL decoding releases the GIL).
        decode_images: also decode every photo fully, which finds truncated JPEGs at the
            cost of a full decode; by default only headers are read.

    Returns:
        A DatasetReport; `report.ok` says whether training may start.
    """
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    if num_threads < 1:
        raise ValueError(f"num_threads must be >= 1, got {num_threads}")
    examples = scan.examples
    with concurrent.futures.ThreadPoolExecutor(max_workers=num_threads) as pool:
        results = list(pool.map(lambda e: _check_example(e, palette, decode_images), examples))

    errors = list(scan.unpaired)
    warnings, unreadable, size_mismatches = [], [], []
    for r in results:
        unreadable += r.unreadable
        size_mismatches += r.size_mismatches
        errors += r.errors
        warnings += r.warnings
    errors += unreadable + size_mismatches

    if not examples:
        errors.append(
            f"no complete examples found in {', '.join(scan.searched)}; expected layout ({scan.layout}): "
            f"{LAYOUT_DESCRIPTIONS[scan.layout]}"
        )
    if use_instance_map and examples and all(e.instance is None for e in examples):
        errors.append(
            f"use_instance_map=True but the scan of {scan.description} has no instance maps; call find_examples "
            "with use_instance_map=True, or set use_instance_map=False"
        )

    def outside(ids):
        """Ids outside the valid range, but for 255, which gets its own message below."""
        ids = np.asarray(ids, np.int64)
        return ids[
            ~labels.valid_ids(ids, num_classes, contain_dontcare_label) & (ids != DONTCARE_VALUE)
        ].tolist()

    all_ids = sorted(set().union(*(r.ids for r in results)))
    has_255 = DONTCARE_VALUE in all_ids
    stray_255 = not labels.valid_ids(DONTCARE_VALUE, num_classes, contain_dontcare_label)
    out_of_range = outside(all_ids)
    if out_of_range and out_of_range[-1] >= 0:
        fix = (
            f"set num_classes (label_nc) to at least {out_of_range[-1] + 1} (the largest id in the dataset + 1), "
            "or relabel those pixels"
        )
    else:
        fix = "relabel those pixels: class ids cannot be negative"
    for example, r in zip(examples, results):
        bad = outside(r.ids)
        if bad:
            errors.append(
                f"{example.label}: label ids {', '.join(map(str, bad))} are outside "
                f"{labels.allowed_ids(num_classes, contain_dontcare_label)} (num_classes={num_classes}); {fix}"
            )
        if DONTCARE_VALUE in r.ids and stray_255:
            errors.append(
                f"{example.label}: contains {DONTCARE_VALUE}, the don't-care value, but contain_dontcare_label "
                f"is False; set contain_dontcare_label=True (255 then becomes id {num_classes}), or relabel "
                "those pixels to a class id"
            )
    class_ids = [i for i in all_ids if i != DONTCARE_VALUE]
    if class_ids and not out_of_range and class_ids[-1] < num_classes - 1:
        warnings.append(
            f"num_classes={num_classes} but the largest class id present is {class_ids[-1]}; if the dataset has "
            f"only {class_ids[-1] + 1} classes, set num_classes={class_ids[-1] + 1} (unused classes cost "
            "generator and discriminator channels)"
        )

    return DatasetReport(
        description=scan.description,
        num_pairs=len(examples),
        unpaired=list(scan.unpaired),
        unreadable=unreadable,
        size_mismatches=size_mismatches,
        label_ids=all_ids,
        num_classes=num_classes,
        contain_dontcare_label=bool(contain_dontcare_label),
        has_255=has_255,
        instances_available=sum(r.has_instance for r in results),
        errors=errors,
        warnings=warnings,
    )


def require_valid(report):
    """Raises DatasetError (its message is the formatted report) unless `report.ok`."""
    if not report.ok:
        raise DatasetError(report)
