"""spade-evaluate: measures a trained or converted model on a dataset split: FID and KID, mIoU, the demo oracle.

    spade-evaluate --model workdirs/demo                                # demo: oracle mIoU and oracle KID
    spade-evaluate --model workdirs/demo --inception pt_inception-2015-12-05-6726825d.pth   # + FID, KID
    spade-evaluate --model cityscapes.keras --dataset cityscapes --dataset_root /data/cityscapes \\
        --inception pt_inception-2015-12-05-6726825d.pth --segmenter drn_d_105_savedmodel \\
        --label_class_map cityscapes --num_eval_classes 19 --ignore_index 255

From a clone, `python evaluate.py` is the same command. The split is synthesized at the model's size (VAE
models take their latent from each real image, as the official test script does) and compared with the real
images at that size. Real-image Inception statistics are cached per split (--stats_dir). Prints a table and
writes JSON (--output; the model card of a later export shows its figures). Nothing is downloaded: the
Inception weights and the segmentation network are files you supply (see README, "Evaluation").
"""

import sys

from absl import app, flags

from spade_tf import cli
from spade_tf.data.check import DatasetError
from spade_tf.evaluation import evaluate as evaluation
from spade_tf.evaluation import segmenter
from spade_tf.serving.synthesis import OFFICIAL_DATASETS, SPLITS

FLAGS = flags.FLAGS
SEGMENTER_FLAGS = None  # the segmenter's flags, defined by define_flags


def define_flags():
    global SEGMENTER_FLAGS
    flags.DEFINE_string(
        "model", None, "A training workdir (with model.keras) or a .keras bundle from spade-convert."
    )
    flags.DEFINE_enum("split", "val", list(SPLITS), "The split to synthesize and compare.")
    cli.define_dataset_flag(list(OFFICIAL_DATASETS), "A converted model's dataset layout")
    flags.DEFINE_string("dataset_root", None, "The dataset folder (moves a training config's root).")
    flags.DEFINE_integer("limit", 0, "Evaluate the first N examples; 0 = all (papers use the whole split).")
    flags.DEFINE_integer("batch_size", 8, "Label maps per generator call.")
    flags.DEFINE_string(
        "inception", None, "FID/KID Inception weights: pytorch-fid's .pth, its .npz, or TTUR's .pb graph."
    )
    flags.DEFINE_string(
        "stats_dir", None, "Cache of real-image Inception statistics (default <model dir>/fid_stats)."
    )
    flags.DEFINE_integer("kid_subset_size", 1000, "KID subset size (clipped to the number of images).")
    # --segmenter (mIoU / pixel accuracy), --segmenter_signature, --segmenter_input_range, ...
    SEGMENTER_FLAGS = segmenter.SegmenterFlags(prefix="segmenter_")
    flags.adopt_module_key_flags(segmenter)  # listed by --help with this command's own flags
    flags.DEFINE_string(
        "label_class_map", None, "Maps the label ids before scoring ('cityscapes': 35 ids -> 19 train ids)."
    )
    flags.DEFINE_integer("num_eval_classes", None, "Classes scored (default: the model's classes).")
    flags.DEFINE_integer("ignore_index", None, "Label id left out of the scores (after --label_class_map).")
    flags.DEFINE_bool(
        "oracle", None, "Demo models: the demo oracle's mIoU and KID (default on for demo models)."
    )
    flags.DEFINE_integer("seed", 0, "VAE models: the noise seed.")
    flags.DEFINE_bool("style_from_real", True, "VAE models: latents from the real images (else from seeds).")
    flags.DEFINE_string("output", None, "JSON result file (default <model dir>/eval_<split>.json).")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    if not FLAGS.model:
        raise app.UsageError("--model is required.")
    try:
        seg = SEGMENTER_FLAGS.segmenter()
        label_map = segmenter.load_class_map(FLAGS.label_class_map) if FLAGS.label_class_map else None
        evaluation.run(
            FLAGS.model,
            split=FLAGS.split,
            dataset=FLAGS.dataset,
            dataset_root=FLAGS.dataset_root,
            limit=FLAGS.limit,
            batch_size=FLAGS.batch_size,
            inception_weights=FLAGS.inception,
            stats_dir=FLAGS.stats_dir,
            segmenter=seg,
            label_class_map=label_map,
            num_eval_classes=FLAGS.num_eval_classes,
            ignore_index=FLAGS.ignore_index,
            use_oracle=FLAGS.oracle,
            seed=FLAGS.seed,
            style_from_real=FLAGS.style_from_real,
            kid_subset_size=FLAGS.kid_subset_size,
            output=FLAGS.output,
        )
    except (ValueError, FileNotFoundError, DatasetError) as e:
        # Input problems (a missing or damaged model, weights or dataset), each naming the file: one line.
        cli.fail(e)
    return 0


def run():
    cli.run_command(sys.modules[__name__], main, define_flags)


if __name__ == "__main__":
    run()
