"""Self-checks for the exercises of notebook 04 (Heun's method through the training step).

* :data:`ralston_step`: one step of Ralston's method for a gradient function, in NumPy.
* :data:`midpoint_model`: a ``keras.Model`` subclass whose ``train_step`` is the midpoint method.
* :data:`snapshot`: fix a snapshot that keeps references instead of values.
* :data:`nesterov_model`: Nesterov momentum as a ``train_step`` (the gradient at the look-ahead
  point), checked against ``keras.optimizers.SGD(momentum=..., nesterov=True)``.

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


class NesterovModel(keras.Model):
    """Nesterov momentum owned by the training step: the gradient is taken at p + μ·v.

    The weights hold p; each velocity v starts at zero. One step: move to the look-ahead point
    p + μ·v, take the gradient there (same batch), come back to p, then v ← μ·v − h·g and
    p ← p + v, with h the compiled optimizer's learning rate. The compiled optimizer does not
    step: this training step is the optimizer.
    """

    def __init__(self, *args, momentum=0.9, **kwargs):
        super().__init__(*args, **kwargs)
        self.momentum = momentum
        self.velocities = [
            keras.Variable(np.zeros(v.shape, dtype="float32"), trainable=False, name="velocity")
            for v in self.trainable_variables
        ]

    def train_step(self, data):
        x, y = data[0], data[1]
        variables = self.trainable_variables
        start = [tf.identity(v.value) for v in variables]  # p, by value
        for v, velocity in zip(variables, self.velocities, strict=True):
            v.assign_add(self.momentum * velocity)  # the look-ahead point p + μ·v
        with tf.GradientTape() as tape:
            y_pred = self(x, training=True)
            loss = self.compute_loss(x=x, y=y, y_pred=y_pred)
        gradients = tape.gradient(loss, variables)

        h = self.optimizer.learning_rate
        for v, velocity, p, g in zip(variables, self.velocities, start, gradients, strict=True):
            velocity.assign(self.momentum * velocity - h * g)
            v.assign(p + velocity)  # from p, not from the look-ahead point
        for metric in self.metrics:  # the loss where the gradient was taken
            if metric.name == "loss":
                metric.update_state(loss)
        return self.compute_metrics(x, y, y_pred)


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


def _train_nonlinear(
    model_class: Any, optimizer: keras.optimizers.Optimizer, steps: int, **kwargs: Any
) -> tuple[keras.Model, list]:
    """Train the tiny network, built by ``model_class``, for ``steps`` full-batch steps.

    The fixed initial weights go into the trainable variables, so a model that keeps extra
    state of its own (velocities, say) starts that state where its constructor put it.
    """
    x, y, weights = _nonlinear_problem()
    inputs = keras.Input((3,))
    hidden = keras.layers.Dense(4, activation="tanh")(inputs)
    model = model_class(inputs=inputs, outputs=keras.layers.Dense(1)(hidden), **kwargs)
    model.compile(optimizer=optimizer, loss="mse")
    for variable, value in zip(model.trainable_variables, weights, strict=True):
        variable.assign(value)
    history = model.fit(x, y, batch_size=len(x), epochs=steps, verbose=0, shuffle=False)
    return model, history.history["loss"]


def _fit_nonlinear(model_class: type, h: float, steps: int) -> tuple[list[np.ndarray], list]:
    """Train the tiny network with ``model_class`` and SGD(h) for ``steps`` full-batch steps."""
    model, losses = _train_nonlinear(model_class, keras.optimizers.SGD(learning_rate=h), steps)
    return [v.numpy() for v in model.trainable_variables], losses


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


NESTEROV_RATE, NESTEROV_MOMENTUM, NESTEROV_STEPS = 0.1, 0.9, 6


def _check_nesterov_model(answer: Any) -> str:
    if not (isinstance(answer, type) and issubclass(answer, keras.Model)):
        raise Incorrect(
            f"pass your class (a keras.Model subclass) itself, got {type(answer).__name__}."
        )
    if answer.train_step is keras.Model.train_step:
        raise Incorrect("your class does not override train_step.")
    h, mu, steps = NESTEROV_RATE, NESTEROV_MOMENTUM, NESTEROV_STEPS
    model, _ = _train_nonlinear(answer, keras.optimizers.SGD(learning_rate=h), steps, momentum=mu)
    velocities = getattr(model, "velocities", None)
    if velocities is None or len(velocities) != len(model.trainable_variables):
        raise Incorrect(
            "keep the starter's `self.velocities`, one per trainable variable: the check reads "
            "them to compare with Keras."
        )
    p = [v.numpy() for v in model.trainable_variables]
    v = [np.asarray(u.numpy() if hasattr(u, "numpy") else u) for u in velocities]
    keras.backend.clear_session()
    keras_nesterov, _ = _train_nonlinear(
        keras.Model, keras.optimizers.SGD(h, momentum=mu, nesterov=True), steps
    )
    keras.backend.clear_session()
    heavy_ball, _ = _train_nonlinear(keras.Model, keras.optimizers.SGD(h, momentum=mu), steps)
    if all(
        np.allclose(a, b.numpy(), atol=1e-6)
        for a, b in zip(p, heavy_ball.trainable_variables, strict=True)
    ):
        raise Incorrect(
            "your weights follow heavy-ball momentum (the gradient at p): Nesterov takes it at "
            "the look-ahead point p + μ·v."
        )
    for index, (weight, velocity, reference) in enumerate(
        zip(p, v, keras_nesterov.trainable_variables, strict=True)
    ):
        expect_close(
            f"p + μ·v of weight {index} after {steps} steps (Keras's nesterov=True stores that "
            "point as its weights)",
            weight + mu * velocity,
            reference.numpy(),
            atol=1e-5,
        )
    return (
        "your step is Nesterov momentum: p + μ·v equals Keras's SGD(momentum=0.9, nesterov=True) "
        "weights after every step."
    )


ralston_step = Exercise(
    title="Write one step of Ralston's method",
    checker=_check_ralston_step,
    hint=(
        "Start from heun_step at the top of the notebook: the structure is the same, only "
        "the coefficients change. Where does the trial point sit, and how are g1 and g2 "
        "weighted?"
    ),
    solution=ralston_step_solution,
)

midpoint_model = Exercise(
    title="Write a midpoint-method train_step",
    checker=_check_midpoint_model,
    hint=(
        "Put the midpoint method's two formulas next to Heun's. In heun_train_step, one line "
        "builds the trial point and one line decides what the optimizer receives: those are "
        "the lines that change. The four rules of section 5 still hold."
    ),
    solution=MidpointModel,
)

snapshot = Exercise(
    title="Fix the snapshot",
    checker=_check_snapshot,
    hint=(
        "Inside a tf.function, `v.value` is a handle that reads the variable when it is used, "
        "not when you wrote it. You need an op that produces a new tensor holding the value now."
    ),
    solution=snapshot_solution,
)

nesterov_model = Exercise(
    title="Write Nesterov momentum as a train_step",
    checker=_check_nesterov_model,
    hint=(
        "It is a probe step, like Heun's: at which point do you take the gradient, and from "
        "which point does the update start? Read h from self.optimizer.learning_rate; the "
        "compiled optimizer is not called."
    ),
    solution=NesterovModel,
)

__all__ = ["midpoint_model", "nesterov_model", "ralston_step", "snapshot"]
