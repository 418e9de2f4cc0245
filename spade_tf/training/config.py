"""The training configuration: defaults shared by every `configs/<dataset>.py`, and validation.

A config is an `ml_collections.ConfigDict` in three sections, `data`, `model`
and `train` (plus `eval`); `train.py` unpacks each section into explicit
arguments, and only `config.model` reaches the networks.
"""

import ml_collections

DATASETS = ("demo", "ade20k", "cityscapes", "coco_stuff", "custom")
# float64 is for verification (e.g. that 2 replicas reproduce 1 exactly), not for training.
PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16", "float64")


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

    c.model = ml_collections.ConfigDict()
    c.model.base_filters = 64  # ngf
    c.model.num_upsampling_layers = "normal"
    c.model.use_vae = False
    c.model.latent_dim = 256  # z_dim
    c.model.param_free_norm = "sync_batch"
    c.model.use_spectral_norm = True
    c.model.spade_kernel_size = 3
    c.model.spade_hidden_filters = 128
    # SPADE's exact fast path (the one-hot conv as gathered kernel rows, see spade_tf.models.normalization.SPADE);
    # False runs the plain convolution, the reference computation. Same weights and results either way.
    c.model.fast_spade = True
    # How the fast path gathers (spade_tf.models.normalization.gather_conv_relu): "segment_sum" (TF kernels) or
    # "xla" (XLA-compiled; ~4 % faster training steps on a 2-core CPU, ~0.15 GB more memory).
    c.model.spade_gather_impl = "segment_sum"
    c.model.disc_filters = 64  # ndf
    c.model.disc_scales = 2  # num_D
    c.model.disc_layers = 4  # n_layers_D
    c.model.encoder_image_size = 256  # the official encoder resizes to 256

    c.train = ml_collections.ConfigDict()
    c.train.batch_size = 1  # global batch, split over replicas
    c.train.num_epochs = 50  # official niter: epochs at constant learning rate
    c.train.num_decay_epochs = 0  # official niter_decay: epochs of linear decay to 0
    c.train.max_steps = 0  # > 0: stop after this many steps (quick runs)
    c.train.max_seconds = 0  # > 0: also stop (with a checkpoint) after this much training time
    c.train.lr = 2e-4
    c.train.ttur = True  # G lr/2, D 2*lr, betas (0, 0.9); else both lr, betas (0.5, 0.999)
    c.train.d_steps_per_g = 1
    c.train.lambda_feat = 10.0
    c.train.lambda_vgg = 10.0
    c.train.lambda_kld = 0.05
    c.train.use_feat_loss = True
    c.train.vgg_weights = ""  # path of VGG19 notop weights; "" = no VGG loss
    c.train.vgg_preprocessing = "caffe"
    c.train.precision = "float32"  # or mixed_bfloat16, mixed_float16 (with loss scaling)
    c.train.xla = False
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


def validate(config):
    """Checks values that a typo or a wrong choice would otherwise turn into a late failure."""
    _choice("data.dataset", config.data.dataset, DATASETS)
    _choice("train.precision", config.train.precision, PRECISIONS)
    from spade_tf.data.transforms import PREPROCESS_MODES
    from spade_tf.models.generator import UPSAMPLING_CHOICES
    from spade_tf.models.normalization import PARAM_FREE_NORMS

    _choice("data.preprocess_mode", config.data.preprocess_mode, PREPROCESS_MODES)
    _choice("model.num_upsampling_layers", config.model.num_upsampling_layers, tuple(UPSAMPLING_CHOICES))
    _choice("model.param_free_norm", config.model.param_free_norm, PARAM_FREE_NORMS)
    if config.train.batch_size < 1:
        raise ValueError(f"train.batch_size={config.train.batch_size}: must be at least 1.")
    if config.data.num_classes < 1:
        raise ValueError(f"data.num_classes={config.data.num_classes}: must be at least 1.")
    if config.data.dataset != "demo" and not (config.data.root or config.data.label_dir):
        raise ValueError(
            f"data.dataset={config.data.dataset!r} needs its folder: pass --config.data.root=/path/to/dataset"
            + (" (or --config.data.label_dir/image_dir)" if config.data.dataset == "custom" else "")
            + "."
        )
    _validate_eval(config.eval)
    return config


def _validate_eval(e):
    import os

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


def load_config_file(spec):
    """`path[:variant]` -> the ConfigDict its get_config(variant) returns (as --config does)."""
    import importlib.util
    import os

    path, _, variant = spec.partition(":")
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
    for arg in argv:
        if arg.startswith("--config="):
            spec = arg.split("=", 1)[1]
    config = load_config_file(spec)
    for arg in argv:
        if not arg.startswith("--config."):
            continue
        key = arg[len("--config.") :].split("=", 1)[0]
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
