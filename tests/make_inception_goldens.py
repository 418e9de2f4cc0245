"""Golden FID features from pytorch-fid's own network, with a seeded random state dict.

Writes `tests/fixtures/inception-golden/features.npz`: for each input size, the full 2048-d pool3
features that `pytorch_fid.inception.InceptionV3([3])` (resize to 299 and [-1, 1] normalisation on, its
defaults) computes for `golden_inputs()` with `seeded_state_dict`. `tests/inception_test.py` compares
spade_tf's network with them. Regenerate (needs PyTorch, pytorch-fid 0.3.0 and torchvision; the test
itself needs neither):

    pip install pytorch-fid==0.3.0 torchvision==0.28.0
    python tests/make_inception_goldens.py
"""

import os
import zlib

import numpy as np

OUTPUT = os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "fixtures", "inception-golden", "features.npz"
)
# (height, width): the 299 input itself, an upsampled odd size, and a downsampled one.
SIZES = ((299, 299), (37, 51), (400, 300))


def seeded_state_dict(shapes):
    """A reproducible random pytorch-fid state dict (per-key seeds, so key order does not matter).

    Scaled so activations stay O(1) through the 94 conv layers.
    """
    out = {}
    for key, shape in shapes.items():
        rng = np.random.default_rng(zlib.crc32(key.encode()))
        if key.endswith("conv.weight"):
            value = rng.standard_normal(shape) * np.sqrt(2.0 / np.prod(shape[1:]))
        elif key.endswith(("bn.weight", "bn.running_var")):
            value = rng.uniform(0.5, 1.5, shape)
        else:
            value = rng.standard_normal(shape) * 0.1
        out[key] = value.astype(np.float32)
    return out


def golden_inputs(height, width):
    """Two uint8 NHWC images: noise, and a smooth colour ramp (both sides of the resize matter)."""
    images = np.random.default_rng(height * 1000 + width).integers(
        0, 256, (2, height, width, 3), dtype=np.uint8
    )
    yy, xx, cc = np.meshgrid(np.arange(height), np.arange(width), np.arange(3), indexing="ij")
    images[1] = (5 * xx + 3 * yy + 80 * cc) % 256
    return images


def _seeded_loader(url, progress=True):
    """Stands in for pytorch-fid's weight download: the seeded state dict of the network being built.

    `fid_inception_v3` builds the network in its local `inception`, then loads what this returns.
    """
    import sys

    import torch  # only the generator needs PyTorch

    network = sys._getframe(1).f_locals["inception"]
    shapes = {
        k: tuple(v.shape) for k, v in network.state_dict().items() if not k.endswith("num_batches_tracked")
    }
    state = {k: torch.from_numpy(v) for k, v in seeded_state_dict(shapes).items()}
    state.update({k: v for k, v in network.state_dict().items() if k.endswith("num_batches_tracked")})
    return state


def main():
    import sys
    import types

    import torch  # only the generator needs PyTorch and pytorch-fid

    # torchvision's C++ ops are not needed (pure-Python Inception blocks); a CPU-only torch build may lack
    # the kernels its meta registrations refer to.
    sys.modules.setdefault(
        "torchvision._meta_registrations", types.ModuleType("torchvision._meta_registrations")
    )
    import pytorch_fid.inception as pytorch_fid_inception

    pytorch_fid_inception.load_state_dict_from_url = _seeded_loader
    model = pytorch_fid_inception.InceptionV3([3]).eval()
    out = {}
    with torch.no_grad():
        for height, width in SIZES:
            images = golden_inputs(height, width)
            x = torch.from_numpy(images.transpose(0, 3, 1, 2).astype(np.float32) / 255.0)
            out[f"features_{height}x{width}"] = model(x)[0][:, :, 0, 0].numpy()
    os.makedirs(os.path.dirname(OUTPUT), exist_ok=True)
    np.savez_compressed(OUTPUT, **out)
    print({k: (v.shape, float(np.abs(v).max())) for k, v in out.items()})


if __name__ == "__main__":
    main()
