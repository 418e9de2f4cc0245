"""spade-train: trains SPADE. With no flags: the bundled demo (procedural landscapes) on this machine.

    spade-train                                                  # the demo, ~10 min on 2 CPU cores
    spade-train --config=demo:small --workdir=w                  # a one-minute smoke run
    spade-train --config=ade20k --config.data.root=/data/ADEChallengeData2016 \\
        --config.train.batch_size=32 --workdir=runs/ade20k       # all visible GPUs (MirroredStrategy)

From a clone, `python train.py` is the same command and `--config=configs/demo.py:small` a config by path.
Rerunning with the same --workdir resumes from its last checkpoint. Several machines: set TF_CONFIG on each
(MultiWorkerMirroredStrategy). TensorBoard: `tensorboard --logdir <workdir>/tensorboard`. At the end the
workdir holds model.keras (the bundle), MODEL_CARD.md, result.json and gallery/index.html.
"""

import os
import sys

from absl import app, flags, logging
from ml_collections import config_flags

from spade_tf import cli
from spade_tf.config import resolve_config_spec, validate
from spade_tf.data.check import DatasetError
from spade_tf.models import conv
from spade_tf.models.bundle import BundleError
from spade_tf.training import train_lib
from spade_tf.training.trainer import TrainingDiverged
from spade_tf.training.workdir import WorkdirError

DEFAULT_CONFIG = "demo"
FLAGS = flags.FLAGS


def define_flags():
    config_flags.DEFINE_config_file(
        "config", resolve_config_spec(DEFAULT_CONFIG), cli.config_help(), lock_config=True
    )
    flags.DEFINE_string(
        "workdir",
        None,
        "Checkpoints, TensorBoard logs, samples, the gallery, model.keras and MODEL_CARD.md "
        "(default workdirs/<dataset>).",
    )


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    config = FLAGS.config
    try:
        validate(config)
        conv.conv_gradients()  # the SPADE_TF_CONV_GRADIENTS environment variable
    except ValueError as e:
        cli.fail(e)
    workdir = FLAGS.workdir or os.path.join("workdirs", config.data.dataset)
    logging.info("Config:\n%s", config)
    try:
        train_lib.train(config, workdir)
    except DatasetError as e:
        if e.report is None:
            cli.fail(e)
        # The check's report, with each file and its fix, is already printed.
        sys.exit(f"{cli.program()}: the dataset check failed (see the report above); nothing was trained.")
    except (FileNotFoundError, BundleError, WorkdirError) as e:
        # A missing dataset or model file, a damaged bundle (train.init_from), a workdir in use, a full
        # disk, unreadable checkpoints: each message names the file and what to do.
        cli.fail(e)
    except TrainingDiverged as e:
        # The message names the step, the non-finite losses, the checkpoint kept and what to try.
        cli.fail(f"training diverged at {e}")


def run():
    cli.run_command(sys.modules[__name__], main, define_flags, default_config=DEFAULT_CONFIG)


if __name__ == "__main__":
    run()
