"""The machine's reference speed in the same run: float32 matrix products in a `tf.function`."""

import numpy as np
import tensorflow as tf

from spade_tf.tools.benchmark.timing import time_calls


def phase(task):
    """The `matmul` phase: float32 products of two N x N matrices (`task["size"]`, `task["chain"]` per call)."""
    n, chain = task["size"], task["chain"]
    a = tf.random.normal([n, n])
    # Variance 1/n keeps a chain of products at unit scale (no overflow to inf).
    b = tf.random.normal([n, n], stddev=1.0 / np.sqrt(n))

    @tf.function
    def products(x, y):
        for _ in range(chain):
            x = tf.matmul(x, y)
        return x

    timing = time_calls(lambda: products(a, b), task["warmup"], task["runs"])
    return {"timing": timing, "gflop": 2 * n**3 * chain / 1e9}
