"""Test-session set-up: quiet TF, two logical CPU devices, deterministic ops."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import tensorflow as tf  # noqa: E402

# Two logical CPUs so MirroredStrategy tests can compare 1 vs 2 replicas.
# This must run before TensorFlow initialises its devices.
_cpus = tf.config.list_physical_devices("CPU")
try:
    tf.config.set_logical_device_configuration(
        _cpus[0], [tf.config.LogicalDeviceConfiguration()] * 2
    )
except RuntimeError:  # devices already initialised by another conftest
    pass

_MIRRORED = []


def shared_mirrored_strategy():
    """One MirroredStrategy per test process.

    Each new strategy restarts TensorFlow's collective instance keys, so a
    second strategy whose all-reduce shapes differ from the first one's fails
    with "Shape mismatch in the collective instance"; tests share this one.
    """
    if not _MIRRORED:
        devices = tf.config.list_logical_devices("CPU")
        _MIRRORED.append(tf.distribute.MirroredStrategy([d.name for d in devices[:2]]))
    return _MIRRORED[0]
