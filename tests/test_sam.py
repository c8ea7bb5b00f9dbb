"""SAM (course_lib.sam, notebook 07): the exact formula, one batch, logs at p, BatchNorm once,
XLA, save/load, MirroredStrategy and clear errors.

The reference is NumPy: on L(p) = ½ pᵀAp one SAM step with SGD(h) is
p ← p − h·A·(p + ρ·Ap/‖Ap‖); on least squares the gradient is written out by hand.
"""

from __future__ import annotations

from course_lib.lookahead import Lookahead
from course_lib.sam import (
    SAMModel,
    SAMSequential,
    eject_sam,
    inject_sam,
    is_sam_injected,
    sam_perturbation,
)

import keras
import numpy as np
import pytest

from multi_gradient_routes import (
    Method,
    assert_batchnorm_moves_once_from_the_start,
    assert_equals_keras_own_step,
    assert_logs_describe_the_start_point,
    assert_mirrored_equals_one_device,
    assert_refuses_models_without_an_optimizer,
    fit_steps,
    least_squares_data,
    least_squares_epoch,
    least_squares_gradient,
    p_of,
    quadratic_model,
)
from quadratic_problem import P0, A, quadratic_loss_for

SAM = Method(SAMModel, SAMSequential, inject_sam)
RHO = 0.3


def numpy_sam_path(steps: int, h: float, rho: float) -> np.ndarray:
    p = P0.copy()
    for _ in range(steps):
        g = A @ p
        p = p - h * A @ (p + rho * g / (np.linalg.norm(g) + 1e-12))
    return p


# 1. The formula ----------------------------------------------------------------------------------
@pytest.mark.parametrize("route", ["clean", "sequential", "intrusive"])
def test_matches_the_formula_on_a_quadratic(float64, route):
    model = quadratic_model(SAM, route, rho=RHO)
    fit_steps(model, 6)
    np.testing.assert_allclose(p_of(model), numpy_sam_path(6, 0.1, RHO), rtol=0, atol=1e-13)
    sgd = np.linalg.matrix_power(np.eye(2) - 0.1 * A, 6) @ P0
    assert np.abs(p_of(model) - sgd).max() > 1e-2, "SAM must differ from SGD here"


@pytest.mark.parametrize("jit", [False, True])
def test_matches_the_formula_with_and_without_xla(xla_allowed, jit):
    model = quadratic_model(SAM, "clean", jit=jit, rho=RHO)
    fit_steps(model, 6)
    np.testing.assert_allclose(p_of(model), numpy_sam_path(6, 0.1, RHO), rtol=0, atol=5e-6)


def test_perturbation_uses_the_norm_over_all_variables():
    gradients = [np.array([3.0, 0.0]), None, np.array([[0.0], [4.0]])]
    got = sam_perturbation(gradients, 0.5)
    assert got[1] is None
    np.testing.assert_allclose(got[0].numpy(), [0.3, 0.0], atol=1e-12)
    np.testing.assert_allclose(got[2].numpy(), [[0.0], [0.4]], atol=1e-12)
    zero = sam_perturbation([np.zeros(3)], 0.5)[0].numpy()
    assert np.array_equal(zero, np.zeros(3)), "a zero gradient must not divide by zero"


def test_rho_zero_is_the_compiled_optimizers_own_step():
    assert_equals_keras_own_step(SAM, rho=0.0)


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
    model = quadratic_model(SAM, "clean" if route == "clean" else "plain", rho=RHO)
    model.compile(
        optimizer=Lookahead(keras.optimizers.SGD(0.1), sync_period=3, slow_step_size=0.5),
        loss=quadratic_loss_for(A),
    )
    if route == "intrusive":
        inject_sam(model, rho=RHO)
    fit_steps(model, 7)
    expected = numpy_sam_lookahead_path(7, 0.1, RHO, k=3, alpha=0.5)
    np.testing.assert_allclose(p_of(model), expected, rtol=0, atol=1e-13)
    assert np.abs(expected - numpy_sam_path(7, 0.1, RHO)).max() > 1e-2, "Lookahead must matter"


# 2. One mini-batch, logs at p, BatchNorm once ----------------------------------------------------
def numpy_sam_epoch(params, x, y, batch, h, rho):
    for start in range(0, len(x), batch):
        xb, yb = x[start : start + batch], y[start : start + batch]
        g = least_squares_gradient(params, xb, yb)
        perturbed = params + rho * g / (np.linalg.norm(g) + 1e-12)
        params = params - h * least_squares_gradient(perturbed, xb, yb)
    return params


@pytest.mark.parametrize("route", ["clean", "intrusive"])
def test_both_gradients_use_the_same_mini_batch(float64, route):
    before, after = least_squares_epoch(SAM, route, 0.05, rho=RHO)
    x, y = least_squares_data()
    np.testing.assert_allclose(after, numpy_sam_epoch(before, x, y, 4, 0.05, RHO), atol=1e-12)


@pytest.mark.parametrize("route", ["clean", "intrusive"])
def test_logs_loss_and_metrics_at_p(route):
    assert_logs_describe_the_start_point(SAM, route, rho=RHO)


def test_batchnorm_statistics_move_once_from_p():
    assert_batchnorm_moves_once_from_the_start(SAM, rho=1.0)


# 3. Save and load, inject and eject --------------------------------------------------------------
@pytest.mark.parametrize("route", ["clean", "sequential"])
def test_save_and_load_keeps_rho_and_the_trajectory(tmp_path, route):
    model = quadratic_model(SAM, route, rho=RHO)
    fit_steps(model, 1)
    model.save(tmp_path / "sam.keras")
    loaded = keras.saving.load_model(
        tmp_path / "sam.keras", custom_objects={"quadratic_loss": quadratic_loss_for(A)}
    )
    assert type(loaded) is type(model) and loaded.sam_rho == RHO
    fit_steps(model, 2)
    fit_steps(loaded, 2)
    np.testing.assert_allclose(p_of(loaded), p_of(model), rtol=0, atol=1e-7)
    np.testing.assert_allclose(p_of(loaded), numpy_sam_path(3, 0.1, RHO), rtol=0, atol=2e-6)


def test_recompiling_or_ejecting_undoes_the_injection():
    model = quadratic_model(SAM, "intrusive", rho=RHO)
    assert is_sam_injected(model)
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss=quadratic_loss_for(A))
    assert not is_sam_injected(model)
    fit_steps(model, 1)
    np.testing.assert_allclose(p_of(model), P0 - 0.1 * A @ P0, atol=2e-6)  # plain SGD
    eject_sam(inject_sam(model))
    assert not is_sam_injected(model)
    with pytest.raises(ValueError, match="no injected SAM step"):
        eject_sam(model)


# 4. MirroredStrategy -----------------------------------------------------------------------------
@pytest.mark.parametrize("route", ["clean", "intrusive"])
def test_mirrored_strategy_equals_one_device(two_cpu_strategy, route):
    assert_mirrored_equals_one_device(two_cpu_strategy, SAM, route, rho=0.5)


# 5. Clear errors ---------------------------------------------------------------------------------
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


def test_models_without_an_optimizer_are_refused():
    assert_refuses_models_without_an_optimizer(SAM)
