"""Test-session set-up: quiet TensorFlow, a headless plot backend, the Keras backend of this run.

Keras fixes its backend per process (``KERAS_BACKEND``), so ``make test`` runs pytest twice:
once on TensorFlow (every test module, and the notebooks) and once on JAX (the modules listed in
:data:`RUNS_ON_JAX`: the tests about backends). On JAX every other module is not even collected
when pytest walks ``tests/`` (importing them would load TensorFlow for nothing); named on the
command line, it is collected and skipped with its reason: a TensorFlow-only mechanism
(:data:`TENSORFLOW_ONLY`), or tests that use no Keras backend and so run once, in the
TensorFlow pass. Inside a module, ``@pytest.mark.tensorflow_only("why")`` and
``@pytest.mark.jax_only("why")`` restrict single tests.

On TensorFlow the CPU is split into two logical devices here, before any test runs: the
MirroredStrategy tests need two replicas, and every other test runs on the default device as it
would on one CPU. JAX's multi-device and multi-process tests start worker processes of their own
(``tests/jax_worker.py``), since JAX fixes its devices when it starts.
"""

from __future__ import annotations

import course_lib  # noqa: F401  (sets TensorFlow's environment before TensorFlow loads)

import matplotlib

matplotlib.use("Agg")

from pathlib import Path  # noqa: E402

import keras  # noqa: E402
import pytest  # noqa: E402

BACKEND = keras.backend.backend()

#: Test modules that also run on the JAX backend.
RUNS_ON_JAX = {
    "test_adaptive.py",
    "test_backends.py",
    "test_backend_comparison.py",
    "test_checks_nbA2.py",
    "test_checks_nbA3.py",
    "test_keras_internals.py",
    "test_lookahead.py",
    "test_multi_gradient_step.py",
    "test_optimizers.py",
    "test_recipes.py",
    "test_runge_kutta.py",
    "test_sam.py",
    "test_scale_out_jax.py",
    "test_soft_batch.py",
    "test_studies_overfitting_backends.py",
}

#: Test modules of mechanisms that run on TensorFlow only, and why.
TENSORFLOW_ONLY = {
    "test_studies_beyond.py": "the study behind notebook 07, a TensorFlow lesson",
    "test_studies_overfitting.py": "the harness once, on TensorFlow; what differs on JAX: "
    "test_studies_overfitting_backends.py",
    "test_handwritten.py": "hand-written gradients are TensorFlow code (notebook 02)",
    "test_keras2_time_capsule.py": "Keras 2 (tf_keras) runs on TensorFlow only",
    "test_checks_nbA1.py": "the Keras 2 appendix runs on TensorFlow only",
    **{
        f"test_checks_nb0{n}.py": f"the exercises of notebook 0{n}, a TensorFlow lesson"
        for n in range(1, 8)
    },
}

if BACKEND == "tensorflow":
    import tensorflow as tf

    _cpus = tf.config.list_physical_devices("CPU")
    tf.config.set_logical_device_configuration(
        _cpus[0], [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()]
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "tensorflow_only(reason): runs on TensorFlow only")
    config.addinivalue_line("markers", "jax_only(reason): runs on JAX only")


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """On JAX, leave out the test modules that do not run there (``None``: pytest decides)."""
    name = collection_path.name
    if BACKEND != "tensorflow" and name.startswith("test_") and name.endswith(".py"):
        return name not in RUNS_ON_JAX or None
    return None


def _skip_reason(item: pytest.Item) -> str | None:
    """Why ``item`` does not run on this backend (``None``: it runs)."""
    module = item.path.name
    if BACKEND != "tensorflow" and item.path.suffix == ".py":
        if module in TENSORFLOW_ONLY:
            return f"TensorFlow only: {TENSORFLOW_ONLY[module]}"
        if module not in RUNS_ON_JAX:
            return "uses no Keras backend, or TensorFlow only: runs in the TensorFlow pass"
    for name, backend in (("tensorflow_only", "tensorflow"), ("jax_only", "jax")):
        marker = item.get_closest_marker(name)
        if marker is not None and BACKEND != backend:
            why = marker.args[0] if marker.args else ""
            return f"{backend} only: {why}"
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        reason = _skip_reason(item)
        if reason is not None:
            item.add_marker(pytest.mark.skip(reason=reason))


def pytest_report_header(config: pytest.Config) -> str:
    if BACKEND == "tensorflow":
        return f"Keras backend: {BACKEND}"
    return f"Keras backend: {BACKEND} (the modules of RUNS_ON_JAX in tests/conftest.py)"


@pytest.fixture(scope="session")
def two_cpu_strategy():
    """One MirroredStrategy over the two logical CPUs, shared by every test that needs one.

    Session-scoped on purpose: each new MirroredStrategy numbers its collective all-reduces
    from the same starting key, so a second strategy in the same process can meet a first
    one's all-reduce of another shape ("Shape mismatch in the collective instance 100").
    TensorFlow only: tests that use it are marked ``tensorflow_only``.
    """
    import tensorflow as tf

    return tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])


@pytest.fixture(autouse=True)
def _fresh_keras_session():
    """Each test starts from a clean Keras graph and the same seed.

    ``free_memory=False`` skips the full ``gc.collect()`` that ``clear_session`` runs by default:
    at about 0.17 s a test it cost minutes over the suite, and Python's own collector still frees
    the cycles a test leaves.
    """
    keras.backend.clear_session(free_memory=False)
    course_lib.set_seed(42)
    yield


@pytest.fixture
def xla_allowed():
    """Let Keras really compile with XLA in this test.

    ``course_lib.set_seed`` turns TensorFlow's op determinism on, and while it is on Keras
    quietly compiles ``jit_compile=True`` models without XLA ("Model doesn't support
    jit_compile=True"). Tests that must run under XLA switch determinism off for their duration.
    JAX always compiles with XLA: nothing to do there.
    """
    if BACKEND != "tensorflow":
        yield
        return
    # TensorFlow has no public switch to turn determinism off again; this is where it lives.
    from tensorflow.python.framework import config

    config.disable_op_determinism()
    yield
    config.enable_op_determinism()


@pytest.fixture
def float64():
    """Build the models of one test in float64 (weights, loss, learning rate).

    JAX computes in float32 unless its x64 mode is on: it is switched on for the test.
    """
    x64 = None
    if BACKEND == "jax":
        import jax

        x64 = jax.config.jax_enable_x64
        jax.config.update("jax_enable_x64", True)
    keras.config.set_floatx("float64")
    yield
    keras.config.set_floatx("float32")
    if x64 is not None:
        import jax

        jax.config.update("jax_enable_x64", x64)
