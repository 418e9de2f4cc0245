"""Trains SPADE (the `spade-train` command).

    python train.py                                   # the demo, ~10 min on 2 CPU cores
    python train.py --config=configs/demo.py:small    # a one-minute smoke run (or --config=demo:small)

A thin wrapper kept for clones: the command lives in spade_tf/cli/train.py (`--help` lists its flags).
"""

from spade_tf.cli import train

if __name__ == "__main__":
    train.run()
