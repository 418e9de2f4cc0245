"""spade-benchmark: measures SPADE's speed and memory here: generator forward, training step, exported models.

    spade-benchmark --config=ade20k --output=ade20k.json                  # all phases
    spade-benchmark --dataset=cityscapes --phases=forward --batch=1       # an official preset (ngf 64)
    spade-benchmark --config=demo:small --runs=2                          # a quick look
    spade-benchmark --config=ade20k --phases=forward \\
        --saved_model=export/ade20k --tflite=ade20k_fp32.tflite,ade20k_int8.tflite

From a clone, `python benchmark.py` is the same command (and `--config=configs/ade20k.py` a config by path).
Prints a table and, with --output, writes the JSON report (schema in spade_tf/tools/benchmark/__init__.py).
Each phase runs in its own process, so a full-size config takes minutes on a CPU; on a GPU the float32,
bfloat16 and XLA variants run. Achieved GFLOP/s use the model's FLOPs counted from its layers' shapes;
"effective" GFLOP/s use the published count of the official model when the config matches it (ADE20K
256x256, Cityscapes 256x512).
"""

import sys

from absl import app, flags, logging
from ml_collections import config_flags

from spade_tf import cli
from spade_tf.tools.benchmark import configs, report
from spade_tf.tools.benchmark import run as benchmark_run
from spade_tf.tools.convert import DATASET_PRESETS

FLAGS = flags.FLAGS


def define_flags():
    config_flags.DEFINE_config_file(
        "config", None, cli.config_help() + " Or give --dataset.", lock_config=False
    )
    cli.define_dataset_flag(sorted(DATASET_PRESETS), "An official preset instead of --config")
    flags.DEFINE_string("resolution", None, "HEIGHTxWIDTH, e.g. 256x512 (default: the config's crop).")
    flags.DEFINE_integer(
        "batch", 4, "The larger generator batch (batch 1 is always timed; 1 = only batch 1)."
    )
    flags.DEFINE_integer("train_batch", 1, "Global batch of the training step.")
    flags.DEFINE_integer("warmup", 2, "Untimed calls before timing (the first traces and compiles).")
    flags.DEFINE_integer("runs", 5, "Timed calls; the median, minimum and maximum are reported.")
    flags.DEFINE_list("variants", None, f"Subset of {','.join(benchmark_run.VARIANTS)} (default: by device).")
    flags.DEFINE_list("phases", list(benchmark_run.PHASES), f"Subset of {','.join(benchmark_run.PHASES)}.")
    flags.DEFINE_integer(
        "matmul_size", 0, "N of the float32 NxN matmul check (0: 4096 on a GPU, 2048 on a CPU)."
    )
    flags.DEFINE_bool("tf32", True, "Allow TensorFloat-32 on GPUs (TensorFlow's default).")
    flags.DEFINE_string("saved_model", None, "A SavedModel folder (spade-export) to time too.")
    flags.DEFINE_string("signature", "serving_default", "The SavedModel signature to time.")
    flags.DEFINE_list("tflite", [], "TFLite files (float32, float16, int8) to time too.")
    flags.DEFINE_string("output", None, "Write the JSON report here.")


def _config_spec(args):
    """The --config value as typed (the report's "source"), or None."""
    for i, arg in enumerate(args):
        if arg.startswith("--config="):
            return arg.split("=", 1)[1]
        if arg == "--config" and i + 1 < len(args):
            return args[i + 1]
    return None


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    try:
        # The settings first: their errors need no config file.
        settings = benchmark_run.Settings(
            batch=FLAGS.batch,
            train_batch=FLAGS.train_batch,
            warmup=FLAGS.warmup,
            runs=FLAGS.runs,
            variants=tuple(FLAGS.variants) if FLAGS.variants else None,
            phases=tuple(FLAGS.phases),
            matmul_size=FLAGS.matmul_size,
            tf32=FLAGS.tf32,
            saved_model=FLAGS.saved_model or "",
            signature=FLAGS.signature,
            tflite=tuple(FLAGS.tflite),
        ).check()
        config, resolution = configs.resolve_config(FLAGS.config, FLAGS.dataset, FLAGS.resolution)
    except ValueError as e:
        cli.fail(e)
    source = f"preset {FLAGS.dataset}" if FLAGS.dataset else _config_spec(sys.argv[1:])
    logging.info("Config:\n%s", config)
    try:
        result = benchmark_run.run_benchmark(config, resolution, settings, source=source)
    except (RuntimeError, ValueError) as e:
        cli.fail(e)
    print(report.format_report(result))
    if FLAGS.output:
        report.write_report(result, FLAGS.output)
        print(f"wrote {FLAGS.output}")


def run():
    # --config is optional here (--dataset instead): checked only when given.
    spec = _config_spec(sys.argv[1:])
    cli.run_command(sys.modules[__name__], main, define_flags, default_config=spec)


if __name__ == "__main__":
    run()
