"""The Runge–Kutta training step, clean and intrusive routes (course_lib.runge_kutta).

The reference for every numeric test is a closed form: on L(p) = ½ pᵀAp one Runge–Kutta step of
size h multiplies p by the stability polynomial R(−hA) (Heun: I − hA + (hA)²/2), and the exact
gradient flow is p(t) = exp(−tA)·p0. Plain least squares gives NumPy references on real batches.
"""

from __future__ import annotations

import course_lib
from course_lib.adaptive import AdaptiveStepSize, StepSizeError, StepSizeLog
from course_lib.runge_kutta import (
    RungeKuttaModel,
    RungeKuttaSequential,
    eject_runge_kutta,
    inject_runge_kutta,
    is_runge_kutta_injected,
)
from course_lib.tableaux import TABLEAUX, ButcherTableau, InvalidTableauError, get_tableau

from dataclasses import replace

import keras
import numpy as np
import pytest
import scipy.linalg

from quadratic_problem import P0, A, quadratic_loss_for

quadratic_loss = quadratic_loss_for(A)


def quadratic_model(
    route: str, tableau="heun", h: float = 0.1, jit: bool = False, loss=quadratic_loss, **kwargs
):
    """A model whose only weight is p (a bias-free Dense on an input of ones), compiled."""
    inputs = keras.Input((1,))
    layer = keras.layers.Dense(2, use_bias=False, kernel_initializer="zeros", name="p")
    outputs = layer(inputs)
    if route == "clean":
        model = RungeKuttaModel(inputs=inputs, outputs=outputs, tableau=tableau, **kwargs)
    elif route == "sequential":
        model = RungeKuttaSequential([inputs, layer], tableau=tableau, **kwargs)
    else:
        model = keras.Model(inputs, outputs)
    model.get_layer("p").kernel.assign(P0[None, :])
    model.compile(optimizer=keras.optimizers.SGD(h), loss=loss, jit_compile=jit)
    assert model.jit_compile == jit, "XLA silently off: use the xla_allowed fixture"
    if route == "intrusive":
        inject_runge_kutta(model, tableau, **kwargs)
    return model


def weights_of(model) -> np.ndarray:
    return model.get_layer("p").kernel.numpy()[0].astype(np.float64)


def fit_steps(model, steps: int, **kwargs):
    ones = np.ones((steps, 1))
    return model.fit(ones, np.zeros((steps, 2)), batch_size=1, epochs=1, verbose=0, **kwargs)


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
    model = quadratic_model(route, h=h, jit=jit)
    heun = np.eye(2) - h * A + (h * A) @ (h * A) / 2
    fit_steps(model, 1)
    np.testing.assert_allclose(weights_of(model), heun @ P0, rtol=0, atol=2e-6)
    fit_steps(model, 4)
    np.testing.assert_allclose(
        weights_of(model), np.linalg.matrix_power(heun, 5) @ P0, rtol=0, atol=4e-6
    )


@pytest.mark.parametrize("route", ["clean", "intrusive"])
@pytest.mark.parametrize("tableau", ["heun", "rk4", "dormand_prince"])
def test_closed_form_float64(float64, route, tableau):
    h = 0.1
    model = quadratic_model(route, tableau, h=h)
    assert model.get_layer("p").kernel.dtype == "float64"
    fit_steps(model, 3)
    expected = np.linalg.matrix_power(step_matrix(tableau, h), 3) @ P0
    np.testing.assert_allclose(weights_of(model), expected, rtol=0, atol=1e-13)


def test_heun_is_not_euler():
    """Guards the closed-form tests: one Euler step is measurably different at this h."""
    h = 0.1
    model = quadratic_model("clean", "euler", h=h)
    fit_steps(model, 1)
    np.testing.assert_allclose(weights_of(model), P0 - h * A @ P0, atol=2e-6)
    heun = (np.eye(2) - h * A + (h * A) @ (h * A) / 2) @ P0
    assert np.abs(weights_of(model) - heun).max() > 0.05


def test_learning_rate_schedule_gives_the_step_size(float64):
    schedule = keras.optimizers.schedules.ExponentialDecay(0.2, decay_steps=1, decay_rate=0.5)
    model = quadratic_model("clean")
    model.compile(optimizer=keras.optimizers.SGD(schedule), loss=quadratic_loss)
    fit_steps(model, 3)
    expected = P0
    for step in range(3):
        expected = step_matrix("heun", 0.2 * 0.5**step) @ expected
    # Keras computes ExponentialDecay in float32, hence the float32-level tolerance.
    np.testing.assert_allclose(weights_of(model), expected, rtol=0, atol=1e-6)
    constant = np.linalg.matrix_power(step_matrix("heun", 0.2), 3) @ P0
    assert np.abs(weights_of(model) - constant).max() > 0.1


@pytest.mark.parametrize("name", sorted(TABLEAUX))
def test_convergence_order_through_keras(float64, name):
    """Global error at t = 1 against h has log-log slope = the method's order (within 0.15)."""
    tableau = TABLEAUX[name]
    matrix = np.array([[1.0, 0.3], [0.3, 2.0]])
    exact = scipy.linalg.expm(-matrix) @ P0
    model = quadratic_model("clean", name, loss=quadratic_loss_for(matrix))
    # Far enough into the asymptotic regime that the slope is within 0.1 of the order
    # (checked against the stability polynomial), far from round-off (errors > 1e-12).
    step_counts = (16, 32) if tableau.order < 5 else (32, 64)
    errors = []
    for steps in step_counts:
        model.get_layer("p").kernel.assign(P0[None, :])
        model.optimizer.learning_rate.assign(1.0 / steps)
        fit_steps(model, steps, shuffle=False)
        errors.append(np.abs(weights_of(model) - exact).max())
    slope = np.log(errors[0] / errors[1]) / np.log(step_counts[1] / step_counts[0])
    assert errors[1] > 5e-12, "error at round-off level: the slope would mean nothing"
    assert slope == pytest.approx(tableau.order, abs=0.15), (errors, slope)


# ---------------------------------------------------------------------------------------------
# 2. Same mini-batch, start-point logs, snapshot by value
# ---------------------------------------------------------------------------------------------


def least_squares_data(n: int = 16):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 3))
    y = x @ np.array([[1.0], [-2.0], [0.5]]) + 0.3 + 0.1 * rng.normal(size=(n, 1))
    return x, y


def numpy_runge_kutta_epoch(w, b, x, y, batch, tableau, h):
    """The reference: the RK step of mean squared error, each batch for every stage."""
    tableau = get_tableau(tableau)

    def gradient(params, xb, yb):
        w_, b_ = params[:3, None], params[3]
        residual = xb @ w_ + b_ - yb
        return np.concatenate([(2 * xb.T @ residual / len(xb)).ravel(), [2 * residual.mean()]])

    params = np.concatenate([w.ravel(), b.ravel()])
    for start in range(0, len(x), batch):
        xb, yb = x[start : start + batch], y[start : start + batch]
        slopes = []
        for i in range(tableau.stages):
            point = params - h * sum(tableau.a[i][j] * slopes[j] for j in range(i))
            slopes.append(gradient(point, xb, yb))
        params = params - h * sum(bi * g for bi, g in zip(tableau.b, slopes, strict=True))
    return params


@pytest.mark.parametrize("route", ["clean", "intrusive"])
def test_every_stage_uses_the_same_mini_batch(float64, route):
    x, y = least_squares_data()
    inputs = keras.Input((3,))
    outputs = keras.layers.Dense(1, name="dense")(inputs)
    if route == "clean":
        model = RungeKuttaModel(inputs=inputs, outputs=outputs, tableau="rk4")
    else:
        model = keras.Model(inputs, outputs)
    w0, b0 = (v.numpy().copy() for v in model.get_layer("dense").weights)
    model.compile(optimizer=keras.optimizers.SGD(0.05), loss="mse")
    if route == "intrusive":
        inject_runge_kutta(model, "rk4")
    model.fit(x, y, batch_size=4, epochs=1, shuffle=False, verbose=0)
    expected = numpy_runge_kutta_epoch(w0, b0, x, y, 4, "rk4", 0.05)
    got = np.concatenate([v.numpy().ravel() for v in model.get_layer("dense").weights])
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("route", ["clean", "intrusive"])
def test_logs_loss_and_metrics_at_the_start_point(route):
    model = quadratic_model(route)
    model.compile(
        optimizer=keras.optimizers.SGD(0.1), loss=quadratic_loss, metrics=["mean_absolute_error"]
    )
    if route == "intrusive":
        inject_runge_kutta(model)
    ones, zeros = np.ones((1, 1)), np.zeros((1, 2))
    before = model.evaluate(ones, zeros, verbose=0, return_dict=True)
    history = model.fit(ones, zeros, epochs=1, verbose=0)
    assert before["loss"] == pytest.approx(0.5 * P0 @ A @ P0, rel=1e-6)
    assert history.history["loss"][0] == pytest.approx(before["loss"], rel=1e-6)
    assert history.history["mean_absolute_error"][0] == pytest.approx(
        before["mean_absolute_error"], rel=1e-6
    )
    after = model.evaluate(ones, zeros, verbose=0, return_dict=True)
    assert after["loss"] < before["loss"] - 10


def test_euler_tableau_equals_keras_standard_step():
    """One stage, b = (1): the Runge–Kutta step must be Keras's own, bit for bit (momentum too)."""
    x, y = least_squares_data()

    def train(runge_kutta: bool):
        course_lib.set_seed(7)
        inputs = keras.Input((3,))
        hidden = keras.layers.Dense(8, activation="tanh")(inputs)
        outputs = keras.layers.Dense(1)(hidden)
        cls = RungeKuttaModel if runge_kutta else keras.Model
        kwargs = {"tableau": "euler"} if runge_kutta else {}
        model = cls(inputs=inputs, outputs=outputs, **kwargs)
        model.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9), loss="mse")
        history = model.fit(x, y, batch_size=4, epochs=2, shuffle=False, verbose=0)
        return [v.numpy() for v in model.weights], history.history["loss"]

    (weights_rk, loss_rk), (weights_keras, loss_keras) = train(True), train(False)
    for got, want in zip(weights_rk, weights_keras, strict=True):
        np.testing.assert_array_equal(got, want)
    assert loss_rk == loss_keras


def bn_model(cls, **kwargs):
    course_lib.set_seed(3)
    inputs = keras.Input((3,))
    hidden = keras.layers.Dense(4, name="features")(inputs)
    normalized = keras.layers.BatchNormalization(momentum=0.5, name="bn")(hidden)
    outputs = keras.layers.Dense(1)(normalized)
    model = cls(inputs=inputs, outputs=outputs, **kwargs)
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    return model


@pytest.mark.parametrize("tableau", ["heun", "rk4"])
def test_batchnorm_statistics_move_once_per_step_from_the_start_point(tableau):
    x, y = least_squares_data(8)
    model = bn_model(RungeKuttaModel, tableau=tableau)
    features = keras.Model(model.inputs[0], model.get_layer("features").output)(x).numpy()
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    bn = model.get_layer("bn")
    # One update with momentum 0.5 from (0, 1), using the batch statistics at the start point.
    np.testing.assert_allclose(bn.moving_mean.numpy(), 0.5 * features.mean(axis=0), atol=1e-6)
    np.testing.assert_allclose(
        bn.moving_variance.numpy(), 0.5 + 0.5 * features.var(axis=0), rtol=1e-5
    )


# ---------------------------------------------------------------------------------------------
# 3. evaluate / predict / callbacks / save and load / the intrusive route's life cycle
# ---------------------------------------------------------------------------------------------


def test_evaluate_predict_and_callbacks_work():
    model = quadratic_model("clean")
    seen = []
    callback = keras.callbacks.LambdaCallback(
        on_train_batch_end=lambda batch, logs: seen.append(float(logs["loss"]))
    )
    fit_steps(model, 3, callbacks=[callback], shuffle=False)
    assert len(seen) == 3 and seen[0] == pytest.approx(0.5 * P0 @ A @ P0, rel=1e-6)
    prediction = model.predict(np.ones((2, 1)), verbose=0)
    np.testing.assert_allclose(prediction, np.tile(weights_of(model), (2, 1)), rtol=1e-6)
    loss = model.evaluate(np.ones((1, 1)), np.zeros((1, 2)), verbose=0)
    p = weights_of(model)
    assert loss == pytest.approx(0.5 * p @ A @ p, rel=1e-5)


@pytest.mark.parametrize("route", ["clean", "sequential"])
def test_save_and_load_keeps_the_method(tmp_path, route):
    model = quadratic_model(route, "rk4")
    fit_steps(model, 1)
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, custom_objects={"quadratic_loss": quadratic_loss})
    assert type(loaded) is type(model)
    assert loaded.runge_kutta_tableau == TABLEAUX["rk4"]
    np.testing.assert_array_equal(weights_of(loaded), weights_of(model))
    fit_steps(model, 2)
    fit_steps(loaded, 2)
    np.testing.assert_allclose(weights_of(loaded), weights_of(model), rtol=0, atol=1e-7)


def test_save_and_load_a_custom_tableau(tmp_path):
    custom = ButcherTableau(
        name="two_thirds", c=(0.0, 2 / 3), a=((0.0, 0.0), (2 / 3, 0.0)), b=(0.25, 0.75), order=2
    )
    model = quadratic_model("clean", custom)
    path = tmp_path / "custom.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, custom_objects={"quadratic_loss": quadratic_loss})
    assert loaded.runge_kutta_tableau == custom


def test_recompiling_or_ejecting_undoes_the_injection():
    h = 0.1
    model = quadratic_model("intrusive", h=h)
    assert is_runge_kutta_injected(model)
    fit_steps(model, 1)
    heun = (np.eye(2) - h * A + (h * A) @ (h * A) / 2) @ P0
    np.testing.assert_allclose(weights_of(model), heun, atol=2e-6)
    model.compile(optimizer=keras.optimizers.SGD(h), loss=quadratic_loss)
    assert not is_runge_kutta_injected(model)
    fit_steps(model, 1)
    np.testing.assert_allclose(weights_of(model), heun - h * A @ heun, atol=2e-6)  # Euler
    inject_runge_kutta(model, "rk4")
    eject_runge_kutta(model)
    assert not is_runge_kutta_injected(model)
    with pytest.raises(ValueError, match="no injected Runge–Kutta step"):
        eject_runge_kutta(model)


# ---------------------------------------------------------------------------------------------
# 4. Clear errors
# ---------------------------------------------------------------------------------------------


def test_inject_needs_a_compiled_model():
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(2)])
    with pytest.raises(ValueError, match="has no optimizer.*compile"):
        inject_runge_kutta(model)
    with pytest.raises(TypeError, match="must be a keras.Model"):
        inject_runge_kutta("not a model")


def test_clean_model_without_compile_says_so():
    inputs = keras.Input((1,))
    model = RungeKuttaModel(inputs=inputs, outputs=keras.layers.Dense(2)(inputs))
    with pytest.raises((ValueError, RuntimeError), match="compile"):
        model.fit(np.ones((2, 1)), np.zeros((2, 2)), verbose=0)


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
    model = quadratic_model("clean")
    model.optimizer.learning_rate.assign(0.0)
    with pytest.raises(ValueError, match="must be a finite number > 0"):
        fit_steps(model, 1)


def test_bad_tableaux_are_rejected():
    with pytest.raises(InvalidTableauError, match="not explicit"):
        ButcherTableau(name="implicit", c=(1.0,), a=((1.0,),), b=(1.0,), order=1)
    with pytest.raises(ValueError, match="Valid names"):
        quadratic_model("clean", "rk45")
    with pytest.raises(ValueError, match="embedded pair"):
        quadratic_model("clean", "heun", adaptive=True)


# ---------------------------------------------------------------------------------------------
# 5. MirroredStrategy: equal to one device
# ---------------------------------------------------------------------------------------------


def mlp_run(route: str, tableau: str, strategy=None, adaptive=None, callbacks=(), batch_norm=False):
    """Train a small MLP for 2 epochs of 4 batches; return weights and logged losses.

    The weights are the model's own (layers and BatchNorm statistics), without the adaptive
    step scale: tests compare that through the logged step sizes.
    """
    rng = np.random.default_rng(1)
    x = rng.normal(size=(32, 5)).astype("float32")
    y = (x[:, :1] * 2 - x[:, 1:2]).astype("float32")
    course_lib.set_seed(11)
    scope = strategy.scope() if strategy is not None else _nullcontext()
    with scope:
        inputs = keras.Input((5,))
        if batch_norm:
            # Synchronized: plain BatchNormalization normalises each replica's half-batch on its
            # own under a strategy, a different model from one device (Keras's own step too).
            hidden = keras.layers.Dense(8)(inputs)
            hidden = keras.layers.BatchNormalization(synchronized=True)(hidden)
            hidden = keras.layers.Activation("tanh")(hidden)
        else:
            hidden = keras.layers.Dense(8, activation="tanh")(inputs)
        outputs = keras.layers.Dense(1)(hidden)
        if route == "clean":
            model = RungeKuttaModel(
                inputs=inputs, outputs=outputs, tableau=tableau, adaptive=adaptive
            )
        else:
            model = keras.Model(inputs, outputs)
        model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse", metrics=["mae"])
        if route == "intrusive":
            inject_runge_kutta(model, tableau, adaptive)
    history = model.fit(
        x, y, batch_size=8, epochs=2, shuffle=False, verbose=0, callbacks=list(callbacks)
    )
    scale = getattr(model, "runge_kutta_step_scale", None)
    return [v.numpy() for v in model.weights if v is not scale], history.history


class _nullcontext:
    def __enter__(self):
        return self

    def __exit__(self, *args):
        return False


# Every tableau through the clean route, and the intrusive route once: the all-reduce of each
# stage's gradient is the same code for every tableau, but the number of stages is not.
_STRATEGY_CASES = [("clean", name) for name in sorted(TABLEAUX)] + [("intrusive", "rk4")]


@pytest.mark.parametrize(("route", "tableau"), _STRATEGY_CASES)
def test_mirrored_strategy_equals_one_device(two_cpu_strategy, route, tableau):
    single_weights, single_logs = mlp_run(route, tableau)
    keras.backend.clear_session()
    mirrored_weights, mirrored_logs = mlp_run(route, tableau, two_cpu_strategy)
    for got, want in zip(mirrored_weights, single_weights, strict=True):
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)
    for key in ("loss", "mae"):
        np.testing.assert_allclose(mirrored_logs[key], single_logs[key], rtol=0, atol=1e-6)


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
    warns = pytest.warns(UserWarning, match="applied the last try")
    with warns if adaptive.on_failure == "accept" else _nullcontext():
        single_weights, single_logs = mlp_run(
            route, tableau, adaptive=adaptive, callbacks=[single_log]
        )
    keras.backend.clear_session()
    with warns if adaptive.on_failure == "accept" else _nullcontext():
        mirrored_weights, mirrored_logs = mlp_run(
            route, tableau, two_cpu_strategy, adaptive=adaptive, callbacks=[mirrored_log]
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
    logs = [] if adaptive is None else [single_log]
    single_weights, _ = mlp_run("clean", "dormand_prince", None, adaptive, logs, batch_norm=True)
    keras.backend.clear_session()
    logs = [] if adaptive is None else [mirrored_log]
    mirrored_weights, _ = mlp_run(
        "clean", "dormand_prince", two_cpu_strategy, adaptive, logs, batch_norm=True
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
