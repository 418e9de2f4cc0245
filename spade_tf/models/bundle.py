"""One `.keras` file holding a generator, optionally a discriminator and an encoder.

The converter writes it and the rest of the project (training from a
converted checkpoint, synthesis, export) loads it with `load_bundle`.
"""

import os
import zipfile
import zlib

import keras

# Imported for their registration: load_model finds the classes a file names by their registered names.
from spade_tf.models.discriminator import MultiscaleDiscriminator  # noqa: F401
from spade_tf.models.encoder import ConvEncoder  # noqa: F401
from spade_tf.models.generator import SPADEGenerator  # noqa: F401
from spade_tf.utils import PACKAGE


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


def save_bundle(path, generator, discriminator=None, encoder=None, options=None):
    """Writes the models to `path` (a `.keras` file), atomically."""
    if not path.endswith(".keras"):
        raise ValueError(f"{path}: the bundle file name must end in .keras.")
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
