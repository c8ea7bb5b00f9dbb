"""The two Keras backends: choosing one, and the distribution seam each one fills.

The seam is ``course_lib.distribution``.

Runs on TensorFlow and on JAX; each test says what it checks on the backend of its run.
"""

from __future__ import annotations

import course_lib
from course_lib import distribution
from course_lib.distribution import jax_backend, run_if, tensorflow_backend
from course_lib.environment import SUPPORTED_BACKENDS, select_backend

import os

import keras
import numpy as np
import pytest
from child_processes import run_python
from keras import ops

from training_steps import manual_step

BACKEND = keras.backend.backend()
CONTRACT = [name for name in distribution.__all__ if name != "BACKENDS"]
#: Tests whose work happens in a child process on another backend: one pass runs them.
ONE_PASS = "its child process chooses its own backend; once, in the TensorFlow pass, suffices"


def test_every_backend_module_fills_the_whole_contract():
    assert set(distribution.BACKENDS) == set(SUPPORTED_BACKENDS)
    for module in (tensorflow_backend, jax_backend):
        assert sorted(module.__all__) == sorted(CONTRACT), module.__name__
        assert all(callable(getattr(module, name)) for name in CONTRACT), module.__name__


def test_the_seam_uses_this_processs_backend():
    chosen = {"tensorflow": tensorflow_backend, "jax": jax_backend}[BACKEND]
    assert distribution._backend is chosen
    # On one device every helper is a plain call on both backends.
    assert distribution.replicas_in_sync() == 1
    values = [ops.ones(2), None]
    assert distribution.sum_replicas(values)[1] is None


def _written_by(condition, compiled: bool) -> tuple[np.ndarray, np.ndarray]:
    """Run ``run_if(condition, ...)`` on two variables; their values afterwards."""
    first, second = keras.Variable([1.0, 2.0]), keras.Variable(3.0)

    def step(flag):
        def write():
            first.assign(first.value * 10.0)
            second.assign_add(1.0)

        run_if(flag, write, [first, second])

    if not compiled:
        step(ops.convert_to_tensor(condition))
    elif BACKEND == "tensorflow":
        import tensorflow as tf

        tf.function(step)(tf.constant(condition))
    else:
        import jax

        @jax.jit
        def stateless(values, flag):
            mapping = list(zip([first, second], values, strict=True))
            with keras.StatelessScope(state_mapping=mapping) as scope:
                step(flag)
            return [scope.get_current_value(v) for v in (first, second)]

        new_values = stateless([first.value, second.value], condition)
        for variable, value in zip((first, second), new_values, strict=True):
            variable.assign(value)
    return first.numpy(), second.numpy()


@pytest.mark.parametrize("compiled", [False, True], ids=["eager", "compiled"])
def test_run_if_writes_only_when_the_condition_holds(compiled):
    first, second = _written_by(True, compiled)
    np.testing.assert_array_equal(first, [10.0, 20.0])
    assert float(second) == 4.0
    first, second = _written_by(False, compiled)
    np.testing.assert_array_equal(first, [1.0, 2.0])
    assert float(second) == 3.0


@pytest.mark.jax_only("the premise of run_if's JAX form: a traced branch cannot assign")
def test_on_jax_a_cond_whose_branch_assigns_fails_in_a_stateless_step():
    """What SoftBatch and Lookahead would meet with ``ops.cond`` inside JAX's trainer."""
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])

    class CondStep(keras.optimizers.Optimizer):
        def update_step(self, gradient, variable, learning_rate):
            def write():
                variable.assign(variable - learning_rate * gradient)

            ops.cond(self.iterations > 0, write, lambda: None)

    optimizer = CondStep(learning_rate=0.1)
    optimizer.build(model.trainable_variables)
    step = manual_step(model, optimizer, compiled=True)
    with pytest.raises(Exception, match="Could not convert|Variable"):
        step(np.ones((4, 2), "float32"), np.ones((4, 1), "float32"))


def test_select_backend_refuses_to_switch_a_running_keras():
    other = next(name for name in SUPPORTED_BACKENDS if name != BACKEND)
    with pytest.raises(RuntimeError, match=f"already imported and runs on '{BACKEND}'"):
        select_backend(other)
    saved = os.environ.get("KERAS_BACKEND")
    try:
        assert select_backend(BACKEND) == BACKEND
        assert os.environ["KERAS_BACKEND"] == BACKEND
    finally:
        if saved is None:
            os.environ.pop("KERAS_BACKEND", None)
        else:
            os.environ["KERAS_BACKEND"] = saved
    with pytest.raises(ValueError, match="backend must be one of 'tensorflow', 'jax'"):
        select_backend("torch")
    assert course_lib.select_backend is select_backend


@pytest.mark.tensorflow_only(ONE_PASS)
def test_select_backend_in_a_fresh_process_chooses_keras_backend():
    other = next(name for name in SUPPORTED_BACKENDS if name != BACKEND)
    code = (
        f"import course_lib; course_lib.select_backend({other!r}); import keras; "
        "print(keras.backend.backend())"
    )
    done = run_python(code, backend=BACKEND)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split()[-1] == other


@pytest.mark.tensorflow_only(ONE_PASS)
def test_an_unsupported_backend_gets_a_clear_error():
    done = run_python("import course_lib.soft_batch", backend="numpy")
    assert done.returncode != 0
    assert "run on the tensorflow and jax backends, but Keras runs on 'numpy'" in done.stderr
    assert "KERAS_BACKEND=tensorflow" in done.stderr


_JAX_LOADED = "import sys, keras, tensorflow; print('jax' in sys.modules)"


@pytest.mark.tensorflow_only(ONE_PASS)
def test_a_tensorflow_process_does_not_carry_jax_that_it_does_not_use():
    """TensorFlow and Keras import the installed JAX by themselves; course_lib stops that."""

    def jax_loaded(code: str) -> str:
        run = run_python(code, backend="tensorflow")
        assert run.returncode == 0, run.stderr[-2000:]
        return run.stdout.strip()

    assert jax_loaded(_JAX_LOADED) == "True"  # the cost the finder removes exists
    # With course_lib first, Keras and TensorFlow come without JAX; who asks for JAX gets it.
    asks_later = "; import jax; print(jax.numpy.ones(2).sum() == 2)"
    assert jax_loaded("import course_lib; " + _JAX_LOADED + asks_later).split() == ["False", "True"]
