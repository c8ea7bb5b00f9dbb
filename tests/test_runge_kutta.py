"""The Runge–Kutta rule (course_lib.runge_kutta) against its closed forms, on both backends.

The reference for every numeric test is a closed form: on L(p) = ½ pᵀAp one Runge–Kutta step of
size h multiplies p by the stability polynomial R(−hA) (Heun: I − hA + (hA)²/2), and the exact
gradient flow is p(t) = exp(−tA)·p0; on linear least squares w − w* is multiplied by R(−hH) with
H the Hessian; on real batches a NumPy loop gives the reference; under mixed precision, the same
run in float32. What every rule inherits from the skeleton (logs, one mini-batch, BatchNorm,
routes, distribution, the skip of an overflowing step) is tested once in
tests/test_multi_gradient_step.py; the adaptive controller in tests/test_adaptive.py.
"""

from __future__ import annotations

from course_lib.runge_kutta import ROUTES as RUNGE_KUTTA
from course_lib.runge_kutta import RungeKuttaModel, inject_runge_kutta
from course_lib.tableaux import (
    TABLEAUX,
    ButcherTableau,
    InvalidTableauError,
    get_tableau,
    stability_function,
)

import keras
import numpy as np
import pytest
import scipy.linalg

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
from quadratic_problem import P0, A, quadratic_loss_for


def step_matrix(tableau, h: float) -> np.ndarray:
    """R(−hA): the closed form of one step on the quadratic."""
    coefficients = [1.0]
    vector = np.ones(get_tableau(tableau).stages)
    a, b = np.array(get_tableau(tableau).a), np.array(get_tableau(tableau).b)
    for _ in range(len(vector)):
        coefficients.append(b @ vector)
        vector = a @ vector
    z = -h * A
    return sum(c * np.linalg.matrix_power(z, k) for k, c in enumerate(coefficients))


# ---------------------------------------------------------------------------------------------
# 1. The closed form on a quadratic
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("jit", [False, True])
def test_heun_matches_closed_form_float32(xla_allowed, jit):
    h = 0.1
    model = quadratic_model(RUNGE_KUTTA, "clean", h=h, jit=jit)
    heun = np.eye(2) - h * A + (h * A) @ (h * A) / 2
    fit_steps(model, 1)
    np.testing.assert_allclose(p_of(model), heun @ P0, rtol=0, atol=2e-6)
    fit_steps(model, 4)
    np.testing.assert_allclose(p_of(model), np.linalg.matrix_power(heun, 5) @ P0, rtol=0, atol=4e-6)


@pytest.mark.parametrize("tableau", ["heun", "rk4", "dormand_prince"])
def test_closed_form_float64(float64, tableau):
    h = 0.1
    model = quadratic_model(RUNGE_KUTTA, "clean", h=h, tableau=tableau)
    assert model.get_layer("p").kernel.dtype == "float64"
    fit_steps(model, 3)
    expected = np.linalg.matrix_power(step_matrix(tableau, h), 3) @ P0
    np.testing.assert_allclose(p_of(model), expected, rtol=0, atol=1e-13)


def test_heun_is_not_euler():
    """Guards the closed-form tests: one Euler step is measurably different at this h."""
    h = 0.1
    model = quadratic_model(RUNGE_KUTTA, "clean", h=h, tableau="euler")
    fit_steps(model, 1)
    np.testing.assert_allclose(p_of(model), P0 - h * A @ P0, atol=2e-6)
    heun = (np.eye(2) - h * A + (h * A) @ (h * A) / 2) @ P0
    assert np.abs(p_of(model) - heun).max() > 0.05


def test_learning_rate_schedule_gives_the_step_size(float64):
    schedule = keras.optimizers.schedules.ExponentialDecay(0.2, decay_steps=1, decay_rate=0.5)
    model = quadratic_model(RUNGE_KUTTA, "clean")
    model.compile(optimizer=keras.optimizers.SGD(schedule), loss=quadratic_loss_for(A))
    fit_steps(model, 3)
    expected = P0
    for step in range(3):
        expected = step_matrix("heun", 0.2 * 0.5**step) @ expected
    # Keras computes ExponentialDecay in float32, hence the float32-level tolerance.
    np.testing.assert_allclose(p_of(model), expected, rtol=0, atol=1e-6)
    constant = np.linalg.matrix_power(step_matrix("heun", 0.2), 3) @ P0
    assert np.abs(p_of(model) - constant).max() > 0.1


@pytest.mark.tensorflow_only(
    "the rule is one for both backends, and on JAX every tableau meets its stability polynomial "
    "above; these 20 trainings of up to 64 steps would add a minute to the JAX pass"
)
@pytest.mark.parametrize("name", sorted(TABLEAUX))
def test_convergence_order_through_keras(float64, name):
    """Global error at t = 1 against h has log-log slope = the method's order (within 0.15)."""
    tableau = TABLEAUX[name]
    matrix = np.array([[1.0, 0.3], [0.3, 2.0]])
    exact = scipy.linalg.expm(-matrix) @ P0
    model = quadratic_model(RUNGE_KUTTA, "clean", tableau=name, loss=quadratic_loss_for(matrix))
    # Far enough into the asymptotic regime that the slope is within 0.1 of the order
    # (checked against the stability polynomial), far from round-off (errors > 1e-12).
    step_counts = (16, 32) if tableau.order < 5 else (32, 64)
    errors = []
    for steps in step_counts:
        model.get_layer("p").kernel.assign(P0[None, :])
        model.optimizer.learning_rate.assign(1.0 / steps)
        fit_steps(model, steps, shuffle=False)
        errors.append(np.abs(p_of(model) - exact).max())
    slope = np.log(errors[0] / errors[1]) / np.log(step_counts[1] / step_counts[0])
    assert errors[1] > 5e-12, "error at round-off level: the slope would mean nothing"
    assert slope == pytest.approx(tableau.order, abs=0.15), (errors, slope)


def stability_step(tableau: str, h: float, x: np.ndarray, y: np.ndarray) -> tuple:
    """R(−hH) on least squares: w − w* is multiplied by the stability polynomial of hH."""
    features = np.hstack([x, np.ones((len(x), 1))])
    hessian = 2 * features.T @ features / len(x)
    optimum = np.linalg.lstsq(features, y[:, 0], rcond=None)[0]
    values, vectors = np.linalg.eigh(hessian)
    return vectors @ np.diag(stability_function(tableau, -h * values)) @ vectors.T, optimum


@pytest.mark.parametrize("tableau", sorted(TABLEAUX))
def test_every_tableau_multiplies_by_its_stability_polynomial(float64, tableau):
    x, y = least_squares_data()
    h = 0.3
    inputs = keras.Input((3,))
    dense = keras.layers.Dense(1, name="dense")
    model = RungeKuttaModel(inputs=inputs, outputs=dense(inputs), tableau=tableau)
    model.compile(optimizer=keras.optimizers.SGD(h), loss="mse")
    start = np.concatenate([dense.kernel.numpy().ravel(), dense.bias.numpy()])
    model.fit(x, y, batch_size=len(x), epochs=2, shuffle=False, verbose=0)
    matrix, optimum = stability_step(tableau, h, x, y)
    expected = optimum + matrix @ matrix @ (start - optimum)
    got = np.concatenate([dense.kernel.numpy().ravel(), dense.bias.numpy()])
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-13)


# ---------------------------------------------------------------------------------------------
# 2. On real mini-batches, and the one-stage tableau
# ---------------------------------------------------------------------------------------------


def numpy_runge_kutta_epoch(params, x, y, batch, tableau, h):
    """The reference: the RK step of mean squared error, each batch for every stage."""
    tableau = get_tableau(tableau)
    for start in range(0, len(x), batch):
        xb, yb = x[start : start + batch], y[start : start + batch]
        slopes = []
        for i in range(tableau.stages):
            point = params - h * sum(tableau.a[i][j] * slopes[j] for j in range(i))
            slopes.append(least_squares_gradient(point, xb, yb))
        params = params - h * sum(bi * g for bi, g in zip(tableau.b, slopes, strict=True))
    return params


def test_every_stage_uses_the_same_mini_batch(float64):
    before, after = least_squares_epoch(RUNGE_KUTTA, "clean", 0.05, tableau="rk4")
    x, y = least_squares_data()
    expected = numpy_runge_kutta_epoch(before, x, y, 4, "rk4", 0.05)
    np.testing.assert_allclose(after, expected, rtol=0, atol=1e-12)


def test_euler_tableau_equals_keras_standard_step():
    """One stage, b = (1): the Runge–Kutta step must be Keras's own, bit for bit (momentum too)."""
    assert_equals_kerass_own_step(RUNGE_KUTTA, tableau="euler")


@pytest.mark.parametrize(("tableau", "route"), [("heun", "clean"), ("rk4", "intrusive")])
def test_mixed_precision_equals_float32(tableau, route):
    """Under mixed_float16 every stage's gradient is unscaled: the float32 run, within float16."""
    assert_mixed_precision_equals_full_precision(RUNGE_KUTTA, route, tableau=tableau)


# ---------------------------------------------------------------------------------------------
# 3. The settings: saved with the model, clear errors
# ---------------------------------------------------------------------------------------------


def _load(path):
    return keras.saving.load_model(path, custom_objects={"quadratic_loss": quadratic_loss_for(A)})


@pytest.mark.parametrize(
    "tableau",
    [
        "rk4",
        ButcherTableau(
            name="two_thirds",
            c=(0.0, 2 / 3),
            a=((0.0, 0.0), (2 / 3, 0.0)),
            b=(0.25, 0.75),
            order=2,
        ),
    ],
    ids=["named", "custom"],
)
def test_save_and_load_keeps_the_tableau(tmp_path, tableau):
    model = quadratic_model(RUNGE_KUTTA, "sequential", tableau=tableau)
    model.save(tmp_path / "model.keras")
    assert _load(tmp_path / "model.keras").runge_kutta_tableau == get_tableau(tableau)


@pytest.mark.parametrize("learning_rate", [0.0, -0.1])
def test_non_positive_step_size_is_rejected(learning_rate):
    inputs = keras.Input((1,))
    model = RungeKuttaModel(inputs=inputs, outputs=keras.layers.Dense(2)(inputs))
    model.compile(optimizer=keras.optimizers.SGD(learning_rate), loss="mse")
    with pytest.raises(ValueError, match="step size h and must be a finite number > 0"):
        model.fit(np.ones((2, 1)), np.zeros((2, 2)), verbose=0)
    standard = keras.Model(inputs, keras.layers.Dense(2)(inputs))
    standard.compile(optimizer=keras.optimizers.SGD(learning_rate), loss="mse")
    with pytest.raises(ValueError, match="learning rate is"):
        inject_runge_kutta(standard)


def test_step_size_set_to_zero_after_compile_is_caught_at_fit():
    model = quadratic_model(RUNGE_KUTTA, "clean")
    model.optimizer.learning_rate.assign(0.0)
    with pytest.raises(ValueError, match="must be a finite number > 0"):
        fit_steps(model, 1)


def test_bad_tableaux_are_rejected():
    with pytest.raises(InvalidTableauError, match="not explicit"):
        ButcherTableau(name="implicit", c=(1.0,), a=((1.0,),), b=(1.0,), order=1)
    with pytest.raises(ValueError, match="Valid names"):
        quadratic_model(RUNGE_KUTTA, "clean", tableau="rk45")
    with pytest.raises(ValueError, match="embedded pair"):
        quadratic_model(RUNGE_KUTTA, "clean", tableau="heun", adaptive=True)
