"""Official NVlabs/SPADE state dicts <-> spade_tf models.

`generator_from_official`, `discriminator_from_official` and
`encoder_from_official` take a state dict (official key names -> numpy
arrays, PyTorch layouts) and the official option values, build the matching
spade_tf model and load the weights. The `*_to_official` functions go back,
so a model trained here runs in the official code. A state dict that does not
match the options (missing, extra or mis-shaped key) is refused with a
message naming the key and both shapes.

Layouts: conv weights OIHW <-> HWIO, linear weights (out, in) <-> (in, out),
spectral-norm `weight_v` (in*kh*kw, flattened in (in, kh, kw) order) <->
`v` in (kh, kw, in) order, BN `running_*` as they are. The official
`num_batches_tracked` buffers are never read by SPADE's norms (the
synchronized BN does not even increment them); they are accepted on the way
in and written as 0 on the way out.

Command line (see README): `python convert.py --dataset ade20k
--checkpoint_dir checkpoints/ade20k_pretrained --output ade20k.keras`.
"""

import dataclasses
import json
import os
import re

import numpy as np

from spade_tf.data.layouts import canonical_dataset
from spade_tf.data.semantics import semantic_channels
from spade_tf.models.bundle import OFFICIAL_LICENSE, load_bundle, save_bundle
from spade_tf.models.conv import Conv2D
from spade_tf.models.discriminator import MultiscaleDiscriminator
from spade_tf.models.encoder import ConvEncoder
from spade_tf.models.generator import UPSAMPLING_CHOICES, SPADEGenerator
from spade_tf.models.losses import VGGPerceptualLoss
from spade_tf.models.normalization import ParamFreeBatchNorm

# Re-exported: part of the converter's documented API (convert.StateDictMismatch, convert.load_state_dict).
from spade_tf.models.state_dict import StateDictMismatch, load_state_dict, save_state_dict  # noqa: F401
from spade_tf.utils import check_choice

# Official defaults (BaseOptions / TrainOptions / SPADEGenerator.modify_commandline_options).
OFFICIAL_DEFAULTS = {
    "label_nc": 182,
    "contain_dontcare_label": False,
    "no_instance": False,
    "ngf": 64,
    "ndf": 64,
    "num_upsampling_layers": "normal",
    "crop_size": 256,
    "aspect_ratio": 1.0,
    "use_vae": False,
    "z_dim": 256,
    "num_D": 2,
    "n_layers_D": 4,
    "norm_G": "spectralspadesyncbatch3x3",
    "norm_D": "spectralinstance",
    "norm_E": "spectralinstance",
}

# What each official dataset_mode sets (reference section 12); used by --dataset. Keyed by our dataset names
# (the official dataset_mode "coco" is COCO-Stuff: `dataset_preset` takes either).
DATASET_PRESETS = {
    "ade20k": {
        "label_nc": 150,
        "contain_dontcare_label": True,
        "no_instance": True,
        "crop_size": 256,
        "aspect_ratio": 1.0,
        "num_upsampling_layers": "normal",
    },
    "cityscapes": {
        "label_nc": 35,
        "contain_dontcare_label": False,
        "no_instance": False,
        "crop_size": 512,
        "aspect_ratio": 2.0,
        "num_upsampling_layers": "more",
    },
    "coco_stuff": {
        "label_nc": 182,
        "contain_dontcare_label": True,
        "no_instance": False,
        "crop_size": 256,
        "aspect_ratio": 1.0,
        "num_upsampling_layers": "normal",
    },
}

_BOOL_OPTIONS = ("contain_dontcare_label", "no_instance", "use_vae")


def dataset_preset(name):
    """The official options of a dataset (`DATASET_PRESETS`), by our name or the official dataset_mode."""
    key = canonical_dataset(name)
    if key not in DATASET_PRESETS:
        raise ValueError(
            f"dataset={name!r} is not a preset; choose one of: {', '.join(sorted(DATASET_PRESETS))}."
        )
    return dict(DATASET_PRESETS[key])


_INT_OPTIONS = ("label_nc", "ngf", "ndf", "crop_size", "z_dim", "num_D", "n_layers_D")
_NORM_CHOICES = {"syncbatch": "sync_batch", "batch": "batch", "instance": "instance"}


def _to_bool(name, value):
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.lower() in ("true", "false", "1", "0"):
        return value.lower() in ("true", "1")
    raise ValueError(f"option {name}={value!r}: expected true or false.")


def normalize_options(options):
    """Official option values with defaults filled in and types checked.

    Unknown keys (an official opt dump has dozens) are ignored.
    """
    opts = dict(OFFICIAL_DEFAULTS)
    opts.update({k: v for k, v in dict(options).items() if k in OFFICIAL_DEFAULTS or k == "semantic_nc"})
    for name in _BOOL_OPTIONS:
        opts[name] = _to_bool(name, opts[name])
    for name in _INT_OPTIONS:
        try:
            opts[name] = int(opts[name])
        except (TypeError, ValueError):
            raise ValueError(f"option {name}={opts[name]!r}: expected an integer.") from None
    opts["aspect_ratio"] = float(opts["aspect_ratio"])
    check_choice("num_upsampling_layers", opts["num_upsampling_layers"], tuple(UPSAMPLING_CHOICES))
    expected_nc = semantic_channels(opts["label_nc"], opts["contain_dontcare_label"], not opts["no_instance"])
    if "semantic_nc" in opts and int(opts["semantic_nc"]) != expected_nc:
        raise ValueError(
            f"options give semantic_nc={opts['semantic_nc']} but label_nc={opts['label_nc']}, "
            f"contain_dontcare_label={opts['contain_dontcare_label']}, "
            f"no_instance={opts['no_instance']} make {expected_nc}."
        )
    opts["semantic_nc"] = expected_nc
    return opts


def _parse_spade_norm(norm_g):
    # The official string format, e.g. "spectralspadesyncbatch3x3".
    match = re.fullmatch(r"(spectral)?spade(\D+)(\d)x\d", norm_g)
    if not match or match.group(2) not in _NORM_CHOICES:
        raise ValueError(f"norm_G={norm_g!r}: expected 'spectralspade<syncbatch|batch|instance><k>x<k>'.")
    return bool(match.group(1)), _NORM_CHOICES[match.group(2)], int(match.group(3))


def _spectral(norm, option):
    if not norm.startswith("spectral"):
        # The official get_nonspade_norm_layer crashes on these, so no such
        # checkpoint exists.
        raise ValueError(f"{option}={norm!r}: the official code only supports 'spectral...' here.")
    return True


def generator_kwargs(options):
    """SPADEGenerator constructor arguments for official options."""
    opts = normalize_options(options)
    use_sn, norm, kernel = _parse_spade_norm(opts["norm_G"])
    return dict(
        semantic_channels=opts["semantic_nc"],
        base_filters=opts["ngf"],
        num_upsampling_layers=opts["num_upsampling_layers"],
        crop_size=opts["crop_size"],
        aspect_ratio=opts["aspect_ratio"],
        use_vae=opts["use_vae"],
        latent_dim=opts["z_dim"],
        use_spectral_norm=use_sn,
        spade=dict(param_free_norm=norm, kernel_size=kernel),
    )


def discriminator_kwargs(options):
    opts = normalize_options(options)
    return dict(
        input_filters=opts["semantic_nc"] + 3,
        base_filters=opts["ndf"],
        num_scales=opts["num_D"],
        num_layers=opts["n_layers_D"],
        use_spectral_norm=_spectral(opts["norm_D"], "norm_D"),
    )


def encoder_kwargs(options):
    opts = normalize_options(options)
    # The official encoder uses ngf (not nef) as its width and always a
    # 256-d latent; only its crop >= 256 variant can run (see ConvEncoder).
    return dict(
        base_filters=opts["ngf"],
        latent_dim=256,
        image_size=256,
        use_spectral_norm=_spectral(opts["norm_E"], "norm_E"),
    )


# ---------------------------------------------------------------------------
# Key mapping
# ---------------------------------------------------------------------------


@dataclasses.dataclass
class _Entry:
    key: str
    variable: object  # a Keras variable, or None for num_batches_tracked
    official_shape: tuple
    to_official: object  # ours (numpy) -> official (numpy)
    from_official: object  # official -> ours


def _identity(a):
    return a


def _conv_entries(prefix, conv):
    k, cin, cout = conv.kernel_size, conv.input_filters, conv.filters
    name = "weight_orig" if conv.use_spectral_norm else "weight"
    entries = [
        _Entry(
            f"{prefix}.{name}",
            conv.kernel,
            (cout, cin, k, k),
            lambda a: np.transpose(a, (3, 2, 0, 1)),
            lambda a: np.transpose(a, (2, 3, 1, 0)),
        )
    ]
    if conv.use_bias:
        entries.append(_Entry(f"{prefix}.bias", conv.bias, (cout,), _identity, _identity))
    if conv.use_spectral_norm:
        entries.append(_Entry(f"{prefix}.weight_u", conv.u, (cout,), _identity, _identity))
        entries.append(
            _Entry(
                f"{prefix}.weight_v",
                conv.v,
                (cin * k * k,),
                lambda a: a.reshape(k, k, cin).transpose(2, 0, 1).reshape(-1),
                lambda a: a.reshape(cin, k, k).transpose(1, 2, 0).reshape(-1),
            )
        )
    return entries


def _dense_entries(prefix, dense):
    cin, cout = dense.kernel.shape
    return [
        _Entry(f"{prefix}.weight", dense.kernel, (cout, cin), np.transpose, np.transpose),
        _Entry(f"{prefix}.bias", dense.bias, (cout,), _identity, _identity),
    ]


def _bn_entries(prefix, norm):
    if not isinstance(norm, ParamFreeBatchNorm):
        return []  # InstanceNorm2d(affine=False) has no state
    c = norm.num_features
    return [
        _Entry(f"{prefix}.running_mean", norm.running_mean, (c,), _identity, _identity),
        _Entry(f"{prefix}.running_var", norm.running_var, (c,), _identity, _identity),
        _Entry(f"{prefix}.num_batches_tracked", None, (), None, None),
    ]


def _layer_entries(prefix, layer):
    if isinstance(layer, Conv2D):
        return _conv_entries(prefix, layer)
    return _dense_entries(prefix, layer)


def generator_entries(generator):
    entries = _layer_entries("fc", generator.fc)
    for block in generator.blocks():
        b = block.name
        convs = ["conv_0", "conv_1"] + (["conv_s"] if block.learned_shortcut else [])
        for c in convs:
            entries += _conv_entries(f"{b}.{c}", getattr(block, c))
        for n in block._norms():
            p = f"{b}.{n.name}"
            entries += _bn_entries(f"{p}.param_free_norm", n.param_free_norm)
            entries += _conv_entries(f"{p}.mlp_shared.0", n.mlp_shared)
            entries += _conv_entries(f"{p}.mlp_gamma", n.mlp_gamma)
            entries += _conv_entries(f"{p}.mlp_beta", n.mlp_beta)
    return entries + _conv_entries("conv_img", generator.conv_img)


def discriminator_entries(discriminator):
    entries = []
    for i, d in enumerate(discriminator.scales):
        last = len(d.convs) - 1
        for n, conv in enumerate(d.convs):
            # model0 and the last layer are Sequential(conv, ...); the middle
            # ones wrap Sequential(conv, norm) in another Sequential.
            inner = "0" if n in (0, last) else "0.0"
            entries += _conv_entries(f"discriminator_{i}.model{n}.{inner}", conv)
    return entries


def encoder_entries(encoder):
    entries = []
    for i, conv in enumerate(encoder.convs):
        entries += _conv_entries(f"layer{i + 1}.0", conv)
    return entries + _dense_entries("fc_mu", encoder.fc_mu) + _dense_entries("fc_var", encoder.fc_var)


_SEMANTIC_HINT = (
    "the checkpoint was trained with another number of semantic channels: check label_nc, "
    "contain_dontcare_label and no_instance (semantic_nc = label_nc + dontcare + instance edge)"
)


def _mismatch_hint(key, expected, found):
    if key == "fc.weight" and len(expected) != len(found):
        return "the checkpoint's first layer is a " + (
            "linear layer from z (a VAE generator): set use_vae"
            if len(found) == 2
            else "conv on the label map (no VAE): unset use_vae"
        )
    if (
        len(expected) == len(found) == 4
        and expected[0] == found[0]
        and expected[1] != found[1]
        and (key.startswith("fc.") or ".mlp_shared." in key or key.endswith("model0.0.weight"))
    ):
        return _SEMANTIC_HINT
    return "check ngf/ndf, num_upsampling_layers, crop_size, aspect_ratio, z_dim, num_D and n_layers_D"


def check_state_dict(entries, state_dict, what):
    """Raises StateDictMismatch naming every missing, extra or mis-shaped key."""
    expected = {e.key: e.official_shape for e in entries}
    problems = []
    for key, shape in expected.items():
        if key not in state_dict:
            problems.append(f"missing key {key!r} (expected shape {shape})")
            continue
        found = tuple(np.shape(state_dict[key]))
        if found != tuple(shape):
            problems.append(
                f"key {key!r}: expected shape {tuple(shape)}, found {found} "
                f"({_mismatch_hint(key, tuple(shape), found)})"
            )
    for key in sorted(set(state_dict) - set(expected)):
        hint = ""
        if key.startswith("layer") and what == "encoder":
            hint = " (the encoder is built with 6 layers, the official crop_size >= 256 variant)"
        problems.append(f"unexpected key {key!r} with shape {tuple(np.shape(state_dict[key]))}{hint}")
    if problems:
        shown = problems[:12]
        if len(problems) > len(shown):
            shown.append(f"... and {len(problems) - len(shown)} more")
        raise StateDictMismatch(
            f"The {what} state dict does not match the options ({len(problems)} problem"
            f"{'s' if len(problems) > 1 else ''}):\n  " + "\n  ".join(shown)
        )


def _load(model, entries, state_dict, what):
    check_state_dict(entries, state_dict, what)
    for e in entries:
        if e.variable is not None:
            value = e.from_official(np.asarray(state_dict[e.key], dtype=np.float32))
            e.variable.assign(value)
    return model


def _export(entries):
    out = {}
    for e in entries:
        if e.variable is None:
            out[e.key] = np.zeros((), np.int64)
        else:
            out[e.key] = np.ascontiguousarray(e.to_official(np.asarray(e.variable.numpy())))
    return out


def build_generator(options, **kwargs):
    g = SPADEGenerator(**generator_kwargs(options), **kwargs)
    g.build()
    return g


def build_discriminator(options, **kwargs):
    d = MultiscaleDiscriminator(**discriminator_kwargs(options), **kwargs)
    d.build()
    return d


def build_encoder(options, **kwargs):
    e = ConvEncoder(**encoder_kwargs(options), **kwargs)
    e.build()
    return e


def generator_from_official(state_dict, options):
    """A SPADEGenerator with the official state dict's weights (see module doc)."""
    g = build_generator(options)
    return _load(g, generator_entries(g), state_dict, "generator")


def discriminator_from_official(state_dict, options):
    """A MultiscaleDiscriminator with the official state dict's weights."""
    d = build_discriminator(options)
    return _load(d, discriminator_entries(d), state_dict, "discriminator")


def encoder_from_official(state_dict, options):
    """A ConvEncoder with the official state dict's weights."""
    e = build_encoder(options)
    return _load(e, encoder_entries(e), state_dict, "encoder")


def generator_to_official(generator):
    """The official state dict (numpy arrays) of a SPADEGenerator."""
    extras = [name for name in ("noise_injection", "position_injection") if getattr(generator, name)]
    if generator.padding_mode != "zeros":
        extras.append(f"padding_mode={generator.padding_mode!r}")
    if extras:
        raise ValueError(
            f"this generator has {' and '.join(extras)} (model.*), which the official SPADEGenerator "
            "does not have: it has no official state dict."
        )
    return _export(generator_entries(generator))


def discriminator_to_official(discriminator):
    return _export(discriminator_entries(discriminator))


def encoder_to_official(encoder):
    if encoder.image_size != 256:
        raise ValueError(
            f"encoder image_size={encoder.image_size}: only image_size=256 has an official "
            "counterpart (the ConvEncoder built with crop_size >= 256)."
        )
    return _export(encoder_entries(encoder))


def vgg_loss_from_torchvision(state_dict, weight=1.0):
    """The official VGG perceptual loss from torchvision's VGG19 state dict.

    Args:
        state_dict: `features.N.weight` / `features.N.bias` arrays in PyTorch layout (torchvision's
            `vgg19-dcbb9e9d.pth` read with `load_state_dict`, or the same keys); `classifier.*` is ignored.
        weight: factor on the loss (the trainer uses lambda_vgg, officially 10).

    Returns:
        A `VGGPerceptualLoss` whose call on NHWC float32 images in [-1, 1] returns the official
        `VGGLoss(fake, real) * weight`, gradient included.
    """
    return VGGPerceptualLoss.from_torchvision(state_dict, weight)


def official_options_of(generator, discriminator=None):
    """Official option values that rebuild these models in the official code.

    label_nc cannot be told apart from the don't-care and instance channels
    by the model alone; the options saved with a converted bundle keep them.
    """
    use_sn = "spectral" if generator.use_spectral_norm else ""
    spade = generator.first_spade
    norm = {v: k for k, v in _NORM_CHOICES.items()}[spade.param_free_norm_kind]
    k = spade.kernel_size
    opts = {
        "ngf": generator.base_filters,
        "num_upsampling_layers": generator.num_upsampling_layers,
        "crop_size": generator.crop_size,
        "aspect_ratio": generator.aspect_ratio,
        "use_vae": generator.use_vae,
        "z_dim": generator.latent_dim,
        "norm_G": f"{use_sn}spade{norm}{k}x{k}",
        "semantic_nc": generator.semantic_channels,
    }
    if discriminator is not None:
        opts.update(
            ndf=discriminator.base_filters,
            num_D=discriminator.num_scales,
            n_layers_D=discriminator.num_layers,
        )
    return opts


# ---------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------


def read_options_file(path, section=None):
    """Official options from a JSON file or an official opt.txt.

    A JSON file holds official option names at its top level, or (like the
    fixtures' config.json) several such objects under top-level keys: then
    `section` names the one to use.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"options file not found: {path}")
    with open(path) as f:
        text = f.read()
    if path.endswith(".json"):
        data = json.loads(text)
        if section is not None:
            if section not in data:
                raise ValueError(f"{path}: no section {section!r}; it has {', '.join(data)}.")
            data = data[section]
        if not isinstance(data, dict):
            raise ValueError(f"{path}: expected a JSON object of official option names.")
        if not set(data) & set(OFFICIAL_DEFAULTS):
            sections = [k for k, v in data.items() if isinstance(v, dict) and set(v) & set(OFFICIAL_DEFAULTS)]
            hint = f" Choose one of its sections: {', '.join(sections)}." if sections else ""
            raise ValueError(f"{path}: no official option names (label_nc, ngf, ...) at its top level.{hint}")
        return data
    # opt.txt lines look like "              label_nc: 150    [default: 13]".
    opts = {}
    for line in text.splitlines():
        m = re.match(r"\s*(\w+):\s*(\S+)", line)
        if not m:
            continue
        value = m.group(2)
        for cast in (int, float):
            try:
                value = cast(value)
                break
            except ValueError:
                pass
        opts[m.group(1)] = value
    if not opts:
        raise ValueError(f"{path}: no 'name: value' lines found (expected an official opt.txt).")
    return opts


# ---------------------------------------------------------------------------
# Whole checkpoints (used by the convert.py command)
# ---------------------------------------------------------------------------

_NETS = ("G", "D", "E")


def find_official_files(checkpoint_dir, which_epoch="latest"):
    """{'G': path, 'D': path, 'E': path} of `<epoch>_net_<X>.{pth,npz}` present in a directory."""
    if not os.path.isdir(checkpoint_dir):
        raise FileNotFoundError(f"checkpoint directory not found: {checkpoint_dir}")
    found = {}
    for net in _NETS:
        for ext in (".pth", ".npz"):
            path = os.path.join(checkpoint_dir, f"{which_epoch}_net_{net}{ext}")
            if os.path.isfile(path):
                found[net] = path
                break
    if "G" not in found:
        raise FileNotFoundError(
            f"no {which_epoch}_net_G.pth (or .npz) in {checkpoint_dir}; the official pretrained "
            "models unpack to checkpoints/<name>_pretrained/latest_net_G.pth."
        )
    return found


def convert_official(options, paths, output):
    """Converts official state dict files into one spade_tf bundle.

    Args:
        options: official option values (see `normalize_options`).
        paths: {'G': path, optionally 'D' and 'E'}; `.pth` or `.npz` files.
        output: the `.keras` bundle to write.

    Returns:
        The written bundle path.
    """
    opts = normalize_options(options)
    # Read and check everything before the (slow) full-size build of the others.
    states = {net: load_state_dict(path) for net, path in paths.items() if path}
    if "G" not in states:
        raise ValueError("a generator state dict (G) is required.")
    if "E" in states and not opts["use_vae"]:
        raise ValueError(f"an encoder checkpoint ({paths['E']}) was given but use_vae is off; set use_vae.")
    generator = generator_from_official(states["G"], opts)
    discriminator = discriminator_from_official(states["D"], opts) if "D" in states else None
    encoder = encoder_from_official(states["E"], opts) if "E" in states else None
    meta = dict(opts, source={net: os.path.abspath(p) for net, p in paths.items() if p})
    # What the official checkpoint was trained on, when the options say (opt.txt's dataset_mode, --dataset).
    dataset = options.get("dataset") or options.get("dataset_mode")
    if dataset:
        meta["dataset"] = canonical_dataset(str(dataset))
    # NVIDIA's pretrained SPADE models are CC BY-NC-SA 4.0; so is every conversion of them, and what is
    # fine-tuned from one (spade_tf.models.bundle.weights_license follows train.init_from).
    meta["license"] = dict(OFFICIAL_LICENSE, reason="converted from an official NVlabs/SPADE checkpoint")
    return save_bundle(output, generator, discriminator, encoder, meta)


def export_official(bundle_path, output_dir, file_format="npz", which_epoch="latest"):
    """Writes `<epoch>_net_{G,D,E}.<npz|pth>` and `opt.json` from a spade_tf bundle.

    Returns:
        The list of written paths.
    """
    if file_format not in ("npz", "pth"):
        raise ValueError(f"file_format={file_format!r}: choose 'npz' or 'pth'.")
    bundle = load_bundle(bundle_path)
    os.makedirs(output_dir, exist_ok=True)
    written = []
    nets = {
        "G": (bundle.generator, generator_to_official),
        "D": (bundle.discriminator, discriminator_to_official),
        "E": (bundle.encoder, encoder_to_official),
    }
    for net, (model, fn) in nets.items():
        if model is None:
            continue
        path = os.path.join(output_dir, f"{which_epoch}_net_{net}.{file_format}")
        save_state_dict(fn(model), path)
        written.append(path)
    opts = {k: v for k, v in bundle.options.items() if k in OFFICIAL_DEFAULTS or k == "semantic_nc"}
    if not opts:
        opts = official_options_of(bundle.generator, bundle.discriminator)
    path = os.path.join(output_dir, "opt.json")
    with open(path, "w") as f:
        json.dump(opts, f, indent=1, sort_keys=True)
    written.append(path)
    return written
