"""Cityscapes (gtFine labelIds + instanceIds, leftImg8bit) with the official settings.

    spade-train --config=cityscapes --config.data.root=/data/cityscapes
    spade-train --config=cityscapes:small --config.data.root=...

35 label ids + the instance-edge channel = 36 semantic channels; images are
resized to 512x256 ("fixed", crop 512, aspect 2) and the generator uses the
"more" upsampling (latent grid 4x8). Official: G 93.0 M, D 5.6 M parameters;
batch size 16 (the official default since 2019); paper FID 71.8, mIoU 62.3.
"""

from spade_tf.config import base_config, shrink_to_small


def get_config(arg=None):
    c = base_config()
    c.data.dataset = "cityscapes"
    c.data.num_classes = 35
    c.data.contain_dontcare_label = False
    c.data.use_instance_map = True
    c.data.preprocess_mode = "fixed"
    c.data.load_size = 512
    c.data.crop_size = 512
    c.data.aspect_ratio = 2.0
    c.model.num_upsampling_layers = "more"
    c.train.batch_size = 16
    c.train.num_epochs = 50  # official niter default; the paper's length (~200 epochs) is unverified
    c.train.num_decay_epochs = 0
    if arg == "small":
        c = shrink_to_small(c)
        c.data.crop_size = 128  # 128x64 keeps the 2:1 aspect with the 'more' grid (64 px multiples)
        c.data.load_size = 128
        return c
    if arg:
        raise ValueError(f"configs/cityscapes.py: unknown variant {arg!r}; choose 'small' or nothing.")
    return c
