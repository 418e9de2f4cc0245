"""spade-label-photos: labels photos with a segmentation SavedModel, writing a dataset spade-train reads.

    spade-label-photos --segmenter=/models/seg --photos=/data/flickr --output=/data/flickr_labelled \\
        --input_range=0_255 --class_names=classes.txt --val_fraction=0.05 --min_coverage=0.6
    spade-label-photos --segmenter=/models/deeplab_cityscapes --class_map=cityscapes --photos=... --output=...

Try it on the demo: export the demo oracle, then label demo photos with it:

    spade-label-photos --export_demo_oracle=/tmp/oracle_savedmodel
    spade-label-photos --segmenter=/tmp/oracle_savedmodel --photos=<demo>/train/images --output=/tmp/labelled

From a clone, `python label_photos.py` is the same command. Then train with the command the report prints
(the custom config with --config.data.root=OUTPUT).
"""

import sys

from absl import app, flags

from spade_tf import cli
from spade_tf.data import demo
from spade_tf.evaluation import oracle, segmenter
from spade_tf.tools import label_photos

FLAGS = flags.FLAGS
SEGMENTER_FLAGS = None  # the segmenter's flags, defined by define_flags


def define_flags():
    global SEGMENTER_FLAGS
    # --segmenter, --signature, --input_range, --output_kind (--output is the dataset), --output_key,
    # --input_key, --class_map.
    SEGMENTER_FLAGS = segmenter.SegmenterFlags(names={"output": "output_kind"})
    flags.adopt_module_key_flags(segmenter)  # listed by --help with this command's own flags
    flags.DEFINE_string("photos", None, "Folder of .jpg/.jpeg/.png photos.")
    flags.DEFINE_string("output", None, "Dataset folder to write (custom layout).")
    flags.DEFINE_string(
        "class_names",
        None,
        "Class names: one per line, a JSON list, or a palette JSON file (names and colours).",
    )
    flags.DEFINE_bool("recursive", False, "Also read photos in sub-folders.")
    flags.DEFINE_float("val_fraction", 0.0, "Fraction of the photos written to val/.")
    flags.DEFINE_integer(
        "resize_shorter", 0, "Resize photos so the shorter side has this many pixels (0 = keep)."
    )
    flags.DEFINE_float("min_confidence", 0.0, "Skip photos whose mean per-pixel confidence is lower.")
    flags.DEFINE_float("min_coverage", 0.0, "Skip photos with a smaller fraction of usable pixels.")
    flags.DEFINE_float(
        "pixel_threshold", 0.5, "Confidence a pixel needs to count as usable for --min_coverage."
    )
    flags.DEFINE_integer("batch_size", 8, "Photos per forward pass.")
    flags.DEFINE_integer("seed", 0, "Seed of the train/val split.")
    flags.DEFINE_bool("overwrite", False, "Replace a dataset already in --output.")
    flags.DEFINE_string(
        "export_demo_oracle",
        None,
        "Only export the demo oracle (trained once, cached) as a SavedModel here.",
    )


def _export_demo_oracle(path):
    root = demo.generate_demo_dataset()
    saved = segmenter.export_oracle_saved_model(
        oracle.load_or_train_oracle(root), path, overwrite=FLAGS.overwrite
    )
    print(f"wrote {saved} (signature {segmenter.ORACLE_SIGNATURE}: float32 images in [0, 1] -> logits)")
    print(
        f"label demo photos: {cli.program()} --segmenter={saved} --photos={root}/train/images "
        f"--output=/tmp/labelled --class_names={root}/palette.json"
    )


def _main(argv):
    del argv
    if FLAGS.export_demo_oracle:
        _export_demo_oracle(FLAGS.export_demo_oracle)
        return
    missing = [f"--{n}" for n in ("segmenter", "photos", "output") if not getattr(FLAGS, n)]
    if missing:
        raise app.UsageError(f"{', '.join(missing)} required (or --export_demo_oracle=PATH).")
    names = colors = None
    if FLAGS.class_names:
        names, colors = label_photos.read_class_names(FLAGS.class_names)
    elif FLAGS.class_map == "cityscapes":
        names, colors = segmenter.CITYSCAPES_TRAIN_CLASS_NAMES, segmenter.CITYSCAPES_TRAIN_COLORS
    seg = SEGMENTER_FLAGS.segmenter(batch_size=FLAGS.batch_size)
    label_photos.label_photos(
        seg,
        FLAGS.photos,
        FLAGS.output,
        recursive=FLAGS.recursive,
        val_fraction=FLAGS.val_fraction,
        class_names=names,
        colors=colors,
        resize_shorter=FLAGS.resize_shorter,
        min_confidence=FLAGS.min_confidence,
        min_coverage=FLAGS.min_coverage,
        pixel_threshold=FLAGS.pixel_threshold,
        overwrite=FLAGS.overwrite,
        seed=FLAGS.seed,
    )


def main(argv):
    try:
        _main(argv)
    except (ValueError, FileNotFoundError, FileExistsError) as e:
        cli.fail(e)


def run():
    cli.run_command(sys.modules[__name__], main, define_flags)


if __name__ == "__main__":
    run()
