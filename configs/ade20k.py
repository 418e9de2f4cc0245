"""ADE20K (MIT Scene Parsing, ADEChallengeData2016) with the official settings.

    spade-train --config=ade20k --config.data.root=/data/ADEChallengeData2016
    spade-train --config=ade20k:small --config.data.root=...   # 64 px, narrow, 200 steps

Labels are used raw, ids 0..150 (0 = "other"), as the official code does (its
`label - 1` remapping never takes effect): 150 classes + the don't-care
channel = 151 semantic channels, no instance maps. Official: G 96.5 M
parameters, D 5.8 M; the paper trains on 8 V100s with a global batch of 32
(FID 33.9, mIoU 38.5, pixel accuracy 79.9).
"""

from spade_tf.config import base_config, shrink_to_small


def get_config(arg=None):
    c = base_config()
    c.data.dataset = "ade20k"
    c.data.num_classes = 150
    c.data.contain_dontcare_label = True
    c.data.use_instance_map = False
    c.data.preprocess_mode = "resize_and_crop"
    c.data.load_size = 286  # official test load size: 256
    c.data.crop_size = 256
    c.data.aspect_ratio = 1.0
    c.data.val_split = "val"
    c.model.num_upsampling_layers = "normal"
    c.train.batch_size = 1  # official default batchSize; the paper: 32 over 8 GPUs
    c.train.num_epochs = 50  # official niter default; the paper's length (~200 epochs) is unverified
    c.train.num_decay_epochs = 0
    if arg == "small":
        return shrink_to_small(c)
    if arg:
        raise ValueError(f"configs/ade20k.py: unknown variant {arg!r}; choose 'small' or nothing.")
    return c
