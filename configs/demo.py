"""The bundled demo: procedural landscapes in four looks, a VAE trained on a CPU in about eleven minutes.

    spade-train                                       # = --config=demo (python train.py in a clone)
    spade-train --config=demo:small                   # a one-minute smoke run (= configs/demo.py:small)
    spade-train --config=demo:long                    # the best demo measured: 3000 steps, ~28 min

The dataset (9 classes: sky, cloud, mountain, snow, water, sand, grass, tree,
rock; 64x64, 400 train / 64 val, with tree and cloud instances) is generated
from a seed into the cache (~/.cache/spade_tf or $SPADE_TF_CACHE) on first use.
At the end the run writes a gallery of validation label maps (each in the four
looks from exemplars, and from two random seeds) and prints the demo report:
label consistency (oracle mIoU, synthesized vs real), style accuracy, looks
covered by random seeds, texture ratio. Measured on 2 CPU cores (Xeon): 1000
steps at 0.50 s; ratio 0.65, style 0.71, 4 looks, texture 0.61 (a second run,
seed 1: 0.73, 0.53, 3, 0.71); 11 min 16 s for the README's first command on a
fresh clone; on a 2-core AMD EPYC with AVX2 only, 1.77 s per step and 35 min 38 s,
1.55 s and 31 min 7 s with the conv gradients as forward convs (README, "The demo's levers").
"""

from spade_tf.config import base_config


def get_config(arg=None):
    c = base_config()
    c.data.dataset = "demo"
    c.data.num_classes = 9
    c.data.contain_dontcare_label = False
    c.data.use_instance_map = True
    c.data.preprocess_mode = "fixed"  # already 64x64: only the flip augments
    c.data.crop_size = 64
    c.data.load_size = 64

    # A narrow SPADE: the official widths (ngf 64, 128 hidden) are ~100x the
    # compute a CPU can give in ten minutes.
    c.model.base_filters = 16
    c.model.spade.hidden_filters = 32
    c.discriminator.base_filters = 32
    c.encoder.image_size = 64
    # Every 3x3 conv of the generator mirrors its input instead of zero padding: inside a region of one class
    # zero padding is the only left-right cue, and the 1000-step runs drew thin vertical lines a few pixels from
    # the left and right borders with it (border_step_ratio 2.1-2.3 against the photos' 0.96; 0.91 with
    # reflect). Official checkpoints use zeros (convert.py refuses reflect; README, "The demo's levers").
    c.model.padding_mode = "reflect"

    # A VAE, as GauGAN: the style encoder gives random (--num_samples) and
    # exemplar-guided (--style) synthesis, and the painter's style thumbnails.
    c.model.use_vae = True
    # No moving average of the weights for synthesis (train.ema_decay): on this
    # short run it smoothed the textures away (README, "The demo's levers").
    c.train.ema_decay = 0.0
    # SPADE's label gather XLA-compiled: 6% faster training steps on 2 CPU
    # cores than segment_sum (spade-benchmark --phases=train); exports swap
    # in the plain-TF gathers that TF Serving and TFLite take.
    c.model.spade.gather_impl = "xla"

    c.train.batch_size = 8
    c.train.num_epochs = 60
    c.train.num_decay_epochs = 0
    # The run ends by its step count, so every machine trains as many steps;
    # the time limit is only a safety net (it saves a checkpoint; rerun to go on),
    # about twice the training time on the slowest 2-core machine measured (an
    # AMD EPYC with AVX2 only: 1.6-1.8 s per step, against 0.48 s on a Xeon).
    c.train.max_steps = 1000
    c.train.max_seconds = 3600
    c.train.log_every = 10
    c.train.image_every = 250
    c.train.checkpoint_every = 250
    c.eval.oracle = True
    c.eval.gallery_size = 16

    if arg == "small":
        c.data.demo_num_train = 48
        c.data.demo_num_val = 8
        c.data.demo_size = 32
        c.data.crop_size = 32
        c.data.load_size = 32
        c.model.base_filters = 8
        c.model.spade.hidden_filters = 16
        c.discriminator.base_filters = 16
        c.encoder.image_size = 32
        c.train.batch_size = 4
        c.train.max_steps = 20
        c.train.max_seconds = 0
        # The smoke run stays the plainest model (no encoder): the tests that build on it check
        # one thing each, and turn the VAE on where they need it.
        c.model.use_vae = False
        c.model.padding_mode = "zeros"
        c.train.image_every = 10
        c.train.checkpoint_every = 10
        c.eval.gallery_size = 4
    elif arg == "long":
        # Three times the steps and a 5x weaker KL term (the encoder passes more of the exemplar): one run
        # measured ratio 0.96 / style 0.95 / 3.9 looks / texture 0.95 (rock 0.66) where the default gives about
        # 0.65-0.73 / 0.5-0.7 / 3-4 / 0.6-0.7, at ~2.5x the time (README, "The demo's levers"). Vertical
        # streaks remain in skies and waters. The time limit is the safety net, ~2x the training time on
        # the slower AMD machine (3000 x 1.7 s).
        c.train.max_steps = 3000
        c.train.lambda_kld = 0.01
        c.train.max_seconds = 10800
    elif arg:
        raise ValueError(f"configs/demo.py: unknown variant {arg!r}; choose 'small', 'long' or nothing.")
    return c
