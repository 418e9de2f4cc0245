"""Measures a trained or converted model on a dataset split: FID and KID, segmentation mIoU, the demo oracle.

    python evaluate.py --model workdirs/demo                                # demo: oracle mIoU and oracle KID
    python evaluate.py --model workdirs/demo --inception pt_inception-2015-12-05-6726825d.pth   # + FID, KID
    python evaluate.py --model cityscapes.keras --dataset cityscapes --dataset_root /data/cityscapes \
        --inception pt_inception-2015-12-05-6726825d.pth --segmenter drn_d_105_savedmodel \
        --label_class_map cityscapes --num_eval_classes 19 --ignore_index 255

The split is synthesized at the model's size (VAE models take their latent from each real image, as the
official test script does) and compared with the real images at that size. Real-image Inception statistics
are cached per split (--stats_dir). Prints a table and writes JSON (--output). Nothing is downloaded: the
Inception weights and the segmentation network are files you supply (see README, "Evaluation").
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # noqa: E402

from spade_tf.data.check import DatasetError  # noqa: E402
from spade_tf.evaluation import evaluate as evaluation  # noqa: E402
from spade_tf.evaluation import segmenter  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string(
    "model", None, "A training workdir (with model.keras) or a .keras bundle from convert.py."
)
flags.DEFINE_enum("split", "val", ["train", "val"], "The split to synthesize and compare.")
flags.DEFINE_enum("dataset", None, ["ade20k", "cityscapes", "coco"], "A converted model's dataset layout.")
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
# --segmenter (mIoU / pixel accuracy), --segmenter_signature, --segmenter_input_range, --segmenter_output, ...
SEGMENTER_FLAGS = segmenter.SegmenterFlags(prefix="segmenter_")
flags.adopt_module_key_flags(segmenter)  # listed by --help with this script's own flags
flags.DEFINE_string(
    "label_class_map", None, "Maps the label ids before scoring ('cityscapes': 35 ids -> 19 train ids)."
)
flags.DEFINE_integer("num_eval_classes", None, "Classes scored (default: the model's classes).")
flags.DEFINE_integer("ignore_index", None, "Label id left out of the scores (after --label_class_map).")
flags.DEFINE_bool("oracle", None, "Demo models: the demo oracle's mIoU and KID (default on for demo models).")
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
        sys.exit(f"evaluate.py: error: {e}")
    return 0


if __name__ == "__main__":
    app.run(main)
