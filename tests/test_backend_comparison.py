"""course_lib.backend_comparison: the same trainings on both backends agree; clear errors.

The cross-backend comparison starts the other backend in a subprocess; it runs in the TensorFlow
pass only (the JAX pass would repeat it with the roles swapped).
"""

from __future__ import annotations

from course_lib import backend_comparison
from course_lib.backend_comparison import max_abs_difference, train, train_on_backend

import keras
import numpy as np
import pytest
from child_processes import run_python

BACKEND = keras.backend.backend()
#: float32 round-off of 80 plain SGD steps: both backends sum the same products in another order.
SGD_ROUND_OFF = 1e-5


def test_importing_the_module_loads_no_keras_backend():
    assert backend_comparison.__doc__  # imported above; what it imports is checked in a child
    code = (
        "import sys, course_lib.backend_comparison; "
        "print(any(m in sys.modules for m in ('keras', 'tensorflow', 'jax')))"
    )
    done = run_python(code, backend=BACKEND)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "False"


@pytest.mark.tensorflow_only("one comparison suffices; this pass trains JAX in a subprocess")
def test_sgd_on_tensorflow_equals_sgd_on_jax_within_float32_round_off():
    problem = backend_comparison.shared_problem()
    here = train("sgd", problem)
    there = train_on_backend("jax", "sgd")["sgd"]
    start = {f"w{i}": w for i, w in enumerate(problem.initial_weights)}
    assert max_abs_difference(here, start) > 1000 * SGD_ROUND_OFF  # the weights moved
    assert max_abs_difference(here, there) < SGD_ROUND_OFF
    np.testing.assert_allclose(here["loss"], there["loss"], rtol=1e-5)


def test_unknown_kinds_and_backends_get_clear_errors():
    with pytest.raises(ValueError, match="kind must be one of 'sgd'"):
        train("adagrad")
    with pytest.raises(ValueError, match="backend must be one of 'tensorflow', 'jax'"):
        train_on_backend("torch", "sgd")
    with pytest.raises(ValueError, match="kind must be one of"):
        train_on_backend(BACKEND, ["sgd", "adagrad"])


def test_results_with_different_weights_are_refused():
    a = {"w0": np.zeros(2), "w1": np.zeros(3), "loss": np.zeros(2)}
    with pytest.raises(ValueError, match="different weights"):
        max_abs_difference(a, {"w0": np.zeros(2), "loss": np.zeros(2)})
    assert max_abs_difference(a, {**a, "w1": np.array([0.0, -0.5, 0.25])}) == 0.5
