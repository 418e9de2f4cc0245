"""Timing of an exported SavedModel's signature (what TF Serving runs)."""

import os

import tensorflow as tf

from spade_tf.tools.benchmark.inputs import artifact_size, label_inputs, output_info
from spade_tf.tools.benchmark.timing import time_calls


def saved_model_inputs(export_dir, signature="serving_default"):
    """{input name: (shape with -1 for unknown sizes, numpy dtype)} of a SavedModel signature."""
    return {
        name: ([-1 if d is None else d for d in spec.shape.as_list()], spec.dtype.as_numpy_dtype)
        for name, spec in _load_signature(export_dir, signature)[1].items()
    }


def _load_signature(export_dir, signature):
    if not os.path.isfile(os.path.join(export_dir, "saved_model.pb")):
        raise ValueError(f"{export_dir}: no saved_model.pb there; pass the folder that export.py wrote.")
    loaded = tf.saved_model.load(export_dir)
    if signature not in loaded.signatures:
        raise ValueError(
            f"{export_dir}: no signature {signature!r}; it has: {', '.join(sorted(loaded.signatures)) or 'none'}."
        )
    fn = loaded.signatures[signature]
    return (loaded, fn), fn.structured_input_signature[1]


def time_saved_model(export_dir, signature="serving_default", inputs=None, warmup=2, runs=5):
    """Times one SavedModel signature call on `inputs`.

    Args:
        export_dir: the SavedModel folder.
        signature: the signature key.
        inputs: {input name: numpy array}, e.g. from `inputs.label_inputs`.
        warmup, runs: see `timing.time_calls`.

    Returns:
        `timing.time_calls`'s summary plus "batch" and "outputs" (shape and dtype per output).
    """
    (loaded, fn), specs = _load_signature(export_dir, signature)
    if inputs is None or set(inputs) != set(specs):
        raise ValueError(
            f"{export_dir} signature {signature!r} takes inputs {sorted(specs)}; "
            f"got {sorted(inputs or {})}. label_inputs() makes them."
        )
    feed = {k: tf.constant(v) for k, v in inputs.items()}
    try:
        outputs = fn(**feed)
    except (tf.errors.InvalidArgumentError, TypeError, ValueError) as e:
        raise ValueError(
            f"{export_dir} signature {signature!r} failed on inputs "
            f"{ {k: (v.shape, str(v.dtype)) for k, v in inputs.items()} }: {str(e).splitlines()[0]} "
            "(pass the config the model was exported from: it sets the label ids and resolution)."
        ) from None
    del loaded  # kept alive above while the signature is called
    summary = time_calls(lambda: fn(**feed), warmup, runs)
    summary.update(batch=int(next(iter(inputs.values())).shape[0]), outputs=output_info(outputs))
    return summary


def phase(task):
    """The `saved_model` phase: the artifact at batch 1 and the larger batch, in the child process."""
    specs = saved_model_inputs(task["path"], task["signature"])
    height, width = artifact_size(specs, (task["height"], task["width"]))
    out = {"height": height, "width": width}
    for batch in task["batches"]:
        inputs = label_inputs(specs, batch, height, width, task["num_label_ids"])
        out[str(batch)] = time_saved_model(
            task["path"], task["signature"], inputs, task["warmup"], task["runs"]
        )
    return out
