"""Batch synthesis: label maps -> images and an HTML gallery, as the official `test.py` does.

The library behind `synthesize.py`. Label maps come from a folder of PNGs (`load_label_folder`) or from a
split of the dataset the model was trained on (`load_split`); `attach_styles` gives them style exemplars
(VAE models); `synthesize` runs the model in batches; `write_results` writes the gallery
(`index.html` with input_label | synthesized_image | real_image columns, as `results/<name>/` of the official
test script) and one PNG per label map and sample, named after the label file. `run` does all of it.

Example:

    model = load_synthesizer("workdirs/demo")
    items = load_label_folder(model, "my_labels", images_dir="my_photos")
    images = synthesize(model, items, num_samples=3, seed=0)       # VAE: seeds 0, 1, 2
    write_results(model, items, images, "results/demo", seeds=[0, 1, 2])

Every input file is read and checked before the first synthesis, and all problems are reported together,
each naming its file and the fix.
"""

import dataclasses
import os

import numpy as np
import tensorflow as tf
from PIL import Image

from spade_tf.config import base_config, upgrade_config, validate
from spade_tf.data import check, layouts
from spade_tf.data import labels as label_maps
from spade_tf.data import setup as data_setup
from spade_tf.data.layouts import IMAGE_EXTENSIONS, LABEL_EXTENSIONS
from spade_tf.data.palette import colorize
from spade_tf.data.transforms import resize_bicubic, resize_nearest
from spade_tf.serving import gallery
from spade_tf.serving.inference import Synthesizer, load_synthesizer

# The datasets of the official checkpoints (as convert.py --dataset; "coco" is taken for coco_stuff) -> (our
# layout, the official test preprocessing).
OFFICIAL_DATASETS = {
    "ade20k": ("ade20k", "resize_and_crop"),
    "cityscapes": ("cityscapes", "fixed"),
    "coco_stuff": ("coco_stuff", "resize_and_crop"),
}
SPLITS = ("train", "val")
# Problems listed in one error; the rest are counted, so a folder of broken files stays readable.
MAX_LISTED = 20


class InputError(ValueError):
    """Input files that cannot be synthesized; str() lists every problem (file and fix)."""

    def __init__(self, problems):
        self.problems = list(problems)
        shown = [f"  - {p}" for p in self.problems[:MAX_LISTED]]
        if len(self.problems) > MAX_LISTED:
            shown.append(f"  ... and {len(self.problems) - MAX_LISTED} more")
        count = len(self.problems)
        super().__init__(
            f"{count} problem{'s' if count > 1 else ''} with the input; nothing was synthesized:\n"
            + "\n".join(shown)
        )


@dataclasses.dataclass
class LabelMap:
    """One label map to synthesize, with what goes along with it.

    Args:
        name: output name (the label file's stem, or the dataset example's name).
        label: (H, W) int32 model ids (raw 255 already turned into the don't-care id).
        instance: (H, W) int instance ids, or None (the label map then serves as its own instance map).
        real: (H, W, 3) uint8 photo shown as "real_image", or None.
        style: (h, w, 3) uint8 style exemplar (VAE models), or None.
        source: the label file (for messages).
        resized: whether the label map was resized to the model's size.
    """

    name: str
    label: np.ndarray
    instance: np.ndarray | None = None
    real: np.ndarray | None = None
    style: np.ndarray | None = None
    source: str = ""
    resized: bool = False


# ---------------------------------------------------------------------------------------------------------
# Reading files
# ---------------------------------------------------------------------------------------------------------


def _list_files(folder, extensions):
    """Sorted non-hidden files of `folder` whose names end in `extensions` (any case)."""
    return sorted(
        e.path
        for e in os.scandir(folder)
        if e.is_file() and not e.name.startswith(".") and e.name.lower().endswith(extensions)
    )


def _require_folder(path, what):
    if not os.path.isdir(path):
        raise FileNotFoundError(f"the {what} folder {path} does not exist.")


def _stem(path):
    return os.path.splitext(os.path.basename(path))[0]


def _by_stem(folder, extensions):
    """stem -> path; the first extension of `extensions` wins when a stem has several files."""
    found = {}
    for path in _list_files(folder, extensions):
        stem, ext = os.path.splitext(os.path.basename(path))
        if stem not in found or extensions.index(ext.lower()) < extensions.index(
            os.path.splitext(found[stem])[1].lower()
        ):
            found[stem] = path
    return found


def read_rgb(path):
    """Any image file -> (H, W, 3) uint8 RGB; ValueError naming the file when it cannot be read."""
    try:
        with Image.open(path) as img:
            return np.asarray(img.convert("RGB"))
    except Exception as e:  # any PIL failure means the file is unusable
        raise ValueError(
            f"{path}: cannot be read as an image ({type(e).__name__}: {e}); re-export it or remove it."
        ) from None


def read_label_ids(path, model):
    """One label PNG -> (H, W) int64 model ids, not yet checked against the model's range.

    Read by the rule of `spade_tf.data.labels`, as training and the exported signatures read it: grey and
    palette-indexed PNGs (the index is the id) hold ids, RGB(A) PNGs colours of the model's palette (where
    two ids share a colour, the lower wins). Raw 255 becomes the don't-care id when the model has one.
    """
    info = model.info
    try:
        label = label_maps.read_label(path)
    except label_maps.UnreadableLabelError as e:
        raise ValueError(f"{e}; re-export it or remove it.") from None
    try:
        ids = label_maps.label_ids(label, info.palette)
    except ValueError as e:
        hint = ""
        rgb = label.values
        if np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 1], rgb[..., 2]):
            hint = " If the file holds class ids as grey RGB, save it as a one-channel (mode L) PNG."
        raise ValueError(
            f"{e}. Colour label maps must use this model's display colours (the input_label column of "
            f"its gallery).{hint}"
        ) from None
    # int64 until checked: 16-bit maps may hold values that a narrower type would wrap into the valid range.
    return label_maps.dontcare_to_id(ids, info.num_classes, info.contain_dontcare_label)


def _read_instance(path):
    try:
        instance = label_maps.read_label(path)
    except label_maps.UnreadableLabelError as e:
        raise ValueError(f"{e}; re-export it or remove it.") from None
    if instance.holds_colours:
        raise ValueError(
            f"{path}: instance map is {instance.mode} (colours); expected one channel of instance ids (8- or "
            "16-bit grey). Re-save it as a grayscale PNG."
        )
    return instance.values.astype(np.int32)


def target_size(model, height, width):
    """The (height, width) a label map of this size is synthesized at: its own if the model takes it, else
    the model's training size."""
    info = model.info
    if info.use_vae:
        return info.height, info.width
    if height % info.size_multiple == 0 and width % info.size_multiple == 0:
        return height, width
    return info.height, info.width


def _resize_nearest(x, size):
    return resize_nearest(tf.convert_to_tensor(x), size).numpy()


def _resize_bicubic(image, size):
    return resize_bicubic(tf.convert_to_tensor(image), size).numpy()


def _read_example(model, path, instances_dir, instances, images, resize):
    """One label file with its partners -> `LabelMap`; ValueError naming the file on the first problem."""
    name = _stem(path)
    label = read_label_ids(path, model)
    original = label.shape
    size = target_size(model, *original)
    if size != original:
        if not resize:
            model.check_size(*original, what=path)
        label = _resize_nearest(label, size)
    label = model.check_labels(label[None], what=path)[0].astype(np.int32)
    instance = None
    if instances_dir:
        if name not in instances:
            raise ValueError(
                f"{path}: no instance map {name}.png in {instances_dir}; give every label map one, or "
                "leave out the instances folder (each label map is then its own instance map)."
            )
        instance = _read_instance(instances[name])
        if instance.shape != original:
            raise ValueError(
                f"{instances[name]}: instance map is {instance.shape[0]}x{instance.shape[1]} but its label "
                f"map {path} is {original[0]}x{original[1]}; they must have the same size."
            )
        if size != original:
            instance = _resize_nearest(instance, size)
    real = read_rgb(images[name]) if name in images else None
    if real is not None and real.shape[:2] != size:
        real = _resize_bicubic(real, size)
    return LabelMap(name, label, instance, real, source=path, resized=size != original)


def load_label_folder(
    model, labels_dir, instances_dir=None, images_dir=None, limit=0, resize=True, out=print
):
    """Reads and checks a folder of label PNGs.

    Args:
        model: a `Synthesizer`.
        labels_dir: folder of label PNGs: one-channel ids or colours in the model's palette.
        instances_dir: folder of instance PNGs matched by file stem (models with instance maps); a label map
            without one uses itself as its instance map.
        images_dir: folder of real photos matched by stem, shown as "real_image"; label maps without one
            get an empty cell.
        limit: read only the first `limit` label files (by name); 0 reads all.
        resize: label maps the model cannot take (VAE models: any other size than the training size;
            others: sides that are not multiples of `info.size_multiple`) are resized with PIL-exact nearest
            neighbour to the training size (instance maps too, photos bicubic). False makes them errors.
        out: where the one resize notice goes.

    Returns:
        A list of `LabelMap`, sorted by file name.

    Raises:
        FileNotFoundError: a folder does not exist.
        InputError: unreadable files, ids out of range, colours outside the palette, size mismatches,
            instance maps the model does not take or that are missing; every problem at once.
    """
    _require_folder(labels_dir, "labels")
    paths = _list_files(labels_dir, LABEL_EXTENSIONS)
    if not paths:
        others = _list_files(labels_dir, IMAGE_EXTENSIONS)
        raise FileNotFoundError(
            f"no label PNGs in {labels_dir}"
            + (f" but {len(others)} other image files: label maps must be lossless PNG" if others else "")
            + "."
        )
    if limit:
        paths = paths[:limit]
    info = model.info
    instances, images = {}, {}
    if instances_dir:
        _require_folder(instances_dir, "instances")
        if not info.use_instance_map:
            raise ValueError(
                f"instance maps were given ({instances_dir}) but this model takes none (use_instance_map off); "
                "leave them out."
            )
        instances = _by_stem(instances_dir, LABEL_EXTENSIONS)
    if images_dir:
        _require_folder(images_dir, "images")
        images = _by_stem(images_dir, IMAGE_EXTENSIONS)
        if not any(_stem(p) in images for p in paths):
            raise FileNotFoundError(
                f"none of the label files has a photo of the same name in {images_dir}; photos are matched to "
                f"label maps by file name without extension (e.g. {_stem(paths[0])}.jpg)."
            )
    items, problems = [], []
    for path in paths:
        try:
            items.append(_read_example(model, path, instances_dir, instances, images, resize))
        except ValueError as e:
            problems.append(str(e))
    resized = [item.source for item in items if item.resized]
    if problems:
        raise InputError(problems)
    if resized:
        out(
            f"Resized {len(resized)} of {len(paths)} label maps (e.g. {resized[0]}) to {info.height}x{info.width} "
            f"with nearest neighbour: this model takes "
            + (
                f"only {info.height}x{info.width}."
                if info.use_vae
                else f"sides that are multiples of {info.size_multiple}."
            )
        )
    return items


# ---------------------------------------------------------------------------------------------------------
# A split of the training (or official) dataset
# ---------------------------------------------------------------------------------------------------------


def data_config(model, dataset=None, dataset_root=None):
    """The data config that reads the model's dataset as its training did, in test mode.

    A training bundle holds its config; `dataset_root` moves its data folder. A converted official bundle
    needs `dataset` (one of OFFICIAL_DATASETS) and `dataset_root`; the data settings then come from the
    bundle's official options and the official dataset defaults.
    """
    options = model.options
    if "config" in options:
        # Stored by the training run, possibly by an older spade_tf: read in today's layout.
        config = upgrade_config(options["config"])
        if dataset:
            raise ValueError(
                f"dataset={dataset!r} is for models converted from official checkpoints; this model was trained "
                f"on {config.data.dataset!r} and reads that dataset itself (move its folder with dataset_root)."
            )
        if dataset_root:
            if config.data.dataset == "demo":
                raise ValueError(
                    "this model was trained on the generated demo dataset; dataset_root does not apply."
                )
            config.data.root = dataset_root
    else:
        # The converter records the checkpoint's dataset when it knows it.
        dataset = layouts.canonical_dataset(dataset or options.get("dataset"))
        if dataset not in OFFICIAL_DATASETS or not dataset_root:
            raise ValueError(
                "this model was converted from an official checkpoint, so its dataset is unknown: pass the "
                f"dataset ({', '.join(OFFICIAL_DATASETS)}) and its root folder (dataset_root)."
            )
        info = model.info
        layout, mode = OFFICIAL_DATASETS[dataset]
        config = base_config()
        config.data.dataset = layout
        config.data.root = dataset_root
        config.data.num_classes = info.num_classes
        config.data.contain_dontcare_label = info.contain_dontcare_label
        config.data.use_instance_map = info.use_instance_map
        config.data.preprocess_mode = mode
        config.data.crop_size = int(options.get("crop_size", info.width))
        config.data.aspect_ratio = float(options.get("aspect_ratio", info.width / info.height))
        config.data.load_size = config.data.crop_size
    if config.data.preprocess_mode == "resize_and_crop":
        # The official test options load at the crop size (e.g. ADE20K 256, not the training 286), so the
        # whole picture is synthesized rather than a corner of it.
        config.data.load_size = config.data.crop_size
    config.data.flip = False
    return validate(config)


def load_split(model, split, dataset=None, dataset_root=None, limit=0, batch_size=16, out=print):
    """Reads a split of the model's dataset with its preprocessing (eval mode: no flip, crop at the corner).

    Args:
        model: a `Synthesizer`.
        split: "train" or "val" (the config's train_split / val_split).
        dataset, dataset_root: see `data_config`.
        limit: the first `limit` examples (by name); 0 reads all.
        batch_size: examples per read batch.
        out: progress messages.

    Returns:
        A list of `LabelMap` with instance maps (when the model takes them) and the photos as "real".

    Raises:
        ValueError: bad arguments; spade_tf.data.check.DatasetError: unreadable or out-of-range files.
    """
    if split not in SPLITS:
        raise ValueError(f"split={split!r} is not valid; choose one of: {', '.join(SPLITS)}.")
    config = data_config(model, dataset, dataset_root)
    d = config.data
    name = d.train_split if split == "train" else d.val_split
    # prepare_data scans the training split; pointing both at the wanted one also works where only it exists.
    d.train_split = d.val_split = name
    setup = data_setup.prepare_data(config, run_check=False, out=out)
    scan = setup.train
    examples = scan.examples[:limit] if limit else scan.examples
    if scan.unpaired:
        out(f"{len(scan.unpaired)} files without a partner are left out, e.g. {scan.unpaired[0]}")
    report = check.check_dataset(
        layouts.Scan(scan.layout, scan.description, examples, [], scan.searched),
        d.num_classes,
        d.contain_dontcare_label,
        d.use_instance_map,
        palette=setup.decode_palette,
    )
    check.require_valid(report)
    ds = data_setup.make_dataset(config, setup, examples, training=False, batch_size=batch_size, repeat=False)
    items = []
    try:
        for batch in ds:
            labels, reals = batch["label"].numpy(), gallery.to_uint8(batch["image"].numpy())
            instances = batch["instance"].numpy() if "instance" in batch else [None] * len(labels)
            for label, real, instance in zip(labels, reals, instances):
                example = examples[len(items)]
                items.append(LabelMap(example.name, label, instance, real, source=example.label))
    except tf.errors.InvalidArgumentError as e:
        raise ValueError(e.message) from None
    out(f"Read {len(items)} examples of {scan.description}.")
    return items


# ---------------------------------------------------------------------------------------------------------
# Styles and synthesis
# ---------------------------------------------------------------------------------------------------------


def check_vae_options(
    model, num_samples=1, seed=None, style=None, style_dir=None, style_from_real=False, style_sample=False
):
    """ValueError for multi-modal or style options that this model or their combination cannot honour."""
    if not isinstance(num_samples, int) or num_samples < 1:
        raise ValueError(f"num_samples={num_samples!r}: must be an integer of at least 1.")
    given = [
        n
        for n, v in (
            (f"num_samples={num_samples}", num_samples > 1),
            (f"seed={seed}", seed is not None),
            ("style", style is not None),
            ("style_dir", style_dir is not None),
            ("style_from_real", style_from_real),
            ("style_sample", style_sample),
        )
        if v
    ]
    if not model.info.use_vae and given:
        raise ValueError(
            f"{', '.join(given)}: this model is not a VAE model (trained without use_vae); it has no latent "
            "input or style encoder and gives one image per label map. Leave these options out."
        )
    styles = [
        n for n, v in (("style", style), ("style_dir", style_dir), ("style_from_real", style_from_real)) if v
    ]
    if len(styles) > 1:
        raise ValueError(f"{' and '.join(styles)}: give one source of style exemplars.")
    if styles and model.encoder is None:
        raise ValueError(
            "style-guided synthesis needs the style encoder, which this model lacks (converted without the "
            "official E checkpoint: pass --encoder or --checkpoint_dir with latest_net_E.pth to convert.py)."
        )
    if style_sample and not styles:
        raise ValueError("style_sample applies to style exemplars (style, style_dir or style_from_real).")
    if styles and num_samples > 1 and not style_sample:
        raise ValueError(
            f"num_samples={num_samples} with a style exemplar gives {num_samples} identical images (the encoder's "
            "mean); add style_sample to sample around it."
        )


def attach_styles(items, style=None, style_dir=None, style_from_real=False):
    """Gives each `LabelMap` its style exemplar: one image for all, a folder matched by name, or its photo.

    Raises:
        FileNotFoundError: a missing file or folder; InputError: unmatched names or unreadable files.
    """
    if style is not None:
        if not os.path.isfile(style):
            raise FileNotFoundError(f"the style image {style} does not exist.")
        exemplar = read_rgb(style)
        for item in items:
            item.style = exemplar
    elif style_dir is not None:
        _require_folder(style_dir, "style")
        found = _by_stem(style_dir, IMAGE_EXTENSIONS)
        problems = []
        for item in items:
            if item.name not in found:
                problems.append(
                    f"{item.source}: no style image {item.name}.<png|jpg|...> in {style_dir}; style exemplars are "
                    "matched to label maps by file name without extension."
                )
                continue
            try:
                item.style = read_rgb(found[item.name])
            except ValueError as e:
                problems.append(str(e))
        if problems:
            raise InputError(problems)
    elif style_from_real:
        missing = [
            f"{item.source}: no real photo to take the style from; give the photos (images) or other exemplars."
            for item in items
            if item.real is None
        ]
        if missing:
            raise InputError(missing)
        for item in items:
            item.style = item.real
    return items


def _batches(items, batch_size):
    """Index lists of consecutive items with one label size (a batch needs one size)."""
    batch = []
    for i, item in enumerate(items):
        if batch and (len(batch) == batch_size or items[batch[0]].label.shape != item.label.shape):
            yield batch
            batch = []
        batch.append(i)
    if batch:
        yield batch


def _latents(model, batch, seed, style_sample):
    """z for a batch of items and one seed: from the seed alone, or from each item's style exemplar."""
    n = len(batch)
    seeds = tf.fill([n], seed)
    if batch[0].style is None:
        return model.latent_from_seeds(seeds)
    z = [None] * n
    # One encoder call per exemplar size: exemplars may differ in size, a batch of images cannot.
    by_shape = {}
    for i, item in enumerate(batch):
        by_shape.setdefault(item.style.shape, []).append(i)
    for indices in by_shape.values():
        styles = np.stack([batch[i].style for i in indices])
        zs = model.latent_from_styles(styles, tf.fill([len(indices)], seed), sample=style_sample).numpy()
        for i, value in zip(indices, zs):
            z[i] = value
    return tf.constant(np.stack(z))


def sample_seeds(seed=None, num_samples=1):
    """The seeds of the samples: seed, seed + 1, ... (seed 0 when None)."""
    seed = 0 if seed is None else int(seed)
    return [seed + k for k in range(num_samples)]


def synthesize(model, items, batch_size=8, num_samples=1, seed=None, style_sample=False, out=print):
    """Runs the model over `items` in batches.

    Args:
        model: a `Synthesizer`.
        items: `LabelMap`s (all with or all without style exemplars).
        batch_size: label maps per generator call.
        num_samples: VAE: images per label map, sample k from seed `seed + k` (with exemplars: the noise
            around the encoder's mean when `style_sample`); the same seed always gives the same image.
        seed: the first seed (default 0).
        style_sample: with exemplars, sample around the encoder's mean (True) or use it (False).
        out: progress messages.

    Returns:
        A list with, per item, a list of `num_samples` (H, W, 3) uint8 images.
    """
    seeds = sample_seeds(seed, num_samples)
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size}: must be at least 1.")
    if any(item.style is None for item in items) and any(item.style is not None for item in items):
        raise ValueError("some label maps have style exemplars and some do not; give all or none.")
    info = model.info
    results = [None] * len(items)
    done = 0
    for indices in _batches(items, batch_size):
        batch = [items[i] for i in indices]
        labels = np.stack([item.label for item in batch])
        instances = None
        if info.use_instance_map:
            instances = np.stack([item.label if item.instance is None else item.instance for item in batch])
        samples = []
        for s in seeds:
            z = _latents(model, batch, s, style_sample) if info.use_vae else None
            samples.append(model.to_uint8(model.generate_float(labels, instances, z)).numpy())
        for j, i in enumerate(indices):
            results[i] = [images[j] for images in samples]
        done += len(indices)
        out(f"Synthesized {done}/{len(items)}")
    return results


# ---------------------------------------------------------------------------------------------------------
# Output
# ---------------------------------------------------------------------------------------------------------


def sample_columns(seeds):
    """Gallery column (and file suffix) of each sample: "synthesized_image", or one per seed."""
    if len(seeds) == 1:
        return ["synthesized_image"]
    return [f"synthesized_seed{s}" for s in seeds]


def write_results(model, items, images, output_dir, seeds=(0,), title=None):
    """Writes `output_dir/index.html` (+ `images/`) and `output_dir/synthesized/<name>[_seed<s>].png`.

    Columns: input_label (in the model's colours), the samples, style_image and real_image when known.

    Returns:
        (index.html path, list of synthesized PNG paths).
    """
    seeds = list(seeds)
    columns = sample_columns(seeds)
    names = [item.name for item in items]
    if len(set(names)) != len(names):
        duplicate = next(n for n in names if names.count(n) > 1)
        raise ValueError(f"two label maps are both named {duplicate!r}; output files are named after them.")
    written = []
    entries = []
    for item, samples in zip(items, images):
        cells = {"input_label": colorize(item.label, model.info.palette)}
        for column, seed, image in zip(columns, seeds, samples):
            cells[column] = image
            suffix = "" if len(seeds) == 1 else f"_seed{seed}"
            written.append(
                gallery.save_png(image, os.path.join(output_dir, "synthesized", f"{item.name}{suffix}.png"))
            )
        if item.style is not None:
            cells["style_image"] = item.style
        if item.real is not None:
            cells["real_image"] = item.real
        entries.append((item.name, cells))
    all_columns = ["input_label", *columns]
    all_columns += [c for c in ("style_image", "real_image") if any(c in e[1] for e in entries)]
    page = gallery.write_html_gallery(
        output_dir, entries, title or f"spade_tf synthesis: {model.source}", columns=tuple(all_columns)
    )
    return page, written


def default_output_dir(model_path):
    """results/<model name>, as the official results/<name>/."""
    path = os.path.normpath(model_path)
    name = os.path.basename(path)
    if name == "model.keras":
        name = os.path.basename(os.path.dirname(path))
    elif name.endswith(".keras"):
        name = name[: -len(".keras")]
    return os.path.join("results", name or "model")


def run(
    model,
    output_dir=None,
    labels_dir=None,
    instances_dir=None,
    images_dir=None,
    split=None,
    dataset=None,
    dataset_root=None,
    limit=0,
    batch_size=8,
    num_samples=1,
    seed=None,
    style=None,
    style_dir=None,
    style_from_real=False,
    style_sample=False,
    resize=True,
    out=print,
):
    """`synthesize.py` as a function: load, read and check everything, synthesize, write the gallery.

    Args:
        model: a training workdir or a `.keras` bundle (convert.py), or a loaded `Synthesizer`.
        output_dir: where index.html, images/ and synthesized/ go (default results/<model name>).
        labels_dir, instances_dir, images_dir, resize: a folder of label PNGs (see `load_label_folder`).
        split, dataset, dataset_root: or a split of the dataset (see `load_split`).
        limit: at most this many label maps; 0 for all.
        batch_size: label maps per generator call.
        num_samples, seed: VAE: samples per label map from seeds seed, seed + 1, ...
        style, style_dir, style_from_real, style_sample: VAE: style exemplars (see `attach_styles`).
        out: progress messages.

    Returns:
        dict(index=..., files=[synthesized PNGs], count=label maps, seeds=[...]).
    """
    if (labels_dir is None) == (split is None):
        raise ValueError("give either a folder of label maps (labels) or a dataset split (split), not both.")
    if split is None and (dataset or dataset_root):
        raise ValueError(
            "dataset and dataset_root select the data of split; with a labels folder leave them out."
        )
    if split is not None and (instances_dir or images_dir):
        raise ValueError("instances and images go with a labels folder; a split brings its own.")
    if not isinstance(limit, int) or limit < 0:
        raise ValueError(f"limit={limit!r}: must be 0 (all) or a positive integer.")
    if not isinstance(model, Synthesizer):
        model = load_synthesizer(model)
    check_vae_options(model, num_samples, seed, style, style_dir, style_from_real, style_sample)
    if labels_dir is not None:
        items = load_label_folder(model, labels_dir, instances_dir, images_dir, limit, resize, out)
    else:
        items = load_split(model, split, dataset, dataset_root, limit, out=out)
    attach_styles(items, style, style_dir, style_from_real)
    seeds = sample_seeds(seed, num_samples)
    images = synthesize(model, items, batch_size, num_samples, seed, style_sample, out=out)
    output_dir = output_dir or default_output_dir(model.source or "model")
    page, files = write_results(model, items, images, output_dir, seeds)
    out(f"Gallery of {len(items)} label maps: {page}")
    return {"index": page, "files": files, "count": len(items), "seeds": seeds if model.info.use_vae else []}
