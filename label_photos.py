"""Labels photos with a segmentation SavedModel into a dataset (the `spade-label-photos` command).

    python label_photos.py --export_demo_oracle=/tmp/oracle_savedmodel

A thin wrapper kept for clones: the command lives in spade_tf/cli/label_photos.py (`--help` lists its flags).
"""

from spade_tf.cli import label_photos

if __name__ == "__main__":
    label_photos.run()
