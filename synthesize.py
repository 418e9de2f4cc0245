"""Synthesizes images from label maps into an HTML gallery (the `spade-synthesize` command).

    python synthesize.py --model workdirs/demo --split val

A thin wrapper kept for clones: the command lives in spade_tf/cli/synthesize.py (`--help` lists its flags).
"""

from spade_tf.cli import synthesize

if __name__ == "__main__":
    synthesize.run()
