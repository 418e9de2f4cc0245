"""Exports a trained or converted SPADE model for serving: a TF Serving SavedModel, TFLite files, ONNX.

    python export.py --model workdirs/demo --export_dir exports/spade          # SavedModel + 3 TFLite files
    python export.py --model ade20k.keras --export_dir exports/ade20k --version 2 --notflite
    python export.py --model workdirs/demo --export_dir exports/spade --onnx --overwrite

Writes <export_dir>/<version>/ (the SavedModel, TF Serving's layout), <export_dir>/metadata.json (classes,
palette, signatures), <export_dir>/tflite/spade_<variant>.tflite and with --onnx <export_dir>/onnx/spade.onnx.
Serve it with `docker run -p 8501:8501 -p 8500:8500 --mount type=bind,source=$PWD/exports/spade,
target=/models/spade -e MODEL_NAME=spade tensorflow/serving` (see the README).
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags, logging  # noqa: E402

from spade_tf.serving import export_lib  # noqa: E402
from spade_tf.serving.inference import load_synthesizer  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string(
    "model", None, "A training workdir (holding model.keras) or a .keras bundle from convert.py."
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
flags.mark_flag_as_required("model")


def _size(path):
    if os.path.isdir(path):
        return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(path) for f in files)
    return os.path.getsize(path)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    try:
        variants = export_lib.check_tflite_variants(FLAGS.tflite_variants) if FLAGS.tflite else ()
        limits = export_lib.Limits(FLAGS.max_maps, FLAGS.max_pixels, FLAGS.max_style_pixels)
        synthesizer = load_synthesizer(FLAGS.model)
    except (ValueError, FileNotFoundError) as e:
        sys.exit(f"export.py: error: {e}")
    export_dir = FLAGS.export_dir or os.path.join(os.path.dirname(synthesizer.source), "export")
    logging.info("Model: %s", synthesizer.info.to_json())
    # TensorFlow logs every file it saves at INFO; what was written is printed at the end.
    logging.set_verbosity(logging.WARNING)
    written = []
    try:
        written.append(
            export_lib.export_saved_model(synthesizer, export_dir, FLAGS.version, FLAGS.overwrite, limits)
        )
    except (ValueError, FileExistsError) as e:
        sys.exit(f"export.py: error: {e}")
    if variants:
        written += list(export_lib.export_tflite(synthesizer, export_dir, variants).values())
    if FLAGS.onnx:
        try:
            written.append(export_lib.export_onnx(synthesizer, export_dir))
        except ImportError as e:
            sys.exit(f"export.py: error: {e}")
    written.append(os.path.join(export_dir, export_lib.METADATA_FILE))
    for path in written:
        size = _size(path)
        print(f"wrote {path} ({size / 1e6:.1f} MB)" if size >= 1e5 else f"wrote {path} ({size / 1e3:.1f} kB)")
    signatures = export_lib.read_metadata(export_dir)["signatures"]
    print(f"SavedModel signatures: {', '.join(signatures)}")
    print(f"SavedModel limits per request: {limits}")


if __name__ == "__main__":
    app.run(main)
