"""PyTorch-convention state dicts on disk: `.pth` (needs PyTorch) or `.npz` with the same keys.

The official checkpoint converter (spade_tf.tools.convert) and pytorch-fid's Inception weights
(spade_tf.evaluation.inception) read them.
"""

import os

import numpy as np


class StateDictMismatch(ValueError):
    """The state dict does not fit the model the options describe."""


def load_state_dict(path):
    """Reads an official state dict from a `.pth` (needs torch) or `.npz` file."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"state dict file not found: {path}")
    if path.endswith(".npz"):
        with np.load(path) as data:
            return {k: data[k] for k in data.files}
    if path.endswith((".pth", ".pt")):
        try:
            import torch  # optional dependency: only .pth files need it
        except ImportError:
            raise ImportError(
                f"reading {path} needs PyTorch (pip install -r requirements-torch.txt), "
                "or convert it to .npz with the same keys elsewhere."
            ) from None
        state = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(state, dict):
            raise ValueError(f"{path} holds a {type(state).__name__}, not a state dict.")
        return {k: v.detach().cpu().numpy() for k, v in state.items()}
    raise ValueError(f"{path}: expected a .pth or .npz state dict.")


def save_state_dict(state_dict, path):
    """Writes a state dict as `.npz`, or `.pth` (needs torch) for the official code."""
    if path.endswith(".pth"):
        import torch  # optional dependency: only .pth files need it

        torch.save({k: torch.from_numpy(np.array(v)) for k, v in state_dict.items()}, path)
    else:
        np.savez(path, **state_dict)
