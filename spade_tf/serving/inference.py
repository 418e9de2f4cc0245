"""A trained or converted SPADE model, ready to synthesize: the shared core of synthesize.py, export.py, serve and
evaluate.py.

Two sources give the same `Synthesizer`:

- a training workdir (or its `model.keras`): the bundle's options hold the training config, class names and
  palette;
- a bundle written by `convert.py` from an official checkpoint: the options are the official ones (label_nc,
  contain_dontcare_label, no_instance, crop_size, ...); class names default to the ids and colours to the
  official `labelcolormap`.

Example:

    model = load_synthesizer("workdirs/demo")
    images = model.generate(label_ids)                   # (N, H, W) int -> (N, H, W, 3) uint8
    images = model.generate(label_ids, seeds=[1, 2])     # VAE: one latent per seed
    images = model.generate(label_ids, style_images=photos)  # VAE: latent from the encoder

Label ids are 0..label_nc-1; with a don't-care label, id label_nc (or the raw 255 of a label PNG) marks
unlabelled pixels, as in the official datasets.
"""

import dataclasses
import os

import numpy as np
import tensorflow as tf

from spade_tf.data import labels as label_maps
from spade_tf.data.palette import default_colormap
from spade_tf.data.semantics import make_semantics
from spade_tf.models.bundle import load_bundle, weights_license

MODEL_FILE = "model.keras"


@dataclasses.dataclass(frozen=True)
class ModelInfo:
    """What a client needs to know to feed a model (written as export metadata too).

    Attributes:
        num_classes: label_nc, the number of real classes.
        contain_dontcare_label: whether id num_classes (raw 255) is the don't-care label.
        use_instance_map: whether the model takes an instance map (edges are computed from it).
        use_vae: whether the model has a style encoder and a latent input.
        latent_dim: size of the latent vector (VAE only).
        height, width: the resolution the model was trained at.
        size_multiple: for non-VAE models, height and width may be any multiple of this; VAE models take only
            (height, width).
        class_names: one name per class id (num_classes entries, plus "dontcare" when present).
        palette: (len(class_names), 3) uint8 display colours.
    """

    num_classes: int
    contain_dontcare_label: bool
    use_instance_map: bool
    use_vae: bool
    latent_dim: int
    height: int
    width: int
    size_multiple: int
    class_names: tuple
    palette: np.ndarray

    @property
    def label_channels(self):
        """One-hot channels: num_classes, plus the don't-care channel."""
        return label_maps.label_channels(self.num_classes, self.contain_dontcare_label)

    def to_json(self):
        d = dataclasses.asdict(self)
        d["class_names"] = list(self.class_names)
        d["palette"] = np.asarray(self.palette).tolist()
        return d


def _info_from_training(options, generator):
    c = options["config"]
    data, model = c["data"], c["model"]
    num_classes = int(data["num_classes"])
    dontcare = bool(data["contain_dontcare_label"])
    names = list(options.get("class_names") or [str(i) for i in range(num_classes)])
    palette = np.asarray(options.get("palette") or default_colormap(num_classes + 1), np.uint8)
    return num_classes, dontcare, bool(data["use_instance_map"]), bool(model["use_vae"]), names, palette


def _info_from_official(options):
    num_classes = int(options["label_nc"])
    dontcare = bool(options["contain_dontcare_label"])
    names = list(options.get("class_names") or [str(i) for i in range(num_classes)])
    palette = np.asarray(options.get("palette") or default_colormap(num_classes + 1), np.uint8)
    return num_classes, dontcare, not bool(options["no_instance"]), bool(options["use_vae"]), names, palette


def model_info(bundle):
    """`ModelInfo` of a loaded `SPADEBundle` (training or converted)."""
    g = bundle.generator
    options = bundle.options
    if "config" in options:
        num_classes, dontcare, instances, vae, names, palette = _info_from_training(options, g)
    elif "label_nc" in options:
        num_classes, dontcare, instances, vae, names, palette = _info_from_official(options)
    else:
        raise ValueError(
            "the bundle's options hold neither a training config nor official options (label_nc, ...); "
            "it was not written by train.py or convert.py."
        )
    if dontcare:
        names = names[:num_classes] + ["dontcare"]
        palette = palette.copy()
        palette[num_classes] = 0  # don't-care shows black, as in the official visualizer
    palette = palette[: len(names)]
    if len(palette) < len(names):
        palette = np.concatenate([palette, default_colormap(len(names))[len(palette) :]])
    expected = label_maps.semantic_channels(num_classes, dontcare, instances)
    if g.semantic_channels != expected:
        raise ValueError(
            f"the bundle's generator takes {g.semantic_channels} semantic channels but its options give "
            f"{num_classes} classes, contain_dontcare_label={dontcare}, use_instance_map={instances} "
            f"({expected} channels)."
        )
    return ModelInfo(
        num_classes=num_classes,
        contain_dontcare_label=dontcare,
        use_instance_map=instances,
        use_vae=vae,
        latent_dim=int(g.latent_dim),
        height=int(g.grid_height) * 2**g.num_up,
        width=int(g.grid_width) * 2**g.num_up,
        size_multiple=2**g.num_up,
        class_names=tuple(names),
        palette=palette,
    )


def resolve_model_path(path):
    """A workdir (holding model.keras) or a `.keras` bundle file -> the bundle file path."""
    if os.path.isdir(path):
        candidate = os.path.join(path, MODEL_FILE)
        if not os.path.isfile(candidate):
            raise FileNotFoundError(
                f"{path} is a folder without {MODEL_FILE}; pass a training workdir whose run finished "
                "(train.py writes model.keras at the end) or a .keras bundle written by convert.py."
            )
        return candidate
    if not os.path.exists(path):
        raise FileNotFoundError(
            f"model not found: {path}; pass a training workdir or a .keras bundle written by convert.py."
        )
    return path


class Synthesizer:
    """A generator (and encoder) with the input handling of the official test script.

    Args:
        bundle: a loaded `SPADEBundle`.
        source: where it was loaded from (kept for metadata).
    """

    def __init__(self, bundle, source=None):
        self.bundle = bundle
        self.generator = bundle.generator
        self.encoder = bundle.encoder
        self.info = model_info(bundle)
        self.source = source
        if self.info.use_vae and self.encoder is None:
            # Seeds still work; only style-guided synthesis needs E.
            self.encoder = None

    @property
    def options(self):
        return self.bundle.options

    @property
    def license(self):
        """The weights' license (spade_tf.models.bundle.weights_license): spdx, name, url, reason."""
        return weights_license(self.bundle.options)

    # -- graph-friendly pieces (used inside export signatures too) --------------------------------------

    def label_ids(self, labels):
        """int labels -> int32 ids; raw 255 becomes the don't-care id when the model has one."""
        return label_maps.dontcare_to_id(
            tf.cast(labels, tf.int32), self.info.num_classes, self.info.contain_dontcare_label
        )

    def semantics(self, labels, instances=None):
        """(N, H, W) label ids (and instance ids) -> the generator's one-hot (+ edge) input."""
        labels = self.label_ids(labels)
        if self.info.use_instance_map:
            if instances is None:
                # Without an instance map every pixel of a class is one instance: the class boundaries
                # become the edges, as when a label map is its own instance map (the official
                # datasets do this for classes without instances).
                instances = labels
            return make_semantics(labels, self.info.label_channels, instances)
        return make_semantics(labels, self.info.label_channels)

    def latent_from_seeds(self, seeds):
        """One standard-normal latent per int seed: the same seed gives the same latent on every platform."""
        seeds = tf.cast(tf.reshape(seeds, [-1]), tf.int32)
        dim = self.info.latent_dim
        return tf.map_fn(
            lambda s: tf.random.stateless_normal([dim], seed=tf.stack([s, tf.constant(0, tf.int32)])),
            seeds,
            fn_output_signature=tf.float32,
        )

    def latent_from_styles(self, style_images, seeds=None, sample=True):
        """Style-guided latents: the encoder's mu (+ exp(logvar / 2) * eps from the seeds when sampling).

        Args:
            style_images: (N, h, w, 3) uint8 exemplar images, any size (the encoder resizes bilinearly).
            seeds: (N,) ints for the noise; 0s when None.
            sample: False uses mu alone (the most typical image of that style); True samples around it
                as the official test script does.
        """
        if self.encoder is None:
            raise ValueError(
                "style-guided synthesis needs the style encoder: this model has none (not a VAE model, or "
                "converted without the official E checkpoint; pass --E to convert.py)."
            )
        images = tf.cast(style_images, tf.float32) / 127.5 - 1.0
        mu, logvar = self.encoder(images, training=False)
        mu = tf.cast(mu, tf.float32)
        if not sample:
            return mu
        if seeds is None:
            seeds = tf.zeros([tf.shape(mu)[0]], tf.int32)
        eps = self.latent_from_seeds(seeds)
        return mu + eps * tf.exp(0.5 * tf.cast(logvar, tf.float32))

    def generate_float(self, labels, instances=None, z=None):
        """Images in [-1, 1], float32 (N, H, W, 3)."""
        out = self.generator(self.semantics(labels, instances), z, training=False, one_hot=True)
        return tf.cast(out, tf.float32)

    @staticmethod
    def to_uint8(images):
        """[-1, 1] -> uint8 as the official `tensor2im`: (x + 1) / 2 * 255, clipped, truncated."""
        return tf.cast(tf.clip_by_value((images + 1.0) / 2.0 * 255.0, 0.0, 255.0), tf.uint8)

    # -- eager API with checks --------------------------------------------------------------------------

    def check_labels(self, labels, what="labels"):
        """Raises ValueError naming the problem when label ids cannot be fed to this model."""
        labels = np.asarray(labels)
        if labels.ndim != 3:
            raise ValueError(f"{what}: expected (N, H, W) label ids, got shape {labels.shape}.")
        if not np.issubdtype(labels.dtype, np.integer):
            raise ValueError(f"{what}: expected integer ids, got dtype {labels.dtype}.")
        self.check_size(labels.shape[1], labels.shape[2], what)
        info = self.info
        ok = label_maps.valid_ids(labels, info.num_classes, info.contain_dontcare_label)
        if not ok.all():
            bad = np.unique(labels[~ok])[:8].tolist()
            allowed = label_maps.allowed_ids(info.num_classes, info.contain_dontcare_label)
            raise ValueError(f"{what}: ids {bad} are out of range; this model takes {allowed}.")
        return labels

    def check_size(self, height, width, what="labels"):
        info = self.info
        if info.use_vae:
            if (height, width) != (info.height, info.width):
                raise ValueError(
                    f"{what}: {height}x{width} label maps; this VAE model takes only {info.height}x{info.width} "
                    "(its latent grid is fixed). Resize the label map with nearest-neighbour first."
                )
        elif height % info.size_multiple or width % info.size_multiple or height < 1 or width < 1:
            raise ValueError(
                f"{what}: {height}x{width} label maps; this model takes heights and widths that are multiples "
                f"of {info.size_multiple} (trained at {info.height}x{info.width})."
            )

    def generate(self, labels, instances=None, seeds=None, style_images=None, sample_style=True):
        """Label ids -> uint8 images, as numpy.

        Args:
            labels: (N, H, W) int ids.
            instances: (N, H, W) int instance ids, for models with instance maps (default: the labels).
            seeds: (N,) ints (VAE): one latent per seed; default 0..N-1. With style images, the noise seeds.
            style_images: (N, h, w, 3) uint8 exemplars (VAE): the latent comes from the encoder.
            sample_style: with style images, sample around the encoder's mean (True) or use it (False).

        Returns:
            (N, H, W, 3) uint8.
        """
        labels = self.check_labels(labels)
        n = labels.shape[0]
        if instances is not None:
            instances = np.asarray(instances)
            if instances.shape != labels.shape:
                raise ValueError(
                    f"instances: shape {instances.shape} differs from the labels' {labels.shape}."
                )
        z = None
        if self.info.use_vae:
            if seeds is None:
                seeds = np.arange(n)
            seeds = np.asarray(seeds, np.int64).reshape(-1)
            if seeds.shape[0] != n:
                raise ValueError(f"seeds: {seeds.shape[0]} seeds for {n} label maps.")
            if style_images is not None:
                style_images = np.asarray(style_images)
                if style_images.ndim != 4 or style_images.shape[0] != n or style_images.shape[-1] != 3:
                    raise ValueError(
                        f"style_images: expected ({n}, h, w, 3) uint8 images, got shape {style_images.shape}."
                    )
                z = self.latent_from_styles(style_images, seeds, sample_style)
            else:
                z = self.latent_from_seeds(seeds)
        elif style_images is not None:
            raise ValueError("style_images: this model is not a VAE model; it has no style encoder.")
        out = self.generate_float(labels, instances, z)
        return self.to_uint8(out).numpy()


def load_synthesizer(path):
    """A training workdir or a `.keras` bundle -> `Synthesizer`.

    Raises:
        FileNotFoundError: no such file, or a workdir without model.keras.
        spade_tf.models.bundle.BundleError: the file is damaged (truncated, corrupted); the message says so.
    """
    bundle_path = resolve_model_path(path)
    return Synthesizer(load_bundle(bundle_path), source=os.path.abspath(bundle_path))
