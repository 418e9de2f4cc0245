"""One `.keras` file holding a generator, optionally a discriminator and an encoder.

The converter writes it and the rest of the project (training from a
converted checkpoint, synthesis, export) loads it with `load_bundle`.

Every bundle records the license of its weights (`options["license"]`, see `weights_license`): weights
trained here are under the project's license (Apache-2.0); weights converted from an official NVlabs/SPADE
checkpoint, and weights fine-tuned from them (a derivative work), under NVIDIA's CC BY-NC-SA 4.0. Exports,
model cards and the painter's header carry it on.
"""

import json
import os
import zipfile
import zlib

import keras

# Imported for their registration: load_model finds the classes a file names by their registered names.
from spade_tf.models.discriminator import MultiscaleDiscriminator  # noqa: F401
from spade_tf.models.encoder import ConvEncoder  # noqa: F401
from spade_tf.models.generator import SPADEGenerator  # noqa: F401
from spade_tf.utils import PACKAGE

# The license of weights trained with spade_tf: the project's own (LICENSE).
PROJECT_LICENSE = {
    "spdx": "Apache-2.0",
    "name": "Apache License 2.0",
    "url": "https://www.apache.org/licenses/LICENSE-2.0",
}
# NVIDIA's license of the official SPADE code and pretrained models (github.com/NVlabs/SPADE, LICENSE.md).
OFFICIAL_LICENSE = {
    "spdx": "CC-BY-NC-SA-4.0",
    "name": "CC BY-NC-SA 4.0",
    "url": "https://creativecommons.org/licenses/by-nc-sa/4.0/",
    "attribution": "Copyright (C) 2019 NVIDIA Corporation; SPADE pretrained models, github.com/NVlabs/SPADE",
    "terms": "non-commercial use only; credit NVIDIA; share derivatives under the same license",
}
# When a fine-tuning source cannot be read, nothing can be asserted about the weights' license.
UNKNOWN_LICENSE = {"spdx": "NOASSERTION", "name": "unknown", "url": ""}


class BundleError(ValueError):
    """A `.keras` file that is not an intact bundle (truncated, corrupted); the message names it and the fix."""


@keras.saving.register_keras_serializable(package=PACKAGE)
class SPADEBundle(keras.Model):
    """A container of the SPADE networks plus the official options they came from.

    Args:
        generator: a SPADEGenerator.
        discriminator: a MultiscaleDiscriminator, or None.
        encoder: a ConvEncoder, or None.
        options: dict of metadata (the official option values, class names,
            where the weights came from); JSON-serialisable.
    """

    def __init__(self, generator, discriminator=None, encoder=None, options=None, **kwargs):
        super().__init__(**kwargs)
        self.generator = generator
        self.discriminator = discriminator
        self.encoder = encoder
        self.options = dict(options or {})

    def build(self, input_shape=None):
        for model in (self.generator, self.discriminator, self.encoder):
            if model is not None and not model.built:
                model.build()

    def call(self, semantics, z=None, training=False):
        return self.generator(semantics, z, training=training)

    def get_config(self):
        ser = keras.saving.serialize_keras_object
        return {
            "name": self.name,
            "generator": ser(self.generator),
            "discriminator": None if self.discriminator is None else ser(self.discriminator),
            "encoder": None if self.encoder is None else ser(self.encoder),
            "options": self.options,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        for key in ("generator", "discriminator", "encoder"):
            if config.get(key) is not None:
                config[key] = keras.saving.deserialize_keras_object(config[key])
        return cls(**config)


def weights_license(options):
    """The license of a bundle's weights, from its options: a dict with spdx, name, url and why.

    Recorded at `save_bundle`; for a bundle written before licenses were recorded it is worked out the same
    way: official options (`label_nc`, the converter's) mean a converted official checkpoint (CC BY-NC-SA 4.0);
    a training config whose `train.init_from` names a bundle inherits that bundle's license (fine-tuning
    makes a derivative of the weights); any other training config gives the project's Apache-2.0.
    """
    options = dict(options or {})
    if options.get("license"):
        return dict(options["license"])
    if "label_nc" in options:
        return dict(OFFICIAL_LICENSE, reason="converted from an official NVlabs/SPADE checkpoint")
    init_from = ((options.get("config") or {}).get("train") or {}).get("init_from")
    if init_from:
        try:
            parent = weights_license(read_bundle_options(init_from))
        except (OSError, ValueError, KeyError, zipfile.BadZipFile) as e:
            return dict(
                UNKNOWN_LICENSE,
                reason=f"fine-tuned from {init_from}, whose license could not be read ({e}): that license applies",
            )
        if parent["spdx"] == PROJECT_LICENSE["spdx"]:
            return dict(PROJECT_LICENSE, reason=f"trained with spade_tf (fine-tuned from {init_from})")
        return dict(
            parent,
            reason=f"fine-tuned from {init_from} ({parent['name']}): a derivative of those weights keeps "
            "their license",
        )
    return dict(PROJECT_LICENSE, reason="trained with spade_tf")


def read_bundle_options(path):
    """A bundle's options (metadata) read from its config.json member, without loading any weights."""
    with zipfile.ZipFile(path) as zf:
        config = json.loads(zf.read("config.json"))
    if config.get("class_name") != "SPADEBundle":
        raise ValueError(f"{path} holds a {config.get('class_name')}, not a spade_tf SPADEBundle.")
    return config["config"].get("options") or {}


def save_bundle(path, generator, discriminator=None, encoder=None, options=None):
    """Writes the models to `path` (a `.keras` file), atomically.

    `options["license"]` is filled in by `weights_license` when the caller leaves it out.
    """
    if not path.endswith(".keras"):
        raise ValueError(f"{path}: the bundle file name must end in .keras.")
    options = dict(options or {})
    options["license"] = weights_license(options)
    bundle = SPADEBundle(generator, discriminator, encoder, options)
    bundle.build()
    tmp = path[: -len(".keras")] + ".tmp.keras"
    bundle.save(tmp)
    os.replace(tmp, path)
    return path


def zip_damage(path):
    """Why the `.keras` (zip) file at `path` is damaged, or None when every member reads back intact.

    Reads every member and checks its CRC, so a flipped byte anywhere in the data is found.
    """
    if not zipfile.is_zipfile(path):
        return (
            "it is not a complete .keras (zip) file: the zip directory at its end is missing, so it was cut "
            "short (an interrupted copy, download or write) or is not a model file"
        )
    try:
        with zipfile.ZipFile(path) as zf:
            bad = zf.testzip()
    except (zipfile.BadZipFile, zlib.error, OSError, EOFError, ValueError, NotImplementedError) as e:
        return f"{type(e).__name__}: {e}"
    return None if bad is None else f"its member {bad} fails its checksum (CRC) check"


def load_bundle(path):
    """Reads a bundle written by `save_bundle`; `.generator`, `.discriminator`, `.encoder`, `.options`.

    Raises:
        FileNotFoundError: there is no such file.
        BundleError: the file is damaged (truncated, corrupted) or holds another kind of model.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"model file not found: {path}. Convert an official checkpoint with "
            "`python convert.py` or point at a training workdir's export."
        )
    damage = zip_damage(path)
    if damage is not None:
        raise BundleError(
            f"{path} is damaged: {damage}. Copy it again, or write it again: a training workdir's model.keras by "
            "rerunning train.py with the same --workdir and config (it is rebuilt from the last checkpoint), a "
            "converted one with convert.py."
        )
    bundle = keras.saving.load_model(path, compile=False)
    if not isinstance(bundle, SPADEBundle):
        raise BundleError(f"{path} holds a {type(bundle).__name__}, not a spade_tf SPADEBundle.")
    return bundle
