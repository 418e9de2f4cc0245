"""Measures a model: FID, KID, segmentation mIoU, the demo oracle (the `spade-evaluate` command).

    python evaluate.py --model workdirs/demo

A thin wrapper kept for clones: the command lives in spade_tf/cli/evaluate.py (`--help` lists its flags).
"""

from spade_tf.cli import evaluate

if __name__ == "__main__":
    evaluate.run()
