"""Timing of repeated calls: warm-up, then timed runs, each ending when the device's queued work is done."""

import statistics
import time


def time_calls(fn, warmup=2, runs=5, sync=True):
    """Times `fn()`; each call is followed by a device sync. Returns median/min/max seconds.

    Args:
        fn: a callable without arguments.
        warmup: calls before timing (the first one traces and compiles; at least 1).
        runs: timed calls (at least 1).
        sync: wait for TF's queued device work after each call (off for code that
            does not run through TF, such as the TFLite interpreter, which returns when done).
    """
    if sync:
        # Imported only here: a TFLite phase times without TensorFlow in its process (see child.py).
        import tensorflow as tf

        sync = tf.test.experimental.sync_devices
    else:
        sync = lambda: None  # noqa: E731

    if warmup < 1 or runs < 1:
        raise ValueError(
            f"warmup={warmup}, runs={runs}: both must be at least 1 (warm-up traces the function)."
        )
    first = None
    for i in range(warmup):
        start = time.perf_counter()
        fn()
        sync()
        if i == 0:
            first = time.perf_counter() - start
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return dict(
        median_s=statistics.median(times),
        min_s=min(times),
        max_s=max(times),
        runs=runs,
        first_call_s=first,
        times_s=times,
    )
