"""Timing of a TFLite file with the LiteRT interpreter; no TensorFlow in the process, as on a device."""

import os

import numpy as np

from spade_tf.tools.benchmark.inputs import label_inputs, output_info
from spade_tf.tools.benchmark.timing import time_calls


def tflite_inputs(path, signature=None):
    """{input name: (shape_signature, numpy dtype)} of a TFLite file's signature."""
    _, runner, _ = _tflite_runner(path, signature, 1)
    return {
        name: ([int(n) for n in d["shape_signature"]], np.dtype(d["dtype"]))
        for name, d in runner.get_input_details().items()
    }


def _tflite_runner(path, signature, num_threads):
    try:
        # An optional dependency, needed only to time .tflite files.
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        raise ValueError(
            "TFLite timing needs the ai-edge-litert package: pip install ai-edge-litert"
        ) from None
    if not os.path.isfile(path):
        raise ValueError(f"--tflite {path}: no such file.")
    interpreter = Interpreter(model_path=path, num_threads=num_threads)
    signatures = interpreter.get_signature_list()
    if not signatures:
        raise ValueError(f"{path}: the model has no signature; export it with one (export.py does).")
    key = signature or sorted(signatures)[0]
    if key not in signatures:
        raise ValueError(f"{path}: no signature {key!r}; it has: {', '.join(sorted(signatures))}.")
    return interpreter, interpreter.get_signature_runner(key), key


def time_tflite(path, inputs, signature=None, num_threads=None, warmup=2, runs=5):
    """Times a TFLite signature runner (ai_edge_litert) on `inputs`.

    Args:
        path: the .tflite file.
        inputs: {input name: numpy array}, e.g. from `inputs.label_inputs`.
        signature: the signature key (default: the only or first one).
        num_threads: interpreter threads (default: the CPU count).
        warmup, runs: see `timing.time_calls`.

    Returns:
        `timing.time_calls`'s summary plus "batch", "num_threads", "signature" and "outputs".
    """
    num_threads = int(num_threads or os.cpu_count() or 1)
    interpreter, runner, key = _tflite_runner(path, signature, num_threads)
    expected = runner.get_input_details()
    if set(inputs) != set(expected):
        raise ValueError(
            f"{path} signature {key!r} takes inputs {sorted(expected)}; got {sorted(inputs)}. "
            "label_inputs() makes them."
        )
    try:
        outputs = runner(**inputs)
    except (RuntimeError, ValueError) as e:
        raise ValueError(
            f"{path}: the interpreter failed on inputs { {k: (v.shape, str(v.dtype)) for k, v in inputs.items()} }: "
            f"{str(e).splitlines()[0]} (the file has a fixed height and width; label_inputs() must use them)."
        ) from None
    summary = time_calls(lambda: runner(**inputs), warmup, runs, sync=False)
    del interpreter
    summary.update(
        batch=int(next(iter(inputs.values())).shape[0]),
        num_threads=num_threads,
        signature=key,
        outputs=output_info(outputs),
    )
    return summary


def phase(task):
    """The `tflite` phase: the file at batch 1 and the larger batch (or its fixed batch), in the child process."""
    specs = tflite_inputs(task["path"])
    maps = [shape for shape, _ in specs.values() if len(shape) == 3]
    if not maps or min(maps[0][1:]) < 1:
        raise ValueError(
            f"{task['path']}: inputs {specs}; the export contract takes [N, H, W] maps of a fixed H and W."
        )
    height, width = maps[0][1], maps[0][2]
    # A file exported with a fixed batch runs at that batch only.
    batches = task["batches"] if maps[0][0] == -1 else [maps[0][0]]
    out = {"height": height, "width": width}
    for batch in batches:
        inputs = label_inputs(specs, batch, height, width, task["num_label_ids"])
        out[str(batch)] = time_tflite(task["path"], inputs, warmup=task["warmup"], runs=task["runs"])
    return out
