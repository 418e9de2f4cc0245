"""Test session set-up.

Two logical CPU devices are configured before any TF op runs so the
distribution tests can run MirroredStrategy on a machine without GPUs; every
other test uses the default device (/cpu:0) and is unaffected.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import tensorflow as tf  # noqa: E402

_cpus = tf.config.list_physical_devices("CPU")
tf.config.set_logical_device_configuration(_cpus[0], [tf.config.LogicalDeviceConfiguration()] * 2)

# The longest test files first. Under pytest-xdist's `--dist loadfile` (pyproject.toml) each file runs whole on
# one of the two workers, handed out in collection order; a long file collected last would leave one worker
# alone at the end. Measured with --durations (2-core Xeon): the demo-quality run ~5 min, trainer_test over 7 min,
# then the files that train, export or start a browser or a fresh venv in their fixtures.
_LONGEST_FIRST = (
    "demo_quality_test.py",
    "trainer_test.py",
    "packaging_test.py",
    "evaluation_test.py",
    "reliability_test.py",
    "painter_browser_test.py",
    "vgg_test.py",
    "export_test.py",
)


def pytest_collection_modifyitems(items):
    def rank(item):
        name = item.path.name
        return _LONGEST_FIRST.index(name) if name in _LONGEST_FIRST else len(_LONGEST_FIRST)

    items.sort(key=rank)  # stable: tests keep their order within a file
