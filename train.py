"""Trains SPADE. With no flags: the bundled demo (procedural landscapes) on this machine.

    python train.py                                             # demo, ~10 min on 2 CPU cores
    python train.py --config=configs/demo.py:small              # one-minute smoke run
    python train.py --config=configs/ade20k.py --config.data.root=/data/ADEChallengeData2016 \
        --config.train.batch_size=32 --workdir=runs/ade20k      # all visible GPUs (MirroredStrategy)

Rerunning with the same --workdir resumes from its last checkpoint. Several
machines: set TF_CONFIG on each (MultiWorkerMirroredStrategy). TensorBoard:
`tensorboard --logdir <workdir>/tensorboard`.
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags, logging  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from spade_tf.config import check_command_line, validate  # noqa: E402
from spade_tf.data.check import DatasetError  # noqa: E402
from spade_tf.models.bundle import BundleError  # noqa: E402
from spade_tf.training import train_lib  # noqa: E402
from spade_tf.training.workdir import WorkdirError  # noqa: E402

DEFAULT_CONFIG = os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs", "demo.py")
FLAGS = flags.FLAGS


def define_flags():
    # Defined after check_command_line: ml_collections reads the --config.*
    # overrides when the flag is defined and fails there with a traceback.
    config_flags.DEFINE_config_file(
        "config", DEFAULT_CONFIG, "Training config file (configs/<dataset>.py[:small]).", lock_config=True
    )
    flags.DEFINE_string(
        "workdir",
        None,
        "Checkpoints, TensorBoard logs, samples and the gallery (default workdirs/<dataset>).",
    )


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    config = FLAGS.config
    try:
        validate(config)
    except ValueError as e:
        sys.exit(f"train.py: error: {e}")
    workdir = FLAGS.workdir or os.path.join("workdirs", config.data.dataset)
    logging.info("Config:\n%s", config)
    try:
        train_lib.train(config, workdir)
    except DatasetError as e:
        if e.report is None:
            sys.exit(f"train.py: error: {e}")
        # The check's report, with each file and its fix, is already printed.
        sys.exit("train.py: the dataset check failed (see the report above); nothing was trained.")
    except (FileNotFoundError, BundleError, WorkdirError) as e:
        # A missing dataset or model file, a damaged bundle (train.init_from), a workdir in use, a full
        # disk, unreadable checkpoints: each message names the file and what to do.
        sys.exit(f"train.py: error: {e}")


if __name__ == "__main__":
    try:
        check_command_line(sys.argv[1:], DEFAULT_CONFIG)
    except ValueError as e:
        sys.exit(f"train.py: error: {e}")
    define_flags()
    app.run(main)
