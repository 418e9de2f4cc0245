"""spade-check-dataset: scans a dataset as training would and prints the report; exits 1 on any error.

    spade-check-dataset --config=ade20k --config.data.root=/data/ADEChallengeData2016
    spade-check-dataset --config=custom --config.data.root=/data/mine --config.data.num_classes=12

From a clone, `python check_dataset.py` is the same command. spade-train runs the same check before training.
"""

import sys

from absl import flags
from ml_collections import config_flags

from spade_tf import cli
from spade_tf.config import resolve_config_spec, validate
from spade_tf.data import setup as data_setup
from spade_tf.data.check import DatasetError

DEFAULT_CONFIG = "demo"


def define_flags():
    config_flags.DEFINE_config_file(
        "config", resolve_config_spec(DEFAULT_CONFIG), cli.config_help(), lock_config=True
    )


def main(argv):
    del argv
    try:
        config = validate(flags.FLAGS.config)
        data_setup.prepare_data(config, run_check=True)
    except DatasetError as e:
        if e.report is None:
            cli.fail(e)
        sys.exit(1)  # the report, naming each file and its fix, is printed
    except (ValueError, FileNotFoundError) as e:
        # A config value or a dataset folder that does not exist: one line, no traceback.
        cli.fail(e)
    print("Dataset OK.")


def run():
    cli.run_command(sys.modules[__name__], main, define_flags, default_config=DEFAULT_CONFIG)


if __name__ == "__main__":
    run()
