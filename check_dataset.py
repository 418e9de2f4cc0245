"""Scans a dataset as training would and prints the report (the `spade-check-dataset` command).

    python check_dataset.py --config=configs/custom.py --config.data.root=/data/mine --config.data.num_classes=12

A thin wrapper kept for clones: the command lives in spade_tf/cli/check_dataset.py (`--help` lists its flags).
"""

from spade_tf.cli import check_dataset

if __name__ == "__main__":
    check_dataset.run()
