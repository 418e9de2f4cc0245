"""The Inception network that FID and KID are measured with: 2048-d pool3 features.

FID numbers are comparable only when they come from the same network, weights and preprocessing. The
reference is the 2015 TensorFlow Inception graph used by TTUR (Heusel et al.), which pytorch-fid ported to
PyTorch; SPADE's papers report FID from that network. Nothing is downloaded here: pass a local weight file.

Accepted weight files (`load_inception` picks the form from the extension):

- `.pth`: pytorch-fid's converted weights, `pt_inception-2015-12-05-6726825d.pth` (the `fid_weights`
  release asset of github.com/mseitzer/pytorch-fid). Read with PyTorch (`requirements-torch.txt`). A file
  name in torch hub's `name-<sha256 prefix>.pth` form is checked against that prefix, so a truncated
  download is refused.
- `.npz`: the same state dict saved with numpy (key -> array, the PyTorch key names and OIHW layouts), for
  machines without PyTorch: `np.savez(out, **{k: v.numpy() for k, v in torch.load(pth).items()})`.

  Both run `FIDInceptionV3`, our Keras copy of pytorch-fid's network: torchvision's Inception v3 layers
  (conv without bias, batch norm with eps 1e-3, ReLU) with pytorch-fid's FID blocks, whose 3x3 average
  pools leave the zero padding out of the mean (`count_include_pad=False`, TensorFlow's SAME pooling)
  and whose last block (`Mixed_7c`) max-pools its pool branch. Images are scaled to [0, 1], resized
  bilinearly to 299x299 (half-pixel centres, no antialiasing: PyTorch's `F.interpolate(...,
  align_corners=False)`, pytorch-fid's `resize_input`) and mapped to [-1, 1] (`normalize_input`). The
  1008-class `fc` and `num_batches_tracked` entries are accepted and ignored; anything else that does
  not fit (torchvision's ImageNet `inception_v3` weights with `AuxLogits.*` or a 1000-class `fc`, say) is
  refused with every missing, unexpected and mis-shaped key listed.
- `.pb`: TTUR's frozen graph `classify_image_graph_def.pb` from `inception-2015-12-05.tgz`
  (download.tensorflow.org/models/image/imagenet/). As in TTUR, float images in [0, 255] of any size are
  fed at `ExpandDims:0` (the graph resizes them to 299x299 with TF1's bilinear resize and scales them
  itself) and `pool_3:0` is fetched. The graph hard-codes a batch of 1 in the static shape of
  `ExpandDims:0`; TTUR patches the shapes of the imported tensors, we instead splice a placeholder of
  shape (None, None, None, 3) in place of `ExpandDims:0` in the GraphDef, so whole batches run. The
  graph runs in a `tf.compat.v1.Session` on a graph that keeps the file's GraphDef version, not in a
  `tf.compat.v1.wrap_function`: TF 2.21 functions refuse ops removed from newer GraphDef versions, such
  as the `BatchNormWithGlobalNormalization` batch norms of 2015-era graphs.

Both forms describe the same network; their features differ a little (the resizes differ; pytorch-fid's
README reports 0.08 absolute, 0.0009 relative FID difference from TTUR on LSUN). On GPUs with TensorFloat-32 (Ampere and later) TensorFlow runs
float32 convolutions in TF32 by default, as PyTorch does for pytorch-fid;
`tf.config.experimental.enable_tensor_float_32_execution(False)` gives full float32 features.

Example:

    extractor = load_inception("weights/pt_inception-2015-12-05-6726825d.pth")
    features = extractor(images_uint8_nhwc)            # float64, (N, 2048)
    mu, sigma = metrics.gaussian_statistics(features)
"""

import hashlib
import os
import re

import keras
import numpy as np
import tensorflow as tf

from spade_tf.models.state_dict import StateDictMismatch
from spade_tf.models.state_dict import load_state_dict as _read_state_dict
from spade_tf.utils import PACKAGE, file_sha256

# Bump when the preprocessing or the feature definition changes: cached real statistics carry it.
PROTOCOL_VERSION = 1
FEATURE_DIM = 2048
INPUT_SIZE = 299
# The smallest input whose feature maps survive the stride-2 stages (75 -> ... -> 1x1 before Mixed_7b).
MIN_INPUT_SIZE = 75
BN_EPSILON = 1e-3
FC_CLASSES = 1008

PYTORCH_FID_WEIGHTS = "pt_inception-2015-12-05-6726825d.pth"
PYTORCH_FID_URL = "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/pt_inception-2015-12-05-6726825d.pth"
TTUR_GRAPH = "classify_image_graph_def.pb"
TTUR_ARCHIVE_URL = "http://download.tensorflow.org/models/image/imagenet/inception-2015-12-05.tgz"
TTUR_INPUT = "ExpandDims:0"
TTUR_OUTPUT = "pool_3:0"
_SPLICED_INPUT = "spade_tf_fid_images"

WEIGHT_EXTENSIONS = (".pth", ".pt", ".npz", ".pb")
# torch hub's file naming: name-<first 8+ hex digits of the file's sha256>.ext
_HUB_HASH = re.compile(r"-([a-f0-9]{8,})\.pth?$")


# ---------------------------------------------------------------------------
# The network
# ---------------------------------------------------------------------------


@keras.saving.register_keras_serializable(package=PACKAGE)
class BasicConv2D(keras.layers.Layer):
    """Conv (no bias) -> batch norm (eps 1e-3, inference statistics) -> ReLU: torchvision's BasicConv2d.

    Every convolution of the network has stride 1 with "same" padding (PyTorch padding k // 2 on each
    side, which "same" equals for odd kernels at stride 1) or no padding at all, so Keras' padding modes
    express it exactly.

    Args:
        filters: output channels.
        kernel_size: int or (height, width).
        strides: stride in both directions.
        padding: "same" or "valid".
    """

    def __init__(self, filters, kernel_size, strides=1, padding="same", **kwargs):
        super().__init__(**kwargs)
        self.filters = int(filters)
        self.kernel_size = (kernel_size, kernel_size) if isinstance(kernel_size, int) else tuple(kernel_size)
        self.strides = int(strides)
        if padding not in ("same", "valid"):
            raise ValueError(f"padding={padding!r} is not supported; choose one of 'same', 'valid'.")
        self.padding = padding
        self.conv = keras.layers.Conv2D(
            self.filters,
            self.kernel_size,
            strides=self.strides,
            padding=padding,
            use_bias=False,
            # Weights always come from a file; 22 M random draws would only slow every build down.
            kernel_initializer="zeros",
            dtype=self.dtype_policy,
            name="conv",
        )
        self.bn = keras.layers.BatchNormalization(epsilon=BN_EPSILON, dtype=self.dtype_policy, name="bn")

    def build(self, input_shape):
        self.conv.build(input_shape)
        self.bn.build(self.conv.compute_output_shape(input_shape))

    def call(self, x):
        # Always the stored statistics: the network is a fixed feature extractor.
        return tf.nn.relu(self.bn(self.conv(x), training=False))

    def get_config(self):
        config = super().get_config()
        config.update(
            filters=self.filters, kernel_size=self.kernel_size, strides=self.strides, padding=self.padding
        )
        return config


def _avg_pool_3x3(x):
    # TensorFlow's SAME average pool divides by the number of in-image elements: PyTorch's
    # avg_pool2d(kernel 3, stride 1, padding 1, count_include_pad=False), pytorch-fid's FID patch.
    return tf.nn.avg_pool2d(x, 3, 1, "SAME")


def _max_pool_3x3(x, strides=1):
    # SAME max pooling ignores the padding like PyTorch's -inf padding; stride 2 pools use no padding.
    return tf.nn.max_pool2d(x, 3, strides, "SAME" if strides == 1 else "VALID")


class _InceptionBlock(keras.layers.Layer):
    """A mixed block: named `BasicConv2D` branches, kept in PyTorch's registration order."""

    def _add_convs(self, specs):
        self._conv_names = []
        for name, filters, kernel, *rest in specs:
            strides, padding = rest if rest else (1, "same")
            setattr(
                self,
                name,
                BasicConv2D(filters, kernel, strides, padding, dtype=self.dtype_policy, name=name),
            )
            self._conv_names.append(name)

    def named_convs(self):
        """(PyTorch module name, layer) pairs, e.g. ("branch1x1", BasicConv2D)."""
        return [(name, getattr(self, name)) for name in self._conv_names]


@keras.saving.register_keras_serializable(package=PACKAGE)
class FIDInceptionA(_InceptionBlock):
    """Mixed_5b/5c/5d: 1x1, 5x5, double 3x3 and average-pool branches.

    Args:
        pool_features: output channels of the pool branch (32 in Mixed_5b, 64 after).
    """

    def __init__(self, pool_features, **kwargs):
        super().__init__(**kwargs)
        self.pool_features = int(pool_features)
        self._add_convs(
            [
                ("branch1x1", 64, 1),
                ("branch5x5_1", 48, 1),
                ("branch5x5_2", 64, 5),
                ("branch3x3dbl_1", 64, 1),
                ("branch3x3dbl_2", 96, 3),
                ("branch3x3dbl_3", 96, 3),
                ("branch_pool", self.pool_features, 1),
            ]
        )

    def call(self, x):
        branch5x5 = self.branch5x5_2(self.branch5x5_1(x))
        branch3x3dbl = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        branch_pool = self.branch_pool(_avg_pool_3x3(x))
        return tf.concat([self.branch1x1(x), branch5x5, branch3x3dbl, branch_pool], axis=-1)

    def get_config(self):
        return {**super().get_config(), "pool_features": self.pool_features}


@keras.saving.register_keras_serializable(package=PACKAGE)
class InceptionB(_InceptionBlock):
    """Mixed_6a: stride-2 reduction (3x3, double 3x3, max pool)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._add_convs(
            [
                ("branch3x3", 384, 3, 2, "valid"),
                ("branch3x3dbl_1", 64, 1),
                ("branch3x3dbl_2", 96, 3),
                ("branch3x3dbl_3", 96, 3, 2, "valid"),
            ]
        )

    def call(self, x):
        branch3x3dbl = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return tf.concat([self.branch3x3(x), branch3x3dbl, _max_pool_3x3(x, strides=2)], axis=-1)


@keras.saving.register_keras_serializable(package=PACKAGE)
class FIDInceptionC(_InceptionBlock):
    """Mixed_6b..6e: factorised 7x7 branches and an average-pool branch.

    Args:
        channels_7x7: inner channels of the 7x7 branches (128, 160, 160, 192).
    """

    def __init__(self, channels_7x7, **kwargs):
        super().__init__(**kwargs)
        self.channels_7x7 = int(channels_7x7)
        c7 = self.channels_7x7
        self._add_convs(
            [
                ("branch1x1", 192, 1),
                ("branch7x7_1", c7, 1),
                ("branch7x7_2", c7, (1, 7)),
                ("branch7x7_3", 192, (7, 1)),
                ("branch7x7dbl_1", c7, 1),
                ("branch7x7dbl_2", c7, (7, 1)),
                ("branch7x7dbl_3", c7, (1, 7)),
                ("branch7x7dbl_4", c7, (7, 1)),
                ("branch7x7dbl_5", 192, (1, 7)),
                ("branch_pool", 192, 1),
            ]
        )

    def call(self, x):
        branch7x7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        branch7x7dbl = x
        for i in range(1, 6):
            branch7x7dbl = getattr(self, f"branch7x7dbl_{i}")(branch7x7dbl)
        branch_pool = self.branch_pool(_avg_pool_3x3(x))
        return tf.concat([self.branch1x1(x), branch7x7, branch7x7dbl, branch_pool], axis=-1)

    def get_config(self):
        return {**super().get_config(), "channels_7x7": self.channels_7x7}


@keras.saving.register_keras_serializable(package=PACKAGE)
class InceptionD(_InceptionBlock):
    """Mixed_7a: stride-2 reduction (3x3, 7x7 then 3x3, max pool)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._add_convs(
            [
                ("branch3x3_1", 192, 1),
                ("branch3x3_2", 320, 3, 2, "valid"),
                ("branch7x7x3_1", 192, 1),
                ("branch7x7x3_2", 192, (1, 7)),
                ("branch7x7x3_3", 192, (7, 1)),
                ("branch7x7x3_4", 192, 3, 2, "valid"),
            ]
        )

    def call(self, x):
        branch3x3 = self.branch3x3_2(self.branch3x3_1(x))
        branch7x7x3 = x
        for i in range(1, 5):
            branch7x7x3 = getattr(self, f"branch7x7x3_{i}")(branch7x7x3)
        return tf.concat([branch3x3, branch7x7x3, _max_pool_3x3(x, strides=2)], axis=-1)


@keras.saving.register_keras_serializable(package=PACKAGE)
class FIDInceptionE(_InceptionBlock):
    """Mixed_7b/7c: expanded 1x3 / 3x1 branches and a pool branch.

    Args:
        pool: "avg" (Mixed_7b, padding left out of the mean) or "max" (Mixed_7c: the 2015 graph
            max-pools here, pytorch-fid's FIDInceptionE_2).
    """

    def __init__(self, pool, **kwargs):
        super().__init__(**kwargs)
        if pool not in ("avg", "max"):
            raise ValueError(f"pool={pool!r} is not supported; choose one of 'avg', 'max'.")
        self.pool = pool
        self._add_convs(
            [
                ("branch1x1", 320, 1),
                ("branch3x3_1", 384, 1),
                ("branch3x3_2a", 384, (1, 3)),
                ("branch3x3_2b", 384, (3, 1)),
                ("branch3x3dbl_1", 448, 1),
                ("branch3x3dbl_2", 384, 3),
                ("branch3x3dbl_3a", 384, (1, 3)),
                ("branch3x3dbl_3b", 384, (3, 1)),
                ("branch_pool", 192, 1),
            ]
        )

    def call(self, x):
        branch3x3 = self.branch3x3_1(x)
        branch3x3 = tf.concat([self.branch3x3_2a(branch3x3), self.branch3x3_2b(branch3x3)], axis=-1)
        branch3x3dbl = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        branch3x3dbl = tf.concat([self.branch3x3dbl_3a(branch3x3dbl), self.branch3x3dbl_3b(branch3x3dbl)], -1)
        pooled = _avg_pool_3x3(x) if self.pool == "avg" else _max_pool_3x3(x)
        return tf.concat([self.branch1x1(x), branch3x3, branch3x3dbl, self.branch_pool(pooled)], axis=-1)

    def get_config(self):
        return {**super().get_config(), "pool": self.pool}


_STEM = (
    ("Conv2d_1a_3x3", 32, 3, 2, "valid"),
    ("Conv2d_2a_3x3", 32, 3, 1, "valid"),
    ("Conv2d_2b_3x3", 64, 3, 1, "same"),
    ("Conv2d_3b_1x1", 80, 1, 1, "valid"),
    ("Conv2d_4a_3x3", 192, 3, 1, "valid"),
)


@keras.saving.register_keras_serializable(package=PACKAGE)
class FIDInceptionV3(keras.Model):
    """pytorch-fid's FID Inception v3 up to the final average pool (pool3), in Keras.

    Input: float NHWC images already scaled to [-1, 1], at least 75x75 (the FID protocol feeds 299x299;
    `InceptionFeatures` does the resize and scaling). Output: (N, 2048) pool3 features. Layer names are
    the PyTorch module names (`Conv2d_1a_3x3`, `Mixed_5b.branch1x1`, ...) so the state dict maps one to
    one; see `fid_state_dict_entries`.

    Reference: Szegedy et al., "Rethinking the Inception Architecture for Computer Vision",
    https://arxiv.org/abs/1512.00567; Heusel et al., "GANs Trained by a Two Time-Scale Update Rule
    Converge to a Local Nash Equilibrium", https://arxiv.org/abs/1706.08500.

    Example:
        >>> net = FIDInceptionV3()
        >>> net(tf.zeros([1, 75, 75, 3])).shape
        TensorShape([1, 2048])
    """

    def __init__(self, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        policy = self.dtype_policy
        for name, filters, kernel, strides, padding in _STEM:
            setattr(self, name, BasicConv2D(filters, kernel, strides, padding, dtype=policy, name=name))
        self.Mixed_5b = FIDInceptionA(32, dtype=policy, name="Mixed_5b")
        self.Mixed_5c = FIDInceptionA(64, dtype=policy, name="Mixed_5c")
        self.Mixed_5d = FIDInceptionA(64, dtype=policy, name="Mixed_5d")
        self.Mixed_6a = InceptionB(dtype=policy, name="Mixed_6a")
        self.Mixed_6b = FIDInceptionC(128, dtype=policy, name="Mixed_6b")
        self.Mixed_6c = FIDInceptionC(160, dtype=policy, name="Mixed_6c")
        self.Mixed_6d = FIDInceptionC(160, dtype=policy, name="Mixed_6d")
        self.Mixed_6e = FIDInceptionC(192, dtype=policy, name="Mixed_6e")
        self.Mixed_7a = InceptionD(dtype=policy, name="Mixed_7a")
        self.Mixed_7b = FIDInceptionE("avg", dtype=policy, name="Mixed_7b")
        self.Mixed_7c = FIDInceptionE("max", dtype=policy, name="Mixed_7c")
        self._mixed = ("5b", "5c", "5d", "6a", "6b", "6c", "6d", "6e", "7a", "7b", "7c")

    def call(self, x):
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = _max_pool_3x3(x, strides=2)
        x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x))
        x = _max_pool_3x3(x, strides=2)
        for name in self._mixed:
            x = getattr(self, f"Mixed_{name}")(x)
        return tf.reduce_mean(x, axis=(1, 2))

    def named_convs(self):
        """(PyTorch prefix, BasicConv2D) for every conv, in PyTorch's state dict order."""
        out = [(name, getattr(self, name)) for name, *_ in _STEM]
        for name in self._mixed:
            block = getattr(self, f"Mixed_{name}")
            out += [(f"Mixed_{name}.{sub}", conv) for sub, conv in block.named_convs()]
        return out

    def build_for_weights(self):
        """Creates the variables (a 75x75 call); returns self."""
        if not self.built:
            self(tf.zeros([1, MIN_INPUT_SIZE, MIN_INPUT_SIZE, 3], self.compute_dtype))
        return self


# ---------------------------------------------------------------------------
# pytorch-fid state dict <-> FIDInceptionV3
# ---------------------------------------------------------------------------


def fid_state_dict_entries(model):
    """(key, variable, PyTorch shape, to-Keras function) for every array the network reads.

    Conv weights are OIHW in PyTorch and HWIO here; batch norm `weight`, `bias`, `running_mean`,
    `running_var` are gamma, beta, moving mean and moving variance.
    """
    model.build_for_weights()
    entries = []
    for prefix, layer in model.named_convs():
        kh, kw, cin, cout = layer.conv.kernel.shape
        entries.append(
            (
                f"{prefix}.conv.weight",
                layer.conv.kernel,
                (cout, cin, kh, kw),
                lambda a: np.transpose(a, (2, 3, 1, 0)),
            )
        )
        bn = layer.bn
        for key, variable in (
            ("weight", bn.gamma),
            ("bias", bn.beta),
            ("running_mean", bn.moving_mean),
            ("running_var", bn.moving_variance),
        ):
            entries.append((f"{prefix}.bn.{key}", variable, (cout,), np.asarray))
    return entries


def _optional_keys(model):
    """Keys pytorch-fid's file may hold that the features never read, with their shapes."""
    keys = {f"{p}.bn.num_batches_tracked": () for p, _ in model.named_convs()}
    keys["fc.weight"] = (FC_CLASSES, FEATURE_DIM)
    keys["fc.bias"] = (FC_CLASSES,)
    return keys


def _mismatch_hint(state_dict):
    imagenet_fc = np.shape(state_dict.get("fc.weight", 0)) == (1000, FEATURE_DIM)
    if imagenet_fc or any(k.startswith("AuxLogits.") for k in state_dict):
        return (
            "\nThis looks like torchvision's ImageNet inception_v3, not the FID Inception: FID needs "
            f"pytorch-fid's {PYTORCH_FID_WEIGHTS} ({PYTORCH_FID_URL})."
        )
    return ""


def load_fid_state_dict(model, state_dict, source="state dict"):
    """Assigns a pytorch-fid state dict (key -> numpy array) to a `FIDInceptionV3`.

    Args:
        model: a `FIDInceptionV3`.
        state_dict: PyTorch key names and layouts.
        source: what to call the state dict in errors (a file name).

    Raises:
        StateDictMismatch: listing every missing, unexpected and mis-shaped key.
    """
    entries = fid_state_dict_entries(model)
    optional = _optional_keys(model)
    problems = []
    for key, _, shape, _ in entries:
        if key not in state_dict:
            problems.append(f"missing key {key!r} (expected shape {shape})")
        elif tuple(np.shape(state_dict[key])) != shape:
            problems.append(f"key {key!r}: expected shape {shape}, found {tuple(np.shape(state_dict[key]))}")
    for key, shape in optional.items():
        if key in state_dict and tuple(np.shape(state_dict[key])) != shape:
            problems.append(f"key {key!r}: expected shape {shape}, found {tuple(np.shape(state_dict[key]))}")
    known = {e[0] for e in entries} | set(optional)
    for key in sorted(set(state_dict) - known):
        problems.append(f"unexpected key {key!r} with shape {tuple(np.shape(state_dict[key]))}")
    if problems:
        shown = problems[:12] + ([f"... and {len(problems) - 12} more"] if len(problems) > 12 else [])
        raise StateDictMismatch(
            f"{source} is not pytorch-fid's FID Inception state dict ({len(problems)} problem"
            f"{'s' if len(problems) > 1 else ''}):\n  " + "\n  ".join(shown) + _mismatch_hint(state_dict)
        )
    for key, variable, _, to_keras in entries:
        variable.assign(to_keras(np.asarray(state_dict[key], np.float32)))
    return model


def fid_state_dict(model):
    """The network's weights as a pytorch-fid state dict (without the unused `fc`)."""
    out = {}
    for key, variable, _, _ in fid_state_dict_entries(model):
        value = np.asarray(variable.numpy())
        out[key] = np.ascontiguousarray(np.transpose(value, (3, 2, 0, 1)) if value.ndim == 4 else value)
        if key.endswith(".bn.running_var"):
            out[key[: -len("running_var")] + "num_batches_tracked"] = np.zeros((), np.int64)
    return out


# ---------------------------------------------------------------------------
# Feature extraction
# ---------------------------------------------------------------------------


def pytorch_fid_preprocess(images):
    """uint8 NHWC images -> float32 299x299 in [-1, 1], as pytorch-fid's ToTensor + resize + normalize.

    `tf.image.resize` bilinear without antialiasing uses half-pixel centres, PyTorch's
    `align_corners=False`; scaling before or after the resize is the same (the resize is affine).
    """
    x = tf.cast(images, tf.float32) / 255.0
    x = tf.image.resize(x, (INPUT_SIZE, INPUT_SIZE), method="bilinear", antialias=False)
    return 2.0 * x - 1.0


class InceptionFeatures:
    """uint8 NHWC images -> float64 (N, 2048) FID features, in batches.

    Build with `load_inception(path)`. `identity` names the weights and the protocol (used to key
    cached real statistics): equal identities give equal features. The loaders attach the network they
    run: `model` (a `FIDInceptionV3`) for a state dict, `session` (a `tf.compat.v1.Session`) for a graph.

    Args:
        batch_fn: numpy uint8 (n, H, W, 3) -> array (n, 2048) (any float dtype, or (n, 1, 1, 2048)).
        identity: a string naming the weights (content hash) and `PROTOCOL_VERSION`.
        batch_size: images per forward pass.
        source: the weight file, for messages.
    """

    def __init__(self, batch_fn, identity, batch_size=50, source=""):
        self._batch_fn = batch_fn
        self.identity = identity
        self.batch_size = _positive_int("batch_size", batch_size)
        self.source = source

    def __call__(self, images, batch_size=None):
        """Features of `images` (uint8, (N, H, W, 3), any H and W; N may be 0)."""
        batch_size = self.batch_size if batch_size is None else _positive_int("batch_size", batch_size)
        images = np.asarray(images)
        if images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError(
                f"InceptionFeatures: expected images of shape (N, H, W, 3), got {images.shape}; "
                "grey images: np.repeat(x[..., None], 3, axis=-1)."
            )
        if images.dtype != np.uint8:
            raise ValueError(
                f"InceptionFeatures: expected uint8 images in [0, 255], got {images.dtype}; "
                "from [-1, 1] floats: np.clip(np.rint((x + 1) * 127.5), 0, 255).astype(np.uint8)."
            )
        out = np.empty((images.shape[0], FEATURE_DIM), np.float64)
        for start in range(0, images.shape[0], batch_size):
            batch = images[start : start + batch_size]
            out[start : start + len(batch)] = np.asarray(self._batch_fn(batch)).reshape(
                len(batch), FEATURE_DIM
            )
        return out

    def __repr__(self):
        return f"InceptionFeatures({self.source or self.identity!r}, batch_size={self.batch_size})"


def _positive_int(name, value):
    if int(value) != value or int(value) < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}.")
    return int(value)


def _state_dict_digest(entries, state_dict):
    # Hash what the network reads, as float32, so the .pth and .npz forms of one file get one identity.
    digest = hashlib.sha256()
    for key, _, _, _ in entries:
        value = np.ascontiguousarray(state_dict[key], np.float32)
        digest.update(key.encode() + str(value.shape).encode() + value.tobytes())
    return digest.hexdigest()


def features_from_state_dict(state_dict, batch_size=50, source="state dict"):
    """`InceptionFeatures` running `FIDInceptionV3` with a pytorch-fid state dict."""
    model = FIDInceptionV3()
    load_fid_state_dict(model, state_dict, source)
    digest = _state_dict_digest(fid_state_dict_entries(model), state_dict)

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8)])
    def batch_fn(images):
        return model(pytorch_fid_preprocess(images))

    identity = f"pytorch-fid-inception/sha256={digest}/protocol={PROTOCOL_VERSION}"
    features = InceptionFeatures(lambda x: batch_fn(tf.constant(x)).numpy(), identity, batch_size, source)
    features.model = model
    return features


def _splice_input(graph_def, path):
    """A copy of TTUR's GraphDef whose `ExpandDims:0` consumers read a batch placeholder instead."""
    nodes = {n.name: n for n in graph_def.node}
    missing = [name for name in ("ExpandDims", "pool_3") if name not in nodes]
    if missing:
        raise ValueError(
            f"{path}: no node {', '.join(missing)}: not TTUR's Inception graph {TTUR_GRAPH} "
            f"(from {TTUR_ARCHIVE_URL}), which feeds ExpandDims:0 and reads pool_3:0."
        )
    spliced = tf.compat.v1.GraphDef()
    spliced.CopyFrom(graph_def)
    placeholder = spliced.node.add()
    placeholder.name = _SPLICED_INPUT
    placeholder.op = "Placeholder"
    placeholder.attr["dtype"].type = nodes["ExpandDims"].attr["T"].type or tf.float32.as_datatype_enum
    placeholder.attr["shape"].shape.CopyFrom(tf.TensorShape([None, None, None, 3]).as_proto())
    for node in spliced.node:
        for i, name in enumerate(node.input):
            if name in ("ExpandDims", "ExpandDims:0"):
                node.input[i] = _SPLICED_INPUT
    return spliced


def features_from_graph_def(path, batch_size=50):
    """`InceptionFeatures` running TTUR's frozen graph (`classify_image_graph_def.pb`)."""
    graph_def = tf.compat.v1.GraphDef()
    with open(path, "rb") as f:
        try:
            graph_def.ParseFromString(f.read())
        except Exception as e:  # protobuf's DecodeError
            raise ValueError(
                f"{path}: not a TensorFlow GraphDef ({e}); expected TTUR's {TTUR_GRAPH}."
            ) from None
    graph = tf.Graph()
    with graph.as_default():
        # Importing into an empty graph keeps the file's GraphDef version, so 2015-era ops still run.
        tf.compat.v1.import_graph_def(_splice_input(graph_def, path), name="")
    config = tf.compat.v1.ConfigProto()
    config.gpu_options.allow_growth = True  # share the GPU with the eager runtime
    session = tf.compat.v1.Session(graph=graph, config=config)

    def batch_fn(images):
        return session.run(TTUR_OUTPUT, {f"{_SPLICED_INPUT}:0": images.astype(np.float32)})

    identity = f"ttur-inception-graph/sha256={file_sha256(path)}/protocol={PROTOCOL_VERSION}"
    features = InceptionFeatures(batch_fn, identity, batch_size, path)
    features.session = session
    return features


def _missing_weights_message(path):
    return (
        f"Inception weights not found: {path}. Nothing is downloaded: fetch one of these and pass its path. "
        f"pytorch-fid's FID weights {PYTORCH_FID_WEIGHTS} (release asset 'fid_weights' of mseitzer/pytorch-fid: "
        f"{PYTORCH_FID_URL}), or TTUR's {TTUR_GRAPH}, inside {TTUR_ARCHIVE_URL}."
    )


def _check_hub_hash(path):
    match = _HUB_HASH.search(os.path.basename(path))
    if match:
        digest = file_sha256(path)
        if not digest.startswith(match.group(1)):
            raise ValueError(
                f"{path}: the file name promises sha256 {match.group(1)}..., the file has {digest[:12]}...: "
                "a truncated or different download. Fetch it again."
            )


def load_inception(path, batch_size=50):
    """The FID feature extractor for a local weight file.

    Args:
        path: a `.pth` / `.npz` pytorch-fid state dict or TTUR's `.pb` graph (see the module docstring).
        batch_size: images per forward pass.

    Returns:
        An `InceptionFeatures`.

    Raises:
        FileNotFoundError: `path` does not exist (the message says where to get the weights).
        ValueError: an unknown extension, or a file that is not the FID Inception.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(_missing_weights_message(path))
    ext = os.path.splitext(path)[1].lower()
    if ext not in WEIGHT_EXTENSIONS:
        raise ValueError(
            f"{path}: extension {ext!r} is not supported; choose one of {', '.join(map(repr, WEIGHT_EXTENSIONS))}."
        )
    if ext == ".pb":
        return features_from_graph_def(path, batch_size)
    if ext in (".pth", ".pt"):
        _check_hub_hash(path)
    return features_from_state_dict(_read_state_dict(path), batch_size, source=path)
