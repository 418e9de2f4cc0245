"""Speed and memory of SPADE on this machine: generator forward, training step, exported models.

    python benchmark.py --config=configs/ade20k.py --output=result.json       # a training config
    python benchmark.py --dataset=cityscapes                                   # an official preset (ngf 64)
    python benchmark.py --config=configs/ade20k.py --phases=forward --batch=1  # the generator alone
    python benchmark.py --config=configs/ade20k.py --phases=forward \
        --saved_model=export/ade20k --tflite=ade20k_fp32.tflite,ade20k_int8.tflite

What is measured (`run_benchmark`), each phase in its own child process
(`python -m spade_tf.tools.benchmark --child TASK RESULT`) so that its peak resident
memory (`ru_maxrss`) is its own:

* `matmul`: float32 `tf.matmul` of two N x N matrices inside a `tf.function`
  (N = 4096 on a GPU, 2048 on a CPU; a GPU call chains 10 products so that
  the call overhead does not count), the machine's reference speed in the same
  run.
* `generator_forward`: `G(semantics, training=False, one_hot=True)` in a
  `tf.function` at batch 1 and at `batch`, on a one-hot semantic map made
  beforehand from random label ids (plus instance edges when the config uses
  them), as `Synthesizer` and the exports call it.
* `train_G_step`, `train_D_step`, `train_step`: `spade_tf.training.trainer.GANTrainer`'s
  distributed G step, D step, and `train_step` (G then D, with the losses read
  back) under a one-device MirroredStrategy, without the VGG loss, at
  `train_batch`.
* `saved_model`, `tflite`: the same forward through an exported artifact
  (`time_saved_model`, `time_tflite`).

Each timing is `warmup` calls (the first one traces and compiles; its time is
kept as `first_call_s`), then `runs` calls, each followed by
`tf.test.experimental.sync_devices()` so that a GPU's queued work is inside
the time; the median, minimum and maximum are reported. On a GPU the float32,
bfloat16 (`mixed_bfloat16` policy) and XLA (`jit_compile=True`) variants run;
on a CPU only float32 runs unless `variants` asks for more. TensorFloat-32 is
on by default on Ampere and newer GPUs, as in TensorFlow; `tf32` records and
sets it.

FLOPs are the model's, counted from its layers' shapes (`generator_layers`,
`discriminator_layers`, `encoder_layers`; each phase checks that list against
the kernels of the models it times): every conv and linear layer as 2 x
multiply-adds, plus one add per output element for a bias (and one per element
for a bias gradient). Not counted: norms, activations, SPADE's modulation,
resizes, losses, the optimiser, spectral norm's matrix-vector products (all
elementwise or tiny). A training step counts the gradients that TF's tape
computes (TF prunes the rest): G step = G (and E) forward, weight and input
gradients (no input gradient for layers that read the label map or the real
image) + D forward and input gradients on fake and real; D step = G (and E)
forward + D forward, weight gradients and input gradients (none for D's first
layers, whose input is constant there). The count is a property of the model,
not of how a version of the code computes it, so GFLOP/s stay comparable when
the implementation changes; `count_graph_flops` counts a traced graph's
conv/bias/matmul ops instead, and the tests check that the two agree for the
plain-conv computation.

The official numbers (`REFERENCES`) count convolutions only, as 2 x
multiply-adds: our ADE20K generator's conv count is 362.30 GFLOP against the
published 362.3 (+0.13 GFLOP of bias adds in our own count). The official
PyTorch step also computes two gradients nobody uses: D's weight gradients in
the G step (D's parameters still require grad there) and D's first-layer input
gradients in the D step (it calls `fake.requires_grad_()`); the
`official_convention` count adds them, and gives 1545.6 GFLOP for ADE20K at
batch 1, the published number. "Effective GFLOP/s" is the published count
divided by our time, reported when the model matches a published case;
"GFLOP/s" is our own count divided by our time.

The report (`run_benchmark`, written as JSON by `--output`):

    schema_version   1
    config           the model's fields (`model_summary`) and "source"
    environment      device, cpu, gpus, cpu_count, tensorflow, keras, python, tf_enable_onednn_opts
    settings         the `Settings` used (variants resolved)
    reference        case ("ade20k", "cityscapes" or null), generator_forward_gflop_per_image,
                     train_step_gflop_batch_1 (null where the model differs from the published one)
    flops            {generator_forward_batch_<n>, train_G_step, train_D_step, train_step:
                      {gflop (ours), mac_gflop, bias_gflop, official_convention_gflop,
                       reference_gflop (published or null), by_model {generator, discriminator, encoder}}}
    measurements     [{MEASUREMENT_KEYS}, ...]; phase is one of matmul, generator_forward,
                     train_G_step, train_D_step, train_step, saved_model, tflite; variant is
                     float32, bfloat16, xla, xla_bfloat16 or the artifact's file name; artifact
                     rows add artifact, height, width, outputs; the matmul row adds size
    not_run          [{variant, reason} or {phase, variant, batch, reason}]

Times are seconds, memory MiB (`rss_peak_mb`: the phase's child process peak;
`rss_import_mb`: the same process after its imports: TensorFlow, and spade_tf for
the model phases; a TFLite phase imports no TensorFlow and loads LiteRT within the phase;
`gpu_peak_mb`: TensorFlow's peak GPU allocation, null on a CPU).
"""

import argparse
import dataclasses
import json
import os
import platform
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time

import ml_collections
import numpy as np

SCHEMA_VERSION = 1
VARIANTS = ("float32", "bfloat16", "xla", "xla_bfloat16")
PHASES = ("matmul", "forward", "train")
# Conv FLOPs (2 x multiply-adds) of the official models; the training step
# without the VGG loss, at batch 1. `model` holds the fields of `model_summary`
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
# The config's dataset name for each official preset of spade_tf.tools.convert.
_PRESET_DATASETS = {"ade20k": "ade20k", "cityscapes": "cityscapes", "coco": "coco_stuff"}
MEASUREMENT_KEYS = (
    "phase",
    "variant",
    "batch",
    "device",
    "median_s",
    "min_s",
    "max_s",
    "runs",
    "first_call_s",
    "times_s",
    "images_per_s",
    "gflop",
    "gflops_per_s",
    "reference_gflop",
    "effective_gflops_per_s",
    "rss_peak_mb",
    "rss_import_mb",
    "gpu_peak_mb",
)
_FLOP_KINDS = ("conv", "conv_grad_input", "conv_grad_filter", "bias", "matmul")
_MODEL_SCOPES = ("generator", "discriminator", "encoder")


# ---------------------------------------------------------------------------
# Configs
# ---------------------------------------------------------------------------


def parse_resolution(text):
    """Parses a resolution: HEIGHTxWIDTH, or one number for a square -> (height, width)."""
    parts = str(text).lower().split("x")
    try:
        sizes = [int(p) for p in parts]
    except ValueError:
        sizes = []
    if len(sizes) == 1:
        sizes = sizes * 2
    if len(sizes) != 2 or min(sizes) < 1:
        raise ValueError(
            f"resolution={text!r}: expected HEIGHTxWIDTH in pixels such as 256x512, or one number for a square."
        )
    return tuple(sizes)


def config_from_preset(name):
    """The config of an official dataset preset (spade_tf.tools.convert.DATASET_PRESETS) with official widths."""
    from spade_tf.tools.convert import DATASET_PRESETS
    from spade_tf.training.config import base_config

    if name not in DATASET_PRESETS:
        raise ValueError(
            f"dataset={name!r} is not a preset; choose one of: {', '.join(sorted(DATASET_PRESETS))}."
        )
    preset = DATASET_PRESETS[name]
    c = base_config()
    c.data.dataset = _PRESET_DATASETS[name]
    c.data.num_classes = preset["label_nc"]
    c.data.contain_dontcare_label = preset["contain_dontcare_label"]
    c.data.use_instance_map = not preset["no_instance"]
    c.data.crop_size = preset["crop_size"]
    c.data.aspect_ratio = preset["aspect_ratio"]
    c.model.num_upsampling_layers = preset["num_upsampling_layers"]
    return c


def resolve_config(config=None, dataset=None, resolution=None):
    """The config to benchmark, with `data.crop_size` / `aspect_ratio` set for `resolution`.

    Args:
        config: a ConfigDict, or a `configs/<name>.py[:variant]` path; or None.
        dataset: an official preset name (spade_tf.tools.convert.DATASET_PRESETS); or None.
        resolution: (height, width), "HxW", or None for the config's crop
            (width crop_size, height crop_size / aspect_ratio).

    Returns:
        (config, (height, width)); the config is a copy.
    """
    if (config is None) == (dataset is None):
        raise ValueError(
            "give exactly one of config (a configs/*.py file, e.g. configs/ade20k.py) or dataset "
            "(an official preset: ade20k, cityscapes, coco)."
        )
    if dataset is not None:
        c = config_from_preset(dataset)
    elif isinstance(config, str):
        from spade_tf.training.config import load_config_file

        c = load_config_file(config)
    else:
        c = ml_collections.ConfigDict(config.to_dict())
    c = ml_collections.ConfigDict(c.to_dict())  # unlocked copy
    if resolution is None:
        height, width = int(round(c.data.crop_size / c.data.aspect_ratio)), int(c.data.crop_size)
    else:
        height, width = parse_resolution(resolution) if isinstance(resolution, str) else tuple(resolution)
    from spade_tf.models.generator import UPSAMPLING_CHOICES, latent_grid

    multiple = 2 ** UPSAMPLING_CHOICES.get(c.model.num_upsampling_layers, 0)
    if height % multiple or width % multiple:
        raise ValueError(
            f"resolution {height}x{width}: both sides must be multiples of {multiple} for "
            f"num_upsampling_layers={c.model.num_upsampling_layers!r}; e.g. "
            f"{max(multiple, height // multiple * multiple)}x{max(multiple, width // multiple * multiple)}."
        )
    c.data.crop_size = width
    c.data.aspect_ratio = width / height
    # The VAE generator's output size is fixed by its latent grid: it must give this resolution too.
    sh, sw = latent_grid(width, width / height, c.model.num_upsampling_layers)
    if (sh * multiple, sw * multiple) != (height, width):
        raise ValueError(f"resolution {height}x{width} does not fit the generator's latent grid {sh}x{sw}.")
    return c, (height, width)


def model_summary(config):
    """The fields that fix the networks' arithmetic, for the report and the reference match."""
    from spade_tf.data.semantics import semantic_channels

    d, m = config.data, config.model
    return dict(
        dataset=d.dataset,
        semantic_channels=semantic_channels(d.num_classes, d.contain_dontcare_label, d.use_instance_map),
        num_label_ids=int(d.num_classes) + int(bool(d.contain_dontcare_label)),
        use_instance_map=bool(d.use_instance_map),
        base_filters=int(m.base_filters),
        num_upsampling_layers=m.num_upsampling_layers,
        height=int(round(d.crop_size / d.aspect_ratio)),
        width=int(d.crop_size),
        spade_hidden_filters=int(m.spade_hidden_filters),
        spade_kernel_size=int(m.spade_kernel_size),
        use_vae=bool(m.use_vae),
        latent_dim=int(m.latent_dim),
        encoder_image_size=int(m.encoder_image_size),
        disc_filters=int(m.disc_filters),
        disc_scales=int(m.disc_scales),
        disc_layers=int(m.disc_layers),
        fast_spade=bool(m.get("fast_spade", True)),  # not arithmetic: the same FLOPs, computed faster
    )


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


# ---------------------------------------------------------------------------
# FLOP counting
# ---------------------------------------------------------------------------


def _shape(tensor, op):
    shape = tensor.shape
    if shape.rank is None or not shape.is_fully_defined():
        raise ValueError(
            f"cannot count the FLOPs of {op.type} {op.name!r}: shape {shape} is not fully known; "
            "trace the function with fixed input shapes (batch, height, width)."
        )
    return [int(s) for s in shape]


def op_flops(op):
    """(kind, FLOPs) of one graph op (kind in _FLOP_KINDS), or None for ops that are not counted."""
    if op.type in ("Conv2D", "Conv2DBackpropInput", "Conv2DBackpropFilter"):
        if op.type == "Conv2D":
            per_output, outputs = _shape(op.inputs[1], op), _shape(op.outputs[0], op)
            kind = "conv"
        elif op.type == "Conv2DBackpropInput":  # (input_sizes, filter, out_backprop)
            per_output, outputs = _shape(op.inputs[1], op), _shape(op.inputs[2], op)
            kind = "conv_grad_input"
        else:  # (input, filter_sizes, out_backprop); the output is the filter's gradient
            per_output, outputs = _shape(op.outputs[0], op), _shape(op.inputs[2], op)
            kind = "conv_grad_filter"
        kh, kw, cin = per_output[:3]
        return kind, 2 * int(np.prod(outputs)) * kh * kw * cin
    if op.type in ("BiasAdd", "BiasAddV1"):
        return "bias", int(np.prod(_shape(op.outputs[0], op)))
    if op.type == "BiasAddGrad":
        return "bias", int(np.prod(_shape(op.inputs[0], op)))
    if op.type == "MatMul":
        a = _shape(op.inputs[0], op)
        k = a[0] if op.get_attr("transpose_a") else a[1]
        return "matmul", 2 * int(np.prod(_shape(op.outputs[0], op))) * k
    if op.type in ("BatchMatMul", "BatchMatMulV2", "BatchMatMulV3"):
        a = _shape(op.inputs[0], op)
        k = a[-2] if op.get_attr("adj_x") else a[-1]
        return "matmul", 2 * int(np.prod(_shape(op.outputs[0], op))) * k
    return None


def executed_ops(graph):
    """The ops of a function graph that run: ancestors of its outputs and of its stateful ops.

    TF prunes the rest from a function body before running it, e.g. the
    weight gradients that a tape creates for variables nobody asked about.
    """
    roots = [t.op for t in graph.outputs] + list(getattr(graph, "control_outputs", []))
    seen, stack, ops = set(), list(roots), []
    while stack:
        op = stack.pop()
        if op.name in seen:
            continue
        seen.add(op.name)
        ops.append(op)
        stack.extend(t.op for t in op.inputs)
        stack.extend(op.control_inputs)
    return ops


def _scope(op_name):
    # Keras names ops after the layer path, with "_1" style suffixes:
    # "gradient_tape/discriminator_1/discriminator_0_1/model0_1/Conv2D".
    for part in op_name.split("/"):
        base = re.sub(r"(_\d+)+$", "", part)
        if base in _MODEL_SCOPES:
            return base
    return "other"


def _called_graph(op):
    # The body of a (Stateful)PartitionedCall, e.g. a jit_compile=True function inside the step.
    name = op.get_attr("f").name
    graph = op.graph
    while graph is not None:
        function = getattr(graph, "_functions", {}).get(name)
        if function is not None:
            return function.graph
        graph = getattr(graph, "outer_graph", None)
    raise ValueError(f"cannot find the body of {op.type} {op.name!r} (function {name}) to count its FLOPs.")


def count_graph_flops(function):
    """FLOPs by model and kind of the conv, bias and matmul ops that a traced function runs.

    Ops that no output or stateful op needs are left out, as TF prunes them.
    Nested function calls (jit_compile parts) are counted through their bodies;
    the branches of `tf.cond` and loop bodies are not counted.

    Args:
        function: a ConcreteFunction (or its FuncGraph) traced with fixed shapes.

    Returns:
        {scope: {kind: FLOPs}} with scope in generator, discriminator, encoder,
        other and kind in conv, conv_grad_input, conv_grad_filter, bias, matmul.
    """
    counts = {scope: dict.fromkeys(_FLOP_KINDS, 0) for scope in _MODEL_SCOPES + ("other",)}
    graphs = [getattr(function, "graph", function)]
    while graphs:
        for op in executed_ops(graphs.pop()):
            if op.type in ("PartitionedCall", "StatefulPartitionedCall"):
                graphs.append(_called_graph(op))
                continue
            counted = op_flops(op)
            if counted is not None:
                kind, flops = counted
                counts[_scope(op.name)][kind] += flops
    return counts


# ---------------------------------------------------------------------------
# FLOPs of the model, from its layers' shapes
# ---------------------------------------------------------------------------


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
    from spade_tf.models.generator import UPSAMPLING_CHOICES

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
            "update spade_tf/tools/benchmark.py's *_layers functions with the architecture change."
        )


class _Tally:
    """Sums 2 x multiply-adds (`macs`) and bias adds (`bias`) per model."""

    def __init__(self, *parts):
        self.macs = {m: sum(p.macs[m] for p in parts) for m in _MODEL_SCOPES}
        self.bias = {m: sum(p.bias[m] for p in parts) for m in _MODEL_SCOPES}

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
            by_model={m: (ours.macs[m] + ours.bias[m]) / 1e9 for m in _MODEL_SCOPES},
        )

    forward = _Tally().add(g, batch)
    out["generator_forward"] = entry(forward, forward, reference_gflop(summary, "generator_forward", batch))
    b, pair = train_batch, 2 * train_batch  # D sees fake and real in one batch
    # G step: the tape asks for G (and E) gradients only; D's input gradients carry them to the fake image.
    g_step = (
        _Tally().add(generator_side, b, weight_grad=True, input_grad=needed).add(d, pair, input_grad=every)
    )
    # D step: the fake is a constant (stop_gradient), so D's first layers need no input gradient.
    d_step = _Tally().add(generator_side, b).add(d, pair, weight_grad=True, input_grad=needed)
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


# ---------------------------------------------------------------------------
# Timing
# ---------------------------------------------------------------------------


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


def _output_info(outputs):
    return {k: {"shape": list(np.shape(v)), "dtype": str(np.asarray(v).dtype)} for k, v in outputs.items()}


def saved_model_inputs(export_dir, signature="serving_default"):
    """{input name: (shape with -1 for unknown sizes, numpy dtype)} of a SavedModel signature."""
    return {
        name: ([-1 if d is None else d for d in spec.shape.as_list()], spec.dtype.as_numpy_dtype)
        for name, spec in _load_signature(export_dir, signature)[1].items()
    }


def _load_signature(export_dir, signature):
    import tensorflow as tf

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
        inputs: {input name: numpy array}, e.g. from `label_inputs`.
        warmup, runs: see `time_calls`.

    Returns:
        `time_calls`'s summary plus "batch" and "outputs" (shape and dtype per output).
    """
    import tensorflow as tf

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
    summary.update(batch=int(next(iter(inputs.values())).shape[0]), outputs=_output_info(outputs))
    return summary


def tflite_inputs(path, signature=None):
    """{input name: (shape_signature, numpy dtype)} of a TFLite file's signature."""
    _, runner, _ = _tflite_runner(path, signature, 1)
    return {
        name: ([int(n) for n in d["shape_signature"]], np.dtype(d["dtype"]))
        for name, d in runner.get_input_details().items()
    }


def _tflite_runner(path, signature, num_threads):
    try:
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
        inputs: {input name: numpy array}, e.g. from `label_inputs`.
        signature: the signature key (default: the only or first one).
        num_threads: interpreter threads (default: the CPU count).
        warmup, runs: see `time_calls`.

    Returns:
        `time_calls`'s summary plus "batch", "num_threads", "signature" and "outputs".
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
        outputs=_output_info(outputs),
    )
    return summary


# ---------------------------------------------------------------------------
# Phases (each runs in a child process)
# ---------------------------------------------------------------------------


def _variant_config(config, variant):
    c = ml_collections.ConfigDict(config.to_dict())
    c.train.precision = "mixed_bfloat16" if variant.endswith("bfloat16") else "float32"
    c.train.xla = variant.startswith("xla")
    return c


def _semantics(config, batch, height, width, seed=0):
    import tensorflow as tf

    from spade_tf.data.semantics import make_semantics

    d = config.data
    num_ids = d.num_classes + int(d.contain_dontcare_label)
    maps = ["labels"] + (["instances"] if d.use_instance_map else [])
    inputs = label_inputs(
        {name: ([-1, height, width], np.int32) for name in maps},
        batch,
        height,
        width,
        num_ids,
        seed,
    )
    semantics = make_semantics(inputs["labels"], num_ids, inputs.get("instances"))
    return tf.constant(semantics), inputs


def _forward_function(config, batch, height, width, jit_compile=False):
    import tensorflow as tf

    from spade_tf.training.trainer import build_models

    # build_models also builds D (5.8 M parameters at full size, ~1 % of the forward's peak memory).
    generator, _, _ = build_models(config)
    check_layers(generator_layers(model_summary(config)), generator)
    semantics, _ = _semantics(config, batch, height, width)

    @tf.function(jit_compile=jit_compile)
    def forward(x):
        return generator(x, training=False, one_hot=True)

    return forward, semantics


def _training(config, batch, height, width, seed=0):
    """(trainer, distributed batch) on one device, without the VGG loss."""
    import tensorflow as tf

    from spade_tf.training.trainer import GANTrainer

    c = ml_collections.ConfigDict(config.to_dict())
    c.train.batch_size = batch
    c.train.d_steps_per_g = 1  # one iteration = a G step and a D step
    c.train.vgg_weights = ""
    c.train.lambda_vgg = 0.0
    gpus = tf.config.list_logical_devices("GPU")
    strategy = tf.distribute.MirroredStrategy([gpus[0].name if gpus else "/cpu:0"])
    trainer = GANTrainer(c, strategy, steps_per_epoch=1, vgg_loss=None)
    summary = model_summary(c)
    check_layers(generator_layers(summary), trainer.generator)
    check_layers(discriminator_layers(summary), trainer.discriminator)
    if trainer.encoder is not None:
        check_layers(encoder_layers(summary), trainer.encoder)
    _, inputs = _semantics(c, batch, height, width, seed)
    rng = np.random.default_rng(seed + 1)
    element = {
        "label": tf.constant(inputs["labels"]),
        "image": tf.constant(rng.uniform(-1, 1, (batch, height, width, 3)).astype(np.float32)),
        "index": tf.range(batch, dtype=tf.int64),
    }
    if c.data.use_instance_map:
        element["instance"] = tf.constant(inputs["instances"])
    dist = next(iter(strategy.experimental_distribute_dataset(tf.data.Dataset.from_tensors(element))))
    return trainer, dist


def _phase_matmul(task):
    import tensorflow as tf

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


def _phase_forward(task):
    config = _variant_config(ml_collections.ConfigDict(task["config"]), task["variant"])
    forward, semantics = _forward_function(
        config, task["batch"], task["height"], task["width"], jit_compile=config.train.xla
    )
    return {"timing": time_calls(lambda: forward(semantics), task["warmup"], task["runs"])}


def _phase_train(task):
    config = _variant_config(ml_collections.ConfigDict(task["config"]), task["variant"])
    trainer, dist = _training(config, task["batch"], task["height"], task["width"])
    g_step, d_step = trainer._distributed("G"), trainer._distributed("D")
    out = {}
    # Each timed call ends with reading a loss back: the step is complete.
    out["G"] = time_calls(lambda: float(g_step(dist)["G_GAN"]), task["warmup"], task["runs"])
    out["D"] = time_calls(lambda: float(d_step(dist)["D_Fake"]), task["warmup"], task["runs"])
    out["step"] = time_calls(lambda: trainer.train_step(dist), task["warmup"], task["runs"])
    return out


def _phase_saved_model(task):
    specs = saved_model_inputs(task["path"], task["signature"])
    height, width = artifact_size(specs, (task["height"], task["width"]))
    out = {"height": height, "width": width}
    for batch in task["batches"]:
        inputs = label_inputs(specs, batch, height, width, task["num_label_ids"])
        out[str(batch)] = time_saved_model(
            task["path"], task["signature"], inputs, task["warmup"], task["runs"]
        )
    return out


def _phase_tflite(task):
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


_PHASE_FUNCTIONS = {
    "matmul": _phase_matmul,
    "forward": _phase_forward,
    "train": _phase_train,
    "saved_model": _phase_saved_model,
    "tflite": _phase_tflite,
}


def _rss_mb():
    # Linux reports ru_maxrss in KiB, macOS in bytes.
    scale = 1 / 1024 if sys.platform != "darwin" else 1 / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


def _child_main(task_path, result_path):
    with open(task_path) as f:
        task = json.load(f)
    gpus = []
    # A TFLite phase loads the LiteRT runtime alone: its memory is what a TFLite deployment needs.
    if task["phase"] != "tflite":
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        for gpu in gpus:
            tf.config.experimental.set_memory_growth(gpu, True)
        tf.config.experimental.enable_tensor_float_32_execution(bool(task.get("tf32", True)))
    if task["phase"] in ("forward", "train"):
        import keras

        keras.utils.set_random_seed(int(task.get("seed", 0)))
        import spade_tf.training.trainer  # noqa: F401  (its imports belong to the baseline, not to the phase)

    rss_import = _rss_mb()
    result = _PHASE_FUNCTIONS[task["phase"]](task)
    result["rss_import_mb"] = rss_import
    result["rss_peak_mb"] = _rss_mb()
    result["gpu_peak_mb"] = tf.config.experimental.get_memory_info("GPU:0")["peak"] / 2**20 if gpus else None
    with open(result_path, "w") as f:
        json.dump(result, f)


def run_phase(task, timeout=None):
    """Runs one phase task in a child process and returns its result dict."""
    import spade_tf

    root = os.path.dirname(os.path.dirname(os.path.abspath(spade_tf.__file__)))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([root] + [p for p in [env.get("PYTHONPATH")] if p])
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env.setdefault("KERAS_BACKEND", "tensorflow")
    with tempfile.TemporaryDirectory(prefix="spade_benchmark_") as tmp:
        task_path, result_path = os.path.join(tmp, "task.json"), os.path.join(tmp, "result.json")
        with open(task_path, "w") as f:
            json.dump(task, f)
        proc = subprocess.run(
            [sys.executable, "-m", "spade_tf.tools.benchmark", "--child", task_path, result_path],
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if proc.returncode != 0 or not os.path.isfile(result_path):
            lines = [line for line in proc.stderr.splitlines() if line.strip()]
            # The error line (TF's span several lines, so it is not always the last); ValueErrors
            # raised here carry their own fix.
            errors = [line.strip() for line in lines if re.match(r"\s*[\w.]*(Error|Exception): ", line)]
            lines.append(errors[-1] if errors else (lines[-1] if lines else "no error output"))
            raise RuntimeError(
                f"benchmark phase {task['phase']!r}"
                + (
                    f" ({task.get('variant') or task.get('path')})"
                    if task.get("variant") or task.get("path")
                    else ""
                )
                + f" failed (exit {proc.returncode}): "
                + lines[-1]
                + "\n"
                + "\n".join(lines[-25:-1])
            )
        with open(result_path) as f:
            return json.load(f)


# ---------------------------------------------------------------------------
# The benchmark
# ---------------------------------------------------------------------------


@dataclasses.dataclass
class Settings:
    """What `run_benchmark` measures.

    Args:
        batch: the larger forward batch (also timed at 1; 1 = batch 1 only).
        train_batch: the training step's global batch.
        warmup: untimed calls before each timing (at least 1).
        runs: timed calls (report the median; at least 5 for numbers you quote).
        variants: subset of VARIANTS, or None: float32, bfloat16, xla on a GPU, float32 on a CPU.
        phases: subset of PHASES.
        matmul_size: N of the matmul check (0: 4096 on a GPU, 2048 on a CPU).
        tf32: allow TensorFloat-32 on GPUs (TensorFlow's default).
        saved_model: a SavedModel folder to time, or "".
        signature: its signature key.
        tflite: .tflite files to time.
        seed: random weights and inputs.
    """

    batch: int = 4
    train_batch: int = 1
    warmup: int = 2
    runs: int = 5
    variants: tuple | None = None
    phases: tuple = PHASES
    matmul_size: int = 0
    tf32: bool = True
    saved_model: str = ""
    signature: str = "serving_default"
    tflite: tuple = ()
    seed: int = 0

    def check(self):
        for name in ("batch", "train_batch", "warmup", "runs"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name}={getattr(self, name)}: must be at least 1.")
        for variant in self.variants or ():
            if variant not in VARIANTS:
                raise ValueError(f"variant {variant!r} is not known; choose from: {', '.join(VARIANTS)}.")
        for phase in self.phases:
            if phase not in PHASES:
                raise ValueError(f"phase {phase!r} is not known; choose from: {', '.join(PHASES)}.")
        if self.matmul_size < 0:
            raise ValueError(f"matmul_size={self.matmul_size}: must be positive (or 0 for the default).")
        if self.saved_model and not os.path.isfile(os.path.join(self.saved_model, "saved_model.pb")):
            raise ValueError(f"saved_model={self.saved_model!r}: no saved_model.pb in that folder.")
        for path in self.tflite:
            if not os.path.isfile(path):
                raise ValueError(f"tflite file {path!r} does not exist.")
        return self


def environment():
    """Where the numbers come from: devices, versions, thread settings."""
    import keras
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    gpu_names = [tf.config.experimental.get_device_details(g).get("device_name", g.name) for g in gpus]
    cpu = platform.processor() or platform.machine()
    if os.path.isfile("/proc/cpuinfo"):
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    return dict(
        device=gpu_names[0] if gpu_names else f"CPU ({cpu})",
        cpu=cpu,
        gpus=gpu_names,
        cpu_count=os.cpu_count(),
        tensorflow=tf.__version__,
        keras=keras.__version__,
        python=platform.python_version(),
        tf_enable_onednn_opts=os.environ.get("TF_ENABLE_ONEDNN_OPTS", "default"),
    )


def _record(phase, variant, batch, timing, gflop, reference, child, device, **extra):
    median = timing["median_s"]
    return dict(
        phase=phase,
        variant=variant,
        batch=batch,
        device=device,
        median_s=median,
        min_s=timing["min_s"],
        max_s=timing["max_s"],
        runs=timing["runs"],
        first_call_s=timing["first_call_s"],
        times_s=timing["times_s"],
        images_per_s=batch / median if batch else None,
        gflop=gflop,
        gflops_per_s=gflop / median if gflop else None,
        reference_gflop=reference,
        effective_gflops_per_s=reference / median if reference else None,
        rss_peak_mb=child["rss_peak_mb"],
        rss_import_mb=child["rss_import_mb"],
        gpu_peak_mb=child["gpu_peak_mb"],
        **extra,
    )


def run_benchmark(config, resolution, settings, source="", out=print):
    """Runs every phase in its own child process and returns the report (JSON schema: module docstring).

    Args:
        config: the ConfigDict from `resolve_config`.
        resolution: (height, width) from `resolve_config`.
        settings: a `Settings`.
        source: where the config came from, for the report.
        out: progress printer.
    """
    import tensorflow as tf

    settings.check()
    height, width = resolution
    gpu = bool(tf.config.list_physical_devices("GPU"))
    device = "gpu" if gpu else "cpu"
    variants = tuple(settings.variants or (("float32", "bfloat16", "xla") if gpu else ("float32",)))
    summary = dict(model_summary(config), source=source)
    base = dict(config=config.to_dict(), height=height, width=width, tf32=settings.tf32, seed=settings.seed)
    timing = dict(warmup=settings.warmup, runs=settings.runs)
    forward_batches = sorted({1, settings.batch})
    report = dict(
        schema_version=SCHEMA_VERSION,
        config=summary,
        environment=environment(),
        settings=dict(
            dataclasses.asdict(settings),
            variants=list(variants),
            matmul_size=settings.matmul_size or (4096 if gpu else 2048),
            tf32=settings.tf32 if gpu else None,
        ),
        reference=dict(
            case=reference_case(summary)[0],
            generator_forward_gflop_per_image=reference_gflop(summary, "generator_forward", 1),
            train_step_gflop_batch_1=reference_gflop(summary, "train_step", 1),
        ),
        flops={},
        measurements=[],
        not_run=[],
    )
    if not gpu:
        for variant in ("bfloat16", "xla"):
            if variant not in variants:
                report["not_run"].append(dict(variant=variant, reason="no GPU (on a CPU only float32 runs)"))

    for batch in forward_batches:
        counted = model_flops(summary, batch, settings.train_batch)
        report["flops"][f"generator_forward_batch_{batch}"] = counted["generator_forward"]
    report["flops"].update({k: v for k, v in counted.items() if k.startswith("train_")})
    flops = report["flops"]

    if "matmul" in settings.phases:
        size = report["settings"]["matmul_size"]
        out(f"matmul {size}x{size} float32 ...")
        child = run_phase(dict(base, phase="matmul", size=size, chain=10 if gpu else 1, **timing))
        report["measurements"].append(
            _record(
                "matmul", "float32", None, child["timing"], child["gflop"], None, child, device, size=size
            )
        )
    per_image = flops["generator_forward_batch_1"]["gflop"]
    for variant in variants:
        if "forward" in settings.phases:
            for batch in forward_batches:
                out(f"generator forward, {variant}, batch {batch} ...")
                child = run_phase(dict(base, phase="forward", variant=variant, batch=batch, **timing))
                f = flops[f"generator_forward_batch_{batch}"]
                report["measurements"].append(
                    _record(
                        "generator_forward",
                        variant,
                        batch,
                        child["timing"],
                        f["gflop"],
                        f["reference_gflop"],
                        child,
                        device,
                    )
                )
        if "train" in settings.phases:
            batch = settings.train_batch
            out(f"training step, {variant}, batch {batch} ...")
            child = run_phase(dict(base, phase="train", variant=variant, batch=batch, **timing))
            for key, name in (("G", "train_G_step"), ("D", "train_D_step"), ("step", "train_step")):
                f = flops[name]
                report["measurements"].append(
                    _record(name, variant, batch, child[key], f["gflop"], f["reference_gflop"], child, device)
                )
    artifact = dict(base, num_label_ids=summary["num_label_ids"], batches=forward_batches, **timing)
    if settings.saved_model:
        out(f"SavedModel {settings.saved_model} ...")
        child = run_phase(
            dict(artifact, phase="saved_model", path=settings.saved_model, signature=settings.signature)
        )
        for batch in forward_batches:
            report["measurements"].append(
                _artifact_record(
                    "saved_model",
                    settings.saved_model,
                    batch,
                    child,
                    summary,
                    height,
                    width,
                    device,
                    per_image,
                )
            )
    for path in settings.tflite:
        out(f"TFLite {path} ...")
        child = run_phase(dict(artifact, phase="tflite", path=path))
        for batch in forward_batches:
            if str(batch) in child:
                report["measurements"].append(
                    _artifact_record(
                        "tflite",
                        path,
                        batch,
                        child,
                        summary,
                        child["height"],
                        child["width"],
                        "cpu",
                        per_image,
                    )
                )
            else:
                report["not_run"].append(
                    dict(
                        phase="tflite",
                        variant=os.path.basename(path),
                        batch=batch,
                        reason="the file's batch is fixed",
                    )
                )
    return report


def _artifact_record(phase, path, batch, child, summary, height, width, device, gflop_per_image):
    # The config's generator count applies when the artifact has the config's resolution: the
    # artifact is then taken to be exported from this config (the report says which file it was).
    same = (height, width) == (summary["height"], summary["width"])
    timing = child[str(batch)]
    return _record(
        phase,
        os.path.basename(os.path.normpath(path)),
        batch,
        timing,
        gflop_per_image * batch if same and gflop_per_image else None,
        reference_gflop(summary, "generator_forward", batch) if same else None,
        child,
        device,
        artifact=path,
        height=height,
        width=width,
        outputs=timing["outputs"],
    )


# ---------------------------------------------------------------------------
# Output
# ---------------------------------------------------------------------------


def _fmt(value, spec):
    return "-" if value is None else format(value, spec)


def format_report(report):
    """A readable text table of `run_benchmark`'s report."""
    c, env = report["config"], report["environment"]
    lines = [
        f"SPADE benchmark: {c['source'] or c['dataset']} at {c['height']}x{c['width']}, "
        f"{c['semantic_channels']} semantic channels, ngf {c['base_filters']}, "
        f"{c['num_upsampling_layers']} upsampling{', VAE' if c['use_vae'] else ''}",
        f"Device: {env['device']}, {env['cpu_count']} CPU cores; TensorFlow {env['tensorflow']}, "
        f"Keras {env['keras']}; median of {report['settings']['runs']} runs after "
        f"{report['settings']['warmup']} warm-up",
        "",
        "FLOPs (GFLOP)                    ours   2xMAC    bias  official  published",
    ]
    for name, f in report["flops"].items():
        lines.append(
            f"  {name:<28} {f['gflop']:>8.2f} {f['mac_gflop']:>8.2f} {f['bias_gflop']:>6.3f} "
            f"{f['official_convention_gflop']:>9.2f} {_fmt(f['reference_gflop'], '>10.1f')}"
        )
    lines += [
        "",
        f"{'phase':<20} {'variant':<16} {'batch':>5} {'median ms':>10} {'min ms':>9} {'max ms':>9} "
        f"{'img/s':>8} {'GFLOP':>9} {'GFLOP/s':>9} {'eff.GFLOP/s':>11} {'RSS MB':>8} {'GPU MB':>8}",
    ]
    for m in report["measurements"]:
        lines.append(
            f"{m['phase']:<20} {m['variant'][:16]:<16} {_fmt(m['batch'], '>5d')} {m['median_s'] * 1e3:>10.1f} "
            f"{m['min_s'] * 1e3:>9.1f} {m['max_s'] * 1e3:>9.1f} {_fmt(m['images_per_s'], '>8.2f')} "
            f"{_fmt(m['gflop'], '>9.2f')} {_fmt(m['gflops_per_s'], '>9.1f')} "
            f"{_fmt(m['effective_gflops_per_s'], '>11.1f')} {m['rss_peak_mb']:>8.0f} "
            f"{_fmt(m['gpu_peak_mb'], '>8.0f')}"
        )
    for skipped in report["not_run"]:
        what = " ".join(str(skipped[k]) for k in ("phase", "variant", "batch") if skipped.get(k) is not None)
        lines.append(f"not run: {what}: {skipped['reason']}")
    if report["settings"]["runs"] < 5:
        lines.append(f"note: {report['settings']['runs']} timed run(s); quote numbers from at least 5.")
    ref = report["reference"]
    if ref["case"]:
        lines.append(
            f"eff.GFLOP/s = the published {ref['case']} count / our time (convolutions only, 2 x multiply-adds)."
        )
    return "\n".join(lines)


def write_report(report, path):
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    with open(path, "w") as f:
        json.dump(report, f, indent=2)
        f.write("\n")


if __name__ == "__main__":
    # The child-process entry of `run_phase`; benchmark.py at the repository root is the command line.
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", nargs=2, metavar=("TASK_JSON", "RESULT_JSON"), required=True)
    _child_main(*parser.parse_args().child)
