"""Scans a dataset as training would and prints the report; exits 1 on any error.

python check_dataset.py --config=configs/ade20k.py --config.data.root=/data/ADEChallengeData2016
python check_dataset.py --config=configs/custom.py --config.data.root=/data/mine --config.data.num_classes=12
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from spade_tf.config import check_command_line, validate  # noqa: E402
from spade_tf.data import setup as data_setup  # noqa: E402
from spade_tf.data.check import DatasetError  # noqa: E402

DEFAULT_CONFIG = os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs", "demo.py")


def main(argv):
    del argv
    try:
        config = validate(flags.FLAGS.config)
        data_setup.prepare_data(config, run_check=True)
    except DatasetError as e:
        if e.report is None:
            sys.exit(f"check_dataset.py: error: {e}")
        sys.exit(1)  # the report, naming each file and its fix, is printed
    except (ValueError, FileNotFoundError) as e:
        # A config value or a dataset folder that does not exist: one line, no traceback.
        sys.exit(f"check_dataset.py: error: {e}")
    print("Dataset OK.")


if __name__ == "__main__":
    try:
        check_command_line(sys.argv[1:], DEFAULT_CONFIG)
    except ValueError as e:
        sys.exit(f"check_dataset.py: error: {e}")
    config_flags.DEFINE_config_file("config", DEFAULT_CONFIG, "Config file.", lock_config=True)
    app.run(main)
