"""Test-session set-up: quiet TensorFlow, a headless plot backend, two logical CPUs.

TensorFlow fixes its device list at first use, so the CPU is split into two logical devices here,
before any test runs: the MirroredStrategy tests need two replicas, and every other test runs on
the default device as it would on one CPU.
"""

from __future__ import annotations

import course_lib  # noqa: F401  (sets TensorFlow's environment before TensorFlow loads)

import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

_cpus = tf.config.list_physical_devices("CPU")
tf.config.set_logical_device_configuration(
    _cpus[0], [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()]
)


@pytest.fixture
def two_cpu_strategy() -> tf.distribute.MirroredStrategy:
    """A MirroredStrategy over the two logical CPUs."""
    return tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])


@pytest.fixture(autouse=True)
def _fresh_keras_session():
    """Each test starts from a clean Keras graph and the same seed."""
    import keras

    keras.backend.clear_session()
    course_lib.set_seed(42)
    yield
