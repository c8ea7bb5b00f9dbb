"""Self-checks for the exercises of notebook 04 (Heun's method through the training step).

* :data:`ralston_step`: one step of Ralston's method for a gradient function, in NumPy.
* :data:`midpoint_model`: a ``keras.Model`` subclass whose ``train_step`` is the midpoint method.
* :data:`snapshot`: fix a snapshot that keeps references instead of values.

The solutions here are deliberately minimal (one device, one fixed tableau); the library's
general version is :class:`course_lib.runge_kutta.RungeKuttaModel`, and
``tests/test_checks_nb04.py`` checks that both agree.
"""

from __future__ import annotations

from course_lib.checks import Exercise, Incorrect, expect_close
from course_lib.landscapes import Quadratic, Rosenbrock

from typing import Any

import keras
import numpy as np
import tensorflow as tf

# --------------------------------------------------------------------------------------------
# Solutions
# --------------------------------------------------------------------------------------------


def ralston_step_solution(gradient, p, learning_rate):
    """Ralston: probe two thirds of the way, then weight the two gradients 1/4 and 3/4."""
    g1 = gradient(p)
    g2 = gradient(p - (2 / 3) * learning_rate * g1)
    return p - learning_rate * (0.25 * g1 + 0.75 * g2)


class MidpointModel(keras.Model):
    """A minimal midpoint-method ``train_step`` (one device): the gradient at p − (h/2)·g1."""

    def train_step(self, data):
        x, y = data[0], data[1]
        variables = self.trainable_variables
        start = [tf.identity(v.value) for v in variables]  # a copy, not a reference

        with tf.GradientTape() as tape:
            y_pred = self(x, training=True)
            loss = self.compute_loss(x=x, y=y, y_pred=y_pred)
        g1 = tape.gradient(loss, variables)

        h = self.optimizer.learning_rate
        for v, g in zip(variables, g1, strict=True):
            v.assign_sub(0.5 * h * g)  # half a gradient-descent step
        with tf.GradientTape() as tape:
            half_loss = self.compute_loss(x=x, y=y, y_pred=self(x, training=True))
        g2 = tape.gradient(half_loss, variables)

        for v, value in zip(variables, start, strict=True):
            v.assign(value)  # back to p before the optimizer moves it
        self.optimizer.apply(g2, variables)  # b = (0, 1): only the midpoint gradient
        for metric in self.metrics:  # loss and metrics at the start point p
            if metric.name == "loss":
                metric.update_state(loss)
        return self.compute_metrics(x, y, y_pred)


def snapshot_solution(variables):
    """Copy each variable's current value: later assignments must not change the copy."""
    return [tf.identity(v.value) for v in variables]


# --------------------------------------------------------------------------------------------
# Checkers
# --------------------------------------------------------------------------------------------


def _heun_step(gradient, p, h):
    g1 = gradient(p)
    return p - 0.5 * h * (g1 + gradient(p - h * g1))


def _check_ralston_step(answer: Any) -> str:
    if not callable(answer):
        raise Incorrect(f"pass your function ralston_step itself, got {type(answer).__name__}.")
    quadratic = Quadratic(np.array([[3.0, 1.0], [1.0, 2.0]]))
    p = np.array([1.5, -2.0])
    h = 0.3
    hA = h * quadratic.A
    got = answer(quadratic.gradient, p.copy(), h)
    if np.allclose(got, p - h * quadratic.gradient(p), atol=1e-12):
        raise Incorrect("this is a gradient-descent (Euler) step: add the trial gradient.")
    expect_close(
        "your step on the quadratic (every 2-stage order-2 method gives (I − hA + (hA)²/2)p)",
        got,
        (np.eye(2) - hA + hA @ hA / 2) @ p,
        atol=1e-10,
    )
    rosenbrock = Rosenbrock()
    start = np.array([-1.0, 1.5])
    h = 1e-3
    got = answer(rosenbrock.gradient, start.copy(), h)
    if np.allclose(got, _heun_step(rosenbrock.gradient, start, h), atol=1e-10):
        raise Incorrect("on Rosenbrock this is Heun's step: probe at 2/3·h, weights 1/4 and 3/4.")
    expect_close(
        "your step on Rosenbrock",
        got,
        ralston_step_solution(rosenbrock.gradient, start, h),
        atol=1e-10,
    )
    return "your step matches the closed form on a quadratic and Ralston's step on Rosenbrock."


def _nonlinear_problem() -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """A fixed batch and fixed initial weights for a tiny tanh network."""
    rng = np.random.default_rng(4)
    x = rng.normal(size=(16, 3)).astype("float32")
    y = np.sin(x.sum(axis=1, keepdims=True)).astype("float32")
    weights = [
        rng.normal(size=(3, 4)).astype("float32"),
        np.zeros(4, "float32"),
        rng.normal(size=(4, 1)).astype("float32"),
        np.zeros(1, "float32"),
    ]
    return x, y, weights


def _fit_nonlinear(model_class: type, h: float, steps: int) -> tuple[list[np.ndarray], list]:
    """Train the tiny network with ``model_class`` and SGD(h) for ``steps`` full-batch steps."""
    x, y, weights = _nonlinear_problem()
    inputs = keras.Input((3,))
    hidden = keras.layers.Dense(4, activation="tanh")(inputs)
    model = model_class(inputs=inputs, outputs=keras.layers.Dense(1)(hidden))
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=h), loss="mse")
    model.set_weights(weights)
    history = model.fit(x, y, batch_size=len(x), epochs=steps, verbose=0, shuffle=False)
    return model.get_weights(), history.history["loss"]


def _loss_of(weights: list[np.ndarray]) -> float:
    x, y, _ = _nonlinear_problem()
    prediction = np.tanh(x @ weights[0] + weights[1]) @ weights[2] + weights[3]
    return float(np.mean((prediction - y) ** 2))


def _check_midpoint_model(answer: Any) -> str:
    if not (isinstance(answer, type) and issubclass(answer, keras.Model)):
        raise Incorrect(
            f"pass your class (a keras.Model subclass) itself, got {type(answer).__name__}."
        )
    if answer.train_step is keras.Model.train_step:
        raise Incorrect("your class does not override train_step.")
    h, steps = 0.5, 2
    got, losses = _fit_nonlinear(answer, h, steps)
    keras.backend.clear_session()
    expected, _ = _fit_nonlinear(MidpointModel, h, steps)
    keras.backend.clear_session()
    euler, _ = _fit_nonlinear(keras.Model, h, steps)
    if all(np.allclose(g, e, atol=1e-6) for g, e in zip(got, euler, strict=True)):
        raise Incorrect("your weights follow gradient descent (Euler), not the midpoint method.")
    for index, (g, e) in enumerate(zip(got, expected, strict=True)):
        expect_close(f"weight {index} after {steps} steps", g, e, atol=1e-5)
    _, _, start = _nonlinear_problem()
    expect_close(
        "the first logged loss (it must be the loss at the start point p)",
        losses[0],
        _loss_of(start),
        atol=1e-5,
    )
    return "your train_step takes the midpoint method's steps and logs the loss at p."


def _check_snapshot(answer: Any) -> str:
    if not callable(answer):
        raise Incorrect(f"pass your function snapshot itself, got {type(answer).__name__}.")
    start = [np.array([1.0, 2.0], dtype="float32"), np.array([[3.0]], dtype="float32")]
    variables = [keras.Variable(value) for value in start]

    def moved(values):
        return [
            np.array(value.numpy() if hasattr(value, "numpy") else value, dtype="float32")
            for value in values
        ]

    eager = answer(variables)
    for variable in variables:
        variable.assign_add(np.ones(variable.shape, dtype="float32"))
    if len(eager) != len(start):
        raise Incorrect(f"return one value per variable: got {len(eager)} for {len(start)}.")
    for index, (value, original) in enumerate(zip(moved(eager), start, strict=True)):
        if np.allclose(value, original + 1):
            raise Incorrect(
                f"snapshot[{index}] moved when its variable moved: it is a reference, not a copy."
            )
        expect_close(f"snapshot[{index}] (eager)", value, original)

    for variable, value in zip(variables, start, strict=True):
        variable.assign(value)

    @tf.function
    def snapshot_then_move():
        copies = answer(variables)
        for variable in variables:
            variable.assign_add(tf.ones(variable.shape))
        return [tf.convert_to_tensor(c) + 0.0 for c in copies]

    for index, (value, original) in enumerate(zip(moved(snapshot_then_move()), start, strict=True)):
        if np.allclose(value, original + 1):
            raise Incorrect(
                f"inside tf.function (as in fit), snapshot[{index}] moved with its variable: "
                "`v.value` is the variable itself, not its current value."
            )
        expect_close(f"snapshot[{index}] (inside tf.function)", value, original)
    return "your snapshot keeps the values, eagerly and inside tf.function."


ralston_step = Exercise(
    title="Write one step of Ralston's method",
    checker=_check_ralston_step,
    hint="g1 at p, g2 at p − (2/3)·h·g1, then p − h·(g1/4 + 3·g2/4).",
    solution=ralston_step_solution,
)

midpoint_model = Exercise(
    title="Write a midpoint-method train_step",
    checker=_check_midpoint_model,
    hint=(
        "Start from the Heun train_step: probe only half a step (p − h/2·g1), and apply the "
        "midpoint gradient g2 alone. Copy, restore and report the loss at p as before."
    ),
    solution=MidpointModel,
)

snapshot = Exercise(
    title="Fix the snapshot",
    checker=_check_snapshot,
    hint="`v.value` hands back the variable itself; wrap it in tf.identity (or keras.ops.copy).",
    solution=snapshot_solution,
)

__all__ = ["midpoint_model", "ralston_step", "snapshot"]
