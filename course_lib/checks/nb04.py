"""Self-checks for the exercises of notebook 04 (Heun's method through the training step).

Each exercise needs more than a shown cell with a few numbers changed:

* :data:`two_stage_step`: the whole family of second-order two-stage methods in NumPy. The
  learner chooses where to probe (α) and must *derive* the weights that keep the method second
  order; α = 1 is Heun, ½ the midpoint method, ⅔ Ralston's.
* :data:`kutta3_model`: Kutta's third-order method as a ``train_step``: three gradients, and a
  trial point that combines two of them, each built from the start point p.
* :data:`nesterov_model`: Nesterov momentum as a ``train_step`` (the gradient at the look-ahead
  point), checked against ``keras.optimizers.SGD(momentum=..., nesterov=True)``.

The solutions here are deliberately minimal (one device, one fixed tableau); the library's
general version is :class:`course_lib.runge_kutta.RungeKuttaModel`, and
``tests/test_checks_nb04.py`` checks that both agree.
"""

from __future__ import annotations

from course_lib.checks import Exercise, Incorrect, expect_close
from course_lib.environment import no_retracing_warning
from course_lib.landscapes import Quadratic, Rosenbrock

import functools
from typing import Any

import keras
import numpy as np
import tensorflow as tf

# --------------------------------------------------------------------------------------------
# Solutions
# --------------------------------------------------------------------------------------------


def two_stage_step_solution(gradient, p, learning_rate, alpha):
    """Probe at p − α·h·g1; weights (1 − 1/(2α), 1/(2α)) make the step second order.

    On a quadratic the step is (I − (b1 + b2)·hA + b2·α·(hA)²)·p; it matches the exact flow's
    I − hA + (hA)²/2 when b1 + b2 = 1 and b2·α = 1/2.
    """
    g1 = gradient(p)
    g2 = gradient(p - alpha * learning_rate * g1)
    b2 = 1.0 / (2.0 * alpha)
    return p - learning_rate * ((1.0 - b2) * g1 + b2 * g2)


class Kutta3Model(keras.Model):
    """Kutta's third-order method as a ``train_step`` (one device).

    g1 = ∇L(p), g2 = ∇L(p − h/2·g1), g3 = ∇L(p + h·g1 − 2h·g2); the optimizer receives
    (g1 + 4·g2 + g3)/6. Every trial point is built from the snapshot of p, not from the point
    where the previous stage left the weights.
    """

    def _gradients(self, x, y):
        with tf.GradientTape() as tape:
            y_pred = self(x, training=True)
            loss = self.compute_loss(x=x, y=y, y_pred=y_pred)
        return tape.gradient(loss, self.trainable_variables), y_pred, loss

    def train_step(self, data):
        x, y = data[0], data[1]
        variables = self.trainable_variables
        start = [tf.identity(v.value) for v in variables]  # p, by value
        g1, y_pred, loss = self._gradients(x, y)

        h = self.optimizer.learning_rate
        for v, p, a in zip(variables, start, g1, strict=True):
            v.assign(p - 0.5 * h * a)
        g2, _, _ = self._gradients(x, y)
        for v, p, a, b in zip(variables, start, g1, g2, strict=True):
            v.assign(p + h * a - 2.0 * h * b)  # from p: p − h·(−g1 + 2·g2)
        g3, _, _ = self._gradients(x, y)

        for v, p in zip(variables, start, strict=True):
            v.assign(p)  # back to p before the optimizer moves it
        combined = [(a + 4.0 * b + c) / 6.0 for a, b, c in zip(g1, g2, g3, strict=True)]
        self.optimizer.apply(combined, variables)
        for metric in self.metrics:  # loss and metrics at the start point p
            if metric.name == "loss":
                metric.update_state(loss)
        return self.compute_metrics(x, y, y_pred)


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


def _two_stage_with(gradient, p, h, alpha, weights):
    g1 = gradient(p)
    g2 = gradient(p - alpha * h * g1)
    return p - h * (weights[0] * g1 + weights[1] * g2)


#: Probe positions the check tries: Heun's, the midpoint's, Ralston's, and two without a name.
_ALPHAS = (1.0, 0.5, 2.0 / 3.0, 0.25, 1.5)


def _check_two_stage_step(answer: Any) -> str:
    if not callable(answer):
        raise Incorrect(f"pass your function two_stage_step itself, got {type(answer).__name__}.")
    quadratic = Quadratic(np.array([[3.0, 1.0], [1.0, 2.0]]))
    p, h = np.array([1.5, -2.0]), 0.3
    hA = h * quadratic.A
    second_order = (np.eye(2) - hA + hA @ hA / 2) @ p
    for alpha in _ALPHAS:
        got = np.asarray(answer(quadratic.gradient, p.copy(), h, alpha), dtype=np.float64)
        label = f"with alpha = {alpha:.4g}, your step on the quadratic"
        if got.shape == p.shape and np.allclose(got, second_order, rtol=0, atol=1e-10):
            continue
        if got.shape == p.shape and np.allclose(got, p - h * quadratic.gradient(p), atol=1e-12):
            raise Incorrect(f"{label} is a gradient-descent (Euler) step: use g2 too.")
        heun_weights = _two_stage_with(quadratic.gradient, p, h, alpha, (0.5, 0.5))
        if got.shape == p.shape and np.allclose(got, heun_weights, atol=1e-10):
            raise Incorrect(
                f"{label} uses Heun's weights 1/2 and 1/2; with this probe they give a "
                "first-order method only. The weights must depend on alpha."
            )
        expect_close(
            f"{label} (every second-order two-stage method gives (I − hA + (hA)²/2)·p there)",
            got,
            second_order,
            atol=1e-10,
        )
    rosenbrock, start, h = Rosenbrock(), np.array([-1.0, 1.5]), 1e-3
    for alpha in _ALPHAS:
        got = answer(rosenbrock.gradient, start.copy(), h, alpha)
        expect_close(
            f"your step on Rosenbrock with alpha = {alpha:.4g} (the probe must sit at "
            "p − alpha·h·g1)",
            got,
            two_stage_step_solution(rosenbrock.gradient, start, h, alpha),
            atol=1e-10,
        )
    return (
        "your weights make every probe position second order: on the quadratic all give "
        "(I − hA + (hA)²/2)·p, and on Rosenbrock each takes its own step."
    )


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
    with no_retracing_warning():
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


class Kutta3ThirdPointFromTheSecond(Kutta3Model):
    """Kutta's method with one known mistake, so that the check can name it.

    (No leading underscore: Keras derives the model's name scope from the class name.)
    """

    form = "third point from the second"

    def train_step(self, data):
        x, y = data[0], data[1]
        variables = self.trainable_variables
        start = [tf.identity(v.value) for v in variables]
        g1, y_pred, loss = self._gradients(x, y)
        h = self.optimizer.learning_rate
        for v, a in zip(variables, g1, strict=True):
            v.assign_sub(0.5 * h * a)
        g2, _, _ = self._gradients(x, y)
        for v, a, b in zip(variables, g1, g2, strict=True):
            v.assign_add(h * a - 2.0 * h * b)  # the mistake: from the second trial point
        g3, _, _ = self._gradients(x, y)
        if self.form == "third point from the second":
            for v, p in zip(variables, start, strict=True):
                v.assign(p)
        combined = [(a + 4.0 * b + c) / 6.0 for a, b, c in zip(g1, g2, g3, strict=True)]
        self.optimizer.apply(combined, variables)  # "no restore": from the third trial point
        for metric in self.metrics:
            if metric.name == "loss":
                metric.update_state(loss)
        return self.compute_metrics(x, y, y_pred)


class Kutta3WithoutRestore(Kutta3ThirdPointFromTheSecond):
    form = "no restore"


def _heun_model(inputs, outputs):
    from course_lib.runge_kutta import RungeKuttaModel

    return RungeKuttaModel(inputs=inputs, outputs=outputs, tableau="heun")


_KUTTA3_MISREADINGS = (
    (keras.Model, "your weights follow gradient descent (Euler), one gradient per step."),
    (_heun_model, "this is Heun's method: two stages. Kutta's takes a third gradient."),
    (
        Kutta3ThirdPointFromTheSecond,
        "your third trial point starts from where the second stage left the weights; the "
        "formula measures it from p, like every trial point.",
    ),
    (
        Kutta3WithoutRestore,
        "the optimizer steps from the last trial point, and the third trial point starts from "
        "the second: the weights never go back to p. Put them back before each trial point and "
        "before the update, from a copy of p (v.value is the variable itself, not a copy).",
    ),
)


_KUTTA3_RATE, _KUTTA3_STEPS = 0.5, 2


@functools.cache
def _kutta3_reference(index: int) -> tuple[np.ndarray, ...]:
    """Weights after the check's run of Kutta3Model (index -1) or of a known misreading.

    Deterministic, so computed once per process: a learner re-checking pays only for their own
    model.
    """
    model_class = Kutta3Model if index < 0 else _KUTTA3_MISREADINGS[index][0]
    keras.backend.clear_session()
    weights, _ = _fit_nonlinear(model_class, _KUTTA3_RATE, _KUTTA3_STEPS)
    return tuple(weights)


def _check_kutta3_model(answer: Any) -> str:
    if not (isinstance(answer, type) and issubclass(answer, keras.Model)):
        raise Incorrect(
            f"pass your class (a keras.Model subclass) itself, got {type(answer).__name__}."
        )
    if answer.train_step is keras.Model.train_step:
        raise Incorrect("your class does not override train_step.")
    h, steps = _KUTTA3_RATE, _KUTTA3_STEPS
    got, losses = _fit_nonlinear(answer, h, steps)
    expected = _kutta3_reference(-1)
    if not all(np.allclose(g, e, atol=1e-5) for g, e in zip(got, expected, strict=True)):
        for index, (_, message) in enumerate(_KUTTA3_MISREADINGS):
            wrong = _kutta3_reference(index)
            if all(np.allclose(g, w, atol=1e-6) for g, w in zip(got, wrong, strict=True)):
                raise Incorrect(message)
    for index, (g, e) in enumerate(zip(got, expected, strict=True)):
        expect_close(f"weight {index} after {steps} steps (against Kutta's method)", g, e, 1e-5)
    _, _, start = _nonlinear_problem()
    expect_close(
        "the first logged loss (it must be the loss at the start point p)",
        losses[0],
        _loss_of(start),
        atol=1e-5,
    )
    return "your train_step takes Kutta's third-order steps and logs the loss at p."


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


two_stage_step = Exercise(
    title="Every second-order two-stage method",
    checker=_check_two_stage_step,
    hint=(
        "On a quadratic ∇L(p) = A·p. Call the weights b1 and b2, expand one step of your "
        "method in powers of hA, and compare it term by term with the first three terms of the "
        "exact flow e^(−hA)·p (section 1). Two conditions, two unknowns."
    ),
    solution=two_stage_step_solution,
)

kutta3_model = Exercise(
    title="Kutta's third-order method as a train_step",
    checker=_check_kutta3_model,
    hint=(
        "The four rules of Heun's step still hold. What is new is the third trial point: it "
        "combines two gradients and, like every trial point, is measured from p; where are the "
        "weights when you build it? Keep g1 and g2 until the end: the update needs all three."
    ),
    solution=Kutta3Model,
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

__all__ = ["Kutta3Model", "kutta3_model", "nesterov_model", "two_stage_step"]
