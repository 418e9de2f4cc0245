"""The FLOPs of SPADE's networks, counted from their layers' shapes, and the published counts.

Every conv and linear layer counts 2 x multiply-adds, plus one add per output element for a bias; what a
training step counts, and why, is in the package docstring (spade_tf/tools/benchmark/__init__.py).
"""

import dataclasses

import numpy as np

from spade_tf.models.generator import UPSAMPLING_CHOICES

# Conv FLOPs (2 x multiply-adds) of the official models; the training step
# without the VGG loss, at batch 1. `model` holds the fields of `configs.model_summary`
# that must match.
REFERENCES = {
    "ade20k": {
        "model": dict(
            semantic_channels=151,
            base_filters=64,
            num_upsampling_layers="normal",
            height=256,
            width=256,
            spade_hidden_filters=128,
            spade_kernel_size=3,
            use_vae=False,
        ),
        "discriminator": dict(disc_filters=64, disc_scales=2, disc_layers=4),
        "generator_forward_gflop": 362.3,  # per image
        "train_step_gflop": 1545.6,  # batch 1
    },
    "cityscapes": {
        "model": dict(
            semantic_channels=36,
            base_filters=64,
            num_upsampling_layers="more",
            height=256,
            width=512,
            spade_hidden_filters=128,
            spade_kernel_size=3,
            use_vae=False,
        ),
        "discriminator": None,
        "generator_forward_gflop": 562.6,
        "train_step_gflop": None,
    },
}
MODEL_SCOPES = ("generator", "discriminator", "encoder")


def reference_case(summary):
    """(name, generator reference matches, training-step reference matches), or (None, False, False)."""
    for name, ref in REFERENCES.items():
        if all(summary[k] == v for k, v in ref["model"].items()):
            disc = ref["discriminator"]
            train = disc is not None and all(summary[k] == v for k, v in disc.items())
            return name, True, train and ref["train_step_gflop"] is not None
    return None, False, False


def reference_gflop(summary, phase, batch):
    """The published GFLOP of `phase` ("generator_forward" or "train_step") at `batch`, or None.

    Conv FLOPs are linear in the batch, so the per-image (forward) and batch-1
    (training step) numbers are scaled by it.
    """
    name, forward_ok, train_ok = reference_case(summary)
    if phase == "generator_forward" and forward_ok:
        return REFERENCES[name]["generator_forward_gflop"] * batch
    if phase == "train_step" and train_ok:
        return REFERENCES[name]["train_step_gflop"] * batch
    return None


@dataclasses.dataclass(frozen=True)
class Layer:
    """A conv or linear layer of a SPADE network and what its forward costs per image.

    Attributes:
        model: "generator", "discriminator" or "encoder".
        name: the layer's path in the model, e.g. "head_0/norm_0/mlp_shared".
        kernel: (kh, kw, in, out) of a conv, (in, out) of a linear layer.
        output: (h, w) of a conv's output; () for a linear layer.
        bias: the layer adds a bias.
        input_grad: its input depends on trainable weights, so backprop computes the
            input gradient (false for layers that read the label map or the real image;
            a discriminator's first layers, which read the fake image, are settled per step).
    """

    model: str
    name: str
    kernel: tuple
    output: tuple
    bias: bool
    input_grad: bool

    @property
    def macs(self):
        """Multiply-adds of the forward, per image (the weight and input gradients have as many)."""
        return int(np.prod(self.output, dtype=np.int64)) * int(np.prod(self.kernel, dtype=np.int64))

    @property
    def bias_adds(self):
        return int(np.prod(self.output, dtype=np.int64)) * self.kernel[-1] if self.bias else 0


def generator_layers(summary):
    """The generator's conv and linear layers (official SPADEGenerator) at the summary's resolution."""
    nf, sem = summary["base_filters"], summary["semantic_channels"]
    hidden, k = summary["spade_hidden_filters"], summary["spade_kernel_size"]
    mode = summary["num_upsampling_layers"]
    n_up = UPSAMPLING_CHOICES[mode]
    h, w = summary["height"] // 2**n_up, summary["width"] // 2**n_up
    layers = []

    def add(name, kernel, output, bias=True, input_grad=True):
        layers.append(Layer("generator", name, tuple(kernel), tuple(output), bias, input_grad))

    if summary["use_vae"]:
        add("fc", (summary["latent_dim"], 16 * nf * h * w), ())  # z comes from the encoder
    else:
        add("fc", (3, 3, sem, 16 * nf), (h, w), input_grad=False)

    def block(name, fin, fout):
        def spade(norm, channels):
            add(f"{name}/{norm}/mlp_shared", (k, k, sem, hidden), (h, w), input_grad=False)
            add(f"{name}/{norm}/mlp_gamma", (k, k, hidden, channels), (h, w))
            add(f"{name}/{norm}/mlp_beta", (k, k, hidden, channels), (h, w))

        middle = min(fin, fout)
        if fin != fout:
            spade("norm_s", fin)
            add(f"{name}/conv_s", (1, 1, fin, fout), (h, w), bias=False)
        spade("norm_0", fin)
        add(f"{name}/conv_0", (3, 3, fin, middle), (h, w))
        spade("norm_1", middle)
        add(f"{name}/conv_1", (3, 3, middle, fout), (h, w))

    block("head_0", 16 * nf, 16 * nf)
    h, w = 2 * h, 2 * w
    block("G_middle_0", 16 * nf, 16 * nf)
    if mode in ("more", "most"):
        h, w = 2 * h, 2 * w
    block("G_middle_1", 16 * nf, 16 * nf)
    widths = [16 * nf, 8 * nf, 4 * nf, 2 * nf, nf] + ([nf // 2] if mode == "most" else [])
    for i, (fin, fout) in enumerate(zip(widths, widths[1:])):
        h, w = 2 * h, 2 * w
        block(f"up_{i}", fin, fout)
    add("conv_img", (3, 3, widths[-1], 3), (h, w))
    return layers


def discriminator_layers(summary):
    """The multi-scale discriminator's convs, per image of its input (semantics + image)."""
    cin, ndf, num_layers = summary["semantic_channels"] + 3, summary["disc_filters"], summary["disc_layers"]
    h, w = summary["height"], summary["width"]
    layers = []
    for scale in range(summary["disc_scales"]):
        if scale:  # avg_pool2d(3, stride 2, padding 1)
            h, w = (h - 1) // 2 + 1, (w - 1) // 2 + 1
        # kernel 4, padding 2: stride 2 gives s // 2 + 1, stride 1 gives s + 1.
        oh, ow = h // 2 + 1, w // 2 + 1
        nf = ndf
        name = f"discriminator_{scale}"
        layers.append(Layer("discriminator", f"{name}/model0", (4, 4, cin, nf), (oh, ow), True, False))
        for n in range(1, num_layers):
            prev, nf = nf, min(nf * 2, 512)
            oh, ow = (oh + 1, ow + 1) if n == num_layers - 1 else (oh // 2 + 1, ow // 2 + 1)
            layers.append(Layer("discriminator", f"{name}/model{n}", (4, 4, prev, nf), (oh, ow), False, True))
        layers.append(
            Layer("discriminator", f"{name}/model{num_layers}", (4, 4, nf, 1), (oh + 1, ow + 1), True, True)
        )
    return layers


def encoder_layers(summary):
    """The style encoder's layers (empty without a VAE); its input is resized to encoder_image_size first."""
    if not summary["use_vae"]:
        return []
    size, nf = summary["encoder_image_size"], summary["base_filters"]
    layers, fin = [], 3
    for i in range(int(np.log2(size)) - 2):
        fout, size = nf * min(2**i, 8), size // 2
        layers.append(Layer("encoder", f"layer{i + 1}", (3, 3, fin, fout), (size, size), False, i > 0))
        fin = fout
    for name in ("fc_mu", "fc_var"):
        layers.append(Layer("encoder", name, (fin * 16, summary["latent_dim"]), (), True, True))
    return layers


def check_layers(layers, model):
    """Checks that `layers` are exactly `model`'s conv and linear kernels (names, shapes, biases).

    This ties the FLOP count to the network that is timed: an architecture
    change that the count does not know about fails here.
    """
    kernels = {
        v.path.split("/", 1)[1][: -len("/kernel")]: tuple(v.shape)
        for v in model.weights
        if v.path.endswith("/kernel")
    }
    biases = {v.path.split("/", 1)[1][: -len("/bias")] for v in model.weights if v.path.endswith("/bias")}
    expected = {layer.name: layer for layer in layers}
    problems = sorted(set(kernels) ^ set(expected))
    problems += [
        f"{name}: kernel {kernels[name]} vs counted {expected[name].kernel}"
        for name in sorted(set(kernels) & set(expected))
        if kernels[name] != expected[name].kernel or (name in biases) != expected[name].bias
    ]
    if problems:
        raise ValueError(
            f"{model.name}: the FLOP count's layer list does not match the model ({', '.join(problems[:5])}); "
            "update spade_tf/tools/benchmark/flops.py's *_layers functions with the architecture change."
        )


class _Tally:
    """Sums 2 x multiply-adds (`macs`) and bias adds (`bias`) per model."""

    def __init__(self, *parts):
        self.macs = {m: sum(p.macs[m] for p in parts) for m in MODEL_SCOPES}
        self.bias = {m: sum(p.bias[m] for p in parts) for m in MODEL_SCOPES}

    def add(self, layers, batch, weight_grad=False, input_grad=lambda layer: False):
        """Adds the forward of `layers` on `batch` images, and the gradients asked for."""
        for layer in layers:
            passes = 1 + int(weight_grad) + int(bool(input_grad(layer)))
            self.macs[layer.model] += 2 * layer.macs * batch * passes
            # A bias gradient sums the output gradient: one add per element, like the forward's.
            self.bias[layer.model] += layer.bias_adds * batch * (1 + int(weight_grad))
        return self

    def gflop(self):
        return (sum(self.macs.values()) + sum(self.bias.values())) / 1e9


def model_flops(summary, batch=1, train_batch=1):
    """The model's FLOPs (GFLOP) of a generator forward and of a training step.

    Returns:
        {"generator_forward": ..., "train_G_step": ..., "train_D_step": ..., "train_step": ...},
        each {"gflop": our count (2 x multiply-adds + bias adds), "mac_gflop", "bias_gflop",
        "official_convention_gflop", "reference_gflop" (published, or None), "by_model"}.
    """
    g, d, e = generator_layers(summary), discriminator_layers(summary), encoder_layers(summary)
    generator_side = g + e
    needed = lambda layer: layer.input_grad  # noqa: E731
    every = lambda layer: True  # noqa: E731
    out = {}

    def entry(ours, official, reference=None):
        return dict(
            gflop=ours.gflop(),
            mac_gflop=sum(ours.macs.values()) / 1e9,
            bias_gflop=sum(ours.bias.values()) / 1e9,
            official_convention_gflop=sum(official.macs.values()) / 1e9,
            reference_gflop=reference,
            by_model={m: (ours.macs[m] + ours.bias[m]) / 1e9 for m in MODEL_SCOPES},
        )

    forward = _Tally().add(g, batch)
    out["generator_forward"] = entry(forward, forward, reference_gflop(summary, "generator_forward", batch))
    b, pair = train_batch, 2 * train_batch  # D sees fake and real in one batch
    # G step: the tape asks for G (and E) gradients only; D's input gradients carry them to the fake image.
    g_step = (
        _Tally().add(generator_side, b, weight_grad=True, input_grad=needed).add(d, pair, input_grad=every)
    )
    # D step: the fake is a constant (stop_gradient), so D's first layers need no input gradient.
    # With train.reuse_fakes it judges the G step's fakes: no E and G forward.
    d_step = _Tally() if summary.get("reuse_fakes") else _Tally().add(generator_side, b)
    d_step.add(d, pair, weight_grad=True, input_grad=needed)
    # The official code also computes D's weight gradients in the G step and, through
    # fake.requires_grad_(), D's first-layer input gradients in the D step.
    g_official = _Tally().add(generator_side, b, weight_grad=True, input_grad=needed)
    g_official.add(d, pair, weight_grad=True, input_grad=every)
    d_official = _Tally().add(generator_side, b).add(d, pair, weight_grad=True, input_grad=every)
    out["train_G_step"] = entry(g_step, g_official)
    out["train_D_step"] = entry(d_step, d_official)
    out["train_step"] = entry(
        _Tally(g_step, d_step),
        _Tally(g_official, d_official),
        reference_gflop(summary, "train_step", train_batch),
    )
    return out
