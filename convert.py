"""Converts official NVlabs/SPADE checkpoints to spade_tf and back (the `spade-convert` command).

    python convert.py --dataset ade20k --checkpoint_dir checkpoints/ade20k_pretrained --output ade20k.keras
    python -m spade_tf.convert ...                # the same command

A thin wrapper kept for clones: the command lives in spade_tf/cli/convert.py (`--help` lists its flags).
"""

from spade_tf.cli import convert

if __name__ == "__main__":
    convert.run()
