"""Measures SPADE's speed and memory here (the `spade-benchmark` command).

    python benchmark.py --config=configs/demo.py:small --runs=2

A thin wrapper kept for clones: the command lives in spade_tf/cli/benchmark.py (`--help` lists its flags).
"""

from spade_tf.cli import benchmark

if __name__ == "__main__":
    benchmark.run()
