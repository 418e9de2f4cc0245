"""The model's phases, each run in its own process: the generator forward and the training steps.

The models are built with `spade_tf.training.trainer` as training builds them, and each phase first
checks that the FLOP count's layer lists (`flops`) describe the networks it times.
"""

import keras
import ml_collections
import numpy as np
import tensorflow as tf

from spade_tf.config import build_models
from spade_tf.data.labels import label_channels
from spade_tf.data.semantics import make_semantics
from spade_tf.tools.benchmark.configs import model_summary
from spade_tf.tools.benchmark.flops import (
    check_layers,
    discriminator_layers,
    encoder_layers,
    generator_layers,
)
from spade_tf.tools.benchmark.inputs import label_inputs
from spade_tf.tools.benchmark.timing import time_calls
from spade_tf.training.trainer import trainer_from_config


def _variant_config(config, variant):
    c = ml_collections.ConfigDict(config.to_dict())
    c.train.precision = "mixed_bfloat16" if variant.endswith("bfloat16") else "float32"
    c.train.xla = variant.startswith("xla")
    return c


def _semantics(config, batch, height, width, seed=0):
    d = config.data
    num_ids = label_channels(d.num_classes, d.contain_dontcare_label)
    maps = ["labels"] + (["instances"] if d.use_instance_map else [])
    inputs = label_inputs(
        {name: ([-1, height, width], np.int32) for name in maps},
        batch,
        height,
        width,
        num_ids,
        seed,
    )
    semantics = make_semantics(inputs["labels"], num_ids, inputs.get("instances"))
    return tf.constant(semantics), inputs


def _forward_function(config, batch, height, width, jit_compile=False):
    # build_models also builds D (5.8 M parameters at full size, ~1 % of the forward's peak memory).
    generator, _, _ = build_models(config)
    check_layers(generator_layers(model_summary(config)), generator)
    semantics, _ = _semantics(config, batch, height, width)

    @tf.function(jit_compile=jit_compile)
    def forward(x):
        return generator(x, training=False, one_hot=True)

    return forward, semantics


def _training(config, batch, height, width, seed=0):
    """(trainer, distributed batch) on one device, without the VGG loss."""
    c = ml_collections.ConfigDict(config.to_dict())
    c.train.batch_size = batch
    c.train.d_steps_per_g = 1  # one iteration = a G step and a D step
    c.train.vgg_weights = ""
    c.train.lambda_vgg = 0.0
    gpus = tf.config.list_logical_devices("GPU")
    strategy = tf.distribute.MirroredStrategy([gpus[0].name if gpus else "/cpu:0"])
    trainer = trainer_from_config(c, strategy, steps_per_epoch=1, vgg_loss=None)
    summary = model_summary(c)
    check_layers(generator_layers(summary), trainer.generator)
    check_layers(discriminator_layers(summary), trainer.discriminator)
    if trainer.encoder is not None:
        check_layers(encoder_layers(summary), trainer.encoder)
    _, inputs = _semantics(c, batch, height, width, seed)
    rng = np.random.default_rng(seed + 1)
    element = {
        "label": tf.constant(inputs["labels"]),
        "image": tf.constant(rng.uniform(-1, 1, (batch, height, width, 3)).astype(np.float32)),
        "index": tf.range(batch, dtype=tf.int64),
    }
    if c.data.use_instance_map:
        element["instance"] = tf.constant(inputs["instances"])
    dist = next(iter(strategy.experimental_distribute_dataset(tf.data.Dataset.from_tensors(element))))
    return trainer, dist


def forward(task):
    """The `forward` phase: the generator at `task["batch"]`, in the task's variant (float32, bfloat16, xla)."""
    keras.utils.set_random_seed(int(task.get("seed", 0)))
    config = _variant_config(ml_collections.ConfigDict(task["config"]), task["variant"])
    forward, semantics = _forward_function(
        config, task["batch"], task["height"], task["width"], jit_compile=config.train.xla
    )
    return {"timing": time_calls(lambda: forward(semantics), task["warmup"], task["runs"])}


def train(task):
    """The `train` phase: the G step, the D step and the whole training step at `task["batch"]`."""
    keras.utils.set_random_seed(int(task.get("seed", 0)))
    config = _variant_config(ml_collections.ConfigDict(task["config"]), task["variant"])
    trainer, dist = _training(config, task["batch"], task["height"], task["width"])
    g_step = trainer._distributed("G")

    def g_logs():
        # With train.reuse_fakes the G step also returns its fakes, and the D step judges them.
        out = g_step(dist)
        return out[0] if trainer.reuse_fakes else out

    d_step, d_args = trainer._distributed("D"), (dist,)
    if trainer.reuse_fakes:
        d_step, d_args = trainer._distributed("D_given"), (dist, g_step(dist)[1])
    out = {}
    # Each timed call ends with reading a loss back: the step is complete.
    out["G"] = time_calls(lambda: float(g_logs()["G_GAN"]), task["warmup"], task["runs"])
    out["D"] = time_calls(lambda: float(d_step(*d_args)["D_Fake"]), task["warmup"], task["runs"])
    out["step"] = time_calls(lambda: trainer.train_step(dist), task["warmup"], task["runs"])
    return out
