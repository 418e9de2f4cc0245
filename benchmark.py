"""Measures SPADE's speed and memory here: generator forward, training step, exported models.

    python benchmark.py --config=configs/ade20k.py --output=ade20k.json      # all phases
    python benchmark.py --dataset=cityscapes --phases=forward --batch=1      # an official preset (ngf 64)
    python benchmark.py --config=configs/demo.py:small --runs=2              # a quick look
    python benchmark.py --config=configs/ade20k.py --phases=forward \
        --saved_model=export/ade20k --tflite=ade20k_fp32.tflite,ade20k_int8.tflite

Prints a table and, with --output, writes the JSON report (schema in
spade_tf/tools/benchmark/__init__.py). Each phase runs in its own process, so a full-size
config takes minutes on a CPU; on a GPU the float32, bfloat16 and XLA
variants run. Achieved GFLOP/s use the model's FLOPs counted from its layers' shapes;
"effective" GFLOP/s use the published count of the official model when the
config matches it (ADE20K 256x256, Cityscapes 256x512).
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags, logging  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from spade_tf.config import check_command_line  # noqa: E402
from spade_tf.tools.benchmark import configs, report, run  # noqa: E402

FLAGS = flags.FLAGS


def define_flags():
    # Defined after check_command_line, which turns a missing file or a mistyped
    # --config.a.b override into one readable line.
    config_flags.DEFINE_config_file(
        "config", None, "Config file (configs/<dataset>.py[:small]); or give --dataset.", lock_config=False
    )
    flags.DEFINE_string(
        "dataset", None, "An official preset instead of --config: ade20k, cityscapes or coco."
    )
    flags.DEFINE_string("resolution", None, "HEIGHTxWIDTH, e.g. 256x512 (default: the config's crop).")
    flags.DEFINE_integer(
        "batch", 4, "The larger generator batch (batch 1 is always timed; 1 = only batch 1)."
    )
    flags.DEFINE_integer("train_batch", 1, "Global batch of the training step.")
    flags.DEFINE_integer("warmup", 2, "Untimed calls before timing (the first traces and compiles).")
    flags.DEFINE_integer("runs", 5, "Timed calls; the median, minimum and maximum are reported.")
    flags.DEFINE_list("variants", None, f"Subset of {','.join(run.VARIANTS)} (default: by device).")
    flags.DEFINE_list("phases", list(run.PHASES), f"Subset of {','.join(run.PHASES)}.")
    flags.DEFINE_integer(
        "matmul_size", 0, "N of the float32 NxN matmul check (0: 4096 on a GPU, 2048 on a CPU)."
    )
    flags.DEFINE_bool("tf32", True, "Allow TensorFloat-32 on GPUs (TensorFlow's default).")
    flags.DEFINE_string("saved_model", None, "A SavedModel folder (export.py) to time too.")
    flags.DEFINE_string("signature", "serving_default", "The SavedModel signature to time.")
    flags.DEFINE_list("tflite", [], "TFLite files (float32, float16, int8) to time too.")
    flags.DEFINE_string("output", None, "Write the JSON report here.")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    try:
        # The settings first: their errors need no config file.
        settings = run.Settings(
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
        sys.exit(f"benchmark.py: error: {e}")
    args = sys.argv[1:]
    spec = next((a.split("=", 1)[1] for a in args if a.startswith("--config=")), None)
    if spec is None and "--config" in args[:-1]:
        spec = args[args.index("--config") + 1]
    source = f"preset {FLAGS.dataset}" if FLAGS.dataset else spec
    logging.info("Config:\n%s", config)
    try:
        result = run.run_benchmark(config, resolution, settings, source=source)
    except (RuntimeError, ValueError) as e:
        sys.exit(f"benchmark.py: error: {e}")
    print(report.format_report(result))
    if FLAGS.output:
        report.write_report(result, FLAGS.output)
        print(f"wrote {FLAGS.output}")


if __name__ == "__main__":
    spec = next((a.split("=", 1)[1] for a in sys.argv[1:] if a.startswith("--config=")), None)
    if spec is not None:
        try:
            check_command_line(sys.argv[1:], spec)
        except ValueError as e:
            sys.exit(f"benchmark.py: error: {e}")
    define_flags()
    app.run(main)
