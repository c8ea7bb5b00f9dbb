"""Adaptive step size for embedded pairs (course_lib.adaptive, course_lib.adaptive_step).

The reference is SciPy itself: on a linear gradient flow, ``RK45`` / ``RK23`` with the same first
step and tolerances must choose the same step sizes, reject the same tries and land on the same
point as the controller's functions in a NumPy loop, and as the Keras training step. A NumPy
re-implementation covers changing mini-batches. Under mixed precision the controller's run
equals the float64 one within float16's round-off, and a step whose gradient overflows is
skipped as a whole, without a StepSizeError, while a loss that is never finite at the trial
points still raises as in float32. Runs on TensorFlow and on JAX (in JAX's x64 mode,
which the controller needs); under MirroredStrategy the controller's decisions run in
cross-replica context (DataParallel on JAX: tests/test_scale_out_jax.py).
"""

from __future__ import annotations

from course_lib.adaptive import (
    AdaptiveStepSize,
    StepSizeError,
    StepSizeLog,
    error_norm,
    growth_factor,
    retry_until_accepted,
    shrink_factor,
)
from course_lib.runge_kutta import ROUTES as RUNGE_KUTTA
from course_lib.runge_kutta import RungeKuttaModel, inject_runge_kutta
from course_lib.tableaux import get_tableau

import contextlib
from dataclasses import replace

import keras
import numpy as np
import pytest
from scipy.integrate import RK23, RK45

from multi_gradient_routes import (
    assert_an_overflow_skips_the_whole_step,
    dtype_policy,
    fit_steps,
    mlp_run,
    p_of,
    quadratic_model,
)
from quadratic_problem import P0, quadratic_loss_for
from quadratic_problem import A as MILD

# A stiff-ish quadratic: the first step (0.2) is far too large, so the controller must reject.
A = np.array([[2.0, 0.5], [0.5, 40.0]])
SETTINGS = AdaptiveStepSize(rtol=1e-4, atol=1e-6)
#: The controller's functions and the float64 models: float64 on both backends (x64 on JAX).
float64 = pytest.mark.usefixtures("float64")
INTRUSIVE_ON_TENSORFLOW = pytest.mark.tensorflow_only(
    "an injected adaptive step is refused on JAX (test_adaptive_step_cannot_be_injected_on_jax)"
)


quadratic_loss = quadratic_loss_for(A)


def adaptive_model(route="clean", tableau="dormand_prince", adaptive=SETTINGS, h=0.2, loss=None):
    loss = quadratic_loss if loss is None else loss
    return quadratic_model(RUNGE_KUTTA, route, h=h, loss=loss, tableau=tableau, adaptive=adaptive)


def scipy_steps(solver, steps, h0, settings, flow=lambda t, y: -A @ y):
    ode = solver(flow, 0.0, P0, 1e9, first_step=h0, rtol=settings.rtol, atol=settings.atol)
    sizes = []
    for _ in range(steps):
        before = ode.t
        ode.step()
        sizes.append(ode.t - before)
    return np.array(sizes), ode.y


# ---------------------------------------------------------------------------------------------
# 1. The controller's functions, in NumPy, against SciPy
# ---------------------------------------------------------------------------------------------


def numpy_controller_steps(tableau, steps, h, settings, flow=lambda y: -A @ y):
    """An adaptive solver built from course_lib's controller functions and NumPy stages."""
    tableau = get_tableau(tableau)
    exponent = settings.exponent(tableau.order, tableau.embedded_order)
    y, sizes = P0.copy(), []
    for _ in range(steps):
        rejected = False
        while True:
            slopes = []
            for i in range(tableau.stages):
                slopes.append(flow(y + h * sum(tableau.a[i][j] * slopes[j] for j in range(i))))
            new = y + h * sum(b * k for b, k in zip(tableau.b, slopes, strict=True))
            error = h * sum(e * k for e, k in zip(tableau.error_weights, slopes, strict=True))
            norm = float(error_norm([y], [new], [error], settings))
            if norm < 1:
                sizes.append(h)
                h *= float(growth_factor(norm, rejected, settings, exponent))
                y = new
                break
            h *= float(shrink_factor(norm, settings, exponent))
            rejected = True
    return np.array(sizes), y


@float64
@pytest.mark.parametrize(
    ("tableau", "solver"), [("dormand_prince", RK45), ("bogacki_shampine", RK23)]
)
def test_controller_functions_choose_scipys_step_sizes(tableau, solver):
    sizes, point = numpy_controller_steps(tableau, 12, 0.2, SETTINGS)
    scipy_sizes, scipy_point = scipy_steps(solver, 12, 0.2, SETTINGS)
    # SciPy rounds each h through t + h - t, hence not 1e-15.
    np.testing.assert_allclose(sizes, scipy_sizes, rtol=1e-9)
    np.testing.assert_allclose(point, scipy_point, rtol=0, atol=1e-12)
    assert sizes[0] < 0.2, "the first try must be rejected, or shrink_factor is not tested"
    assert np.ptp(sizes[1:]) > 0, "accepted steps must change h, or growth_factor is not tested"


@float64
def test_error_norm_is_the_rms_over_all_parameters():
    rng = np.random.default_rng(0)
    start = [rng.normal(size=(3, 2)), rng.normal(size=4), rng.normal(size=2)]
    new = [p + 0.1 * rng.normal(size=p.shape) for p in start]
    error = [1e-3 * rng.normal(size=p.shape) for p in start]
    error[2] = None  # a variable without a gradient is left out of the mean
    scaled = [
        e / (SETTINGS.atol + SETTINGS.rtol * np.maximum(np.abs(p), np.abs(q)))
        for p, q, e in zip(start[:2], new[:2], error[:2], strict=True)
    ]
    expected = np.sqrt(np.mean(np.concatenate([s.ravel() for s in scaled]) ** 2))
    assert float(error_norm(start, new, error, SETTINGS)) == pytest.approx(expected, rel=1e-14)
    assert float(error_norm(start[2:], new[2:], [None], SETTINGS)) == 0.0


@float64
def test_factors_at_the_edges():
    exponent = -0.2
    assert float(shrink_factor(np.nan, SETTINGS, exponent)) == SETTINGS.min_factor
    assert float(shrink_factor(np.inf, SETTINGS, exponent)) == SETTINGS.min_factor
    assert float(shrink_factor(1e12, SETTINGS, exponent)) == SETTINGS.min_factor
    assert float(growth_factor(0.0, False, SETTINGS, exponent)) == SETTINGS.max_factor
    assert float(growth_factor(1e-12, False, SETTINGS, exponent)) == SETTINGS.max_factor
    assert float(growth_factor(0.5, True, SETTINGS, exponent)) == 1.0
    grown = float(growth_factor(0.5, False, SETTINGS, exponent))
    assert grown == pytest.approx(SETTINGS.safety * 0.5**exponent, rel=1e-15) and grown > 1


@float64
def test_retry_loop_stops_at_the_first_accepted_try():
    """Error ∝ h⁵ (a 4th-order estimate): one rejection, then 0.9·h* (norm 0.9⁵) passes."""
    settings = AdaptiveStepSize(max_rejections=3)

    def attempt(scale):
        return (scale / 0.1) ** 5, [scale * 2.0]

    last = retry_until_accepted(attempt, np.float64(0.3), [np.float64(0.0)], settings, -0.2)
    assert int(last.tries) == 2 and bool(last.accepted)
    assert float(last.scale) == pytest.approx(0.09, rel=1e-12)
    assert float(last.norm) == pytest.approx(0.9**5, rel=1e-12)
    assert float(last.payload[0]) == pytest.approx(0.18, rel=1e-12)

    never = retry_until_accepted(
        lambda scale: (np.float64(np.nan) * scale, [scale]),
        np.float64(1.0),
        [np.float64(0.0)],
        settings,
        -0.2,
    )
    assert int(never.tries) == 4 and not bool(never.accepted)
    assert float(never.scale) == pytest.approx(0.2**3, rel=1e-12)  # min_factor per NaN try


# ---------------------------------------------------------------------------------------------
# 2. Through Keras: the training step equals SciPy
# ---------------------------------------------------------------------------------------------


@float64
@pytest.mark.parametrize(
    ("route", "tableau", "solver"),
    [
        ("clean", "dormand_prince", RK45),
        pytest.param("intrusive", "dormand_prince", RK45, marks=INTRUSIVE_ON_TENSORFLOW),
        ("sequential", "bogacki_shampine", RK23),
    ],
)
def test_controller_equals_scipy(route, tableau, solver):
    model = adaptive_model(route, tableau)
    log = StepSizeLog()
    history = fit_steps(model, 6, callbacks=[log], shuffle=False)
    sizes, point = scipy_steps(solver, 6, 0.2, SETTINGS)
    np.testing.assert_allclose(log.step_sizes, sizes, rtol=1e-9)
    np.testing.assert_allclose(p_of(model), point, rtol=0, atol=1e-12)
    assert log.rejections[0] >= 1, "the test needs a rejected first try"
    assert {"step_size", "rejections", "loss"} <= set(history.history)
    assert history.history["step_size"][-1] == pytest.approx(sizes[-1], rel=1e-9)


def numpy_adaptive_epoch(params, batches, tableau, settings, h):
    """Reference: adaptive RK on least squares, retrying each batch on that same batch."""
    tableau = get_tableau(tableau)
    exponent = settings.exponent(tableau.order, tableau.embedded_order)

    def gradient(p, xb, yb):
        residual = xb @ p[:3] + p[3] - yb
        return np.concatenate([2 * xb.T @ residual / len(xb), [2 * residual.mean()]])

    sizes = []
    for xb, yb in batches:
        rejected = False
        while True:
            slopes = []
            for i in range(tableau.stages):
                point = params - h * sum(tableau.a[i][j] * slopes[j] for j in range(i))
                slopes.append(gradient(point, xb, yb))
            new = params - h * sum(b * g for b, g in zip(tableau.b, slopes, strict=True))
            error = h * sum(e * g for e, g in zip(tableau.error_weights, slopes, strict=True))
            scale = settings.atol + settings.rtol * np.maximum(np.abs(params), np.abs(new))
            norm = np.sqrt(np.mean((error / scale) ** 2))
            if norm < 1:
                factor = min(settings.max_factor, settings.safety * norm**exponent)
                sizes.append(h)
                params, h = new, h * (min(1.0, factor) if rejected else factor)
                break
            h *= max(settings.min_factor, settings.safety * norm**exponent)
            rejected = True
    return params, sizes


@float64
def test_rejected_tries_restore_weights_and_reuse_the_same_batch():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(12, 3)) * np.array([1.0, 3.0, 0.3])
    y = x @ np.array([1.0, -2.0, 0.5]) + 0.3
    inputs = keras.Input((3,))
    dense = keras.layers.Dense(1, name="dense")
    model = RungeKuttaModel(
        inputs=inputs, outputs=dense(inputs), tableau="bogacki_shampine", adaptive=SETTINGS
    )
    start = np.concatenate([dense.kernel.numpy().ravel(), dense.bias.numpy()])
    model.compile(optimizer=keras.optimizers.SGD(0.5), loss="mse")
    log = StepSizeLog()
    model.fit(x, y[:, None], batch_size=4, shuffle=False, verbose=0, callbacks=[log])
    batches = [(x[i : i + 4], y[i : i + 4]) for i in range(0, 12, 4)]
    expected, sizes = numpy_adaptive_epoch(start, batches, "bogacki_shampine", SETTINGS, 0.5)
    got = np.concatenate([dense.kernel.numpy().ravel(), dense.bias.numpy()])
    assert sum(log.rejections) >= 1
    np.testing.assert_allclose(log.step_sizes, sizes, rtol=1e-9)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)


# Outside |p| < 20 the loss and its gradient are NaN, as after an overflow.
RADIUS = 20.0


def guarded_loss(y_true, y_pred):
    """½ pᵀAp, with p shifted by NaN outside the disc so that the gradient is NaN there too."""
    inside = keras.ops.sum(y_pred * y_pred, axis=-1, keepdims=True) < RADIUS**2
    shift = keras.ops.cast(keras.ops.where(inside, 0.0, np.nan), y_pred.dtype)
    return quadratic_loss(y_true, y_pred + shift)


def guarded_flow(t, y):
    return -A @ y if y @ y < RADIUS**2 else np.full_like(y, np.nan)


@float64
def test_a_non_finite_try_shrinks_the_step_by_min_factor_as_scipy_does():
    """A too-large first step (h = 2) puts trial points outside the disc: NaN error estimate.

    SciPy shrinks by max(MIN_FACTOR, nan) = MIN_FACTOR and retries; so must the Keras step
    (a NaN carried into the step size would fail every later try).
    """
    model = adaptive_model(h=2.0, loss=guarded_loss)
    log = StepSizeLog()
    with np.errstate(invalid="ignore"):
        sizes, point = scipy_steps(RK45, 4, 2.0, SETTINGS, flow=guarded_flow)
    fit_steps(model, 4, callbacks=[log], shuffle=False)
    assert log.rejections[0] >= 2
    np.testing.assert_allclose(log.step_sizes, sizes, rtol=1e-9)
    np.testing.assert_allclose(p_of(model), point, rtol=0, atol=1e-12)


@float64
@pytest.mark.parametrize("policy", ["raise", "accept"])
def test_a_loss_that_is_never_finite_raises_and_keeps_the_weights(policy):
    model = adaptive_model(
        adaptive=AdaptiveStepSize(max_rejections=3, on_failure=policy), loss=guarded_loss
    )
    model.get_layer("p").kernel.assign([[30.0, 0.0]])  # the start point itself is outside
    with pytest.raises(StepSizeError, match="not finite.*all 4 tries.*Check the data and the"):
        fit_steps(model, 1, shuffle=False)
    np.testing.assert_array_equal(p_of(model), [30.0, 0.0])
    assert int(model.optimizer.iterations.numpy()) == 0


@float64
def test_retries_are_bounded_raise_policy_keeps_the_weights():
    strict = AdaptiveStepSize(rtol=1e-9, atol=1e-12, max_rejections=1)
    model = adaptive_model(adaptive=strict, h=5.0)
    with pytest.raises(StepSizeError, match="rejected 2 times.*on_failure='accept'"):
        fit_steps(model, 1, shuffle=False)
    np.testing.assert_array_equal(p_of(model), P0)
    assert int(model.optimizer.iterations.numpy()) == 0


@float64
def test_accept_policy_applies_the_last_try_and_warns():
    lenient = AdaptiveStepSize(rtol=1e-9, atol=1e-12, max_rejections=1, on_failure="accept")
    model = adaptive_model(adaptive=lenient, h=5.0)
    with pytest.warns(UserWarning, match="applied the last try"):
        history = fit_steps(model, 1, shuffle=False)
    assert history.history["rejections"] == [1]
    # The last try used the shrunk step 5·0.2 = 1.0 (the error was huge: factor clipped to 0.2).
    assert history.history["step_size"][0] == pytest.approx(1.0)
    assert not np.array_equal(p_of(model), P0)


@float64
def test_save_and_load_keeps_the_step_size(tmp_path):
    model = adaptive_model()
    fit_steps(model, 3, shuffle=False)
    path = tmp_path / "adaptive.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, custom_objects={"quadratic_loss": quadratic_loss})
    assert loaded.runge_kutta_adaptive == SETTINGS
    assert float(loaded.runge_kutta_step_scale.numpy()) == float(
        model.runge_kutta_step_scale.numpy()
    )
    first, second = fit_steps(model, 2, shuffle=False), fit_steps(loaded, 2, shuffle=False)
    assert first.history["step_size"] == pytest.approx(second.history["step_size"], rel=1e-12)
    np.testing.assert_allclose(p_of(loaded), p_of(model), rtol=0, atol=1e-12)


@float64
def test_adaptive_needs_an_embedded_pair():
    with pytest.raises(ValueError, match="embedded pair.*bogacki_shampine, dormand_prince"):
        adaptive_model(tableau="rk4")
    inputs = keras.Input((1,))
    standard = keras.Model(inputs, keras.layers.Dense(2)(inputs))
    standard.compile(optimizer="sgd", loss="mse")
    with pytest.raises(ValueError, match="embedded pair"):
        inject_runge_kutta(standard, "heun", adaptive=True)


@float64
@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"rtol": -1.0}, ValueError, "rtol must be"),
        ({"rtol": 0.0, "atol": 0.0}, ValueError, "both 0"),
        ({"safety": 1.5}, ValueError, "safety must be"),
        ({"min_factor": 1.0}, ValueError, "min_factor must be"),
        ({"max_factor": 1.0}, ValueError, "max_factor must be"),
        ({"max_rejections": -1}, ValueError, "max_rejections must be"),
        ({"max_rejections": 2.0}, TypeError, "max_rejections must be"),
        ({"atol": "1e-6"}, TypeError, "atol must be"),
        ({"on_failure": "ignore"}, ValueError, "on_failure must be one of 'raise', 'accept'"),
    ],
)
def test_invalid_settings_raise(kwargs, error, message):
    with pytest.raises(error, match=message):
        AdaptiveStepSize(**kwargs)


@float64
def test_step_size_log_needs_an_adaptive_model():
    model = adaptive_model(tableau="heun", adaptive=None)
    with pytest.raises(ValueError, match="no 'step_size'"):
        fit_steps(model, 1, callbacks=[StepSizeLog()])


@float64
def test_adaptive_step_runs_under_xla(xla_allowed):
    model = adaptive_model()
    model.compile(optimizer=keras.optimizers.SGD(0.2), loss=quadratic_loss, jit_compile=True)
    assert model.jit_compile
    log = StepSizeLog()
    fit_steps(model, 3, callbacks=[log], shuffle=False)
    sizes, point = scipy_steps(RK45, 3, 0.2, SETTINGS)
    np.testing.assert_allclose(log.step_sizes, sizes, rtol=1e-9)
    np.testing.assert_allclose(p_of(model), point, rtol=0, atol=1e-12)


def numpy_runge_kutta_path(tableau, sizes, matrix):
    """Fixed Runge–Kutta steps of the given sizes on the flow −matrix·y, from P0."""
    tableau, y = get_tableau(tableau), P0.copy()
    for h in sizes:
        slopes = []
        for i in range(tableau.stages):
            slopes.append(-matrix @ (y + h * sum(tableau.a[i][j] * slopes[j] for j in range(i))))
        y = y + h * sum(b * k for b, k in zip(tableau.b, slopes, strict=True))
    return y


def mixed_precision_model(initial_scale, **settings):
    """The quadratic under mixed_float16, compiled with SGD(h) inside a LossScaleOptimizer."""
    with dtype_policy("mixed_float16"):
        h = settings.pop("h", 0.2)
        scaled_sgd = keras.optimizers.LossScaleOptimizer(
            keras.optimizers.SGD(h), initial_scale=initial_scale
        )
        return quadratic_model(RUNGE_KUTTA, "clean", optimizer=scaled_sgd, **settings)


@float64
def test_under_mixed_precision_every_step_is_the_step_of_the_size_it_chose():
    """Under mixed_float16 each accepted step is the Bogacki–Shampine step of the size logged,
    within float16's round-off, so every try's gradients are unscaled; and the sizes are the
    float64 run's. The first try (h = 1) is rejected: retries run under loss scaling too.

    The tolerances are ones float16 can resolve: the error estimate is a difference of
    gradients taken at weights rounded to float16, which a tighter atol would measure.
    """
    settings = {"tableau": "bogacki_shampine", "adaptive": AdaptiveStepSize(1e-2, 1e-2)}
    reference_log, log = StepSizeLog(), StepSizeLog()
    reference = quadratic_model(RUNGE_KUTTA, "clean", h=1.0, **settings)
    fit_steps(reference, 6, callbacks=[reference_log])
    model = mixed_precision_model(2.0**5, h=1.0, **settings)
    history = fit_steps(model, 6, callbacks=[log])
    assert history.history["skipped_steps"] == [0] and log.rejections[0] >= 1
    expected = numpy_runge_kutta_path("bogacki_shampine", log.step_sizes, MILD)
    np.testing.assert_allclose(p_of(model), expected, rtol=0, atol=1e-3)
    np.testing.assert_allclose(log.step_sizes, reference_log.step_sizes, rtol=1e-2)


@float64
def test_under_mixed_precision_an_overflow_at_a_trial_point_skips_the_step():
    """The first try (h = 1) overshoots: its scaled gradient overflows float16 where the loss is
    finite. That is the loss scale's doing, not the step size's: the step is skipped (nothing
    moves, nothing raises) and the loss scale halves, where a smaller scale would have let the
    controller reject the try and retry (previous test)."""
    settings = {"tableau": "bogacki_shampine", "adaptive": AdaptiveStepSize(1e-2, 1e-2)}
    model = mixed_precision_model(2.0**10, h=1.0, **settings)
    history = fit_steps(model, 1)
    assert history.history["skipped_steps"] == [1] and history.history["rejections"] == [0]
    np.testing.assert_array_equal(p_of(model), P0)
    assert float(model.runge_kutta_step_scale.numpy()) == 1.0
    assert float(model.optimizer.dynamic_scale.numpy()) == 2.0**9


@float64
def test_under_mixed_precision_a_loss_that_is_not_finite_still_shrinks_the_step():
    """Where the loss itself is NaN (outside the disc) the point is at fault: rejected and
    retried, as in float32, with nothing skipped."""
    settings = {"tableau": "dormand_prince", "adaptive": AdaptiveStepSize(1e-2, 1e-2)}
    model = mixed_precision_model(2.0**5, h=2.0, loss=guarded_loss, **settings)
    log = StepSizeLog()
    history = fit_steps(model, 1, callbacks=[log])
    assert history.history["skipped_steps"] == [0] and log.rejections[0] >= 2
    assert np.all(np.isfinite(p_of(model))) and np.abs(p_of(model) - P0).max() > 0.1


@float64
def test_under_mixed_precision_a_loss_never_finite_at_the_trial_points_fails_as_in_float32():
    """Every try overshoots out of the disc, where the loss is NaN: the point is at fault, not
    the scale, so the step is not a skip but the float32 run's StepSizeError (weights kept)."""
    adaptive = AdaptiveStepSize(1e-2, 1e-2, max_rejections=1)
    settings = {"tableau": "bogacki_shampine", "adaptive": adaptive, "loss": guarded_loss}
    reference = quadratic_model(RUNGE_KUTTA, "clean", h=1000.0, **settings)
    with pytest.raises(StepSizeError, match="not finite.*all 2 tries, down to step size 200"):
        fit_steps(reference, 1)
    model = mixed_precision_model(2.0**5, h=1000.0, **settings)
    with pytest.raises(StepSizeError, match="not finite.*all 2 tries, down to step size 200"):
        fit_steps(model, 1)
    np.testing.assert_array_equal(p_of(model), P0)
    assert int(model.optimizer.iterations.numpy()) == 0


@float64
def test_an_overflow_skips_the_whole_adaptive_step():
    """The gradient at p is not finite: no try is taken, the step scale stays, nothing raises."""
    assert_an_overflow_skips_the_whole_step(
        RUNGE_KUTTA, "clean", tableau="bogacki_shampine", adaptive=True
    )


def scaled_quadratic(y_true, y_pred):
    """½ pᵀAp (a mild A) times the batch's first target: a target of 10⁴ makes the flow stiff."""
    matrix = keras.ops.convert_to_tensor(MILD, y_pred.dtype)
    return y_true[:, 0] * 0.5 * keras.ops.sum(keras.ops.matmul(y_pred, matrix) * y_pred, axis=-1)


def stiff_third_batch_model():
    strict = AdaptiveStepSize(rtol=1e-4, atol=1e-6, max_rejections=0)
    model = adaptive_model(h=0.01, loss=scaled_quadratic, adaptive=strict)
    targets = np.array([[1.0, 0.0], [1.0, 0.0], [1e4, 0.0], [1.0, 0.0]])
    return model, targets


@float64
def test_raise_policy_mid_fit_keeps_the_weights_at_the_start_of_the_failed_step():
    """On JAX too, where the state lives outside the model until fit writes it back."""
    model, targets = stiff_third_batch_model()
    ones = np.ones((4, 1))
    model.fit(ones[:2], targets[:2], batch_size=1, shuffle=False, verbose=0)
    before = p_of(model)
    model, targets = stiff_third_batch_model()
    with pytest.raises(StepSizeError, match="rejected 1 times.*left at the start"):
        model.fit(ones, targets, batch_size=1, shuffle=False, verbose=0)
    np.testing.assert_array_equal(p_of(model), before)
    assert int(model.optimizer.iterations.numpy()) == 2
    model.fit(ones[:1], targets[:1], batch_size=1, verbose=0)  # The model still trains.
    assert np.abs(p_of(model) - before).max() > 1e-3


# ---------------------------------------------------------------------------------------------
# 3. On JAX: the clean route only, in x64 mode
# ---------------------------------------------------------------------------------------------


@float64
@pytest.mark.jax_only("TensorFlow injects the adaptive step with its scale beside the model")
def test_adaptive_step_cannot_be_injected_on_jax():
    plain = quadratic_model(RUNGE_KUTTA, "plain")
    with pytest.raises(ValueError, match="cannot be injected on the JAX backend.*RungeKuttaModel"):
        inject_runge_kutta(plain, tableau="dormand_prince", adaptive=SETTINGS)


@pytest.mark.jax_only("TensorFlow computes in float64 where asked")
def test_adaptive_step_needs_x64():
    with pytest.raises(ValueError, match="float64.*JAX_ENABLE_X64=1"):
        adaptive_model()


# ---------------------------------------------------------------------------------------------
# 4. MirroredStrategy: the decisions run once, in cross-replica context (float32)
# ---------------------------------------------------------------------------------------------

# With these tolerances several steps are rejected once and then accepted, so the retry path
# runs under the strategy.
_MIRRORED = AdaptiveStepSize(rtol=1e-3, atol=1e-5)


@pytest.mark.tensorflow_only("MirroredStrategy is TensorFlow's")
@pytest.mark.parametrize(
    ("route", "tableau", "adaptive"),
    [
        ("clean", "dormand_prince", _MIRRORED),
        ("intrusive", "bogacki_shampine", _MIRRORED),
        ("clean", "dormand_prince", replace(_MIRRORED, max_rejections=0, on_failure="accept")),
    ],
    ids=["clean-dormand_prince", "intrusive-bogacki_shampine", "accept-policy"],
)
def test_mirrored_strategy_equals_one_device(two_cpu_strategy, route, tableau, adaptive):
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


@pytest.mark.tensorflow_only("MirroredStrategy is TensorFlow's")
def test_synchronized_batchnorm_under_mirrored_strategy_equals_one_device(two_cpu_strategy):
    """BatchNorm's all-reduce runs inside every try of the retry loop."""
    single_log, mirrored_log = StepSizeLog(), StepSizeLog()
    settings = {"tableau": "dormand_prince", "adaptive": _MIRRORED, "batch_norm": True}
    single_weights, _ = mlp_run(RUNGE_KUTTA, "clean", callbacks=[single_log], **settings)
    keras.backend.clear_session()
    mirrored_weights, _ = mlp_run(
        RUNGE_KUTTA, "clean", two_cpu_strategy, callbacks=[mirrored_log], **settings
    )
    assert mirrored_log.rejections == single_log.rejections
    assert sum(single_log.rejections) > 0
    for got, want in zip(mirrored_weights, single_weights, strict=True):
        np.testing.assert_allclose(got, want, rtol=0, atol=2e-6)


@pytest.mark.tensorflow_only("MirroredStrategy is TensorFlow's")
def test_raise_policy_under_mirrored_strategy_keeps_the_weights(two_cpu_strategy):
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
