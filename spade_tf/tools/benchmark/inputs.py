"""Random inputs in the export contract's form (int32 label and instance maps, seeds), and what an
exported artifact's input shapes fix."""

import numpy as np


def label_inputs(input_specs, batch, height, width, num_label_ids, seed=0):
    """Random inputs for an exported signature (the export contract's int32 inputs).

    Args:
        input_specs: {name: (shape, numpy dtype)} as `saved_model_inputs` and
            `tflite_inputs` give them. [N, H, W] inputs get label ids in
            [0, num_label_ids), or instance ids when the name says "instance";
            [N] inputs (a VAE's "seed") get seeds.
        batch, height, width: the size of the maps.
        num_label_ids: label_nc (+1 with a don't-care label).
    """
    rng = np.random.default_rng(seed)
    out = {}
    for name, (shape, dtype) in sorted(input_specs.items()):
        dtype = np.dtype(dtype)
        if not np.issubdtype(dtype, np.integer) or len(shape) not in (1, 3):
            raise ValueError(
                f"input {name!r} is {dtype} {list(shape)}; the export contract takes integer [N, H, W] "
                "label and instance maps and an [N] seed."
            )
        if len(shape) == 1:
            out[name] = rng.integers(0, 2**31 - 1, size=(batch,)).astype(dtype)
        else:
            high = 4 if "instance" in name else num_label_ids
            out[name] = rng.integers(0, high, size=(batch, height, width)).astype(dtype)
    return out


def artifact_size(input_specs, default):
    """(height, width) fixed by an artifact's [N, H, W] inputs, else `default`."""
    maps = [shape for shape, _ in input_specs.values() if len(shape) == 3]
    if not maps:
        return tuple(default)
    h, w = maps[0][1], maps[0][2]
    return (h if h and h > 0 else default[0], w if w and w > 0 else default[1])


def output_info(outputs):
    return {k: {"shape": list(np.shape(v)), "dtype": str(np.asarray(v).dtype)} for k, v in outputs.items()}
