"""The training configuration: defaults shared by every `configs/<dataset>.py`, and validation.

A config is an `ml_collections.ConfigDict` in three sections, `data`, `model`
and `train` (plus `eval`); `train.py` unpacks each section into explicit
arguments, and only `config.model` reaches the networks.
"""

import copy
import importlib.util
import json
import os

import ml_collections

from spade_tf.data.labels import semantic_channels
from spade_tf.data.layouts import DATASET_ALIASES, canonical_dataset
from spade_tf.data.transforms import PREPROCESS_MODES
from spade_tf.models.discriminator import MultiscaleDiscriminator
from spade_tf.models.encoder import ConvEncoder
from spade_tf.models.generator import SPADEGenerator
from spade_tf.models.normalization import SPADE
from spade_tf.utils import keyword_defaults

DATASETS = ("demo", "ade20k", "cityscapes", "coco_stuff", "custom")
# float64 is for verification (e.g. that 2 replicas reproduce 1 exactly), not for training.
PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16", "float64")
# Constructor arguments that come from the data (or the generator), not from a network's config section.
DATA_ARGUMENTS = (
    "semantic_channels",
    "crop_size",
    "aspect_ratio",
    "input_filters",
    "num_features",
    "label_channels",
)
# The official encoder takes its width (ngf) and latent size from the generator's options.
ENCODER_FROM_GENERATOR = ("base_filters", "latent_dim")
# Config keys renamed when each network section became its constructor's arguments: old -> new.
RENAMED_KEYS = {
    "model.param_free_norm": "model.spade.param_free_norm",
    "model.spade_kernel_size": "model.spade.kernel_size",
    "model.spade_hidden_filters": "model.spade.hidden_filters",
    "model.fast_spade": "model.spade.fast",
    "model.spade_gather_impl": "model.spade.gather_impl",
    "model.disc_filters": "discriminator.base_filters",
    "model.disc_scales": "discriminator.num_scales",
    "model.disc_layers": "discriminator.num_layers",
    "model.encoder_image_size": "encoder.image_size",
}


def base_config():
    """Official SPADE defaults (reference sections 1, 6-8), before any dataset setter."""
    c = ml_collections.ConfigDict()
    c.seed = 0

    c.data = ml_collections.ConfigDict()
    c.data.dataset = "custom"  # one of DATASETS
    c.data.root = ""  # dataset folder (the demo: "" = generated into the cache)
    c.data.label_dir = ""  # custom layout only: explicit folders (else <root>/<split>/labels ...)
    c.data.image_dir = ""
    c.data.instance_dir = ""
    c.data.palette = ""  # JSON palette: class names and colours; required for RGB label maps
    c.data.num_classes = 13  # official label_nc (without the don't-care label)
    c.data.contain_dontcare_label = False  # raw 255 becomes id num_classes
    c.data.use_instance_map = False  # append the instance-edge channel
    c.data.preprocess_mode = "resize_and_crop"
    c.data.load_size = 286
    c.data.crop_size = 256  # width of the crop
    c.data.aspect_ratio = 1.0  # width / height
    c.data.flip = True
    c.data.train_split = "train"
    c.data.val_split = "val"
    c.data.check = True  # scan the dataset (spade_tf.data.check) before training
    # The bundled demo dataset (used when dataset == "demo").
    c.data.demo_num_train = 400
    c.data.demo_num_val = 64
    c.data.demo_size = 64

    # Each network section is its constructor's keyword arguments, with the constructor's defaults
    # (the one place an option's default lives); `build_models` adds what the data decides (channel
    # counts, crop) and the precision. `model` -> SPADEGenerator, `model.spade` -> every SPADE layer,
    # `discriminator` -> MultiscaleDiscriminator, `encoder` -> ConvEncoder (its width and latent size are
    # the generator's, as in the official code).
    c.model = ml_collections.ConfigDict(keyword_defaults(SPADEGenerator, exclude=DATA_ARGUMENTS + ("spade",)))
    # SPADE's padding_mode is the generator's (`model.padding_mode`), which passes it to every layer.
    c.model.spade = ml_collections.ConfigDict(
        keyword_defaults(SPADE, exclude=DATA_ARGUMENTS + ("padding_mode",))
    )
    c.discriminator = ml_collections.ConfigDict(
        keyword_defaults(MultiscaleDiscriminator, exclude=DATA_ARGUMENTS)
    )
    c.encoder = ml_collections.ConfigDict(keyword_defaults(ConvEncoder, exclude=ENCODER_FROM_GENERATOR))

    c.train = ml_collections.ConfigDict()
    c.train.batch_size = 1  # global batch, split over replicas
    c.train.num_epochs = 50  # official niter: epochs at constant learning rate
    c.train.num_decay_epochs = 0  # official niter_decay: epochs of linear decay to 0
    c.train.max_steps = 0  # > 0: stop after this many steps (quick runs)
    c.train.max_seconds = 0  # > 0: also stop (with a checkpoint) after this much training time
    c.train.lr = 2e-4
    c.train.ttur = True  # G lr/2, D 2*lr, betas (0, 0.9); else both lr, betas (0.5, 0.999)
    c.train.d_steps_per_g = 1
    # True: the D step judges the fakes the G step just made (before G's update, as pix2pixHD does) instead of
    # running G again (the official order: fresh z, updated G); one G forward less per iteration.
    c.train.reuse_fakes = False
    c.train.lambda_feat = 10.0
    c.train.lambda_vgg = 10.0
    c.train.lambda_kld = 0.05
    c.train.use_feat_loss = True
    # VGG19 weights for the perceptual loss; "" = no VGG loss. torchvision's vgg19-dcbb9e9d.pth (or the same
    # keys as .npz) gives the official loss; Keras-applications .h5 weights are another network.
    c.train.vgg_weights = ""
    c.train.vgg_preprocessing = (
        ""  # "" = by the file's kind (torchvision: none, Keras: caffe); or "caffe", "none"
    )
    c.train.precision = "float32"  # or mixed_bfloat16, mixed_float16 (with loss scaling)
    c.train.xla = False
    # > 0: synthesize (samples, evaluation, the bundle) with a moving average of G's and E's weights.
    c.train.ema_decay = 0.0
    c.train.deterministic = False  # TF op determinism (reproducible resumes on CPU)
    c.train.init_from = ""  # a converted official bundle (.keras) to fine-tune from
    c.train.log_every = 10
    c.train.image_every = 200
    c.train.checkpoint_every = 500
    c.train.keep_checkpoints = 3

    c.eval = ml_collections.ConfigDict()
    c.eval.gallery_size = 16  # validation label maps synthesized at the end
    c.eval.oracle = False  # demo only: segmentation oracle mIoU of synthesized vs real
    # Evaluation during training (spade_tf.evaluation.evaluate), logged to TensorBoard under eval/.
    c.eval.every = 0  # steps between evaluations; 0 = off
    c.eval.num_images = 64  # validation images synthesized for each evaluation
    c.eval.inception_weights = (
        ""  # FID/KID Inception weights file (see spade_tf.evaluation.inception); "" = no FID/KID
    )
    c.eval.segmenter = ""  # segmentation SavedModel for mIoU (spade_tf.evaluation.segmenter); "" = none
    c.eval.segmenter_input_range = ""  # "0_1", "0_255", "-1_1"; "" = from its input dtype
    c.eval.segmenter_output = "logits"  # logits, probabilities or ids
    c.eval.label_class_map = ""  # e.g. "cityscapes": label ids -> evaluated ids
    c.eval.num_eval_classes = 0  # 0 = data.num_classes
    c.eval.ignore_index = -1  # label id left out of mIoU; -1 = none
    return c


def _choice(name, value, allowed):
    if value not in allowed:
        raise ValueError(f"{name}={value!r} is not valid; choose one of: {', '.join(allowed)}.")


def build_models(config, build=True):
    """(G, D, E or None) from the config's network sections, the data's channel counts and the precision.

    The one place where config sections become constructor arguments: `config.model` (with
    `model.spade`) -> SPADEGenerator, `config.discriminator` -> MultiscaleDiscriminator and
    `config.encoder` -> ConvEncoder (with a VAE), each `**section` as it is.

    Args:
        config: a training config (`base_config()` and a dataset's settings).
        build: create the weights; False only constructs the networks (what `validate` does to check
            every option without allocating anything).
    """
    data, m = config.data, config.model
    sem_nc = semantic_channels(data.num_classes, data.contain_dontcare_label, data.use_instance_map)
    dtype = config.train.precision
    kwargs = m.to_dict()
    g = SPADEGenerator(
        semantic_channels=sem_nc,
        crop_size=data.crop_size,
        aspect_ratio=data.aspect_ratio,
        dtype=dtype,
        name="generator",
        **kwargs,
    )
    d = MultiscaleDiscriminator(
        input_filters=sem_nc + 3, dtype=dtype, name="discriminator", **config.discriminator.to_dict()
    )
    e = None
    if m.use_vae:
        e = ConvEncoder(
            base_filters=m.base_filters,
            latent_dim=m.latent_dim,
            dtype=dtype,
            name="encoder",
            **config.encoder.to_dict(),
        )
    if build:
        for model in (g, d, e):
            if model is not None:
                model.build()
    return g, d, e


def validate(config):
    """Checks values that a typo or a wrong choice would otherwise turn into a late failure.

    The networks are constructed (without weights), so every network option is checked here by the
    constructor that owns it, before any data is read.
    """
    # COCO-Stuff's other spelling (the official dataset_mode "coco") is taken silently: one name downstream.
    config.data.dataset = canonical_dataset(config.data.dataset)
    _choice("data.dataset", config.data.dataset, DATASETS)
    _choice("train.precision", config.train.precision, PRECISIONS)
    _choice("data.preprocess_mode", config.data.preprocess_mode, PREPROCESS_MODES)
    if config.train.batch_size < 1:
        raise ValueError(f"train.batch_size={config.train.batch_size}: must be at least 1.")
    if config.data.num_classes < 1:
        raise ValueError(f"data.num_classes={config.data.num_classes}: must be at least 1.")
    try:
        build_models(config, build=False)
    except (TypeError, ValueError) as e:
        raise ValueError(f"the network sections (model, model.spade, discriminator, encoder): {e}") from None
    if config.data.dataset != "demo" and not (config.data.root or config.data.label_dir):
        raise ValueError(
            f"data.dataset={config.data.dataset!r} needs its folder: pass --config.data.root=/path/to/dataset"
            + (" (or --config.data.label_dir/image_dir)" if config.data.dataset == "custom" else "")
            + "."
        )
    _validate_eval(config.eval)
    return config


def upgrade_config(config):
    """A config saved by an older spade_tf (a bundle's or a workdir's) in today's layout; a new ConfigDict.

    Keys that moved (`RENAMED_KEYS`) are moved; sections added since are filled with today's defaults
    (`base_config()`). Old files ran with the same networks: only names changed.
    """
    old = (
        json.loads(config.to_json())
        if isinstance(config, ml_collections.ConfigDict)
        else copy.deepcopy(config)
    )
    model = old.get("model", {})
    for old_key, new_key in RENAMED_KEYS.items():
        name = old_key.split(".", 1)[1]
        if name not in model:
            continue
        value = model.pop(name)
        node = old
        *path, leaf = new_key.split(".")
        for part in path:
            node = node.setdefault(part, {})
        node[leaf] = value
    # One spectral-norm switch used to cover all three networks.
    for section in ("discriminator", "encoder"):
        if "use_spectral_norm" in model and "use_spectral_norm" not in old.get(section, {}):
            old.setdefault(section, {})["use_spectral_norm"] = model["use_spectral_norm"]
    upgraded = base_config()
    known = _flatten(upgraded.to_dict())
    # Keys that no longer exist are dropped: they cannot change how today's code reads the file.
    upgraded.update_from_flattened_dict({k: v for k, v in _flatten(old).items() if k in known})
    return upgraded


def _flatten(tree, prefix=""):
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _validate_eval(e):
    # Configs saved before these keys existed (in older bundles) leave them out.
    every = e.get("every", 0)
    if every < 0:
        raise ValueError(f"eval.every={every}: must be 0 (off) or a number of steps.")
    if not every:
        return
    if e.num_images < 2:
        raise ValueError(f"eval.num_images={e.num_images}: KID and FID need at least 2 images.")
    for key in ("inception_weights", "segmenter"):
        path = e.get(key, "")
        if path and not os.path.exists(path):
            raise ValueError(
                f"eval.{key}={path!r} does not exist; give the file/folder or leave it empty "
                "(see README, Evaluation: nothing is downloaded)."
            )
    _choice("eval.segmenter_output", e.segmenter_output, ("logits", "probabilities", "ids"))
    if e.segmenter_input_range:
        _choice("eval.segmenter_input_range", e.segmenter_input_range, ("0_1", "0_255", "-1_1"))


def shrink_to_small(c):
    """The shared `:small` variant of a dataset config: the same data at 64 px with narrow networks, 200 steps.

    For a quick run on real data (each `configs/<dataset>.py` applies it to its `small` argument).
    """
    c.data.load_size = 72
    c.data.crop_size = 64
    if c.data.preprocess_mode == "fixed":
        c.data.load_size = 64
    c.model.base_filters = 16
    c.model.spade.hidden_filters = 32
    c.discriminator.base_filters = 16
    c.encoder.image_size = 64
    c.train.batch_size = 4
    c.train.max_steps = 200
    c.train.log_every = 10
    c.train.image_every = 50
    c.train.checkpoint_every = 100
    return c


def config_dir():
    """The folder of the bundled configs: `spade_tf/configs/` where installed, the clone's `configs/` else.

    pyproject.toml installs the repository's top-level `configs/` as the package `spade_tf.configs`, so the
    same files serve a clone and a wheel.
    """
    package = os.path.dirname(os.path.abspath(__file__))
    candidates = (os.path.join(package, "configs"), os.path.join(os.path.dirname(package), "configs"))
    for folder in candidates:
        if os.path.isfile(os.path.join(folder, "demo.py")):
            return folder
    raise FileNotFoundError(f"the bundled configs are missing (looked in {' and '.join(candidates)}).")


def config_names():
    """The bundled config names (`demo`, `ade20k`, ...): what `--config=<name>[:small]` accepts."""
    return sorted(f[:-3] for f in os.listdir(config_dir()) if f.endswith(".py") and not f.startswith("_"))


def resolve_config_spec(spec):
    """`--config`'s value -> `path[:variant]`: a bundled name (`demo`, `ade20k:small`) becomes its file.

    A value naming a file, or holding a folder separator or `.py`, is a path and is returned as it is, so
    `configs/demo.py:small` keeps working from a clone.
    """
    path, sep, variant = spec.partition(":")
    if not path or os.path.isfile(path) or os.sep in path or "/" in path or path.endswith(".py"):
        return spec
    name = canonical_dataset(path)
    if name not in config_names():
        raise ValueError(
            f"unknown config {path!r}; the bundled configs are {', '.join(config_names())}"
            f" (with :small for a quick run; {', '.join(f'{a}={b}' for a, b in DATASET_ALIASES.items())}), "
            "or give a config file's path."
        )
    return os.path.join(config_dir(), name + ".py") + sep + variant


def load_config_file(spec):
    """`path[:variant]` or a bundled `name[:variant]` -> the ConfigDict its get_config(variant) returns."""
    path, _, variant = resolve_config_spec(spec).partition(":")
    if not os.path.isfile(path):
        folder = os.path.dirname(path) or "."
        available = (
            sorted(f for f in os.listdir(folder) if f.endswith(".py") and not f.startswith("_"))
            if os.path.isdir(folder)
            else []
        )
        raise ValueError(
            f"config file {path!r} not found"
            + (f"; available in {folder}/: {', '.join(available)}" if available else "")
            + f". Datasets: {', '.join(DATASETS)}."
        )
    module_spec = importlib.util.spec_from_file_location("spade_tf_user_config", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module.get_config(variant or None)


def check_command_line(argv, default_config):
    """Readable errors for a missing config file or a mistyped `--config.a.b=value` override.

    ml_collections only says "did you mean"; this names the section and lists its keys.
    """
    spec = default_config
    for i, arg in enumerate(argv):
        if arg.startswith("--config="):
            spec = arg.split("=", 1)[1]
        elif arg == "--config" and i + 1 < len(argv):
            spec = argv[i + 1]
    config = load_config_file(spec)
    for arg in argv:
        if not arg.startswith("--config."):
            continue
        key = arg[len("--config.") :].split("=", 1)[0]
        if key in RENAMED_KEYS:
            raise ValueError(f"--config.{key} is now --config.{RENAMED_KEYS[key]} (same meaning).")
        node, walked = config, "config"
        for part in key.split("."):
            if not isinstance(node, ml_collections.ConfigDict) or part not in node:
                keys = sorted(node.keys()) if isinstance(node, ml_collections.ConfigDict) else []
                raise ValueError(
                    f"--config.{key}: {walked} has no key {part!r}"
                    + (f"; valid keys: {', '.join(keys)}" if keys else "")
                    + "."
                )
            node, walked = node[part], f"{walked}.{part}"
    return config
