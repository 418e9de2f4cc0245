"""The config to benchmark: a training config or an official preset, at a resolution; its summary."""

import ml_collections

from spade_tf.config import base_config, load_config_file
from spade_tf.data.labels import label_channels, semantic_channels
from spade_tf.data.layouts import canonical_dataset
from spade_tf.models.generator import UPSAMPLING_CHOICES, latent_grid
from spade_tf.tools.convert import dataset_preset


def parse_resolution(text):
    """Parses a resolution: HEIGHTxWIDTH, or one number for a square -> (height, width)."""
    parts = str(text).lower().split("x")
    try:
        sizes = [int(p) for p in parts]
    except ValueError:
        sizes = []
    if len(sizes) == 1:
        sizes = sizes * 2
    if len(sizes) != 2 or min(sizes) < 1:
        raise ValueError(
            f"resolution={text!r}: expected HEIGHTxWIDTH in pixels such as 256x512, or one number for a square."
        )
    return tuple(sizes)


def config_from_preset(name):
    """The config of an official dataset preset (spade_tf.tools.convert.DATASET_PRESETS) with official widths."""
    preset = dataset_preset(name)
    c = base_config()
    c.data.dataset = canonical_dataset(name)
    c.data.num_classes = preset["label_nc"]
    c.data.contain_dontcare_label = preset["contain_dontcare_label"]
    c.data.use_instance_map = not preset["no_instance"]
    c.data.crop_size = preset["crop_size"]
    c.data.aspect_ratio = preset["aspect_ratio"]
    c.model.num_upsampling_layers = preset["num_upsampling_layers"]
    return c


def resolve_config(config=None, dataset=None, resolution=None):
    """The config to benchmark, with `data.crop_size` / `aspect_ratio` set for `resolution`.

    Args:
        config: a ConfigDict, or a `configs/<name>.py[:variant]` path; or None.
        dataset: an official preset name (spade_tf.tools.convert.DATASET_PRESETS); or None.
        resolution: (height, width), "HxW", or None for the config's crop
            (width crop_size, height crop_size / aspect_ratio).

    Returns:
        (config, (height, width)); the config is a copy.
    """
    if (config is None) == (dataset is None):
        raise ValueError(
            "give exactly one of config (a configs/*.py file, e.g. configs/ade20k.py) or dataset "
            "(an official preset: ade20k, cityscapes, coco_stuff)."
        )
    if dataset is not None:
        c = config_from_preset(dataset)
    elif isinstance(config, str):
        c = load_config_file(config)
    else:
        c = ml_collections.ConfigDict(config.to_dict())
    c = ml_collections.ConfigDict(c.to_dict())  # unlocked copy
    if resolution is None:
        height, width = int(round(c.data.crop_size / c.data.aspect_ratio)), int(c.data.crop_size)
    else:
        height, width = parse_resolution(resolution) if isinstance(resolution, str) else tuple(resolution)
    multiple = 2 ** UPSAMPLING_CHOICES.get(c.model.num_upsampling_layers, 0)
    if height % multiple or width % multiple:
        raise ValueError(
            f"resolution {height}x{width}: both sides must be multiples of {multiple} for "
            f"num_upsampling_layers={c.model.num_upsampling_layers!r}; e.g. "
            f"{max(multiple, height // multiple * multiple)}x{max(multiple, width // multiple * multiple)}."
        )
    c.data.crop_size = width
    c.data.aspect_ratio = width / height
    # The VAE generator's output size is fixed by its latent grid: it must give this resolution too.
    sh, sw = latent_grid(width, width / height, c.model.num_upsampling_layers)
    if (sh * multiple, sw * multiple) != (height, width):
        raise ValueError(f"resolution {height}x{width} does not fit the generator's latent grid {sh}x{sw}.")
    return c, (height, width)


def model_summary(config):
    """The fields that fix the networks' arithmetic, for the report and the reference match."""
    d, m = config.data, config.model
    return dict(
        dataset=d.dataset,
        semantic_channels=semantic_channels(d.num_classes, d.contain_dontcare_label, d.use_instance_map),
        num_label_ids=label_channels(d.num_classes, d.contain_dontcare_label),
        use_instance_map=bool(d.use_instance_map),
        base_filters=int(m.base_filters),
        num_upsampling_layers=m.num_upsampling_layers,
        height=int(round(d.crop_size / d.aspect_ratio)),
        width=int(d.crop_size),
        spade_hidden_filters=int(m.spade.hidden_filters),
        spade_kernel_size=int(m.spade.kernel_size),
        use_vae=bool(m.use_vae),
        latent_dim=int(m.latent_dim),
        encoder_image_size=int(config.encoder.image_size),
        disc_filters=int(config.discriminator.base_filters),
        disc_scales=int(config.discriminator.num_scales),
        disc_layers=int(config.discriminator.num_layers),
        fast_spade=bool(m.spade.fast),  # not arithmetic: the same FLOPs, computed faster
        reuse_fakes=bool(config.train.reuse_fakes),  # the D step without E and G
    )
