"""spade-convert: converts official NVlabs/SPADE checkpoints to spade_tf, and back.

Official -> spade_tf (one .keras bundle with G, and D and E when present):

    spade-convert --dataset ade20k --checkpoint_dir checkpoints/ade20k_pretrained --output ade20k.keras

spade_tf -> official state dicts (`latest_net_G.npz` ..., or .pth with torch):

    spade-convert --to_official --bundle ade20k.keras --output official_ade20k/

The same command runs as `python convert.py` from a clone and as `python -m spade_tf.convert`. Option
precedence: official defaults < --dataset < --options file < single flags. A converted bundle records NVIDIA's
license of the pretrained weights, CC BY-NC-SA 4.0 (non-commercial), and so do its exports, its model card
(MODEL_CARD.md, written beside the bundle) and models fine-tuned from it.
"""

import json
import os
import sys

from absl import app, flags, logging

from spade_tf import cli
from spade_tf.data.layouts import canonical_dataset
from spade_tf.serving import model_card
from spade_tf.tools import convert

FLAGS = flags.FLAGS

# The official option names, so a command line from the official repo carries over.
_OPTION_FLAGS = (
    "label_nc",
    "contain_dontcare_label",
    "no_instance",
    "ngf",
    "ndf",
    "num_upsampling_layers",
    "crop_size",
    "aspect_ratio",
    "use_vae",
    "z_dim",
    "num_D",
    "n_layers_D",
)


def define_flags():
    cli.define_dataset_flag(
        sorted(convert.DATASET_PRESETS), "The official options of this dataset's checkpoints"
    )
    flags.DEFINE_string("options", None, "Official options: a JSON file or the checkpoint's opt.txt.")
    flags.DEFINE_string(
        "options_section", None, "Top-level key of a JSON options file with several sections."
    )
    flags.DEFINE_string("checkpoint_dir", None, "Folder with <epoch>_net_G.pth (and _D, _E).")
    flags.DEFINE_string("which_epoch", "latest", "Epoch prefix of the checkpoint files.")
    flags.DEFINE_string(
        "generator", None, "Official G state dict (.pth or .npz); overrides --checkpoint_dir."
    )
    flags.DEFINE_string("discriminator", None, "Official D state dict (.pth or .npz).")
    flags.DEFINE_string("encoder", None, "Official E state dict (.pth or .npz).")
    flags.DEFINE_string("output", None, "Output: a .keras bundle, or with --to_official a folder.")
    flags.DEFINE_bool("to_official", False, "Convert a spade_tf bundle back to official state dicts.")
    flags.DEFINE_string("bundle", None, "With --to_official: the spade_tf .keras bundle.")
    flags.DEFINE_enum("format", "npz", ["npz", "pth"], "With --to_official: state dict file format.")
    flags.DEFINE_integer("label_nc", None, "Number of label classes (without don't-care).")
    flags.DEFINE_bool("contain_dontcare_label", None, "Labels include a don't-care class (255).")
    flags.DEFINE_bool("no_instance", None, "The model has no instance-edge channel.")
    flags.DEFINE_integer("ngf", None, "Generator width.")
    flags.DEFINE_integer("ndf", None, "Discriminator width.")
    flags.DEFINE_enum("num_upsampling_layers", None, ["normal", "more", "most"], "Generator depth.")
    flags.DEFINE_integer("crop_size", None, "Training crop width.")
    flags.DEFINE_float("aspect_ratio", None, "Training crop width / height.")
    flags.DEFINE_bool("use_vae", None, "The generator takes z from the style encoder.")
    flags.DEFINE_integer("z_dim", None, "Latent size.")
    flags.DEFINE_integer("num_D", None, "Discriminator scales.")
    flags.DEFINE_integer("n_layers_D", None, "Layers per discriminator scale.")


def _options():
    opts = convert.dataset_preset(FLAGS.dataset) if FLAGS.dataset else {}
    options_file = FLAGS.options
    if options_file is None and FLAGS.checkpoint_dir:
        candidate = os.path.join(FLAGS.checkpoint_dir, "opt.txt")
        if os.path.isfile(candidate):
            options_file = candidate
    if options_file:
        logging.info("Reading options from %s", options_file)
        opts.update(convert.read_options_file(options_file, FLAGS.options_section))
    opts.update({n: getattr(FLAGS, n) for n in _OPTION_FLAGS if getattr(FLAGS, n) is not None})
    if FLAGS.dataset:
        opts["dataset"] = FLAGS.dataset
    elif "dataset_mode" in opts:
        opts["dataset"] = canonical_dataset(str(opts["dataset_mode"]))
    return opts


def main(argv):
    del argv
    if not FLAGS.output:
        raise app.UsageError("--output is required.")
    if FLAGS.to_official:
        if not FLAGS.bundle:
            raise app.UsageError("--to_official needs --bundle model.keras.")
        for path in convert.export_official(FLAGS.bundle, FLAGS.output, FLAGS.format, FLAGS.which_epoch):
            print(f"wrote {path}")
        return
    paths = {}
    if FLAGS.checkpoint_dir:
        try:
            paths.update(convert.find_official_files(FLAGS.checkpoint_dir, FLAGS.which_epoch))
        except FileNotFoundError as e:
            cli.fail(e)
    for net, flag in (("G", FLAGS.generator), ("D", FLAGS.discriminator), ("E", FLAGS.encoder)):
        if flag:
            paths[net] = flag
    if "G" not in paths:
        raise app.UsageError("give --checkpoint_dir or --generator.")
    try:
        opts = _options()
        logging.info("Official options: %s", json.dumps(convert.normalize_options(opts), sort_keys=True))
        out = convert.convert_official(opts, paths, FLAGS.output)
    except (ValueError, FileNotFoundError) as e:
        # Options that do not fit the state dicts (each key and both shapes named), a missing file.
        cli.fail(e)
    print(f"wrote {out} ({', '.join(sorted(paths))})")
    card = model_card.write_bundle_card(out)
    print(f"wrote {card} (weights license: CC BY-NC-SA 4.0, NVIDIA's license of the official SPADE models)")


def run():
    cli.run_command(sys.modules[__name__], main, define_flags)


if __name__ == "__main__":
    run()
