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


@pytest.fixture(scope="session")
def two_cpu_strategy() -> tf.distribute.MirroredStrategy:
    """One MirroredStrategy over the two logical CPUs, shared by every test that needs one.

    Session-scoped on purpose: each new MirroredStrategy numbers its collective all-reduces
    from the same starting key, so a second strategy in the same process can meet a first
    one's all-reduce of another shape ("Shape mismatch in the collective instance 100").
    """
    return tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])


@pytest.fixture(autouse=True)
def _fresh_keras_session():
    """Each test starts from a clean Keras graph and the same seed."""
    import keras

    keras.backend.clear_session()
    course_lib.set_seed(42)
    yield


@pytest.fixture
def xla_allowed():
    """Let Keras really compile with XLA in this test.

    ``course_lib.set_seed`` turns TensorFlow's op determinism on, and while it is on Keras
    quietly compiles ``jit_compile=True`` models without XLA ("Model doesn't support
    jit_compile=True"). Tests that must run under XLA switch determinism off for their duration.
    """
    # TensorFlow has no public switch to turn determinism off again; this is where it lives.
    from tensorflow.python.framework import config

    config.disable_op_determinism()
    yield
    config.enable_op_determinism()


@pytest.fixture
def float64():
    """Build the models of one test in float64 (weights, loss, learning rate)."""
    import keras

    keras.config.set_floatx("float64")
    yield
    keras.config.set_floatx("float32")
