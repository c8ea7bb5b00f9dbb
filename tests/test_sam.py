"""SAM (course_lib.sam, notebook 07): the exact formula, one batch, logs at p, BatchNorm once,
XLA, save/load, MirroredStrategy and clear errors.

The reference is NumPy: on L(p) = ½ pᵀAp one SAM step with SGD(h) is
p ← p − h·A·(p + ρ·Ap/‖Ap‖); on least squares the gradient is written out by hand.
"""

from __future__ import annotations

import course_lib
from course_lib.sam import (
    SAMModel,
    SAMSequential,
    eject_sam,
    inject_sam,
    is_sam_injected,
    sam_perturbation,
)

import contextlib

import keras
import numpy as np
import pytest

from quadratic_problem import P0, A, quadratic_loss_for

RHO = 0.3


quadratic_loss = quadratic_loss_for(A)


def quadratic_model(route: str, h: float = 0.1, rho: float = RHO, jit: bool = False):
    inputs = keras.Input((1,))
    layer = keras.layers.Dense(2, use_bias=False, kernel_initializer="zeros", name="p")
    outputs = layer(inputs)
    if route == "clean":
        model = SAMModel(inputs=inputs, outputs=outputs, rho=rho)
    elif route == "sequential":
        model = SAMSequential([inputs, layer], rho=rho)
    else:
        model = keras.Model(inputs, outputs)
    model.get_layer("p").kernel.assign(P0[None, :])
    model.compile(optimizer=keras.optimizers.SGD(h), loss=quadratic_loss, jit_compile=jit)
    assert model.jit_compile == jit, "XLA silently off: use the xla_allowed fixture"
    if route == "intrusive":
        inject_sam(model, rho)
    return model


def p_of(model) -> np.ndarray:
    return model.get_layer("p").kernel.numpy()[0].astype(np.float64)


def fit_steps(model, steps: int, **kwargs):
    ones = np.ones((steps, 1))
    return model.fit(ones, np.zeros((steps, 2)), batch_size=1, epochs=1, verbose=0, **kwargs)


def numpy_sam_path(steps: int, h: float, rho: float) -> np.ndarray:
    p = P0.copy()
    for _ in range(steps):
        g = A @ p
        p = p - h * A @ (p + rho * g / (np.linalg.norm(g) + 1e-12))
    return p


# 1. The formula ----------------------------------------------------------------------------------
@pytest.mark.parametrize("route", ["clean", "sequential", "intrusive"])
def test_matches_the_formula_on_a_quadratic(float64, route):
    model = quadratic_model(route)
    fit_steps(model, 6)
    np.testing.assert_allclose(p_of(model), numpy_sam_path(6, 0.1, RHO), rtol=0, atol=1e-13)
    sgd = np.linalg.matrix_power(np.eye(2) - 0.1 * A, 6) @ P0
    assert np.abs(p_of(model) - sgd).max() > 1e-2, "SAM must differ from SGD here"


@pytest.mark.parametrize("jit", [False, True])
def test_matches_the_formula_with_and_without_xla(xla_allowed, jit):
    model = quadratic_model("clean", jit=jit)
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
    x, y = least_squares_data()

    def train(sam: bool):
        course_lib.set_seed(7)
        inputs = keras.Input((3,))
        outputs = keras.layers.Dense(1)(keras.layers.Dense(8, activation="tanh")(inputs))
        model = SAMModel(inputs, outputs, rho=0.0) if sam else keras.Model(inputs, outputs)
        model.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9), loss="mse")
        history = model.fit(x, y, batch_size=4, epochs=2, shuffle=False, verbose=0)
        return [v.numpy() for v in model.weights], history.history["loss"]

    (weights_sam, loss_sam), (weights_keras, loss_keras) = train(True), train(False)
    for got, want in zip(weights_sam, weights_keras, strict=True):
        np.testing.assert_array_equal(got, want)
    assert loss_sam == loss_keras


# 2. One mini-batch, logs at p, BatchNorm once ----------------------------------------------------
def least_squares_data(n: int = 16):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 3))
    y = x @ np.array([[1.0], [-2.0], [0.5]]) + 0.3 + 0.1 * rng.normal(size=(n, 1))
    return x, y


def numpy_sam_epoch(params, x, y, batch, h, rho):
    def gradient(q, xb, yb):
        residual = xb @ q[:3, None] + q[3] - yb
        return np.concatenate([(2 * xb.T @ residual / len(xb)).ravel(), [2 * residual.mean()]])

    for start in range(0, len(x), batch):
        xb, yb = x[start : start + batch], y[start : start + batch]
        g = gradient(params, xb, yb)
        params = params - h * gradient(params + rho * g / (np.linalg.norm(g) + 1e-12), xb, yb)
    return params


@pytest.mark.parametrize("route", ["clean", "intrusive"])
def test_both_gradients_use_the_same_mini_batch(float64, route):
    x, y = least_squares_data()
    inputs = keras.Input((3,))
    outputs = keras.layers.Dense(1, name="dense")(inputs)
    model = SAMModel(inputs, outputs, rho=RHO) if route == "clean" else keras.Model(inputs, outputs)
    params = np.concatenate([v.numpy().ravel() for v in model.get_layer("dense").weights])
    model.compile(optimizer=keras.optimizers.SGD(0.05), loss="mse")
    if route == "intrusive":
        inject_sam(model, RHO)
    model.fit(x, y, batch_size=4, epochs=1, shuffle=False, verbose=0)
    got = np.concatenate([v.numpy().ravel() for v in model.get_layer("dense").weights])
    np.testing.assert_allclose(got, numpy_sam_epoch(params, x, y, 4, 0.05, RHO), atol=1e-12)


@pytest.mark.parametrize("route", ["clean", "intrusive"])
def test_logs_loss_and_metrics_at_p(route):
    model = quadratic_model(route)
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss=quadratic_loss, metrics=["mae"])
    if route == "intrusive":
        inject_sam(model, RHO)
    ones, zeros = np.ones((1, 1)), np.zeros((1, 2))
    before = model.evaluate(ones, zeros, verbose=0, return_dict=True)
    history = model.fit(ones, zeros, epochs=1, verbose=0)
    assert before["loss"] == pytest.approx(0.5 * P0 @ A @ P0, rel=1e-6)
    assert history.history["loss"][0] == pytest.approx(before["loss"], rel=1e-6)
    assert history.history["mae"][0] == pytest.approx(before["mae"], rel=1e-6)
    assert model.evaluate(ones, zeros, verbose=0, return_dict=True)["loss"] < before["loss"] - 10


def test_batchnorm_statistics_move_once_from_p():
    x, y = least_squares_data(8)
    course_lib.set_seed(3)
    inputs = keras.Input((3,))
    hidden = keras.layers.Dense(4, name="features")(inputs)
    normalized = keras.layers.BatchNormalization(momentum=0.5, name="bn")(hidden)
    model = SAMModel(inputs, keras.layers.Dense(1)(normalized), rho=1.0)
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    features = keras.Model(inputs, hidden)(x).numpy()
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    bn = model.get_layer("bn")
    np.testing.assert_allclose(bn.moving_mean.numpy(), 0.5 * features.mean(axis=0), atol=1e-6)
    np.testing.assert_allclose(
        bn.moving_variance.numpy(), 0.5 + 0.5 * features.var(axis=0), rtol=1e-5
    )


# 3. Save and load, inject and eject --------------------------------------------------------------
@pytest.mark.parametrize("route", ["clean", "sequential"])
def test_save_and_load_keeps_rho_and_the_trajectory(tmp_path, route):
    model = quadratic_model(route)
    fit_steps(model, 1)
    model.save(tmp_path / "sam.keras")
    loaded = keras.saving.load_model(
        tmp_path / "sam.keras", custom_objects={"quadratic_loss": quadratic_loss}
    )
    assert type(loaded) is type(model) and loaded.sam_rho == RHO
    fit_steps(model, 2)
    fit_steps(loaded, 2)
    np.testing.assert_allclose(p_of(loaded), p_of(model), rtol=0, atol=1e-7)
    np.testing.assert_allclose(p_of(loaded), numpy_sam_path(3, 0.1, RHO), rtol=0, atol=2e-6)


def test_recompiling_or_ejecting_undoes_the_injection():
    model = quadratic_model("intrusive")
    assert is_sam_injected(model)
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss=quadratic_loss)
    assert not is_sam_injected(model)
    fit_steps(model, 1)
    np.testing.assert_allclose(p_of(model), P0 - 0.1 * A @ P0, atol=2e-6)  # plain SGD
    eject_sam(inject_sam(model))
    assert not is_sam_injected(model)
    with pytest.raises(ValueError, match="no injected SAM step"):
        eject_sam(model)


# 4. MirroredStrategy -----------------------------------------------------------------------------
def mlp_run(route: str, strategy=None):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(32, 5)).astype("float32")
    y = (x[:, :1] * 2 - x[:, 1:2]).astype("float32")
    course_lib.set_seed(11)
    with strategy.scope() if strategy is not None else contextlib.nullcontext():
        inputs = keras.Input((5,))
        outputs = keras.layers.Dense(1)(keras.layers.Dense(8, activation="tanh")(inputs))
        if route == "clean":
            model = SAMModel(inputs, outputs, rho=0.5)
        else:
            model = keras.Model(inputs, outputs)
        model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse", metrics=["mae"])
        if route == "intrusive":
            inject_sam(model, 0.5)
    history = model.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0)
    return [v.numpy() for v in model.weights], history.history


@pytest.mark.parametrize("route", ["clean", "intrusive"])
def test_mirrored_strategy_equals_one_device(two_cpu_strategy, route):
    single_weights, single_logs = mlp_run(route)
    keras.backend.clear_session()
    mirrored_weights, mirrored_logs = mlp_run(route, two_cpu_strategy)
    for got, want in zip(mirrored_weights, single_weights, strict=True):
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)
    for key in ("loss", "mae"):
        np.testing.assert_allclose(mirrored_logs[key], single_logs[key], rtol=0, atol=1e-6)


# 5. Clear errors ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("rho", "error"),
    [(-0.1, ValueError), (float("inf"), ValueError), ("0.05", TypeError), (True, TypeError)],
)
def test_bad_rho_is_rejected(rho, error):
    inputs = keras.Input((1,))
    with pytest.raises(error, match=r"rho must be .* got"):
        SAMModel(inputs, keras.layers.Dense(2)(inputs), rho=rho)


def test_models_without_an_optimizer_are_refused():
    inputs = keras.Input((1,))
    with pytest.raises(ValueError, match="has no optimizer.*compile"):
        inject_sam(keras.Model(inputs, keras.layers.Dense(2)(inputs)))
    with pytest.raises(TypeError, match="must be a keras.Model"):
        inject_sam("not a model")
    model = SAMModel(inputs, keras.layers.Dense(2)(inputs))
    with pytest.raises((ValueError, RuntimeError), match="compile"):
        model.fit(np.ones((2, 1)), np.zeros((2, 2)), verbose=0)
    with pytest.raises(TypeError, match="already a SAMModel"):
        inject_sam(model)
