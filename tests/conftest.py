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
