"""Models and problems for the tests of the multi-gradient training steps, on either backend.

Every method comes in three routes: a functional model class ("clean"), a Sequential class
("sequential"), and injection into a compiled standard model ("intrusive"). A method's
:class:`~course_lib.multi_gradient_step.routes.Routes` (``course_lib.runge_kutta.ROUTES``,
``course_lib.sam.ROUTES``, ``probe_method.ROUTES``) names the three; the helpers here build the
same models and problems for any of them.
"""

from __future__ import annotations

import course_lib
from course_lib.multi_gradient_step.routes import Routes

import contextlib
from collections.abc import Callable
from typing import Any

import keras
import numpy as np

from quadratic_problem import P0, A, quadratic_loss_for


def on_route(
    routes: Routes | None,
    route: str,
    inputs: Any,
    outputs: Any,
    compile_settings: dict[str, Any],
    **settings: Any,
) -> keras.Model:
    """A compiled model from ``inputs`` to ``outputs`` with the method of ``routes`` on ``route``.

    "clean": the method's functional class; "sequential": its Sequential class over the same
    layers; "intrusive": injected into a compiled standard model; "plain": a standard model.
    ``compile_settings`` go to ``compile``, ``settings`` to the method.
    """
    if route == "clean":
        model = routes.model(inputs=inputs, outputs=outputs, **settings)
    elif route == "sequential":
        model = routes.sequential([inputs, *keras.Model(inputs, outputs).layers[1:]], **settings)
    else:
        model = keras.Model(inputs, outputs)
    model.compile(**compile_settings)
    if route == "intrusive":
        routes.inject(model, **settings)
    return model


def quadratic_model(
    routes: Routes,
    route: str,
    *,
    h: float = 0.1,
    jit: bool = False,
    loss: Callable | None = None,
    optimizer: keras.optimizers.Optimizer | None = None,
    metrics: list | None = None,
    **settings: Any,
) -> keras.Model:
    """A compiled model whose only weight is p = P0 (a bias-free Dense on an input of ones).

    Its loss is ½ pᵀAp unless ``loss`` is given, its optimizer ``SGD(h)`` unless ``optimizer``
    is; ``settings`` go to the method (tableau, rho...). The route "plain" is a standard model.
    """
    inputs = keras.Input((1,))
    layer = keras.layers.Dense(2, use_bias=False, kernel_initializer="zeros", name="p")
    compile_settings = {
        "optimizer": keras.optimizers.SGD(h) if optimizer is None else optimizer,
        "loss": quadratic_loss_for(A) if loss is None else loss,
        "metrics": metrics,
        "jit_compile": jit,
    }
    model = on_route(routes, route, inputs, layer(inputs), compile_settings, **settings)
    assert model.jit_compile == jit, "XLA silently off: use the xla_allowed fixture"
    layer.kernel.assign(P0[None, :])
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


def least_squares_epoch(routes: Routes, route: str, learning_rate: float, **settings: Any):
    """One epoch of a Dense(1) at batch 4, unshuffled: returns the weights before and after."""
    x, y = least_squares_data()
    inputs = keras.Input((3,))
    dense = keras.layers.Dense(1, name="dense")
    compile_settings = {"optimizer": keras.optimizers.SGD(learning_rate), "loss": "mse"}
    model = on_route(routes, route, inputs, dense(inputs), compile_settings, **settings)
    before = np.concatenate([v.numpy().ravel() for v in dense.weights])
    model.fit(x, y, batch_size=4, epochs=1, shuffle=False, verbose=0)
    after = np.concatenate([v.numpy().ravel() for v in model.get_layer("dense").weights])
    return before, after


def mlp_run(
    routes: Routes | None,
    route: str,
    strategy=None,
    *,
    callbacks=(),
    batch_norm: bool = False,
    optimizer: Callable[[], keras.optimizers.Optimizer] = lambda: keras.optimizers.SGD(0.1),
    **settings: Any,
) -> tuple[list[np.ndarray], dict]:
    """Train a small MLP for 2 epochs of 4 batches; return its layers' weights and the logs.

    ``routes=None`` trains the standard model. The weights are the layers' own (BatchNorm
    statistics included), so a method's own state (the adaptive step scale) is left out: tests
    compare that through the logs.
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
        compile_settings = {"optimizer": optimizer(), "loss": "mse", "metrics": ["mae"]}
        model = on_route(routes, route, inputs, outputs, compile_settings, **settings)
    history = model.fit(
        x, y, batch_size=8, epochs=2, shuffle=False, verbose=0, callbacks=list(callbacks)
    )
    return [v.numpy() for layer in model.layers for v in layer.weights], history.history


def assert_mirrored_equals_one_device(
    strategy, routes: Routes, route: str, atol: float = 1e-6, **settings: Any
) -> None:
    """Weights and logged loss and metric under a two-replica strategy equal one device's."""
    single_weights, single_logs = mlp_run(routes, route, **settings)
    keras.backend.clear_session()
    mirrored_weights, mirrored_logs = mlp_run(routes, route, strategy, **settings)
    for got, want in zip(mirrored_weights, single_weights, strict=True):
        np.testing.assert_allclose(got, want, rtol=0, atol=atol)
    for key in ("loss", "mae"):
        np.testing.assert_allclose(mirrored_logs[key], single_logs[key], rtol=0, atol=atol)


@contextlib.contextmanager
def dtype_policy(name: str):
    """Build the models of a block under Keras's global dtype policy ``name``, then restore it.

    Under ``"mixed_float16"`` the layers compute in float16 with float32 weights, and ``compile``
    wraps the optimizer in a ``LossScaleOptimizer``.
    """
    before = keras.config.dtype_policy()
    keras.config.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(before)


def assert_mixed_precision_equals_full_precision(
    routes: Routes, route: str, steps: int = 4, rtol: float = 2e-3, **settings: Any
) -> None:
    """On the quadratic, a run under ``mixed_float16`` equals the same run at the test's float
    precision within float16's round-off, and skips no step.

    The loss scale starts at 2¹⁰, low enough that no scaled gradient overflows here (the
    default 2¹⁵ would skip the first steps, as Keras's own step does).
    """
    reference = quadratic_model(routes, route, **settings)
    fit_steps(reference, steps)
    with dtype_policy("mixed_float16"):
        optimizer = keras.optimizers.LossScaleOptimizer(
            keras.optimizers.SGD(0.1), initial_scale=2.0**10
        )
        model = quadratic_model(routes, route, optimizer=optimizer, **settings)
        history = fit_steps(model, steps)
    assert model.get_layer("p").compute_dtype == "float16"
    assert history.history["skipped_steps"] == [0]
    np.testing.assert_allclose(p_of(model), p_of(reference), rtol=rtol, atol=0)


def _training_state(model: keras.Model) -> list[np.ndarray]:
    """Every variable of the model and its optimizer but the loss scale and its counter."""
    optimizer = model.optimizer
    scaling = {id(optimizer.dynamic_scale), id(optimizer.step_counter)}
    variables = [*model.trainable_variables, *model.non_trainable_variables]
    variables += [v for v in optimizer.variables if id(v) not in scaling]
    return [keras.ops.convert_to_numpy(v) for v in variables]


def assert_an_overflow_skips_the_whole_step(routes: Routes, route: str, **settings: Any) -> None:
    """Under ``mixed_float16``, a batch whose scaled gradient overflows float16 changes nothing
    but the loss scale, which halves, and the count of skipped steps.

    A Dense–BatchNorm–Dense model with momentum SGD, which ``compile`` wraps in a
    ``LossScaleOptimizer``: four ordinary steps (the first ones may be skipped while the loss
    scale comes down from 2¹⁵, as in Keras's own step; then BatchNorm's statistics and the
    momentum move), then the same inputs with targets 10⁴ away. Their loss is finite in
    float32, but its gradient, scaled, overflows float16 on its way back through the layers.
    """
    rng = np.random.default_rng(2)
    x = rng.normal(size=(8, 3)).astype("float32")
    y = (x @ np.array([[1.0], [-2.0], [0.5]])).astype("float32")
    course_lib.set_seed(5)
    with dtype_policy("mixed_float16"):
        inputs = keras.Input((3,))
        hidden = keras.layers.Dense(4)(inputs)
        hidden = keras.layers.BatchNormalization(momentum=0.5, name="bn")(hidden)
        outputs = keras.layers.Dense(1)(keras.layers.Activation("tanh")(hidden))
        compile_settings = {"optimizer": keras.optimizers.SGD(0.1, momentum=0.9), "loss": "mse"}
        model = on_route(routes, route, inputs, outputs, compile_settings, **settings)
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    fit = {"batch_size": 8, "epochs": 1, "shuffle": False, "verbose": 0}
    moving_mean = model.get_layer("bn").moving_mean.numpy().copy()
    skipped = model.fit(np.tile(x, (4, 1)), np.tile(y, (4, 1)), **fit).history["skipped_steps"]
    assert skipped[0] < 4 and int(model.optimizer.iterations.numpy()) == 4 - skipped[0]
    assert np.abs(model.get_layer("bn").moving_mean.numpy() - moving_mean).max() > 1e-3
    before, scale = _training_state(model), float(model.optimizer.dynamic_scale.numpy())
    history = model.fit(x, y + 1e4, **fit)
    assert np.isfinite(history.history["loss"][0])
    assert history.history["skipped_steps"] == [skipped[0] + 1]
    for got, want in zip(_training_state(model), before, strict=True):
        np.testing.assert_array_equal(got, want)
    assert float(model.optimizer.dynamic_scale.numpy()) == scale / 2
    assert int(model.optimizer.step_counter.numpy()) == 0


def assert_equals_kerass_own_step(routes: Routes, **settings: Any) -> None:
    """Settings that make the method one plain gradient step give Keras's step, bit for bit.

    Momentum included, over two epochs of a small MLP: weights and logged losses.
    """
    momentum = lambda: keras.optimizers.SGD(0.05, momentum=0.9)  # noqa: E731
    weights_method, logs_method = mlp_run(routes, "clean", optimizer=momentum, **settings)
    weights_keras, logs_keras = mlp_run(None, "plain", optimizer=momentum)
    for got, want in zip(weights_method, weights_keras, strict=True):
        np.testing.assert_array_equal(got, want)
    assert logs_method["loss"] == logs_keras["loss"]
