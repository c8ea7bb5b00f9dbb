"""What the Runge–Kutta and SAM tests share: models on each route, data, and the common checks.

Both methods own the training step through the same skeleton and come in three routes: a
functional model class ("clean"), a Sequential class ("sequential"), and injection into a
compiled standard model ("intrusive"). A :class:`Method` names the three for one method; the
helpers build the same models and run the same checks for either.
"""

from __future__ import annotations

import course_lib

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np
import pytest

from quadratic_problem import P0, A, quadratic_loss_for


@dataclass(frozen=True)
class Method:
    """The three ways to train with one multi-gradient method."""

    clean: type
    sequential: type
    inject: Callable[..., keras.Model]


def quadratic_model(
    method: Method,
    route: str,
    *,
    h: float = 0.1,
    jit: bool = False,
    loss: Callable | None = None,
    **settings: Any,
) -> keras.Model:
    """A compiled model whose only weight is p = P0 (a bias-free Dense on an input of ones).

    Its loss is ½ pᵀAp unless ``loss`` is given; ``settings`` go to the method (tableau, rho...).
    """
    inputs = keras.Input((1,))
    layer = keras.layers.Dense(2, use_bias=False, kernel_initializer="zeros", name="p")
    outputs = layer(inputs)
    if route == "clean":
        model = method.clean(inputs=inputs, outputs=outputs, **settings)
    elif route == "sequential":
        model = method.sequential([inputs, layer], **settings)
    else:
        model = keras.Model(inputs, outputs)
    model.get_layer("p").kernel.assign(P0[None, :])
    model.compile(
        optimizer=keras.optimizers.SGD(h),
        loss=quadratic_loss_for(A) if loss is None else loss,
        jit_compile=jit,
    )
    assert model.jit_compile == jit, "XLA silently off: use the xla_allowed fixture"
    if route == "intrusive":
        method.inject(model, **settings)
    return model


def p_of(model: keras.Model) -> np.ndarray:
    """The quadratic model's weight p, in float64."""
    return model.get_layer("p").kernel.numpy()[0].astype(np.float64)


def fit_steps(model: keras.Model, steps: int, **kwargs: Any) -> keras.callbacks.History:
    """``steps`` training steps of the quadratic model (one example of ones per batch)."""
    ones = np.ones((steps, 1))
    return model.fit(ones, np.zeros((steps, 2)), batch_size=1, epochs=1, verbose=0, **kwargs)


def least_squares_data(n: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """Three features, a linear target with noise; float64."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 3))
    y = x @ np.array([[1.0], [-2.0], [0.5]]) + 0.3 + 0.1 * rng.normal(size=(n, 1))
    return x, y


def least_squares_gradient(params: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """∇ of the mean squared error of x·w + b, with params = (w, b), written out by hand."""
    residual = x @ params[:3, None] + params[3] - y
    return np.concatenate([(2 * x.T @ residual / len(x)).ravel(), [2 * residual.mean()]])


def least_squares_epoch(method: Method, route: str, learning_rate: float, **settings: Any):
    """One epoch of a Dense(1) at batch 4, unshuffled: returns the weights before and after."""
    x, y = least_squares_data()
    inputs = keras.Input((3,))
    outputs = keras.layers.Dense(1, name="dense")(inputs)
    if route == "clean":
        model = method.clean(inputs=inputs, outputs=outputs, **settings)
    else:
        model = keras.Model(inputs, outputs)
    before = np.concatenate([v.numpy().ravel() for v in model.get_layer("dense").weights])
    model.compile(optimizer=keras.optimizers.SGD(learning_rate), loss="mse")
    if route == "intrusive":
        method.inject(model, **settings)
    model.fit(x, y, batch_size=4, epochs=1, shuffle=False, verbose=0)
    after = np.concatenate([v.numpy().ravel() for v in model.get_layer("dense").weights])
    return before, after


def assert_logs_describe_the_start_point(method: Method, route: str, **settings: Any) -> None:
    """The logged loss and metric are those at p, as a standard step logs them."""
    model = quadratic_model(method, route, **settings)
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss=quadratic_loss_for(A), metrics=["mae"])
    if route == "intrusive":
        method.inject(model, **settings)
    ones, zeros = np.ones((1, 1)), np.zeros((1, 2))
    before = model.evaluate(ones, zeros, verbose=0, return_dict=True)
    history = model.fit(ones, zeros, epochs=1, verbose=0)
    assert before["loss"] == pytest.approx(0.5 * P0 @ A @ P0, rel=1e-6)
    assert history.history["loss"][0] == pytest.approx(before["loss"], rel=1e-6)
    assert history.history["mae"][0] == pytest.approx(before["mae"], rel=1e-6)
    after = model.evaluate(ones, zeros, verbose=0, return_dict=True)
    assert after["loss"] < before["loss"] - 10


def assert_batchnorm_moves_once_from_the_start(method: Method, **settings: Any) -> None:
    """BatchNorm's moving statistics take one step (momentum 0.5), from p's batch statistics."""
    x, y = least_squares_data(8)
    course_lib.set_seed(3)
    inputs = keras.Input((3,))
    hidden = keras.layers.Dense(4, name="features")(inputs)
    normalized = keras.layers.BatchNormalization(momentum=0.5, name="bn")(hidden)
    model = method.clean(inputs=inputs, outputs=keras.layers.Dense(1)(normalized), **settings)
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    features = keras.ops.convert_to_numpy(keras.Model(inputs, hidden)(x))
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    bn = model.get_layer("bn")
    np.testing.assert_allclose(bn.moving_mean.numpy(), 0.5 * features.mean(axis=0), atol=1e-6)
    np.testing.assert_allclose(
        bn.moving_variance.numpy(), 0.5 + 0.5 * features.var(axis=0), rtol=1e-5
    )


def assert_equals_keras_own_step(method: Method, **settings: Any) -> None:
    """A setting that makes the method one plain gradient step equals Keras's step, bit for bit.

    Momentum included, over two epochs of a small MLP: weights and logged losses.
    """
    x, y = least_squares_data()

    def train(with_method: bool):
        course_lib.set_seed(7)
        inputs = keras.Input((3,))
        outputs = keras.layers.Dense(1)(keras.layers.Dense(8, activation="tanh")(inputs))
        if with_method:
            model = method.clean(inputs=inputs, outputs=outputs, **settings)
        else:
            model = keras.Model(inputs, outputs)
        model.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9), loss="mse")
        history = model.fit(x, y, batch_size=4, epochs=2, shuffle=False, verbose=0)
        return [v.numpy() for v in model.weights], history.history["loss"]

    (weights_method, loss_method), (weights_keras, loss_keras) = train(True), train(False)
    for got, want in zip(weights_method, weights_keras, strict=True):
        np.testing.assert_array_equal(got, want)
    assert loss_method == loss_keras


def mlp_run(
    method: Method,
    route: str,
    strategy=None,
    *,
    callbacks=(),
    batch_norm: bool = False,
    **settings: Any,
) -> tuple[list[np.ndarray], dict]:
    """Train a small MLP for 2 epochs of 4 batches; return its layers' weights and the logs.

    The weights are the layers' own (BatchNorm statistics included), so a method's own state
    (the adaptive step scale) is left out: tests compare that through the logs.
    """
    rng = np.random.default_rng(1)
    x = rng.normal(size=(32, 5)).astype("float32")
    y = (x[:, :1] * 2 - x[:, 1:2]).astype("float32")
    course_lib.set_seed(11)
    with strategy.scope() if strategy is not None else contextlib.nullcontext():
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
            model = method.clean(inputs=inputs, outputs=outputs, **settings)
        else:
            model = keras.Model(inputs, outputs)
        model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse", metrics=["mae"])
        if route == "intrusive":
            method.inject(model, **settings)
    history = model.fit(
        x, y, batch_size=8, epochs=2, shuffle=False, verbose=0, callbacks=list(callbacks)
    )
    return [v.numpy() for layer in model.layers for v in layer.weights], history.history


def assert_mirrored_equals_one_device(
    strategy, method: Method, route: str, atol: float = 1e-6, **settings: Any
) -> None:
    """Weights and logged loss and metric under a two-replica strategy equal one device's."""
    single_weights, single_logs = mlp_run(method, route, **settings)
    keras.backend.clear_session()
    mirrored_weights, mirrored_logs = mlp_run(method, route, strategy, **settings)
    for got, want in zip(mirrored_weights, single_weights, strict=True):
        np.testing.assert_allclose(got, want, rtol=0, atol=atol)
    for key in ("loss", "mae"):
        np.testing.assert_allclose(mirrored_logs[key], single_logs[key], rtol=0, atol=atol)


def assert_refuses_models_without_an_optimizer(method: Method) -> None:
    """Both routes say that the model must be compiled first; injection needs a keras.Model."""
    inputs = keras.Input((1,))
    with pytest.raises(ValueError, match="has no optimizer.*compile"):
        method.inject(keras.Model(inputs, keras.layers.Dense(2)(inputs)))
    with pytest.raises(TypeError, match="must be a keras.Model"):
        method.inject("not a model")
    model = method.clean(inputs=inputs, outputs=keras.layers.Dense(2)(inputs))
    with pytest.raises((ValueError, RuntimeError), match="compile"):
        model.fit(np.ones((2, 1)), np.zeros((2, 2)), verbose=0)
    with pytest.raises(TypeError, match=f"already a {method.clean.__name__}"):
        method.inject(model)
