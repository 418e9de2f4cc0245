"""Shared helpers: the official parity fixtures and round-trip checks."""

import json
import os

import keras
import numpy as np

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures", "official-small")


def fixture(name):
    """Arrays of `tests/fixtures/official-small/<name>.npz` as a dict."""
    with np.load(os.path.join(FIXTURES, name + ".npz")) as data:
        return {k: data[k] for k in data.files}


def fixture_config(section=None):
    with open(os.path.join(FIXTURES, "config.json")) as f:
        config = json.load(f)
    return config if section is None else config[section]


def nhwc(a):
    """NCHW fixture array -> NHWC."""
    return np.transpose(a, (0, 2, 3, 1))


def generator_state(variant="vae"):
    """The fixture G state dict with the `fc` of a variant ("vae", "novae", "vae_ar2")."""
    state = fixture("state_G")
    if variant != "vae":
        fc = fixture("state_G_fc_variants")
        state["fc.weight"] = fc[f"{variant}/fc.weight"]
        state["fc.bias"] = fc[f"{variant}/fc.bias"]
    return state


def assert_config_round_trip(layer):
    """from_config(get_config()) gives the same config."""
    config = layer.get_config()
    clone = layer.__class__.from_config(config)
    assert clone.get_config() == config
    return clone


def copy_weights(source, target):
    target.set_weights(source.get_weights())


def save_and_load(model, tmp_path):
    path = os.path.join(str(tmp_path), "model.keras")
    model.save(path)
    return keras.saving.load_model(path, compile=False)


_TWO_CPU_STRATEGY = []


def two_cpu_strategy():
    """One MirroredStrategy over the two logical CPUs, shared by every test.

    A second strategy over the same devices in one process would reuse
    collective group and instance keys and can pair up mismatched tensors.
    """
    import tensorflow as tf

    if not _TWO_CPU_STRATEGY:
        devices = [d.name for d in tf.config.list_logical_devices("CPU")][:2]
        assert len(devices) == 2, "tests/conftest.py must configure two logical CPUs"
        _TWO_CPU_STRATEGY.append(tf.distribute.MirroredStrategy(devices))
    return _TWO_CPU_STRATEGY[0]
