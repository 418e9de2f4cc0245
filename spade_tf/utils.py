"""Helpers every part of spade_tf shares: the Keras registration package, argument checks, file hashes."""

import hashlib
import inspect

# Registered Keras names are "spade_tf>ClassName": files saved by any version load by these names,
# whatever module a class lives in.
PACKAGE = "spade_tf"


def check_choice(name, value, allowed):
    """ValueError naming the argument and the allowed values, when `value` is not one of them."""
    if value not in allowed:
        raise ValueError(f"{name}={value!r} is not supported; choose one of {', '.join(map(repr, allowed))}.")


def keyword_defaults(cls, exclude=()):
    """{argument: default} of `cls.__init__`'s arguments with defaults, minus `exclude`.

    The configs take their defaults from here, so each option has its default in one place: the
    constructor of the layer that uses it.
    """
    params = inspect.signature(cls.__init__).parameters.values()
    return {
        p.name: p.default
        for p in params
        if p.default is not inspect.Parameter.empty
        and p.kind is p.POSITIONAL_OR_KEYWORD
        and p.name not in exclude
    }


def file_sha256(path):
    """Hex sha256 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
