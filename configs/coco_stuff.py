"""COCO-Stuff (train_img / train_label / train_inst) with the official settings.

    spade-train --config=coco_stuff --config.data.root=/data/coco_stuff
    spade-train --config=coco_stuff:small --config.data.root=...

182 classes + don't-care + instance edges = 184 semantic channels (instance
maps from the official `coco_generate_instance_map.py`). Official: G 97.5 M,
D 5.9 M parameters; paper FID 22.6, mIoU 37.4, pixel accuracy 67.9.
"""

from spade_tf.config import base_config, shrink_to_small


def get_config(arg=None):
    c = base_config()
    c.data.dataset = "coco_stuff"
    c.data.num_classes = 182
    c.data.contain_dontcare_label = True
    c.data.use_instance_map = True
    c.data.preprocess_mode = "resize_and_crop"
    c.data.load_size = 286
    c.data.crop_size = 256
    c.data.aspect_ratio = 1.0
    c.model.num_upsampling_layers = "normal"
    c.train.batch_size = 1  # official default batchSize; the paper: 32 over 8 GPUs
    c.train.num_epochs = 50  # official niter default; the paper's length (~100 epochs) is unverified
    c.train.num_decay_epochs = 0
    if arg == "small":
        return shrink_to_small(c)
    if arg:
        raise ValueError(f"configs/coco_stuff.py: unknown variant {arg!r}; choose 'small' or nothing.")
    return c
