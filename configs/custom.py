"""Your own labelled images: label PNGs + photos (+ optional instance PNGs), paired by file stem.

    spade-train --config=custom --config.data.root=/data/mine \
        --config.data.num_classes=12
    # or explicit folders:
    spade-train --config=custom --config.data.label_dir=... --config.data.image_dir=... \
        [--config.data.instance_dir=... --config.data.use_instance_map=True] [--config.data.palette=palette.json]

With only `root`, the layout is `<root>/train/{labels,images,instances}` and
`<root>/val/...` (the demo dataset in the cache is an example). Label maps are
single-channel class ids; RGB colour label maps need `data.palette` (JSON:
{"classes": [{"id": 0, "name": "sky", "color": [r, g, b]}, ...]}). Check a
dataset without training: `spade-check-dataset --config=custom ...`.
Official custom defaults: label_nc 13, resize_and_crop 286 -> 256.
"""

from spade_tf.config import base_config, shrink_to_small


def get_config(arg=None):
    c = base_config()
    c.data.dataset = "custom"
    c.data.num_classes = 13
    c.data.preprocess_mode = "resize_and_crop"
    c.data.load_size = 286
    c.data.crop_size = 256
    if arg == "small":
        return shrink_to_small(c)
    if arg:
        raise ValueError(f"configs/custom.py: unknown variant {arg!r}; choose 'small' or nothing.")
    return c
