"""Labels a folder of photos with a segmentation network and writes a SPADE training dataset.

The paper's Flickr recipe: photos without label maps get them from an existing segmentation
network, and SPADE trains on the pairs. `label_photos` runs a `spade_tf.evaluation.segmenter.Segmenter`
over every photo, drops the photos the network is unsure about, and writes the custom layout
that `train.py --config=configs/custom.py --config.data.root=OUT` reads:

    OUT/
      palette.json          class names and display colours ({"classes": [{"id", "name", "color"}]})
      label_report.json     what was written and skipped, and why; pixel counts per class
      train/images/<name>.jpg|png   the photo as segmented (copied when not resized or rotated)
      train/labels/<name>.png       class ids, 8-bit grayscale (16-bit when an id exceeds 255);
                                    255 = don't-care (pixels a class map sends to ignore)
      val/...                       the same, for the `val_fraction` of the photos

Filters: `min_confidence` drops a photo whose mean per-pixel confidence (the probability of the
predicted class) is lower; `min_coverage` drops a photo in which too small a fraction of pixels
is usable, a usable pixel being one that is not don't-care and whose confidence is at least
`pixel_threshold`. Unreadable photos are reported and skipped, not fatal.

Example:

    seg = Segmenter("oracle_savedmodel", input_range="0_1")
    report = label_photos(seg, "photos/", "labelled/", val_fraction=0.1, min_coverage=0.5)
    print(report.format())
"""

import dataclasses
import json
import os
import shutil

import numpy as np
from PIL import Image, ImageOps

from spade_tf.data.labels import DONTCARE_VALUE
from spade_tf.data.palette import Palette, default_colormap, load_palette, save_palette

PHOTO_EXTENSIONS = (".jpg", ".jpeg", ".png")
REPORT_FILE = "label_report.json"
PALETTE_FILE = "palette.json"
SPLITS = ("train", "val")
# What a previous run leaves in the output folder; any of these means "a dataset is already here".
_DATASET_ENTRIES = (*SPLITS, PALETTE_FILE, REPORT_FILE)
# Entries in the report's "skipped" list carry one of these reasons.
SKIP_REASONS = ("unreadable", "duplicate_name", "low_confidence", "low_coverage")
_EXIF_ORIENTATION = 0x0112


@dataclasses.dataclass
class LabelReport:
    """What `label_photos` did.

    Args:
        photos_dir: the folder read.
        output_dir: the dataset folder written.
        photos_found: photo files found.
        written: one dict per written example: photo, name, split, mean_confidence, coverage.
        skipped: one dict per skipped photo: photo, reason (one of SKIP_REASONS), detail.
        class_names: name of every class id.
        class_pixels: pixels per class id over the written label maps.
        class_images: written label maps in which each class id appears.
        ignore_pixels: don't-care (255) pixels over the written label maps.
        settings: the arguments of the run.
    """

    photos_dir: str
    output_dir: str
    photos_found: int
    written: list
    skipped: list
    class_names: list
    class_pixels: list
    class_images: list
    ignore_pixels: int
    settings: dict

    @property
    def num_classes(self):
        return len(self.class_names)

    @property
    def contain_dontcare_label(self):
        return self.ignore_pixels > 0

    def count(self, split):
        return sum(w["split"] == split for w in self.written)

    def train_command(self):
        """The train.py command line for the written dataset."""
        cmd = (
            f"python train.py --config=configs/custom.py --config.data.root={self.output_dir} "
            f"--config.data.num_classes={self.num_classes} "
            f"--config.data.palette={os.path.join(self.output_dir, PALETTE_FILE)}"
        )
        if self.contain_dontcare_label:
            cmd += " --config.data.contain_dontcare_label=True"
        return cmd

    def to_json(self):
        total = max(sum(self.class_pixels) + self.ignore_pixels, 1)
        return {
            "photos_dir": self.photos_dir,
            "output_dir": self.output_dir,
            "photos_found": self.photos_found,
            "num_written": {s: self.count(s) for s in SPLITS},
            "num_skipped": {r: sum(s["reason"] == r for s in self.skipped) for r in SKIP_REASONS},
            "num_classes": self.num_classes,
            "contain_dontcare_label": self.contain_dontcare_label,
            "classes": [
                {"id": i, "name": n, "pixels": int(p), "pixel_fraction": p / total, "images": int(c)}
                for i, (n, p, c) in enumerate(zip(self.class_names, self.class_pixels, self.class_images))
            ],
            "ignore_pixels": int(self.ignore_pixels),
            "train_command": self.train_command(),
            "settings": self.settings,
            "skipped": self.skipped,
            "written": self.written,
        }

    def format(self, max_listed=20):
        """Human-readable summary: counts, skipped photos (capped), classes, the train command."""
        lines = [
            f"Labelled {self.photos_dir} -> {self.output_dir}",
            f"  photos found: {self.photos_found}",
            f"  written: {self.count('train')} train, {self.count('val')} val",
            f"  skipped: {len(self.skipped)}",
        ]
        for s in self.skipped[:max_listed]:
            lines.append(f"    - {s['photo']}: {s['reason']} ({s['detail']})")
        if len(self.skipped) > max_listed:
            lines.append(f"    ... and {len(self.skipped) - max_listed} more (see {REPORT_FILE})")
        total = max(sum(self.class_pixels) + self.ignore_pixels, 1)
        lines.append(f"  classes ({self.num_classes}): pixels % / images")
        for i, (n, p, c) in enumerate(zip(self.class_names, self.class_pixels, self.class_images)):
            lines.append(f"    {i:3d} {n}: {100 * p / total:.1f}% / {c}")
        if self.ignore_pixels:
            lines.append(f"    don't-care (255): {100 * self.ignore_pixels / total:.1f}%")
        lines.append(f"Train with: {self.train_command()}")
        return "\n".join(lines)


def read_class_names(path):
    """Class names from a file: one per line, a JSON list of names, or a palette JSON file.

    Returns:
        (names, colors): a tuple of names, and (K, 3) uint8 colours when the file is a palette
        file, else None.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"class names file {path} does not exist; write one name per line, a JSON list of names, or "
            "a palette JSON file"
        )
    with open(path, encoding="utf-8") as f:
        text = f.read()
    if path.lower().endswith(".json"):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise ValueError(
                f"class names file {path} is not valid JSON ({e.msg} at line {e.lineno}); write a JSON list "
                'of names (["sky", "tree"]) or a palette file, or use a .txt file with one name per line'
            ) from None
        if isinstance(data, dict):
            palette = load_palette(path)
            return palette.names, np.array(palette.colors)
        if not isinstance(data, list) or not data or not all(isinstance(n, str) for n in data):
            raise ValueError(
                f"class names file {path} must hold a non-empty JSON list of strings "
                '(["sky", "tree"]) or a palette object ({"classes": [...]})'
            )
        return tuple(data), None
    names = tuple(line.strip() for line in text.splitlines() if line.strip())
    if not names:
        raise ValueError(f"class names file {path} holds no names; write one class name per line")
    return names, None


def find_photos(folder, recursive=False, exclude=()):
    """Sorted photo paths (PHOTO_EXTENSIONS, any case) in `folder`; hidden files and `exclude` folders skipped."""
    exclude = {os.path.abspath(e) for e in exclude}
    found = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(
            d
            for d in dirnames
            if not d.startswith(".") and os.path.abspath(os.path.join(dirpath, d)) not in exclude
        )
        found += [
            os.path.join(dirpath, f)
            for f in filenames
            if not f.startswith(".") and f.lower().endswith(PHOTO_EXTENSIONS)
        ]
        if not recursive:
            break
    return sorted(found)


def _is_inside(path, folder):
    path, folder = os.path.abspath(path), os.path.abspath(folder)
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def _prepare_output(output_dir, photos_dir, overwrite):
    """Creates `output_dir`, or empties a previous dataset in it when `overwrite`."""
    present = [e for e in _DATASET_ENTRIES if os.path.exists(os.path.join(output_dir, e))]
    if present and not overwrite:
        raise FileExistsError(
            f"{output_dir} already holds a dataset ({', '.join(present)}); pass overwrite=True (--overwrite) "
            "to replace it, or choose another output folder"
        )
    for entry in present:
        target = os.path.join(output_dir, entry)
        if _is_inside(photos_dir, target):
            raise ValueError(
                f"the photos folder {photos_dir} is inside {target}, which overwriting would delete; copy the "
                "photos elsewhere or choose another output folder"
            )
    for entry in present:
        target = os.path.join(output_dir, entry)
        if os.path.isdir(target):
            shutil.rmtree(target)
        else:
            os.remove(target)
    os.makedirs(output_dir, exist_ok=True)


def _output_names(photos, photos_dir):
    """Output file stem of each photo: its path under photos_dir without extension, "/" -> "__"."""
    names = []
    for p in photos:
        rel = os.path.splitext(os.path.relpath(p, photos_dir))[0]
        names.append(rel.replace(os.sep, "__"))
    return names


def _split_of(count, val_fraction, seed):
    """Which photos go to val: a seeded random subset of round(fraction * count), at least one each way."""
    num_val = 0
    if val_fraction > 0 and count >= 2:
        num_val = min(max(int(round(val_fraction * count)), 1), count - 1)
    order = np.random.default_rng(seed).permutation(count)
    val = np.zeros(count, bool)
    val[order[:num_val]] = True
    return ["val" if v else "train" for v in val]


def _read_photo(path, resize_shorter):
    """(RGB uint8 array, unchanged) where unchanged means the file's pixels were used as stored."""
    with Image.open(path) as img:
        img.load()
        rotated = img.getexif().get(_EXIF_ORIENTATION, 1) not in (0, 1)
        # Photos are stored as the camera saw them; the EXIF orientation says how to show them.
        image = ImageOps.exif_transpose(img) if rotated else img
        unchanged = img.mode == "RGB" and not rotated
        image = image.convert("RGB")
    if resize_shorter:
        w, h = image.size
        scale = resize_shorter / min(w, h)
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        if size != image.size:
            image = image.resize(size, Image.Resampling.LANCZOS)
            unchanged = False
    return np.asarray(image), unchanged


def _atomic(path, write):
    """Calls write(tmp) then renames tmp to path, so a file is either complete or absent."""
    folder, name = os.path.split(path)
    # Hidden and without the image extension: a dataset scan never picks up a half-written file.
    tmp = os.path.join(folder, f".{name}.tmp-{os.getpid()}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _write_example(output_dir, split, name, photo_path, pixels, unchanged, ids):
    images_dir = os.path.join(output_dir, split, "images")
    labels_dir = os.path.join(output_dir, split, "labels")
    os.makedirs(images_dir, exist_ok=True)
    os.makedirs(labels_dir, exist_ok=True)
    ext = os.path.splitext(photo_path)[1].lower()
    if unchanged:
        # The original bytes: no second JPEG compression.
        _atomic(os.path.join(images_dir, name + ext), lambda tmp: shutil.copyfile(photo_path, tmp))
    elif ext in (".jpg", ".jpeg"):
        _atomic(
            os.path.join(images_dir, name + ".jpg"),
            lambda tmp: Image.fromarray(pixels).save(tmp, format="JPEG", quality=95),
        )
    else:
        _atomic(
            os.path.join(images_dir, name + ".png"),
            lambda tmp: Image.fromarray(pixels).save(tmp, format="PNG"),
        )
    # 8-bit when every id fits (what most tools expect), else 16-bit grayscale.
    label = Image.fromarray(ids.astype(np.uint8 if ids.max(initial=0) <= 255 else np.uint16))
    _atomic(os.path.join(labels_dir, name + ".png"), lambda tmp: label.save(tmp, format="PNG"))


def _check_fraction(name, value, upper_inclusive=True):
    ok = 0.0 <= value <= 1.0 if upper_inclusive else 0.0 <= value < 1.0
    if not ok:
        bound = "[0, 1]" if upper_inclusive else "[0, 1)"
        raise ValueError(f"{name}={value!r} must be in {bound}")


def _check_settings(segmenter, val_fraction, min_confidence, min_coverage, pixel_threshold, resize_shorter):
    """Refuses settings out of range, and confidence filters for a segmenter that gives no confidences."""
    _check_fraction("val_fraction", val_fraction, upper_inclusive=False)
    _check_fraction("min_confidence", min_confidence)
    _check_fraction("min_coverage", min_coverage)
    _check_fraction("pixel_threshold", pixel_threshold)
    if isinstance(resize_shorter, bool) or not isinstance(resize_shorter, int) or resize_shorter < 0:
        raise ValueError(f"resize_shorter={resize_shorter!r} must be a non-negative integer (0 = no resize)")
    confident = getattr(segmenter, "output", None) != "ids"
    if not confident and (min_confidence > 0 or (min_coverage > 0 and pixel_threshold > 0)):
        raise ValueError(
            "the segmenter outputs ids without confidences, so min_confidence and the pixel_threshold of "
            "min_coverage cannot apply; set min_confidence=0 and pixel_threshold=0, or use its logits or "
            "probabilities"
        )


def _classes(segmenter, class_names, colors):
    """(class names or None, number of classes or None): the names checked against the segmenter's classes.

    Args:
        segmenter: its `num_classes` (None when it does not know) must match the names.
        class_names: a name per class id, or None.
        colors: display colours, one per name, or None.
    """
    num_classes = segmenter.num_classes
    if class_names is not None:
        class_names = tuple(str(n) for n in class_names)
        if num_classes is not None and len(class_names) != num_classes:
            raise ValueError(
                f"{len(class_names)} class names given but the segmenter gives {num_classes} classes"
                f"{' after its class map' if getattr(segmenter, 'class_map', None) is not None else ''}; "
                "give one name per class id"
            )
        num_classes = len(class_names)
    if colors is not None and class_names is not None and len(colors) != len(class_names):
        raise ValueError(
            f"{len(colors)} colours for {len(class_names)} class names; give one colour per class"
        )
    return class_names, num_classes


def _input_photos(photos_dir, output_dir, recursive):
    """The photos to label; the output's own splits are never input, even inside the photos folder."""
    photos = find_photos(
        photos_dir, recursive, exclude=[output_dir, *(os.path.join(output_dir, s) for s in SPLITS)]
    )
    if not photos:
        raise FileNotFoundError(
            f"no photos ({', '.join(PHOTO_EXTENSIONS)}) in {photos_dir}"
            + ("" if recursive else "; pass recursive=True (--recursive) to search sub-folders")
        )
    return photos


@dataclasses.dataclass
class _Photo:
    """A photo read for segmentation: its file, output name and split, and the pixels segmented."""

    path: str
    name: str
    split: str
    pixels: np.ndarray  # RGB uint8, as segmented and written
    unchanged: bool  # the file's pixels as stored: the file is copied, not re-encoded


def _segmented_photos(segmenter, photos, names, splits, resize_shorter, skip):
    """Reads the photos and segments them in batches: yields (photo, ids, confidence or None) per photo.

    Photos of one size share a forward pass of up to the segmenter's `batch_size`; a size change starts a
    new batch. A photo whose output name is taken, or that cannot be read, goes to `skip` instead.

    Args:
        segmenter: what predicts (see `label_photos`).
        photos, names, splits: each photo's path, output name and split.
        resize_shorter: see `label_photos`.
        skip: called as skip(photo path, reason, detail) for a photo left out here.
    """
    batch_size = int(getattr(segmenter, "batch_size", 8))
    seen_names = set()  # lower-cased: two names differing only in case collide on some file systems
    batch = []
    for path, name, split in zip(photos, names, splits):
        if name.lower() in seen_names:
            skip(path, "duplicate_name", f"another photo already gives the output name {name!r}; rename one")
            continue
        seen_names.add(name.lower())
        try:
            pixels, unchanged = _read_photo(path, resize_shorter)
        except Exception as e:  # any PIL failure: report the photo and go on with the rest
            skip(path, "unreadable", f"{type(e).__name__}: {e}")
            continue
        if batch and (batch[0].pixels.shape != pixels.shape or len(batch) >= batch_size):
            yield from _segment_batch(segmenter, batch)
            batch = []
        batch.append(_Photo(path, name, split, pixels, unchanged))
    if batch:
        yield from _segment_batch(segmenter, batch)


def _segment_batch(segmenter, batch):
    """One forward pass over photos of one size: (photo, ids, confidence or None) per photo."""
    ids, conf = segmenter.predict(np.stack([photo.pixels for photo in batch]))
    for i, photo in enumerate(batch):
        yield photo, ids[i], None if conf is None else conf[i]


def _check_ids(photo, ids, valid, num_classes):
    """Refuses a prediction with an id below 0, or past the named classes (don't-care pixels aside)."""
    if ids.size and (ids.min() < 0 or (num_classes is not None and ids[valid].max(initial=0) >= num_classes)):
        bad = int(ids.min()) if ids.min() < 0 else int(ids[valid].max())
        raise ValueError(
            f"{photo}: the segmenter predicted class id {bad}, outside 0..{num_classes - 1} "
            f"(the {num_classes} class names); give a name per id the network predicts, or a class map"
        )


def _judge(valid, conf, min_confidence, min_coverage, pixel_threshold):
    """Whether to keep a segmented photo: (mean confidence or None, coverage, skip reason or None, detail).

    Args:
        valid: (H, W) bool, the pixels that are not don't-care.
        conf: (H, W) per-pixel confidence, or None for a segmenter that outputs ids.
        min_confidence, min_coverage, pixel_threshold: see `label_photos`.
    """
    usable = valid if conf is None else valid & (conf >= pixel_threshold)
    coverage = float(usable.mean())
    mean_conf = None if conf is None else float(conf.mean())
    if mean_conf is not None and mean_conf < min_confidence:
        detail = f"mean confidence {mean_conf:.3f} < min_confidence {min_confidence}"
        return mean_conf, coverage, "low_confidence", detail
    if coverage < min_coverage:
        detail = (
            f"{100 * coverage:.1f}% usable pixels (not don't-care, confidence >= {pixel_threshold}) "
            f"< min_coverage {100 * min_coverage:.1f}%"
        )
        return mean_conf, coverage, "low_coverage", detail
    return mean_conf, coverage, None, ""


class _ClassCounts:
    """Pixels per class id, label maps per class id, and don't-care pixels over the written label maps."""

    def __init__(self, num_classes):
        self.pixels = np.zeros(max(num_classes or 0, 1), np.int64)
        self.images = np.zeros_like(self.pixels)
        self.ignore_pixels = 0

    def add(self, ids, valid):
        counts = np.bincount(ids[valid].ravel(), minlength=len(self.pixels))
        if len(counts) > len(self.pixels):  # ids past the known classes (the segmenter did not say how many)
            self.pixels = np.pad(self.pixels, (0, len(counts) - len(self.pixels)))
            self.images = np.pad(self.images, (0, len(counts) - len(self.images)))
        self.pixels[: len(counts)] += counts
        self.images[: len(counts)] += counts > 0
        self.ignore_pixels += int((~valid).sum())

    def num_classes(self):
        """The classes seen: up to the highest id with a pixel."""
        return max(int(np.flatnonzero(self.pixels).max(initial=0)) + 1, 1)


def _write_palette(output_dir, class_names, colors, num_classes):
    """Writes palette.json: the class names (default class_<i>) and colours (default `default_colormap`).

    Returns:
        The names written.
    """
    names = class_names or tuple(f"class_{i}" for i in range(num_classes))
    colors = default_colormap(num_classes) if colors is None else np.asarray(colors)
    _atomic(
        os.path.join(output_dir, PALETTE_FILE),
        lambda tmp: save_palette(Palette(names=names, colors=colors), tmp),
    )
    return names


def _write_json(path, data):
    def dump(tmp):
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=1)

    _atomic(path, dump)


def label_photos(
    segmenter,
    photos_dir,
    output_dir,
    recursive=False,
    val_fraction=0.0,
    class_names=None,
    colors=None,
    resize_shorter=0,
    min_confidence=0.0,
    min_coverage=0.0,
    pixel_threshold=0.5,
    overwrite=False,
    seed=0,
    out=print,
):
    """Segments every photo in `photos_dir` and writes a custom-layout dataset to `output_dir`.

    Args:
        segmenter: a `spade_tf.evaluation.segmenter.Segmenter` (anything with `.predict(uint8 NHWC) ->
            (ids, confidence or None)`, `.num_classes` and `.ignore_id`).
        photos_dir: folder of .jpg/.jpeg/.png photos.
        output_dir: the dataset folder to write (created if needed); it must not hold a
            dataset already unless `overwrite`.
        recursive: also read photos in sub-folders; the output name joins the folders with "__".
        val_fraction: fraction of the photos (a seeded random subset) written to `val/`.
        class_names: a name per class id; default `class_<i>`, or read with `read_class_names`.
        colors: (K, 3) display colours for palette.json; default `default_colormap(K)`.
        resize_shorter: > 0: resize each photo so its shorter side has this many pixels (both
            ways) before segmentation; the resized photo is what gets written.
        min_confidence: skip photos whose mean per-pixel confidence is lower (needs an output
            with confidences, not "ids").
        min_coverage: skip photos whose fraction of usable pixels (not don't-care, confidence >=
            pixel_threshold) is lower.
        pixel_threshold: the per-pixel confidence a pixel needs to count as usable.
        overwrite: replace a dataset already in `output_dir`.
        seed: seed of the train/val split.
        out: where progress and the report go (print; `lambda *_: None` to silence).

    Returns:
        A LabelReport, also written as `output_dir/label_report.json`.

    Raises:
        ValueError: bad arguments, class names that do not match the network's classes, a
            predicted id without a name, or no photo written to train/.
        FileNotFoundError: `photos_dir` does not exist or holds no photos.
        FileExistsError: `output_dir` already holds a dataset and `overwrite` is False.
    """
    photos_dir = os.path.abspath(os.fspath(photos_dir))
    output_dir = os.path.abspath(os.fspath(output_dir))
    _check_settings(segmenter, val_fraction, min_confidence, min_coverage, pixel_threshold, resize_shorter)
    if not os.path.isdir(photos_dir):
        raise FileNotFoundError(f"photos folder {photos_dir} does not exist")
    class_names, num_classes = _classes(segmenter, class_names, colors)
    ignore_id = int(getattr(segmenter, "ignore_id", DONTCARE_VALUE))
    photos = _input_photos(photos_dir, output_dir, recursive)
    _prepare_output(output_dir, photos_dir, overwrite)
    names = _output_names(photos, photos_dir)
    splits = _split_of(len(photos), val_fraction, seed)
    described = getattr(segmenter, "describe", lambda: str(segmenter))()
    out(f"Labelling {len(photos)} photos from {photos_dir} with {described}")

    written, skipped = [], []
    counts = _ClassCounts(num_classes)

    def skip(photo, reason, detail):
        skipped.append({"photo": photo, "reason": reason, "detail": detail})

    for photo, ids, conf in _segmented_photos(segmenter, photos, names, splits, resize_shorter, skip):
        valid = ids != ignore_id
        _check_ids(photo.path, ids, valid, num_classes)
        mean_conf, coverage, reason, detail = _judge(
            valid, conf, min_confidence, min_coverage, pixel_threshold
        )
        if reason:
            skip(photo.path, reason, detail)
            continue
        _write_example(output_dir, photo.split, photo.name, photo.path, photo.pixels, photo.unchanged, ids)
        counts.add(ids, valid)
        written.append(
            {
                "photo": photo.path,
                "name": photo.name,
                "split": photo.split,
                "mean_confidence": mean_conf,
                "coverage": coverage,
            }
        )

    if num_classes is None:
        num_classes = counts.num_classes()
    names_out = _write_palette(output_dir, class_names, colors, num_classes)
    report = LabelReport(
        photos_dir=photos_dir,
        output_dir=output_dir,
        photos_found=len(photos),
        written=written,
        skipped=skipped,
        class_names=list(names_out),
        class_pixels=[int(p) for p in counts.pixels[:num_classes]],
        class_images=[int(c) for c in counts.images[:num_classes]],
        ignore_pixels=counts.ignore_pixels,
        settings={
            "recursive": recursive,
            "val_fraction": val_fraction,
            "resize_shorter": resize_shorter,
            "min_confidence": min_confidence,
            "min_coverage": min_coverage,
            "pixel_threshold": pixel_threshold,
            "seed": seed,
            "segmenter": described,
        },
    )
    _write_json(os.path.join(output_dir, REPORT_FILE), report.to_json())
    out(report.format())
    if not report.count("train"):
        raise ValueError(
            f"no photo was written to {output_dir}/train ({len(skipped)} of {len(photos)} skipped; see "
            f"{os.path.join(output_dir, REPORT_FILE)}); lower min_confidence / min_coverage or check the "
            "segmenter's input_range"
        )
    return report
