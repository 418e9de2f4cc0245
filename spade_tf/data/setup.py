"""Data for a run: the examples of a config's dataset, checked, with colours and class names, and their tf.data.

Shared by training (`spade_tf.training.train_lib`), `check_dataset.py` and synthesis of a dataset split
(`spade_tf.serving.synthesis`).
"""

import dataclasses
import os

import numpy as np
from absl import logging

from spade_tf.data import check, demo, labels, layouts, palette, pipeline


@dataclasses.dataclass
class DataSetup:
    train: object  # layouts.Scan
    val: object  # layouts.Scan or None
    decode_palette: object  # palettes.Palette when label maps are RGB, else None
    colors: np.ndarray  # display colour per label id
    class_names: tuple
    demo_root: str | None


def prepare_data(config, run_check=True, out=print):
    """Finds the examples, checks them (stopping on any error), and picks colours and class names."""
    d = config.data
    demo_root = None
    if d.dataset == "demo":
        demo_root = demo.generate_demo_dataset(
            num_train=d.demo_num_train, num_val=d.demo_num_val, size=d.demo_size
        )
        layout, where = "custom", dict(root=demo_root)
        palette_path = os.path.join(demo_root, "palette.json")
    else:
        layout = d.dataset
        where = dict(root=d.root or None)
        if d.dataset == "custom":
            where.update(
                label_dir=d.label_dir or None,
                image_dir=d.image_dir or None,
                instance_dir=d.instance_dir or None,
            )
        palette_path = d.palette
    pal = palette.load_palette(palette_path) if palette_path else None
    train_scan = layouts.find_examples(
        layout, split=d.train_split, use_instance_map=d.use_instance_map, **where
    )
    val_scan = None
    if not (d.dataset == "custom" and d.label_dir):
        try:
            val_scan = layouts.find_examples(
                layout, split=d.val_split, use_instance_map=d.use_instance_map, **where
            )
        except FileNotFoundError as e:
            logging.warning("No validation split: %s", e)
    if run_check:
        for scan in (train_scan, val_scan):
            if scan is None:
                continue
            report = check.check_dataset(
                scan, d.num_classes, d.contain_dontcare_label, d.use_instance_map, palette=pal
            )
            out(report.format())
            check.require_valid(report)
    if not train_scan.examples:
        raise check.DatasetError(f"no training examples found: {train_scan.description}")
    rgb = labels.holds_colours(train_scan.examples[0].label)
    label_channels = labels.label_channels(d.num_classes, d.contain_dontcare_label)
    if pal is not None:
        colors = np.zeros((max(label_channels, len(pal.colors)), 3), np.uint8)
        colors[: len(pal.colors)] = pal.colors
        names = tuple(pal.names)
    else:
        colors = palette.default_colormap(label_channels + 1)
        names = tuple(str(i) for i in range(d.num_classes))
    if d.contain_dontcare_label:
        colors[d.num_classes] = 0  # don't-care: black
    return DataSetup(train_scan, val_scan, pal if rgb else None, colors, names, demo_root)


def make_dataset(config, setup, examples, training, batch_size, start_index=0, repeat=True):
    d = config.data
    return pipeline.build_dataset(
        examples,
        num_classes=d.num_classes,
        contain_dontcare_label=d.contain_dontcare_label,
        use_instance_map=d.use_instance_map,
        preprocess_mode=d.preprocess_mode,
        load_size=d.load_size,
        crop_size=d.crop_size,
        aspect_ratio=d.aspect_ratio,
        flip=d.flip,
        training=training,
        batch_size=batch_size,
        seed=config.seed,
        start_index=start_index,
        repeat=repeat,
        palette=setup.decode_palette,
        drop_remainder=training,
    )
