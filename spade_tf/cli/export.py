"""spade-export: exports a trained or converted SPADE model for serving: TF Serving SavedModel, TFLite, ONNX.

    spade-export --model workdirs/demo --export_dir exports/spade            # SavedModel + 3 TFLite files
    spade-export --model ade20k.keras --export_dir exports/ade20k --version 2 --notflite
    spade-export --model workdirs/demo --export_dir exports/spade --onnx --overwrite
    spade-export --model w --export_dir e --version 2 --serving_versions 1,2    # TF Serving serves both

From a clone, `python export.py` is the same command. Writes <export_dir>/<version>/ (the SavedModel, TF
Serving's layout), metadata.json (classes, palette, signatures, the weights' license), models.config (TF
Serving's --model_config_file: model name, base path, version policy), MODEL_CARD.md, tflite/, with --onnx
onnx/, and examples/ (validation label maps and style exemplars the painter opens on, when the model's data is
on this machine; TF Serving ignores folders whose names are not version numbers). Serve it with `spade-serve --model <export_dir>` (and the painter page) or TF Serving (see the README).
"""

import os
import sys

from absl import app, flags, logging

from spade_tf import cli
from spade_tf.serving import export_lib, model_card, serving_config
from spade_tf.serving.inference import load_synthesizer
from spade_tf.serving.server import DEFAULT_MODEL_NAME
from spade_tf.serving.synthesis import OFFICIAL_DATASETS

FLAGS = flags.FLAGS


def define_flags():
    flags.DEFINE_string(
        "model", None, "A training workdir (holding model.keras) or a .keras bundle from spade-convert."
    )
    flags.DEFINE_string(
        "export_dir", None, "Export folder, TF Serving's model base path (default <model dir>/export)."
    )
    flags.DEFINE_integer("version", 1, "SavedModel version folder (TF Serving serves the highest).")
    flags.DEFINE_bool("tflite", True, "Also write TFLite files at the training resolution.")
    flags.DEFINE_list(
        "tflite_variants", list(export_lib.TFLITE_VARIANTS), "TFLite variants: float32, float16, int8."
    )
    flags.DEFINE_bool("onnx", False, "Also write an ONNX file (pip install -r requirements-onnx.txt).")
    flags.DEFINE_bool("overwrite", False, "Replace an existing version folder.")
    flags.DEFINE_integer(
        "max_maps", export_lib.DEFAULT_MAX_MAPS, "SavedModel signatures refuse more label maps per request."
    )
    flags.DEFINE_integer(
        "max_pixels",
        export_lib.DEFAULT_MAX_PIXELS,
        "SavedModel signatures refuse more label pixels per request (N x H x W, read from PNG headers before "
        "decoding); the generator's memory grows with them (README, 'Export and serving').",
    )
    flags.DEFINE_integer(
        "max_style_pixels",
        export_lib.DEFAULT_MAX_STYLE_PIXELS,
        "SavedModel signatures refuse more style-image pixels per request (height x width summed).",
    )
    flags.DEFINE_string(
        "model_name", DEFAULT_MODEL_NAME, "models.config: the model's name, the <name> in /v1/models/<name>."
    )
    flags.DEFINE_string(
        "serving_base_path",
        None,
        "models.config: the export folder as TF Serving sees it (default /models/<model_name>, where the "
        "README's docker run mounts it; give the absolute path for a TF Serving binary on this machine).",
    )
    flags.DEFINE_list(
        "serving_versions",
        [],
        "models.config: serve exactly these versions (TF Serving's 'specific' policy), e.g. 1,2; "
        "empty: the latest --serving_latest versions.",
    )
    flags.DEFINE_integer(
        "serving_latest",
        1,
        "models.config: without --serving_versions, serve this many of the highest versions.",
    )
    flags.DEFINE_integer(
        "num_examples",
        export_lib.DEFAULT_NUM_EXAMPLES,
        "Validation label maps (and, for VAE models, style exemplars: one per look where the dataset records "
        "looks) written to <export_dir>/examples/ for the painter to open on; 0: none.",
    )
    cli.define_dataset_flag(
        list(OFFICIAL_DATASETS), "Examples of a model converted from an official checkpoint: its dataset"
    )
    flags.DEFINE_string(
        "dataset_root",
        None,
        "Examples: the dataset folder, when not where training read it (or a converted model's).",
    )
    flags.mark_flag_as_required("model")


def _size(path):
    if os.path.isdir(path):
        return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(path) for f in files)
    return os.path.getsize(path)


def _serving_versions(export_dir):
    """--serving_versions as ints, checked against the versions the export will hold (before writing)."""
    try:
        versions = [int(v) for v in FLAGS.serving_versions]
    except ValueError:
        raise ValueError(
            f"--serving_versions={','.join(FLAGS.serving_versions)}: give version numbers, e.g. 1,2."
        ) from None
    existing = (
        [int(d) for d in os.listdir(export_dir) if d.isdigit() and os.path.isdir(os.path.join(export_dir, d))]
        if os.path.isdir(export_dir)
        else []
    )
    serving_config.check_policy(versions, FLAGS.serving_latest, existing + [FLAGS.version])
    return versions


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    try:
        variants = export_lib.check_tflite_variants(FLAGS.tflite_variants) if FLAGS.tflite else ()
        limits = export_lib.Limits(FLAGS.max_maps, FLAGS.max_pixels, FLAGS.max_style_pixels)
        export_lib.check_num_examples(FLAGS.num_examples)
        synthesizer = load_synthesizer(FLAGS.model)
        export_dir = FLAGS.export_dir or os.path.join(os.path.dirname(synthesizer.source), "export")
        versions = _serving_versions(export_dir)
    except (ValueError, FileNotFoundError) as e:
        cli.fail(e)
    logging.info("Model: %s", synthesizer.info.to_json())
    # TensorFlow logs every file it saves at INFO; what was written is printed at the end.
    logging.set_verbosity(logging.WARNING)
    written = []
    try:
        written.append(
            export_lib.export_saved_model(synthesizer, export_dir, FLAGS.version, FLAGS.overwrite, limits)
        )
    except (ValueError, FileExistsError) as e:
        cli.fail(e)
    # Examples read the dataset: no data on this machine means an export without them, not an error.
    examples = export_lib.export_examples(
        synthesizer, export_dir, FLAGS.num_examples, FLAGS.dataset, FLAGS.dataset_root
    )
    if examples["label_maps"]:
        written.append(os.path.join(export_dir, export_lib.EXAMPLES_DIR))
    if variants:
        written += list(export_lib.export_tflite(synthesizer, export_dir, variants).values())
    if FLAGS.onnx:
        try:
            written.append(export_lib.export_onnx(synthesizer, export_dir))
        except ImportError as e:
            cli.fail(e)
    written.append(os.path.join(export_dir, export_lib.METADATA_FILE))
    written.append(
        serving_config.write_models_config(
            export_dir,
            FLAGS.model_name,
            FLAGS.serving_base_path,
            versions=versions,
            latest=FLAGS.serving_latest,
        )
    )
    written.append(model_card.write_export_card(export_dir, FLAGS.model_name))
    for path in written:
        size = _size(path)
        print(f"wrote {path} ({size / 1e6:.1f} MB)" if size >= 1e5 else f"wrote {path} ({size / 1e3:.1f} kB)")
    signatures = export_lib.read_metadata(export_dir)["signatures"]
    print(f"SavedModel signatures: {', '.join(signatures)}")
    print(f"SavedModel limits per request: {limits}")
    print(export_lib.examples_summary(examples))
    print(f"Weights license: {synthesizer.license['name']} ({synthesizer.license.get('reason', '')})")


def run():
    cli.run_command(sys.modules[__name__], main, define_flags)


if __name__ == "__main__":
    run()
