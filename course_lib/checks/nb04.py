"""Self-checks for notebook 04 (Heun's method through the training step).

Two checks judge what the learner writes inside the lesson:

* :data:`training_loop`: a ``GradientTape`` training loop, the bridge from ``fit`` to owning the
  step. Run on a small linear regression whose every gradient is known in closed form, with SGD
  with momentum: the check records what the compiled optimizer receives at each step and names
  the first step whose gradient is not the batch's (the whole data set's, a sum instead of a
  mean, another batch's, the previous step's), and whether the optimizer stepped once per batch.
* :data:`heun_step`: the body of Heun's ``train_step(self, data)``, on notebook 04's quadratic
  with a falling learning rate (:mod:`course_lib.checks.heun_problem`): each step against the
  closed form, naming the known mistakes (the trial point not restored, the second gradient at
  the wrong point, a wrong average, a step size read once, the loss logged at the trial point),
  then on a small tanh network with momentum against the library's ``RungeKuttaModel``.

The exercises at the end ask for transfer:

* :data:`two_stage_step`: the whole family of second-order two-stage methods in NumPy. The
  learner chooses where to probe (α) and must *derive* the weights that keep the method second
  order; α = 1 is Heun, ½ the midpoint method, ⅔ Ralston's.
* :data:`kutta3_model`: Kutta's third-order method as a ``train_step``: three gradients, and a
  trial point that combines two of them, each built from the start point p.
* :data:`nesterov_model`: Nesterov momentum as a ``train_step`` (the gradient at the look-ahead
  point), checked step by step against ``keras.optimizers.SGD(momentum=..., nesterov=True)``:
  the message says after which step the weights first part and whether the compiled optimizer
  stepped.

The solutions here are deliberately minimal (one device, one fixed tableau); the library's
general version is :class:`course_lib.runge_kutta.RungeKuttaModel`, and
``tests/test_checks_nb04.py`` checks that both agree.
"""

from __future__ import annotations

from course_lib.checks import Exercise, Incorrect, expect_close, heun_problem
from course_lib.data import train_batches
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


def train_by_hand(model, x, y, batch_size, epochs):
    """Train a compiled ``model`` as ``fit(..., shuffle=False)`` does; each batch's loss.

    For every batch: the forward pass and the compiled loss on a ``GradientTape``, the gradient
    of that loss with respect to the trainable variables, and one step of the compiled
    optimizer. The loss of each batch is the one at the weights its gradient was taken at,
    before the step: the loss ``fit`` averages into an epoch's log.
    """
    variables = model.trainable_variables
    losses = []  # the loss of each batch, at the weights before its step
    for _ in range(epochs):
        for x_batch, y_batch in train_batches(x, y, batch_size):
            with tf.GradientTape() as tape:
                y_pred = model(x_batch, training=True)
                loss = model.compute_loss(x=x_batch, y=y_batch, y_pred=y_pred)
            gradients = tape.gradient(loss, variables)
            model.optimizer.apply(gradients, variables)
            losses.append(float(loss))
    return losses


def logs_at_start(model, x, y, y_pred, loss):
    """What ``fit``'s own step logs: ``loss`` into the loss tracker, the metrics of ``y_pred``."""
    for metric in model.metrics:
        if metric.name == "loss":
            metric.update_state(loss, sample_weight=tf.shape(x)[0])  # as fit: by batch size
    return model.compute_metrics(x, y, y_pred)


def heun_train_step(self, data):
    """Heun's step as a ``train_step``: g1 at p, g2 at p − h·g1 on the same batch, apply the mean.

    The four rules: copy p by value, take both gradients on the same mini-batch, restore p before
    the optimizer applies (g1 + g2)/2, and log the loss at p.
    """
    x, y = data[:2]  # one batch, for both gradients
    variables, h = self.trainable_variables, self.optimizer.learning_rate
    start = [tf.identity(v.value) for v in variables]  # copies of p, not references

    with tf.GradientTape() as tape:
        y_pred = self(x, training=True)
        loss = self.compute_loss(x=x, y=y, y_pred=y_pred)  # the loss at p
    g1 = tape.gradient(loss, variables)

    for v, g in zip(variables, g1, strict=True):
        v.assign_sub(h * g)  # trial point p - h*g1
    with tf.GradientTape() as tape:
        trial_loss = self.compute_loss(x=x, y=y, y_pred=self(x, training=True))
    g2 = tape.gradient(trial_loss, variables)  # same batch

    for v, value in zip(variables, start, strict=True):
        v.assign(value)  # back to p
    self.optimizer.apply([(a + b) / 2 for a, b in zip(g1, g2, strict=True)], variables)
    return logs_at_start(self, x, y, y_pred, loss)  # both from the pass at p


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
                metric.update_state(loss, sample_weight=tf.shape(x)[0])  # as fit: by batch size
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
                metric.update_state(loss, sample_weight=tf.shape(x)[0])  # as fit: by batch size
        return self.compute_metrics(x, y, y_pred)


# --------------------------------------------------------------------------------------------
# Checkers
# --------------------------------------------------------------------------------------------


# The training loop by hand -------------------------------------------------------------------

#: Two epochs of two batches of 4: four steps of SGD with momentum.
LOOP_BATCH, LOOP_EPOCHS, LOOP_RATE, LOOP_MOMENTUM = 4, 2, 0.1, 0.5


def _loop_problem() -> tuple[np.ndarray, np.ndarray]:
    """A linear regression, 8 examples of 2 features, whose every gradient is known."""
    rng = np.random.default_rng(11)
    x = rng.normal(size=(8, 2)).astype("float32")
    noise = 0.1 * rng.normal(size=(8, 1))
    y = (x @ np.array([[1.0], [-2.0]]) + 0.5 + noise).astype("float32")
    return x, y


def _loop_start() -> list[np.ndarray]:
    return [np.array([[0.5], [0.5]], "float32"), np.zeros(1, "float32")]


def _batch_gradient(weights: list[np.ndarray], x: np.ndarray, y: np.ndarray) -> list[np.ndarray]:
    """The closed-form gradient of the mean squared error of ``Dense(1)`` on ``(x, y)``."""
    kernel, bias = (np.asarray(w, np.float64) for w in weights)
    residual = x @ kernel + bias - y
    return [2 / len(x) * x.T @ residual, 2 / len(x) * residual.sum(axis=0)]


def _batch_loss(weights: list[np.ndarray], x: np.ndarray, y: np.ndarray) -> float:
    kernel, bias = (np.asarray(w, np.float64) for w in weights)
    return float(np.mean((x @ kernel + bias - y) ** 2))


class _RecordingSGD(keras.optimizers.SGD):
    """SGD with momentum that records, at every step, the model's weights and what it receives."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(learning_rate=LOOP_RATE, momentum=LOOP_MOMENTUM, **kwargs)
        self.watched: list = []
        self.record: list[tuple[list[np.ndarray], list[np.ndarray | None]]] = []

    def apply(self, grads, trainable_variables=None):
        weights = [np.array(v.numpy(), np.float64) for v in self.watched]
        received = [None if g is None else np.asarray(g, np.float64) for g in grads]
        self.record.append((weights, received))
        return super().apply(grads, trainable_variables)


def _same_gradient(got: list, expected: list) -> bool:
    return all(
        g is not None and np.allclose(g, e, rtol=1e-4, atol=1e-5)
        for g, e in zip(got, expected, strict=True)
    )


def _judge_loop_step(step: int, record: list, x: np.ndarray, y: np.ndarray) -> None:
    """Name what the optimizer received at ``step`` (from 0) when it is not the batch's gradient."""
    weights, received = record[step]
    batches = train_batches(x, y, LOOP_BATCH)
    index = step % len(batches)
    expected = _batch_gradient(weights, *batches[index])
    if len(received) != len(expected):
        raise Incorrect(
            f"at step {step + 1} the optimizer received {len(received)} gradients for "
            f"{len(expected)} trainable variables: one gradient per variable, in their order."
        )
    if _same_gradient(received, expected):
        return
    where = f"at step {step + 1} (batch {index + 1} of epoch {step // len(batches) + 1})"
    known = {
        "the gradient of the whole data set, not of this batch's 4 examples: compute the loss "
        "on x_batch and y_batch.": _batch_gradient(weights, x, y),
        f"{LOOP_BATCH} times the batch's gradient: your loss is the sum over the batch (or a "
        "vector of per-example losses, which tape.gradient sums). The compiled loss, "
        "model.compute_loss(...), is the batch's mean.": [LOOP_BATCH * e for e in expected],
        "the gradient of the other batch of the epoch: take each gradient on the batch that "
        "this iteration of the loop hands you.": _batch_gradient(
            weights, *batches[(index + 1) % len(batches)]
        ),
    }
    if step:
        known[
            "the gradient of the step before, again: take a new gradient for every batch, "
            "inside the loop, at the weights the previous step left."
        ] = record[step - 1][1]
    for message, gradient in known.items():
        if _same_gradient(received, gradient):
            raise Incorrect(f"{where} the optimizer received {message}")
    for index_, (g, e) in enumerate(zip(received, expected, strict=True)):
        if g is None:
            raise Incorrect(
                f"{where} the gradient of variable {index_} is None: compute the loss inside the "
                "`with tf.GradientTape() as tape:` block, from model(x_batch, training=True)."
            )
        expect_close(f"{where}, the gradient of variable {index_}", g, e, atol=1e-5)


def _momentum_sgd_weights(x: np.ndarray, y: np.ndarray) -> list[np.ndarray]:
    """The weights after the loop, in closed form: Keras's momentum, v ← μv − ηg, p ← p + v."""
    weights = [w.astype(np.float64) for w in _loop_start()]
    velocities = [np.zeros_like(w) for w in weights]
    for _ in range(LOOP_EPOCHS):
        for batch in train_batches(x, y, LOOP_BATCH):
            gradients = _batch_gradient(weights, *batch)
            velocities = [
                LOOP_MOMENTUM * v - LOOP_RATE * g
                for v, g in zip(velocities, gradients, strict=True)
            ]
            weights = [w + v for w, v in zip(weights, velocities, strict=True)]
    return weights


def _check_training_loop(answer: Any) -> str:
    if not callable(answer):
        raise Incorrect(f"pass your function train_by_hand itself, got {type(answer).__name__}.")
    x, y = _loop_problem()
    inputs = keras.Input((2,))
    model = keras.Model(inputs, keras.layers.Dense(1)(inputs))
    optimizer = _RecordingSGD()
    model.compile(optimizer=optimizer, loss="mse")
    for variable, value in zip(model.trainable_variables, _loop_start(), strict=True):
        variable.assign(value)
    optimizer.watched = model.trainable_variables
    losses = answer(model, x, y, LOOP_BATCH, LOOP_EPOCHS)

    steps = LOOP_EPOCHS * len(train_batches(x, y, LOOP_BATCH))
    record = optimizer.record
    if not record:
        moved = any(
            not np.array_equal(v.numpy(), w)
            for v, w in zip(model.trainable_variables, _loop_start(), strict=True)
        )
        raise Incorrect(
            "the compiled optimizer never stepped"
            + (" (you moved the weights yourself)" if moved else "")
            + ": hand each batch's gradients to model.optimizer.apply(gradients, variables), so "
            "that momentum, Adam or a schedule work as in fit (the check compiles SGD with "
            "momentum)."
        )
    if len(record) != steps:
        raise Incorrect(
            f"the optimizer stepped {len(record)} times for {steps} batches ({LOOP_EPOCHS} "
            f"epochs of {steps // LOOP_EPOCHS}): call model.optimizer.apply once per batch, "
            "inside the inner loop."
        )
    for step in range(steps):
        _judge_loop_step(step, record, x, y)
    if not isinstance(losses, list | tuple) or len(losses) != steps:
        raise Incorrect(
            f"return the list of the {steps} batches' losses (one float per batch), got {losses!r}."
        )
    after = [w for w, _ in record[1:]] + [
        [np.asarray(v.numpy()) for v in model.trainable_variables]
    ]
    batches = train_batches(x, y, LOOP_BATCH)
    for step, (got, (weights, _)) in enumerate(zip(losses, record, strict=True)):
        batch = batches[step % len(batches)]
        if np.isclose(float(got), _batch_loss(weights, *batch), rtol=1e-5, atol=1e-6):
            continue
        if np.isclose(float(got), _batch_loss(after[step], *batch), rtol=1e-5, atol=1e-6):
            raise Incorrect(
                f"the loss you returned for step {step + 1} is the one after the step: return "
                "the loss from the tape, at the weights the gradient was taken at (fit logs that)."
            )
        raise Incorrect(
            f"the loss you returned for step {step + 1} is {float(got):.5g}; the batch's loss at "
            f"the weights before its step is {_batch_loss(weights, *batch):.5g}."
        )
    for index, (got, expected) in enumerate(
        zip(model.trainable_variables, _momentum_sgd_weights(x, y), strict=True)
    ):
        expect_close(
            f"variable {index} after the loop (expected: SGD with momentum, one step per batch)",
            got.numpy(),
            expected,
            atol=1e-5,
        )
    return (
        f"each of the {steps} steps hands the optimizer its batch's gradient at the current "
        "weights, once, and you return the loss at the weights before each step."
    )


# Heun's train_step -----------------------------------------------------------------------------

#: What each known mistake of the Heun step means on TensorFlow (keys of heun_problem.judge):
#: the shared messages, and those that name TensorFlow's API.
_HEUN_MESSAGES = heun_problem.SHARED_MESSAGES | {
    "not restored": "the optimizer stepped from the trial point p − h·g1, not from p. Put the "
    "weights back to p before self.optimizer.apply, from copies taken by value "
    "(tf.identity(v.value)): a copy taken as v.value is the variable itself and restores nothing.",
    "gradient descent": "this is a gradient-descent step, p − h·g1: the second gradient changed "
    "nothing. Were the weights at the trial point during the second tape, and does the optimizer "
    "receive the average (g1 + g2)/2?",
    "first rate": "the trial point used the first step's h. The check's learning rate changes "
    "every step (a schedule): read h = self.optimizer.learning_rate inside the step.",
    "both losses": "it is the mean of the losses at p and at the trial point: the loss tracker "
    "received both. Update it once, with the loss at p.",
    "optimizer": "Call self.optimizer.apply once per step, with the average of the two "
    "gradients: it counts the steps, and momentum, Adam or a schedule keep their state there.",
    "own update": "You moved the weights yourself: hand the average of the two gradients to "
    "self.optimizer.apply, so that momentum, Adam or a schedule treat it as any gradient.",
}


def _heun_model_class(answer: Any) -> type:
    """The learner's step as a model class: a function train_step(self, data), or a class."""
    if isinstance(answer, type) and issubclass(answer, keras.Model):
        if answer.train_step is keras.Model.train_step:
            raise Incorrect("your class does not override train_step.")
        return answer
    if not callable(answer):
        raise Incorrect(f"pass your function heun_train_step itself, got {type(answer).__name__}.")
    return type("YourHeunModel", (keras.Model,), {"train_step": answer})


_HEUN_MOMENTUM_RATE, _HEUN_MOMENTUM_STEPS = 0.3, 3


@functools.cache
def _library_heun_with_momentum() -> tuple[np.ndarray, ...]:
    """The library's Heun step with momentum SGD on the tanh network (computed once)."""
    keras.backend.clear_session()
    model, _ = _train_nonlinear(
        _heun_model,
        keras.optimizers.SGD(_HEUN_MOMENTUM_RATE, momentum=0.9),
        _HEUN_MOMENTUM_STEPS,
    )
    return tuple(v.numpy() for v in model.trainable_variables)


def _check_heun_step(answer: Any) -> str:
    model_class = _heun_model_class(answer)
    with no_retracing_warning():
        points, losses, optimizer_steps = heun_problem.train_on_the_quadratic(model_class)
    heun_problem.judge(points, losses, optimizer_steps, _HEUN_MESSAGES)
    expected = _library_heun_with_momentum()
    keras.backend.clear_session()
    model, _ = _train_nonlinear(
        model_class,
        keras.optimizers.SGD(_HEUN_MOMENTUM_RATE, momentum=0.9),
        _HEUN_MOMENTUM_STEPS,
    )
    for index, (got, want) in enumerate(zip(model.trainable_variables, expected, strict=True)):
        expect_close(
            f"on a small tanh network with SGD(momentum=0.9), weight {index} after "
            f"{_HEUN_MOMENTUM_STEPS} steps (against the library's Heun step)",
            got.numpy(),
            want,
            atol=1e-5,
        )
    return (
        f"{heun_problem.STEPS} steps on the quadratic are Heun's closed form, each logging the "
        "loss at p, with the optimizer stepping once per step; with momentum on a tanh network "
        "your step equals the library's."
    )


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
                metric.update_state(loss, sample_weight=tf.shape(x)[0])  # as fit: by batch size
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


def _observed_run(
    model_class: Any, optimizer: keras.optimizers.Optimizer, observe: Any, **kwargs: Any
) -> tuple[keras.Model, list[float], list]:
    """:func:`_train_nonlinear` for NESTEROV_STEPS steps, with ``observe(model)`` after each."""
    seen: list = []
    x, y, weights = _nonlinear_problem()
    inputs = keras.Input((3,))
    hidden = keras.layers.Dense(4, activation="tanh")(inputs)
    model = model_class(inputs=inputs, outputs=keras.layers.Dense(1)(hidden), **kwargs)
    model.compile(optimizer=optimizer, loss="mse")
    for variable, value in zip(model.trainable_variables, weights, strict=True):
        variable.assign(value)
    callback = keras.callbacks.LambdaCallback(on_epoch_end=lambda *_: seen.append(observe(model)))
    with no_retracing_warning():
        history = model.fit(
            x,
            y,
            batch_size=len(x),
            epochs=NESTEROV_STEPS,
            verbose=0,
            shuffle=False,
            callbacks=[callback],
        )
    return model, history.history["loss"], seen


def _weights(model: keras.Model) -> list[np.ndarray]:
    return [np.array(v.numpy()) for v in model.trainable_variables]


def _look_ahead(model: keras.Model) -> list[np.ndarray]:
    """p + μ·v, the point Keras's nesterov=True stores as its weights."""
    velocities = getattr(model, "velocities", None)
    if velocities is None or len(velocities) != len(model.trainable_variables):
        return []
    return [
        np.array(v.numpy()) + NESTEROV_MOMENTUM * np.asarray(keras.ops.convert_to_numpy(u))
        for v, u in zip(model.trainable_variables, velocities, strict=True)
    ]


@functools.cache
def _keras_momentum_runs() -> tuple[list[float], list, tuple[np.ndarray, ...]]:
    """Keras's nesterov=True (logged losses, weights after each step) and heavy ball's weights.

    Deterministic, so computed once per process.
    """
    h, mu = NESTEROV_RATE, NESTEROV_MOMENTUM
    keras.backend.clear_session()
    _, losses, weights = _observed_run(
        keras.Model, keras.optimizers.SGD(h, momentum=mu, nesterov=True), _weights
    )
    keras.backend.clear_session()
    heavy_ball, _, _ = _observed_run(keras.Model, keras.optimizers.SGD(h, momentum=mu), _weights)
    return losses, weights, tuple(v.numpy() for v in heavy_ball.trainable_variables)


def _check_nesterov_model(answer: Any) -> str:
    if not (isinstance(answer, type) and issubclass(answer, keras.Model)):
        raise Incorrect(
            f"pass your class (a keras.Model subclass) itself, got {type(answer).__name__}."
        )
    if answer.train_step is keras.Model.train_step:
        raise Incorrect("your class does not override train_step.")
    h, mu = NESTEROV_RATE, NESTEROV_MOMENTUM
    model, losses, yours = _observed_run(
        answer, keras.optimizers.SGD(learning_rate=h), _look_ahead, momentum=mu
    )
    if not all(yours):
        raise Incorrect(
            "keep the starter's `self.velocities`, one per trainable variable: the check reads "
            "them to compare with Keras."
        )
    optimizer_steps = int(model.optimizer.iterations.numpy())
    stepped = (
        "The compiled optimizer did not step, as it should not."
        if optimizer_steps == 0
        else f"The compiled optimizer stepped {optimizer_steps} times; it should not step at "
        "all: this train_step is the optimizer and only reads h from it."
    )
    keras_losses, theirs, heavy_ball = _keras_momentum_runs()
    if all(
        np.allclose(a.numpy(), b, atol=1e-6)
        for a, b in zip(model.trainable_variables, heavy_ball, strict=True)
    ):
        raise Incorrect(
            "your weights follow heavy-ball momentum (the gradient at p): Nesterov takes it at "
            f"the look-ahead point p + μ·v. {stepped}"
        )
    for step, (ours, reference) in enumerate(zip(yours, theirs, strict=True)):
        gaps = [float(np.abs(a - b).max()) for a, b in zip(ours, reference, strict=True)]
        if max(gaps) > 1e-5:
            agree = f" (after steps 1 to {step} they agree)" if step else ""
            raise Incorrect(
                f"after step {step + 1} your p + μ·v first parts from Keras's nesterov=True "
                f"weights{agree}: by up to {max(gaps):.3g}, in weight {int(np.argmax(gaps))}. "
                f"{stepped}"
            )
    if optimizer_steps:
        raise Incorrect(f"your p + μ·v equals Keras's weights after every step. {stepped}")
    for step, (ours, reference) in enumerate(zip(losses, keras_losses, strict=True)):
        if abs(ours - reference) > 1e-5 * max(1.0, abs(reference)):
            raise Incorrect(
                f"at step {step + 1} you log the loss {ours:.5g}, Keras {reference:.5g}. Keras "
                "logs the loss at its weights, which are your look-ahead point p + μ·v: log the "
                "loss of the pass where you take the gradient."
            )
    return (
        "your step is Nesterov momentum: p + μ·v equals Keras's SGD(momentum=0.9, nesterov=True) "
        "weights after every step, the logged losses are Keras's, and the compiled optimizer did "
        "not step."
    )


training_loop = Exercise(
    title="A training loop with GradientTape",
    checker=_check_training_loop,
    hint=(
        "Three moves per batch, in the order fit makes them: record the forward pass and the "
        "compiled loss while the tape watches, ask the tape for the loss's gradient with respect "
        "to the trainable variables, hand those gradients to the compiled optimizer. Which "
        "weights was the loss you keep computed at?"
    ),
    solution=train_by_hand,
)

heun_step = Exercise(
    title="Heun's train_step",
    checker=_check_heun_step,
    hint=(
        "Follow the four rules in order. Before moving anything, keep p as values that the "
        "trial step cannot change. Which pass gives the loss that fit logs, and which weights "
        "must the optimizer start from? The optimizer itself takes the step: give it one "
        "gradient per variable."
    ),
    solution=heun_train_step,
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

__all__ = [
    "Kutta3Model",
    "NesterovModel",
    "heun_step",
    "heun_train_step",
    "kutta3_model",
    "logs_at_start",
    "nesterov_model",
    "train_by_hand",
    "training_loop",
    "two_stage_step",
]
