"""Speed and memory of SPADE on this machine: generator forward, training step, exported models.

    python benchmark.py --config=configs/ade20k.py --output=result.json       # a training config
    python benchmark.py --dataset=cityscapes                                   # an official preset (ngf 64)
    python benchmark.py --config=configs/ade20k.py --phases=forward --batch=1  # the generator alone
    python benchmark.py --config=configs/ade20k.py --phases=forward \
        --saved_model=export/ade20k --tflite=ade20k_fp32.tflite,ade20k_int8.tflite

The modules, by role:

    configs             the config to measure (`resolve_config`) and the fields that fix its arithmetic
                        (`model_summary`)
    flops               the model's FLOPs from its layers' shapes (`model_flops`), the published numbers
                        (`REFERENCES`), and the check that the count describes the timed network
    graph_flops         the FLOPs of a traced graph's ops (`count_graph_flops`), the tests' cross-check
    timing              timing of repeated calls (`time_calls`)
    child               one phase in its own process (`run_phase`), its peak memory
    matmul, model_phases, saved_model_runner, tflite_runner
                        what a phase's process runs
    inputs              random label maps for a model or an exported signature (`label_inputs`)
    run                 what is measured (`Settings`) and the whole run (`run_benchmark`)
    report              the report as a text table and as JSON

What is measured (`run.run_benchmark`), each phase in its own child process (`child.run_phase`) so that
its peak resident memory (`ru_maxrss`) is its own:

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
  (`saved_model_runner.time_saved_model`, `tflite_runner.time_tflite`).

Each timing is `warmup` calls (the first one traces and compiles; its time is
kept as `first_call_s`), then `runs` calls, each followed by
`tf.test.experimental.sync_devices()` so that a GPU's queued work is inside
the time; the median, minimum and maximum are reported. On a GPU the float32,
bfloat16 (`mixed_bfloat16` policy) and XLA (`jit_compile=True`) variants run;
on a CPU only float32 runs unless `variants` asks for more. TensorFloat-32 is
on by default on Ampere and newer GPUs, as in TensorFlow; `tf32` records and
sets it.

FLOPs are the model's, counted from its layers' shapes (`flops.generator_layers`,
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
the implementation changes; `graph_flops.count_graph_flops` counts a traced graph's
conv/bias/matmul ops instead, and the tests check that the two agree for the
plain-conv computation.

The official numbers (`flops.REFERENCES`) count convolutions only, as 2 x
multiply-adds: our ADE20K generator's conv count is 362.30 GFLOP against the
published 362.3 (+0.13 GFLOP of bias adds in our own count). The official
PyTorch step also computes two gradients nobody uses: D's weight gradients in
the G step (D's parameters still require grad there) and D's first-layer input
gradients in the D step (it calls `fake.requires_grad_()`); the
`official_convention` count adds them, and gives 1545.6 GFLOP for ADE20K at
batch 1, the published number. "Effective GFLOP/s" is the published count
divided by our time, reported when the model matches a published case;
"GFLOP/s" is our own count divided by our time.

The report (`run.run_benchmark`, written as JSON by `--output`):

    schema_version   1
    config           the model's fields (`configs.model_summary`) and "source"
    environment      device, cpu, gpus, cpu_count, tensorflow, keras, python, tf_enable_onednn_opts,
                     conv_gradients ("forward" or "tf": `spade_tf.models.conv.conv_gradients`)
    settings         the `run.Settings` used (variants resolved)
    reference        case ("ade20k", "cityscapes" or null), generator_forward_gflop_per_image,
                     train_step_gflop_batch_1 (null where the model differs from the published one)
    flops            {generator_forward_batch_<n>, train_G_step, train_D_step, train_step:
                      {gflop (ours), mac_gflop, bias_gflop, official_convention_gflop,
                       reference_gflop (published or null), by_model {generator, discriminator, encoder}}}
    measurements     [{run.MEASUREMENT_KEYS}, ...]; phase is one of matmul, generator_forward,
                     train_G_step, train_D_step, train_step, saved_model, tflite; variant is
                     float32, bfloat16, xla, xla_bfloat16 or the artifact's file name; artifact
                     rows add artifact, height, width, outputs; the matmul row adds size
    not_run          [{variant, reason} or {phase, variant, batch, reason}]

Times are seconds, memory MiB (`rss_peak_mb`: the phase's child process peak;
`rss_import_mb`: the same process after its imports: TensorFlow, and spade_tf for
the model phases; a TFLite phase imports no TensorFlow and loads LiteRT within the phase;
`gpu_peak_mb`: TensorFlow's peak GPU allocation, null on a CPU).
"""

import importlib

# The public names of spade_tf/benchmark.py, the module this package was, so that `spade_tf.benchmark`
# (spade_tf.MOVED_MODULES) keeps its API. Imported on first use, not here: every phase's child process
# imports this package, and a TFLite phase must not import TensorFlow.
_MOVED_NAMES = {
    "configs": ("parse_resolution", "config_from_preset", "resolve_config", "model_summary"),
    "flops": (
        "REFERENCES",
        "reference_case",
        "reference_gflop",
        "Layer",
        "generator_layers",
        "discriminator_layers",
        "encoder_layers",
        "check_layers",
        "model_flops",
    ),
    "graph_flops": ("op_flops", "executed_ops", "count_graph_flops"),
    "timing": ("time_calls",),
    "inputs": ("label_inputs", "artifact_size"),
    "saved_model_runner": ("saved_model_inputs", "time_saved_model"),
    "tflite_runner": ("tflite_inputs", "time_tflite"),
    "child": ("run_phase",),
    "run": (
        "SCHEMA_VERSION",
        "VARIANTS",
        "PHASES",
        "MEASUREMENT_KEYS",
        "Settings",
        "environment",
        "run_benchmark",
    ),
    "report": ("format_report", "write_report"),
}
_MODULE_OF = {name: module for module, names in _MOVED_NAMES.items() for name in names}


def __getattr__(name):
    if name not in _MODULE_OF:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_MODULE_OF[name]}"), name)
