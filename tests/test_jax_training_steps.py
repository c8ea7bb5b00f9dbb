"""Heun, Runge–Kutta (adaptive too) and SAM as stateless training steps on Keras's JAX backend.

The references are the ones the TensorFlow tests use: closed forms on a quadratic (Heun
(I − hA + (hA)²/2)p, SAM p − h·∇L(p + ρg/‖g‖)), a tableau's stability polynomial on linear least
squares, SciPy's step sizes for the adaptive controller, and Keras's own step. Float64 runs use
JAX's x64 mode (switched on per test). Run with ``KERAS_BACKEND=jax``; skipped on TensorFlow.
"""

from __future__ import annotations

from course_lib.adaptive import AdaptiveStepSize, StepSizeError, StepSizeLog
from course_lib.keras_internals import JAX_PRIVATE_APIS
from course_lib.runge_kutta import RungeKuttaModel, RungeKuttaSequential, inject_runge_kutta
from course_lib.sam import SAMModel, SAMSequential, inject_sam
from course_lib.tableaux import TABLEAUX, stability_function

import json
from pathlib import Path

import keras
import numpy as np
import pytest
from scipy.integrate import RK23, RK45

from jax_workers import (
    finish,
    free_loopback_port,
    one_device_environment,
    start,
    two_device_flags,
    worker_environment,
)
from multi_gradient_routes import (
    Method,
    assert_batchnorm_moves_once_from_the_start,
    assert_equals_keras_own_step,
    assert_logs_describe_the_start_point,
    fit_steps,
    least_squares_data,
    p_of,
    quadratic_model,
)
from quadratic_problem import P0, A, quadratic_loss_for

pytestmark = pytest.mark.skipif(
    keras.backend.backend() != "jax",
    reason="the stateless training steps run on the JAX backend: run with KERAS_BACKEND=jax",
)

RUNGE_KUTTA = Method(RungeKuttaModel, RungeKuttaSequential, inject_runge_kutta)
SAM = Method(SAMModel, SAMSequential, inject_sam)
ROUTES = ["clean", "sequential", "intrusive"]
#: The stiff quadratic of tests/test_adaptive.py: the first try (h = 0.2) is rejected.
STIFF = np.array([[2.0, 0.5], [0.5, 40.0]])
SETTINGS = AdaptiveStepSize(rtol=1e-4, atol=1e-6)


@pytest.fixture
def x64():
    """Float64 models on JAX: its x64 mode and Keras's floatx, for one test."""
    import jax

    before = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    keras.config.set_floatx("float64")
    yield
    keras.config.set_floatx("float32")
    jax.config.update("jax_enable_x64", before)


def heun_matrix(h: float) -> np.ndarray:
    return np.eye(2) - h * A + (h * A) @ (h * A) / 2


def sam_step(p: np.ndarray, h: float, rho: float) -> np.ndarray:
    g = A @ p
    return p - h * A @ (p + rho * g / (np.linalg.norm(g) + 1e-12))


# ---------------------------------------------------------------------------------------------
# 1. Closed forms
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("route", ROUTES)
def test_heun_and_sam_equal_their_closed_forms_float64(x64, route):
    h, rho = 0.1, 0.05
    heun = quadratic_model(RUNGE_KUTTA, route, h=h)
    sam = quadratic_model(SAM, route, h=h, rho=rho)
    assert heun.get_layer("p").kernel.dtype == "float64"
    fit_steps(heun, 3)
    fit_steps(sam, 3)
    expected = P0
    for _ in range(3):
        expected = sam_step(expected, h, rho)
    np.testing.assert_allclose(
        p_of(heun), np.linalg.matrix_power(heun_matrix(h), 3) @ P0, atol=1e-13
    )
    np.testing.assert_allclose(p_of(sam), expected, rtol=0, atol=1e-13)


@pytest.mark.parametrize("route", ["clean", "intrusive"])
def test_heun_and_sam_within_float32_round_off(route):
    h, rho = 0.1, 0.05
    heun = quadratic_model(RUNGE_KUTTA, route, h=h)
    sam = quadratic_model(SAM, route, h=h, rho=rho)
    fit_steps(heun, 2)
    fit_steps(sam, 1)
    np.testing.assert_allclose(p_of(heun), heun_matrix(h) @ heun_matrix(h) @ P0, atol=2e-6)
    np.testing.assert_allclose(p_of(sam), sam_step(P0, h, rho), rtol=0, atol=2e-6)
    assert np.abs(p_of(heun) - (P0 - 2 * h * A @ P0)).max() > 0.05, "Heun must not be Euler"


def stability_step(tableau: str, h: float, x: np.ndarray, y: np.ndarray) -> tuple:
    """R(−hH) on least squares: w − w* is multiplied by the stability polynomial of hH."""
    features = np.hstack([x, np.ones((len(x), 1))])
    hessian = 2 * features.T @ features / len(x)
    optimum = np.linalg.lstsq(features, y[:, 0], rcond=None)[0]
    values, vectors = np.linalg.eigh(hessian)
    return vectors @ np.diag(stability_function(tableau, -h * values)) @ vectors.T, optimum


@pytest.mark.parametrize("tableau", sorted(TABLEAUX))
def test_every_tableau_multiplies_by_its_stability_polynomial(x64, tableau):
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


def test_schedule_gives_the_step_size_from_the_state(x64):
    """h is read from the optimizer variables in the state: a schedule at each step's count."""
    schedule = keras.optimizers.schedules.ExponentialDecay(0.2, decay_steps=1, decay_rate=0.5)
    model = quadratic_model(RUNGE_KUTTA, "clean")
    model.compile(optimizer=keras.optimizers.SGD(schedule), loss=quadratic_loss_for(A))
    fit_steps(model, 3)
    expected = P0
    for step in range(3):
        expected = heun_matrix(0.2 * 0.5**step) @ expected
    # Keras computes ExponentialDecay in float32, hence the float32-level tolerance.
    np.testing.assert_allclose(p_of(model), expected, rtol=0, atol=1e-6)
    assert np.abs(p_of(model) - np.linalg.matrix_power(heun_matrix(0.2), 3) @ P0).max() > 0.1


# ---------------------------------------------------------------------------------------------
# 2. The step's contract: logs at p, BatchNorm once, Keras's own step
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("method", "settings"), [(RUNGE_KUTTA, {}), (SAM, {"rho": 0.05})])
@pytest.mark.parametrize("route", ["clean", "intrusive"])
def test_logs_describe_the_start_point(method, settings, route):
    assert_logs_describe_the_start_point(method, route, **settings)


@pytest.mark.parametrize(("method", "settings"), [(RUNGE_KUTTA, {"tableau": "rk4"}), (SAM, {})])
def test_batchnorm_statistics_move_once_from_the_start_point(method, settings):
    assert_batchnorm_moves_once_from_the_start(method, **settings)


@pytest.mark.parametrize(
    ("method", "settings"), [(RUNGE_KUTTA, {"tableau": "euler"}), (SAM, {"rho": 0.0})]
)
def test_one_gradient_settings_equal_keras_own_step(method, settings):
    assert_equals_keras_own_step(method, **settings)


# ---------------------------------------------------------------------------------------------
# 3. The adaptive step
# ---------------------------------------------------------------------------------------------


def scipy_steps(solver, steps: int, h0: float) -> tuple[np.ndarray, np.ndarray]:
    ode = solver(lambda t, y: -STIFF @ y, 0.0, P0, 1e9, first_step=h0, rtol=1e-4, atol=1e-6)
    sizes = []
    for _ in range(steps):
        before = ode.t
        ode.step()
        sizes.append(ode.t - before)
    return np.array(sizes), ode.y


@pytest.mark.parametrize(
    ("route", "tableau", "solver"),
    [("clean", "dormand_prince", RK45), ("sequential", "bogacki_shampine", RK23)],
)
def test_adaptive_step_sizes_equal_scipys_as_on_tensorflow(x64, route, tableau, solver):
    """The TensorFlow tests (test_adaptive.py) hold the same model to the same SciPy numbers."""
    model = quadratic_model(
        RUNGE_KUTTA,
        route,
        h=0.2,
        loss=quadratic_loss_for(STIFF),
        tableau=tableau,
        adaptive=SETTINGS,
    )
    log = StepSizeLog()
    history = fit_steps(model, 6, callbacks=[log], shuffle=False)
    sizes, point = scipy_steps(solver, 6, 0.2)
    np.testing.assert_allclose(log.step_sizes, sizes, rtol=1e-9)
    np.testing.assert_allclose(p_of(model), point, rtol=0, atol=1e-12)
    assert log.rejections[0] >= 1, "the test needs a rejected first try"
    assert {"step_size", "rejections", "error_norm", "loss"} <= set(history.history)


def scaled_quadratic(y_true, y_pred):
    """½ pᵀAp times the batch's first target: a batch with target 10⁴ makes the flow stiff."""
    matrix = keras.ops.convert_to_tensor(A, y_pred.dtype)
    return y_true[:, 0] * 0.5 * keras.ops.sum(keras.ops.matmul(y_pred, matrix) * y_pred, axis=-1)


def stiff_third_batch_model(on_failure: str):
    model = quadratic_model(
        RUNGE_KUTTA,
        "clean",
        h=0.01,
        loss=scaled_quadratic,
        tableau="dormand_prince",
        adaptive=AdaptiveStepSize(rtol=1e-4, atol=1e-6, max_rejections=0, on_failure=on_failure),
    )
    targets = np.array([[1.0, 0.0], [1.0, 0.0], [1e4, 0.0], [1.0, 0.0]])
    return model, targets


def test_raise_policy_mid_fit_keeps_the_weights_at_the_start_of_the_failed_step(x64):
    model, targets = stiff_third_batch_model("raise")
    ones = np.ones((4, 1))
    model.fit(ones[:2], targets[:2], batch_size=1, shuffle=False, verbose=0)
    before = p_of(model)
    model, targets = stiff_third_batch_model("raise")
    with pytest.raises(StepSizeError, match="rejected 1 times.*left at the start"):
        model.fit(ones, targets, batch_size=1, shuffle=False, verbose=0)
    np.testing.assert_array_equal(p_of(model), before)
    assert int(model.optimizer.iterations.numpy()) == 2
    model.fit(ones[:1], targets[:1], batch_size=1, verbose=0)  # The model still trains.
    assert np.abs(p_of(model) - before).max() > 1e-3


def test_accept_policy_applies_the_last_try_and_warns(x64):
    model, targets = stiff_third_batch_model("accept")
    with pytest.warns(UserWarning, match="applied the last try anyway"):
        model.fit(np.ones((3, 1)), targets[:3], batch_size=1, shuffle=False, verbose=0)
    assert int(model.optimizer.iterations.numpy()) == 3


def test_a_loss_that_is_never_finite_raises_and_keeps_the_weights(x64):
    def nan_loss(y_true, y_pred):
        return keras.ops.sum(y_pred, axis=-1) * np.nan

    model = quadratic_model(
        RUNGE_KUTTA, "clean", loss=nan_loss, tableau="bogacki_shampine", adaptive=SETTINGS
    )
    with pytest.raises(StepSizeError, match="not finite"):
        fit_steps(model, 1)
    np.testing.assert_array_equal(p_of(model), P0)


# ---------------------------------------------------------------------------------------------
# 4. Clear errors
# ---------------------------------------------------------------------------------------------


def test_adaptive_step_cannot_be_injected_on_jax(x64):
    model = quadratic_model(RUNGE_KUTTA, "clean", tableau="heun")
    plain = keras.Model(model.inputs, model.outputs)
    plain.compile(optimizer=keras.optimizers.SGD(0.1), loss=quadratic_loss_for(A))
    with pytest.raises(ValueError, match="cannot be injected on the JAX backend.*RungeKuttaModel"):
        inject_runge_kutta(plain, tableau="dormand_prince", adaptive=SETTINGS)


def test_adaptive_step_needs_x64():
    with pytest.raises(ValueError, match="float64.*JAX_ENABLE_X64=1"):
        quadratic_model(RUNGE_KUTTA, "clean", tableau="dormand_prince", adaptive=SETTINGS)


def test_jax_private_apis_are_there(x64):
    """The JAX trainer's attributes course_lib.keras_internals relies on (see JAX_PRIVATE_APIS)."""
    model = quadratic_model(RUNGE_KUTTA, "clean")
    fit_steps(model, 1)
    missing = [name for name in JAX_PRIVATE_APIS if not hasattr(model, name.split(".")[1])]
    assert not missing, f"the installed Keras's JAX trainer lacks {missing}"


# ---------------------------------------------------------------------------------------------
# 5. DataParallel over two devices or two processes equals one device, on both routes
# ---------------------------------------------------------------------------------------------


#: Every method of the worker: both routes of Heun and SAM, and the adaptive step.
SCALED_OUT = ["heun", "heun_injected", "sam", "sam_injected", "adaptive"]
DATA_PARALLEL_WORKER = Path(__file__).with_name("jax_data_parallel_steps.py")


def _runs_of(output: str) -> dict:
    """The JSON object a worker prints on its last line."""
    return json.loads(output.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def two_devices() -> dict:
    """Every method on one device, then under DataParallel over two, in float64."""
    environment = worker_environment(JAX_ENABLE_X64="1", XLA_FLAGS=two_device_flags())
    (output,) = finish([start(DATA_PARALLEL_WORKER, ["devices", *SCALED_OUT], environment)])
    return _runs_of(output)


@pytest.fixture(scope="module")
def two_processes() -> list[dict]:
    """Every method under DataParallel over two processes (gloo on loopback), in float64."""
    coordinator = f"127.0.0.1:{free_loopback_port()}"
    environment = one_device_environment(JAX_ENABLE_X64="1")
    workers = [
        start(DATA_PARALLEL_WORKER, ["process", coordinator, str(i), *SCALED_OUT], environment)
        for i in range(2)
    ]
    return [_runs_of(output)["parallel"] for output in finish(workers)]


def _assert_same_run(got: dict, want: dict, name: str) -> None:
    for a, b in zip(got["weights"], want["weights"], strict=True):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-12, err_msg=name)
    assert got["logs"].keys() == want["logs"].keys()
    for key, values in want["logs"].items():
        np.testing.assert_allclose(got["logs"][key], values, rtol=1e-9, err_msg=f"{name}: {key}")


def test_the_runs_train_and_the_adaptive_one_rejects(two_devices):
    """Guards: equal runs mean something only if they moved, and a retry was taken."""
    single = two_devices["single"]
    first, last = single["heun"]["logs"]["loss"]
    assert last < 0.5 * first
    assert max(single["adaptive"]["logs"]["rejections"]) >= 1, "no rejection was tested"
    # Both routes run the same rule: the injected step is the clean one.
    for name in ("heun", "sam"):
        _assert_same_run(single[f"{name}_injected"], single[name], name)


@pytest.mark.parametrize("name", SCALED_OUT)
def test_data_parallel_over_two_devices_equals_one_device(two_devices, name):
    """Every stage's gradient is the global batch's: weights and logs as on one device."""
    _assert_same_run(two_devices["parallel"][name], two_devices["single"][name], name)


@pytest.mark.parametrize("name", SCALED_OUT)
def test_data_parallel_over_two_processes_equals_one_device(two_processes, two_devices, name):
    """Each process feeds half of every global batch; both end with the one-device weights."""
    first, second = two_processes
    assert first[name]["weights"] == second[name]["weights"], f"{name}: the processes disagree"
    _assert_same_run(first[name], two_devices["single"][name], name)
