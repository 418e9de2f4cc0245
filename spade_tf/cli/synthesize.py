"""spade-synthesize: synthesizes images from label maps and writes an HTML gallery (the official test.py).

    spade-synthesize --model workdirs/demo --split val                        # the validation split
    spade-synthesize --model workdirs/demo --labels my_labels --images my_photos --output results/mine
    spade-synthesize --model ade20k.keras --dataset ade20k \\
        --dataset_root /data/ADEChallengeData2016 --split val --limit 50     # a converted official model
    spade-synthesize --model workdirs/vae --labels my_labels --num_samples 4 --seed 7   # VAE: 4 styles
    spade-synthesize --model workdirs/vae --labels my_labels --style sunset.jpg          # style-guided

From a clone, `python synthesize.py` is the same command. Writes <output>/index.html (input_label |
synthesized_image | style_image | real_image), <output>/images/ and <output>/synthesized/<label file name>.png
(<name>_seed<s>.png with several samples). Label PNGs hold class ids (one channel; 255 = don't care where the
model has that label) or colours of the model's palette. Every file is checked before the first synthesis.
"""

import sys

from absl import app, flags

from spade_tf import cli
from spade_tf.serving import synthesis

FLAGS = flags.FLAGS


def define_flags():
    flags.DEFINE_string(
        "model", None, "A training workdir (with model.keras) or a .keras bundle from spade-convert."
    )
    flags.DEFINE_string("labels", None, "Folder of label PNGs (ids, or colours of the model's palette).")
    flags.DEFINE_string("instances", None, "With --labels: folder of instance PNGs, matched by file name.")
    flags.DEFINE_string(
        "images", None, "With --labels: folder of real photos, matched by file name (shown as real)."
    )
    flags.DEFINE_enum(
        "split", None, list(synthesis.SPLITS), "Instead of --labels: this split of the model's dataset."
    )
    cli.define_dataset_flag(
        list(synthesis.OFFICIAL_DATASETS), "With --split and a converted model: its dataset layout"
    )
    flags.DEFINE_string(
        "dataset_root", None, "With --split: the dataset folder (moves a training config's root)."
    )
    flags.DEFINE_string("output", None, "Output folder (default results/<model name>).")
    flags.DEFINE_integer(
        "limit", 0, "Synthesize at most this many label maps (the official --how_many); 0 = all."
    )
    flags.DEFINE_integer("batch_size", 8, "Label maps per generator call.")
    flags.DEFINE_bool(
        "resize", True, "Resize label maps the model cannot take to its size (nearest); else fail."
    )
    flags.DEFINE_integer(
        "num_samples", 1, "VAE models: images per label map, from seeds --seed, --seed + 1, ..."
    )
    flags.DEFINE_integer("seed", 0, "VAE models: the first seed; the same seed gives the same image.")
    flags.DEFINE_string("style", None, "VAE models: one style exemplar image for every label map.")
    flags.DEFINE_string(
        "style_dir", None, "VAE models: style exemplars matched to the label maps by file name."
    )
    flags.DEFINE_bool("style_from_real", False, "VAE models: each label map's real photo is its exemplar.")
    flags.DEFINE_bool(
        "style_sample", False, "With exemplars: sample around the encoder's mean (else use the mean)."
    )


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    if not FLAGS.model:
        raise app.UsageError("--model is required.")
    try:
        synthesis.run(
            FLAGS.model,
            output_dir=FLAGS.output,
            labels_dir=FLAGS.labels,
            instances_dir=FLAGS.instances,
            images_dir=FLAGS.images,
            split=FLAGS.split,
            dataset=FLAGS.dataset,
            dataset_root=FLAGS.dataset_root,
            limit=FLAGS.limit,
            batch_size=FLAGS.batch_size,
            num_samples=FLAGS.num_samples,
            # Only a seed given on the command line counts as asking for one (an error for non-VAE models).
            seed=FLAGS.seed if FLAGS["seed"].present else None,
            style=FLAGS.style,
            style_dir=FLAGS.style_dir,
            style_from_real=FLAGS.style_from_real,
            style_sample=FLAGS.style_sample,
            resize=FLAGS.resize,
        )
    except (ValueError, FileNotFoundError) as e:
        # Input problems (each naming the file and the fix) without a traceback; DatasetError is a ValueError.
        cli.fail(e)


def run():
    cli.run_command(sys.modules[__name__], main, define_flags)


if __name__ == "__main__":
    run()
