"""SAM's rule (course_lib.sam, notebook 07) against its formula, on both backends.

The reference is NumPy: on L(p) = ½ pᵀAp one SAM step with SGD(h) is
p ← p − h·A·(p + ρ·Ap/‖Ap‖); on least squares the gradient is written out by hand. What SAM
inherits from the skeleton (logs at p, one mini-batch, BatchNorm moved once, the routes, saving,
MirroredStrategy and DataParallel equal to one device, the skip of an overflowing step under
mixed precision) is tested once, through a probe rule, in tests/test_multi_gradient_step.py and
tests/test_scale_out_jax.py; here, that a mixed-precision run equals the float32 one.
"""

from __future__ import annotations

from course_lib.lookahead import Lookahead
from course_lib.sam import ROUTES as SAM
from course_lib.sam import SAMModel, inject_sam, sam_perturbation

import keras
import numpy as np
import pytest

from multi_gradient_routes import (
    assert_equals_kerass_own_step,
    assert_mixed_precision_equals_full_precision,
    fit_steps,
    least_squares_data,
    least_squares_epoch,
    least_squares_gradient,
    p_of,
    quadratic_model,
)
from quadratic_problem import P0, A

RHO = 0.3


def numpy_sam_path(steps: int, h: float, rho: float) -> np.ndarray:
    p = P0.copy()
    for _ in range(steps):
        g = A @ p
        p = p - h * A @ (p + rho * g / (np.linalg.norm(g) + 1e-12))
    return p


# 1. The formula ----------------------------------------------------------------------------------
def test_matches_the_formula_on_a_quadratic(float64):
    model = quadratic_model(SAM, "clean", rho=RHO)
    fit_steps(model, 6)
    np.testing.assert_allclose(p_of(model), numpy_sam_path(6, 0.1, RHO), rtol=0, atol=1e-13)
    sgd = np.linalg.matrix_power(np.eye(2) - 0.1 * A, 6) @ P0
    assert np.abs(p_of(model) - sgd).max() > 1e-2, "SAM must differ from SGD here"


def test_perturbation_uses_the_norm_over_all_variables():
    gradients = [np.array([3.0, 0.0], "float32"), None, np.array([[0.0], [4.0]], "float32")]
    got = sam_perturbation(gradients, 0.5)
    assert got[1] is None
    np.testing.assert_allclose(np.asarray(got[0]), [0.3, 0.0], atol=1e-7)
    np.testing.assert_allclose(np.asarray(got[2]), [[0.0], [0.4]], atol=1e-7)
    zero = np.asarray(sam_perturbation([np.zeros(3, "float32")], 0.5)[0])
    assert np.array_equal(zero, np.zeros(3)), "a zero gradient must not divide by zero"


def test_rho_zero_is_the_compiled_optimizers_own_step():
    """p̂ = p: SAM's step is Keras's own, bit for bit (momentum too)."""
    assert_equals_kerass_own_step(SAM, rho=0.0)


def numpy_sam_lookahead_path(steps: int, h: float, rho: float, k: int, alpha: float) -> np.ndarray:
    """SAM's fast steps from the slow weights, pulled back every k steps (Lookahead's formula)."""
    fast = P0.copy()
    slow = fast.copy()
    for step in range(1, steps + 1):
        g = A @ fast
        fast = fast - h * A @ (fast + rho * g / (np.linalg.norm(g) + 1e-12))
        if step % k == 0:
            slow = slow + alpha * (fast - slow)
            fast = slow.copy()
    return fast


@pytest.mark.parametrize("route", ["clean", "intrusive"])
def test_composes_with_lookahead_around_the_compiled_optimizer(float64, route):
    """SAM hands its direction to whatever optimizer is compiled, a wrapper included."""
    lookahead = Lookahead(keras.optimizers.SGD(0.1), sync_period=3, slow_step_size=0.5)
    model = quadratic_model(SAM, route, optimizer=lookahead, rho=RHO)
    fit_steps(model, 7)
    expected = numpy_sam_lookahead_path(7, 0.1, RHO, k=3, alpha=0.5)
    np.testing.assert_allclose(p_of(model), expected, rtol=0, atol=1e-13)
    assert np.abs(expected - numpy_sam_path(7, 0.1, RHO)).max() > 1e-2, "Lookahead must matter"


def test_mixed_precision_equals_float32():
    """inject_sam under mixed_float16: both gradients are unscaled, so ‖g‖ and p̂ are float32's
    (the clean route shares the skeleton: tests/test_multi_gradient_step.py)."""
    assert_mixed_precision_equals_full_precision(SAM, "intrusive", rho=RHO)


# 2. On real mini-batches -------------------------------------------------------------------------
def numpy_sam_epoch(params, x, y, batch, h, rho):
    for start in range(0, len(x), batch):
        xb, yb = x[start : start + batch], y[start : start + batch]
        g = least_squares_gradient(params, xb, yb)
        perturbed = params + rho * g / (np.linalg.norm(g) + 1e-12)
        params = params - h * least_squares_gradient(perturbed, xb, yb)
    return params


def test_both_gradients_use_the_same_mini_batch(float64):
    before, after = least_squares_epoch(SAM, "clean", 0.05, rho=RHO)
    x, y = least_squares_data()
    np.testing.assert_allclose(after, numpy_sam_epoch(before, x, y, 4, 0.05, RHO), atol=1e-12)


# 3. Clear errors ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("rho", "error"),
    [(-0.1, ValueError), (float("inf"), ValueError), ("0.05", TypeError), (True, TypeError)],
)
def test_bad_rho_is_rejected(rho, error):
    inputs = keras.Input((1,))
    with pytest.raises(error, match=r"rho must be .* got"):
        SAMModel(inputs, keras.layers.Dense(2)(inputs), rho=rho)
    with pytest.raises(error, match=r"rho must be .* got"):
        inject_sam(keras.Model(inputs, keras.layers.Dense(2)(inputs)), rho=rho)
