"""The Runge–Kutta training step, clean and intrusive routes (course_lib.runge_kutta).

The reference for every numeric test is a closed form: on L(p) = ½ pᵀAp one Runge–Kutta step of
size h multiplies p by the stability polynomial R(−hA) (Heun: I − hA + (hA)²/2), and the exact
gradient flow is p(t) = exp(−tA)·p0. Plain least squares gives NumPy references on real batches.
"""

from __future__ import annotations

from course_lib.adaptive import AdaptiveStepSize, StepSizeError, StepSizeLog
from course_lib.runge_kutta import (
    RungeKuttaModel,
    RungeKuttaSequential,
    eject_runge_kutta,
    inject_runge_kutta,
    is_runge_kutta_injected,
)
from course_lib.tableaux import TABLEAUX, ButcherTableau, InvalidTableauError, get_tableau

import contextlib
from dataclasses import replace

import keras
import numpy as np
import pytest
import scipy.linalg

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
    mlp_run,
    p_of,
    quadratic_model,
)
from quadratic_problem import P0, A, quadratic_loss_for

RUNGE_KUTTA = Method(RungeKuttaModel, RungeKuttaSequential, inject_runge_kutta)


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


@pytest.mark.parametrize("route", ["clean", "sequential", "intrusive"])
@pytest.mark.parametrize("jit", [False, True])
def test_heun_matches_closed_form_float32(xla_allowed, route, jit):
    h = 0.1
    model = quadratic_model(RUNGE_KUTTA, route, h=h, jit=jit)
    heun = np.eye(2) - h * A + (h * A) @ (h * A) / 2
    fit_steps(model, 1)
    np.testing.assert_allclose(p_of(model), heun @ P0, rtol=0, atol=2e-6)
    fit_steps(model, 4)
    np.testing.assert_allclose(p_of(model), np.linalg.matrix_power(heun, 5) @ P0, rtol=0, atol=4e-6)


@pytest.mark.parametrize("route", ["clean", "intrusive"])
@pytest.mark.parametrize("tableau", ["heun", "rk4", "dormand_prince"])
def test_closed_form_float64(float64, route, tableau):
    h = 0.1
    model = quadratic_model(RUNGE_KUTTA, route, h=h, tableau=tableau)
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


# ---------------------------------------------------------------------------------------------
# 2. Same mini-batch, start-point logs, snapshot by value
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


@pytest.mark.parametrize("route", ["clean", "intrusive"])
def test_every_stage_uses_the_same_mini_batch(float64, route):
    before, after = least_squares_epoch(RUNGE_KUTTA, route, 0.05, tableau="rk4")
    x, y = least_squares_data()
    expected = numpy_runge_kutta_epoch(before, x, y, 4, "rk4", 0.05)
    np.testing.assert_allclose(after, expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("route", ["clean", "intrusive"])
def test_logs_loss_and_metrics_at_the_start_point(route):
    assert_logs_describe_the_start_point(RUNGE_KUTTA, route)


def test_euler_tableau_equals_keras_standard_step():
    """One stage, b = (1): the Runge–Kutta step must be Keras's own, bit for bit (momentum too)."""
    assert_equals_keras_own_step(RUNGE_KUTTA, tableau="euler")


@pytest.mark.parametrize("tableau", ["heun", "rk4"])
def test_batchnorm_statistics_move_once_per_step_from_the_start_point(tableau):
    assert_batchnorm_moves_once_from_the_start(RUNGE_KUTTA, tableau=tableau)


# ---------------------------------------------------------------------------------------------
# 3. evaluate / predict / callbacks / save and load / the intrusive route's life cycle
# ---------------------------------------------------------------------------------------------


def test_evaluate_predict_and_callbacks_work():
    model = quadratic_model(RUNGE_KUTTA, "clean")
    seen = []
    callback = keras.callbacks.LambdaCallback(
        on_train_batch_end=lambda batch, logs: seen.append(float(logs["loss"]))
    )
    fit_steps(model, 3, callbacks=[callback], shuffle=False)
    assert len(seen) == 3 and seen[0] == pytest.approx(0.5 * P0 @ A @ P0, rel=1e-6)
    prediction = model.predict(np.ones((2, 1)), verbose=0)
    np.testing.assert_allclose(prediction, np.tile(p_of(model), (2, 1)), rtol=1e-6)
    loss = model.evaluate(np.ones((1, 1)), np.zeros((1, 2)), verbose=0)
    p = p_of(model)
    assert loss == pytest.approx(0.5 * p @ A @ p, rel=1e-5)


def _load(path):
    return keras.saving.load_model(path, custom_objects={"quadratic_loss": quadratic_loss_for(A)})


@pytest.mark.parametrize("route", ["clean", "sequential"])
def test_save_and_load_keeps_the_method(tmp_path, route):
    model = quadratic_model(RUNGE_KUTTA, route, tableau="rk4")
    fit_steps(model, 1)
    model.save(tmp_path / "model.keras")
    loaded = _load(tmp_path / "model.keras")
    assert type(loaded) is type(model)
    assert loaded.runge_kutta_tableau == TABLEAUX["rk4"]
    np.testing.assert_array_equal(p_of(loaded), p_of(model))
    fit_steps(model, 2)
    fit_steps(loaded, 2)
    np.testing.assert_allclose(p_of(loaded), p_of(model), rtol=0, atol=1e-7)


def test_save_and_load_a_custom_tableau(tmp_path):
    custom = ButcherTableau(
        name="two_thirds", c=(0.0, 2 / 3), a=((0.0, 0.0), (2 / 3, 0.0)), b=(0.25, 0.75), order=2
    )
    model = quadratic_model(RUNGE_KUTTA, "clean", tableau=custom)
    model.save(tmp_path / "custom.keras")
    assert _load(tmp_path / "custom.keras").runge_kutta_tableau == custom


def test_recompiling_or_ejecting_undoes_the_injection():
    h = 0.1
    model = quadratic_model(RUNGE_KUTTA, "intrusive", h=h)
    assert is_runge_kutta_injected(model)
    fit_steps(model, 1)
    heun = (np.eye(2) - h * A + (h * A) @ (h * A) / 2) @ P0
    np.testing.assert_allclose(p_of(model), heun, atol=2e-6)
    model.compile(optimizer=keras.optimizers.SGD(h), loss=quadratic_loss_for(A))
    assert not is_runge_kutta_injected(model)
    fit_steps(model, 1)
    np.testing.assert_allclose(p_of(model), heun - h * A @ heun, atol=2e-6)  # Euler
    inject_runge_kutta(model, "rk4")
    eject_runge_kutta(model)
    assert not is_runge_kutta_injected(model)
    with pytest.raises(ValueError, match="no injected Runge–Kutta step"):
        eject_runge_kutta(model)


# ---------------------------------------------------------------------------------------------
# 4. Clear errors
# ---------------------------------------------------------------------------------------------


def test_models_without_an_optimizer_are_refused():
    assert_refuses_models_without_an_optimizer(RUNGE_KUTTA)


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


# ---------------------------------------------------------------------------------------------
# 5. MirroredStrategy: equal to one device
# ---------------------------------------------------------------------------------------------


def _one_tableau_per_stage_count() -> list[str]:
    """The first tableau (by name) for each number of stages a fixed step evaluates."""
    chosen: dict[int, str] = {}
    for name in sorted(TABLEAUX):
        chosen.setdefault(TABLEAUX[name].stages_needed(), name)
    return [chosen[stages] for stages in sorted(chosen)]


# The all-reduce of a stage's gradient is the same code for every tableau; what differs is how
# many stages run and which of them a later trial point needs. The intrusive route once.
_STRATEGY_CASES = [("clean", name) for name in _one_tableau_per_stage_count()]
_STRATEGY_CASES.append(("intrusive", "rk4"))


@pytest.mark.parametrize(("route", "tableau"), _STRATEGY_CASES)
def test_mirrored_strategy_equals_one_device(two_cpu_strategy, route, tableau):
    assert_mirrored_equals_one_device(two_cpu_strategy, RUNGE_KUTTA, route, tableau=tableau)


# The adaptive step's accept/reject loop runs in cross-replica context. With these tolerances
# several steps are rejected once and then accepted, so the retry path runs under the strategy.
_ADAPTIVE = AdaptiveStepSize(rtol=1e-3, atol=1e-5)


@pytest.mark.parametrize(
    ("route", "tableau", "adaptive"),
    [
        ("clean", "dormand_prince", _ADAPTIVE),
        ("intrusive", "bogacki_shampine", _ADAPTIVE),
        ("clean", "dormand_prince", replace(_ADAPTIVE, max_rejections=0, on_failure="accept")),
    ],
    ids=["clean-dormand_prince", "intrusive-bogacki_shampine", "accept-policy"],
)
def test_adaptive_mirrored_strategy_equals_one_device(two_cpu_strategy, route, tableau, adaptive):
    """Same rejections, step sizes and weights as on one device.

    Tolerances: the error estimate Σ e_i·g_i cancels almost exactly, so the float32 rounding of
    a gradient summed in another order (two half-batches) moves the chosen step size at the
    1e-5 level, the weights by about that times the step, and the logged loss (about 3) by a
    few float32 units in the last place.
    """
    single_log, mirrored_log = StepSizeLog(), StepSizeLog()
    settings = {"tableau": tableau, "adaptive": adaptive}

    def warns():
        if adaptive.on_failure == "accept":
            return pytest.warns(UserWarning, match="applied the last try")
        return contextlib.nullcontext()

    with warns():
        single_weights, single_logs = mlp_run(
            RUNGE_KUTTA, route, callbacks=[single_log], **settings
        )
    keras.backend.clear_session()
    with warns():
        mirrored_weights, mirrored_logs = mlp_run(
            RUNGE_KUTTA, route, two_cpu_strategy, callbacks=[mirrored_log], **settings
        )
    assert mirrored_log.rejections == single_log.rejections
    if adaptive.max_rejections > 0:
        assert 0 < sum(single_log.rejections) < len(single_log.rejections)
    np.testing.assert_allclose(mirrored_log.step_sizes, single_log.step_sizes, rtol=1e-4)
    for got, want in zip(mirrored_weights, single_weights, strict=True):
        np.testing.assert_allclose(got, want, rtol=0, atol=2e-6)
    for key in ("loss", "mae"):
        np.testing.assert_allclose(mirrored_logs[key], single_logs[key], rtol=1e-5)


@pytest.mark.parametrize("adaptive", [None, _ADAPTIVE], ids=["fixed-step", "adaptive"])
def test_synchronized_batchnorm_under_mirrored_strategy_equals_one_device(
    two_cpu_strategy, adaptive
):
    """BatchNorm's all-reduce runs inside every stage (and inside the adaptive retry loop)."""
    single_log, mirrored_log = StepSizeLog(), StepSizeLog()
    settings = {"tableau": "dormand_prince", "adaptive": adaptive, "batch_norm": True}
    logs = [] if adaptive is None else [single_log]
    single_weights, _ = mlp_run(RUNGE_KUTTA, "clean", callbacks=logs, **settings)
    keras.backend.clear_session()
    logs = [] if adaptive is None else [mirrored_log]
    mirrored_weights, _ = mlp_run(
        RUNGE_KUTTA, "clean", two_cpu_strategy, callbacks=logs, **settings
    )
    assert mirrored_log.rejections == single_log.rejections
    if adaptive is not None:
        assert sum(single_log.rejections) > 0
    for got, want in zip(mirrored_weights, single_weights, strict=True):
        np.testing.assert_allclose(got, want, rtol=0, atol=2e-6)


def test_adaptive_raise_policy_under_mirrored_strategy_keeps_the_weights(two_cpu_strategy):
    strict = AdaptiveStepSize(rtol=1e-9, atol=1e-12, max_rejections=1)
    with two_cpu_strategy.scope():
        inputs = keras.Input((5,))
        model = RungeKuttaModel(
            inputs=inputs,
            outputs=keras.layers.Dense(1)(inputs),
            tableau="dormand_prince",
            adaptive=strict,
        )
        model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    before = [v.numpy() for v in model.weights]
    x = np.random.default_rng(0).normal(size=(8, 5)).astype("float32")
    with pytest.raises(StepSizeError, match="rejected 2 times"):
        model.fit(x, x[:, :1], batch_size=8, epochs=1, verbose=0)
    for got, want in zip(model.weights, before, strict=True):
        np.testing.assert_array_equal(got.numpy(), want)
