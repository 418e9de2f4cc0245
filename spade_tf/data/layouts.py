"""Where a dataset's label maps, photos and instance maps lie on disk, and how they pair up.

`find_examples` walks one of the official dataset layouts and returns the complete
(label, image[, instance]) triplets plus one message per file that has no partner, so
`spade_tf.data.check` can report every problem before training starts instead of the
first one halfway through an epoch.

Layouts (the official `*_dataset.py` selection rules, reference notes sections 5 and 13):

* `ade20k`: ROOT is the ADEChallengeData2016 folder; photos under `ROOT/images/` and
  labels under `ROOT/annotations/`, searched recursively; a file belongs to the split
  whose name appears as `_<split>_` in its file name (`ADE_train_00000001.jpg`).
* `cityscapes`: `ROOT/gtFine/<split>/<city>/<key>_gtFine_labelIds.png` (instances
  `<key>_gtFine_instanceIds.png`) and `ROOT/leftImg8bit/<split>/<city>/<key>_leftImg8bit.png`,
  paired by `<key>` = `<city>_<seq>_<frame>`.
* `coco_stuff`: `ROOT/<split>_img/`, `ROOT/<split>_label/`, `ROOT/<split>_inst/`, paired by file stem.
* `custom`: explicit `label_dir`, `image_dir` and optional `instance_dir`, or
  `ROOT/<split>/{labels,images,instances}` (the bundled demo dataset), paired by file stem.
"""

import dataclasses
import os

LAYOUTS = ("ade20k", "cityscapes", "coco_stuff", "custom")
# Other spellings of a dataset name, accepted wherever a dataset is named (config files, --dataset flags, the
# converter's presets) and mapped to the one name: the official code's dataset_mode calls COCO-Stuff "coco".
DATASET_ALIASES = {"coco": "coco_stuff"}


def canonical_dataset(name):
    """The one name of a dataset (`coco` -> `coco_stuff`); any other value is returned as it is."""
    return DATASET_ALIASES.get(name, name) if isinstance(name, str) else name


# Photos may be any format PIL and tf.io decode; label and instance maps must be lossless PNG.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
LABEL_EXTENSIONS = (".png",)

# What each layout expects, quoted in "not found" and "no pairs" messages.
LAYOUT_DESCRIPTIONS = {
    "ade20k": (
        "ROOT/images/**/*_<split>_*.jpg and ROOT/annotations/**/*_<split>_*.png, where ROOT is the "
        "ADEChallengeData2016 folder (e.g. ROOT/images/training/ADE_train_00000001.jpg)"
    ),
    "cityscapes": (
        "ROOT/gtFine/<split>/<city>/<city>_<seq>_<frame>_gtFine_labelIds.png (instances: "
        "..._gtFine_instanceIds.png) and ROOT/leftImg8bit/<split>/<city>/<city>_<seq>_<frame>_leftImg8bit.png"
    ),
    "coco_stuff": (
        "ROOT/<split>_img/*.jpg, ROOT/<split>_label/*.png and (with instance maps) ROOT/<split>_inst/*.png, "
        "paired by file name without extension"
    ),
    "custom": (
        "label_dir/*.png, image_dir/*.{jpg,jpeg,png,bmp,webp} and (with instance maps) instance_dir/*.png, "
        "paired by file name without extension; with only ROOT given: ROOT/<split>/labels, "
        "ROOT/<split>/images, ROOT/<split>/instances"
    ),
}

_CITYSCAPES_LABEL_SUFFIX = "_gtFine_labelIds.png"
_CITYSCAPES_INSTANCE_SUFFIX = "_gtFine_instanceIds.png"
_CITYSCAPES_IMAGE_SUFFIX = "_leftImg8bit.png"

_INSTANCE_HINT = "; set use_instance_map=False if the dataset has no instance maps"


@dataclasses.dataclass(frozen=True)
class Example:
    """One training example: a label map, its photo and optionally its instance map.

    Args:
        name: pairing key (the file stem; `<city>_<seq>_<frame>` for Cityscapes).
        label: path of the label PNG.
        image: path of the photo.
        instance: path of the instance PNG, None when instance maps are not used.
    """

    name: str
    label: str
    image: str
    instance: str | None


@dataclasses.dataclass
class Scan:
    """What `find_examples` found.

    Args:
        layout: one of LAYOUTS.
        description: where it looked, e.g. "ade20k at /data/ADEChallengeData2016, split train".
        examples: complete pairs (triplets with instance maps), sorted by name.
        unpaired: one message per name whose files lack a partner; it names the files present,
            where the missing one was expected, and the fix.
        searched: the folders searched.
    """

    layout: str
    description: str
    examples: list[Example]
    unpaired: list[str]
    searched: list[str]


def _require_dirs(layout, *folders):
    """Raises FileNotFoundError naming every missing (path, what) folder at once."""
    missing = [f"the {what} folder {path}" for path, what in folders if not os.path.isdir(path)]
    if missing:
        raise FileNotFoundError(
            f"the {layout} layout expects {' and '.join(missing)}, which "
            f"{'does' if len(missing) == 1 else 'do'} not exist. Expected layout: {LAYOUT_DESCRIPTIONS[layout]}"
        )


def _list_files(folder, extensions, recursive):
    """Sorted paths in `folder` whose names end in `extensions` (any case); hidden files skipped.

    Hidden files are skipped because macOS copies leave `._name.png` resource forks next to
    every file, which are not images.
    """
    found = []
    if recursive:
        for dirpath, dirnames, filenames in os.walk(folder):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            found += [os.path.join(dirpath, f) for f in filenames]
    else:
        found = [e.path for e in os.scandir(folder) if e.is_file()]
    return sorted(
        p
        for p in found
        if not os.path.basename(p).startswith(".") and os.path.basename(p).lower().endswith(extensions)
    )


def _by_stem(paths):
    groups = {}
    for p in paths:
        groups.setdefault(os.path.splitext(os.path.basename(p))[0], []).append(p)
    return groups


def _by_suffix(paths, suffix):
    groups = {}
    for p in paths:
        name = os.path.basename(p)
        if name.endswith(suffix):
            groups.setdefault(name[: -len(suffix)], []).append(p)
    return groups


def _pair(found, expected, use_instance_map):
    """Complete examples and unpaired messages.

    Args:
        found: kind ("label", "image", "instance") -> {name: [paths]}.
        expected: kind -> function(name) -> where that kind's file was expected (for messages).
        use_instance_map: whether "instance" is a required kind.
    """
    kinds = ("label", "image", "instance") if use_instance_map else ("label", "image")
    names = sorted(set().union(*(found[k] for k in kinds)))
    examples, unpaired = [], []
    for name in names:
        present = {k: found[k][name] for k in kinds if name in found[k]}
        duplicated = [k for k, paths in present.items() if len(paths) > 1]
        if duplicated:
            k = duplicated[0]
            unpaired.append(
                f"{len(present[k])} {k} files share the name {name!r} ({', '.join(present[k])}): "
                "pairing is ambiguous; keep one of them"
            )
            continue
        missing = [k for k in kinds if k not in present]
        if missing:
            files = " and ".join(f"{k} {present[k][0]}" for k in kinds if k in present)
            wants = "; ".join(f"no {k} (expected {expected[k](name)})" for k in missing)
            hint = _INSTANCE_HINT if "instance" in missing else ""
            unpaired.append(f"{files}: {wants}; add the missing file or remove this one{hint}")
            continue
        examples.append(
            Example(
                name=name,
                label=present["label"][0],
                image=present["image"][0],
                instance=present["instance"][0] if use_instance_map else None,
            )
        )
    return examples, unpaired


def _any_image(folder):
    return lambda name: os.path.join(folder, name + ".{" + ",".join(e[1:] for e in IMAGE_EXTENSIONS) + "}")


def _png(folder):
    return lambda name: os.path.join(folder, name + ".png")


def _ade20k(root, split, use_instance_map):
    if use_instance_map:
        raise ValueError(
            "the ade20k layout has no instance maps (the official code forces no_instance): "
            "set use_instance_map=False"
        )
    images_dir = os.path.join(root, "images")
    labels_dir = os.path.join(root, "annotations")
    _require_dirs("ade20k", (images_dir, "images"), (labels_dir, "annotations"))
    # The official selection: the split name between underscores in the file name.
    token = f"_{split}_"

    def in_split(paths):
        return [p for p in paths if token in os.path.basename(p)]

    found = {
        "label": _by_stem(in_split(_list_files(labels_dir, LABEL_EXTENSIONS, recursive=True))),
        "image": _by_stem(in_split(_list_files(images_dir, IMAGE_EXTENSIONS, recursive=True))),
    }
    expected = {
        "label": lambda name: os.path.join(labels_dir, "**", name + ".png"),
        "image": lambda name: os.path.join(images_dir, "**", name + ".jpg"),
    }
    examples, unpaired = _pair(found, expected, False)
    return examples, unpaired, [images_dir, labels_dir], f"ade20k at {root}, split {split}"


def _cityscapes(root, split, use_instance_map):
    labels_dir = os.path.join(root, "gtFine", split)
    images_dir = os.path.join(root, "leftImg8bit", split)
    _require_dirs("cityscapes", (labels_dir, "gtFine/<split>"), (images_dir, "leftImg8bit/<split>"))
    label_files = _list_files(labels_dir, LABEL_EXTENSIONS, recursive=True)
    found = {
        "label": _by_suffix(label_files, _CITYSCAPES_LABEL_SUFFIX),
        "instance": _by_suffix(label_files, _CITYSCAPES_INSTANCE_SUFFIX),
        "image": _by_suffix(
            _list_files(images_dir, IMAGE_EXTENSIONS, recursive=True), _CITYSCAPES_IMAGE_SUFFIX
        ),
    }

    def expect(folder, suffix):
        # The key starts with the city, which is also the sub-folder name.
        return lambda name: os.path.join(folder, name.split("_")[0], name + suffix)

    expected = {
        "label": expect(labels_dir, _CITYSCAPES_LABEL_SUFFIX),
        "instance": expect(labels_dir, _CITYSCAPES_INSTANCE_SUFFIX),
        "image": expect(images_dir, _CITYSCAPES_IMAGE_SUFFIX),
    }
    examples, unpaired = _pair(found, expected, use_instance_map)
    return examples, unpaired, [labels_dir, images_dir], f"cityscapes at {root}, split {split}"


def _folders(layout, label_dir, image_dir, instance_dir, use_instance_map):
    """Pairs by stem in flat folders (coco_stuff, custom)."""
    _require_dirs(
        layout,
        (label_dir, "label"),
        (image_dir, "image"),
        *([(instance_dir, "instance")] if use_instance_map else []),
    )
    found = {
        "label": _by_stem(_list_files(label_dir, LABEL_EXTENSIONS, recursive=False)),
        "image": _by_stem(_list_files(image_dir, IMAGE_EXTENSIONS, recursive=False)),
        "instance": {},
    }
    expected = {"label": _png(label_dir), "image": _any_image(image_dir), "instance": _png(instance_dir)}
    searched = [label_dir, image_dir]
    if use_instance_map:
        found["instance"] = _by_stem(_list_files(instance_dir, LABEL_EXTENSIONS, recursive=False))
        searched.append(instance_dir)
    examples, unpaired = _pair(found, expected, use_instance_map)
    return examples, unpaired, searched


def _custom_dir(path, root, split, sub):
    """An explicit custom folder, else its place under root/<split>, else None."""
    if path is not None:
        return os.fspath(path)
    return None if root is None else os.path.join(root, split, sub)


def find_examples(
    layout,
    split="train",
    root=None,
    label_dir=None,
    image_dir=None,
    instance_dir=None,
    use_instance_map=False,
):
    """Finds and pairs a dataset's files.

    Args:
        layout: one of LAYOUTS.
        split: "train", "val", ... (the folder or file-name part the layout uses).
        root: the dataset folder; required except for `custom` with explicit folders.
        label_dir, image_dir, instance_dir: the `custom` layout's folders; each defaults to
            `root/<split>/labels`, `root/<split>/images`, `root/<split>/instances`.
        use_instance_map: whether every example needs an instance map; when False the
            instance field is None and instance files are not looked at.

    Returns:
        A Scan. Files without a partner are listed in `unpaired`, not raised, so a check can
        report all of them at once.

    Raises:
        ValueError: unknown layout, missing root/folder arguments, or instance maps asked of ade20k.
        FileNotFoundError: a folder the layout expects does not exist.
    """
    layout = canonical_dataset(layout)
    if layout not in LAYOUTS:
        raise ValueError(f"unknown dataset layout {layout!r}; expected one of {', '.join(LAYOUTS)}")
    if not isinstance(split, str) or not split:
        raise ValueError(f"split must be a non-empty string such as 'train' or 'val', got {split!r}")
    if layout != "custom":
        given = [
            n
            for n, v in (("label_dir", label_dir), ("image_dir", image_dir), ("instance_dir", instance_dir))
            if v
        ]
        if given:
            raise ValueError(
                f"{', '.join(given)} only apply to the custom layout; the {layout} layout finds its folders "
                f"under root: {LAYOUT_DESCRIPTIONS[layout]}"
            )
        if root is None:
            raise ValueError(f"the {layout} layout needs root: {LAYOUT_DESCRIPTIONS[layout]}")
    if root is not None and not os.path.isdir(root):
        # Checked before any folder under it, so the message names the root, not a subfolder of it.
        raise FileNotFoundError(
            f"the {layout} dataset root {root} does not exist. Expected layout: {LAYOUT_DESCRIPTIONS[layout]}"
        )
    root = None if root is None else os.fspath(root)

    if layout == "ade20k":
        examples, unpaired, searched, description = _ade20k(root, split, use_instance_map)
    elif layout == "cityscapes":
        examples, unpaired, searched, description = _cityscapes(root, split, use_instance_map)
    elif layout == "coco_stuff":
        examples, unpaired, searched = _folders(
            layout,
            os.path.join(root, f"{split}_label"),
            os.path.join(root, f"{split}_img"),
            os.path.join(root, f"{split}_inst"),
            use_instance_map,
        )
        description = f"coco_stuff at {root}, split {split}"
    else:
        label_dir = _custom_dir(label_dir, root, split, "labels")
        image_dir = _custom_dir(image_dir, root, split, "images")
        instance_dir = _custom_dir(instance_dir, root, split, "instances")
        if label_dir is None or image_dir is None:
            raise ValueError(
                "the custom layout needs label_dir and image_dir, or root with ROOT/<split>/labels and "
                "ROOT/<split>/images"
            )
        if use_instance_map and instance_dir is None:
            raise ValueError(
                "use_instance_map=True needs instance_dir (or root with ROOT/<split>/instances); "
                "set use_instance_map=False if the dataset has no instance maps"
            )
        examples, unpaired, searched = _folders(layout, label_dir, image_dir, instance_dir, use_instance_map)
        description = f"custom: labels {label_dir}, images {image_dir}" + (
            f", instances {instance_dir}" if use_instance_map else ""
        )
    return Scan(
        layout=layout, description=description, examples=examples, unpaired=unpaired, searched=searched
    )
