"""Self-checks for appendix A3 (Heun as a stateless ``train_step`` on JAX).

* :data:`heun_step`: the body of Heun's ``train_step(state, data)``, which the learner writes
  (the appendix's learning goal). On notebook 04's quadratic with a falling learning rate
  (:mod:`course_lib.checks.heun_problem`), each step against the closed form, the known
  mistakes named in JAX's words (the optimizer handed the trial weights, the second gradient at
  the wrong point, a wrong average, h read from the Python attribute, which a compiled step reads
  once, the loss logged at the trial point); then one step of a model with BatchNorm against
  the library's, whose statistics move once, from the pass at p.
* :data:`midpoint_model`: the midpoint method as ``train_step(state, data)`` on Keras's JAX
  backend, checked against the library's ``RungeKuttaModel(tableau="midpoint")``. A learner who
  probes a whole step ahead, or steps with the average of the two slopes (Heun's rule), is told so.

The solutions are deliberately minimal (one fixed tableau); the library's general version is
:mod:`course_lib.multi_gradient_step.jax_backend`.
"""

from __future__ import annotations

from course_lib.checks import Exercise, Incorrect, expect_close, heun_problem

import functools
from typing import Any

import keras
import numpy as np

RATE, STEPS = 0.3, 2


def learning_rate_in(optimizer, optimizer_values):
    """The optimizer's learning rate at the state's values (a schedule at its iteration count)."""
    mapping = list(zip(optimizer.variables, optimizer_values, strict=True))
    with keras.StatelessScope(state_mapping=mapping):
        return keras.ops.convert_to_tensor(optimizer.learning_rate)


def update_metrics(model, metrics_values, loss, y, y_pred):
    """Each metric updated statelessly: the loss tracker with ``loss``, the rest with y, y_pred."""
    logs, new_values, start = {}, [], 0
    for metric in model.metrics:
        values = metrics_values[start : start + len(metric.variables)]
        start += len(metric.variables)
        if metric.name == "loss":
            values = metric.stateless_update_state(values, loss, sample_weight=len(y))
        else:
            values = metric.stateless_update_state(values, y, y_pred)
        logs[metric.name] = metric.stateless_result(values)
        new_values += values
    return logs, new_values


class HeunModel(keras.Model):
    """Heun's step as a pure function of the state: g1 at p, g2 at p − h·g1, both from the input
    non-trainable state; the optimizer applies the mean to p; the logs and the kept
    non-trainable state are the first pass's, at p."""

    def loss_at(self, trainable, non_trainable, x, y):
        y_pred, non_trainable = self.stateless_call(trainable, non_trainable, x, training=True)
        return self.compute_loss(x, y, y_pred), (y_pred, non_trainable)

    def train_step(self, state, data):
        import jax

        trainable, non_trainable, optimizer_values, metrics_values = state
        x, y = data
        gradient_of = jax.value_and_grad(self.loss_at, has_aux=True)
        # g1 at p: the pass whose loss is logged and whose non-trainable state is kept.
        (loss, (y_pred, new_non_trainable)), g1 = gradient_of(trainable, non_trainable, x, y)
        # The trial point is just another list of arrays: nothing to snapshot or restore.
        h = learning_rate_in(self.optimizer, optimizer_values)
        trial = [p - h * g for p, g in zip(trainable, g1, strict=True)]
        _, g2 = gradient_of(trial, non_trainable, x, y)  # from the input state too
        direction = [(a + b) / 2 for a, b in zip(g1, g2, strict=True)]
        trainable, optimizer_values = self.optimizer.stateless_apply(
            optimizer_values, direction, trainable
        )
        logs, metrics_values = update_metrics(self, metrics_values, loss, y, y_pred)
        return logs, (trainable, new_non_trainable, optimizer_values, metrics_values)


class MidpointModel(HeunModel):
    """The midpoint method as a stateless step: p ← p − h·∇L(p − h/2·∇L(p)), h from the state."""

    def train_step(self, state, data):
        import jax

        trainable, non_trainable, optimizer_values, metrics_values = state
        x, y = data
        gradient_of = jax.value_and_grad(self.loss_at, has_aux=True)
        (loss, (y_pred, new_non_trainable)), g1 = gradient_of(trainable, non_trainable, x, y)
        h = learning_rate_in(self.optimizer, optimizer_values)
        probe = [p - h / 2 * g for p, g in zip(trainable, g1, strict=True)]
        _, g2 = gradient_of(probe, non_trainable, x, y)
        trainable, optimizer_values = self.optimizer.stateless_apply(
            optimizer_values, g2, trainable
        )
        logs, metrics_values = update_metrics(self, metrics_values, loss, y, y_pred)
        return logs, (trainable, new_non_trainable, optimizer_values, metrics_values)


def _problem() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(5)
    x = rng.normal(size=(16, 3)).astype("float32")
    return x, np.tanh(x @ np.array([[1.0], [-1.0], [0.5]], "float32"))


def _seeded(seed: int) -> keras.initializers.Initializer:
    """A layer's own seeded initializer: on JAX, a global seed (keras.utils.set_random_seed)
    would import TensorFlow into the kernel, about 0.4 GB of the notebook's 1 GB budget."""
    return keras.initializers.GlorotUniform(seed=seed)


def _fit(model_class: type, **settings: Any) -> tuple[list[np.ndarray], float]:
    """Two steps of a 3-4-1 tanh network at batch 8; its weights and the first logged loss."""
    x, y = _problem()
    inputs = keras.Input((3,))  # seeded initializers: keras.utils.set_random_seed loads TensorFlow
    hidden = keras.layers.Dense(4, activation="tanh", kernel_initializer=_seeded(21))(inputs)
    outputs = keras.layers.Dense(1, kernel_initializer=_seeded(22))(hidden)
    model = model_class(inputs=inputs, outputs=outputs, **settings)
    model.compile(optimizer=keras.optimizers.SGD(RATE), loss="mse")
    losses = []
    callback = keras.callbacks.LambdaCallback(
        on_train_batch_end=lambda batch, logs: losses.append(float(logs["loss"]))
    )
    model.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0, callbacks=[callback])
    return [v.numpy() for v in model.trainable_variables], losses[0]


@functools.cache
def _library_fit(tableau: str) -> tuple[list[np.ndarray], float]:
    """:func:`_fit` of the library's RungeKuttaModel with ``tableau`` (computed once)."""
    from course_lib.runge_kutta import RungeKuttaModel

    return _fit(RungeKuttaModel, tableau=tableau)


def _require_a_jax_model_class(answer: Any) -> None:
    """The answer is a keras.Model subclass with its own train_step, in a JAX kernel."""
    if keras.backend.backend() != "jax":
        raise Incorrect(
            "this exercise runs on the JAX backend: restart the kernel and run the Setup cell, "
            "which selects JAX before Keras is imported."
        )
    if not (isinstance(answer, type) and issubclass(answer, keras.Model)):
        raise Incorrect(
            f"pass your class (a keras.Model subclass) itself, got {type(answer).__name__}."
        )
    if answer.train_step is keras.Model.train_step:
        raise Incorrect("your class does not override train_step.")


def _check_midpoint_model(answer: Any) -> str:
    _require_a_jax_model_class(answer)

    got, loss = _fit(answer)
    expected, expected_loss = _library_fit("midpoint")
    if not all(np.allclose(g, e, atol=1e-5) for g, e in zip(got, expected, strict=True)):
        for tableau, message in _MISREADINGS:
            wrong, _ = _library_fit(tableau)
            if all(np.allclose(g, w, atol=1e-5) for g, w in zip(got, wrong, strict=True)):
                raise Incorrect(message)
    for index, (g, e) in enumerate(zip(got, expected, strict=True)):
        expect_close(
            f"weight {index} after {STEPS} steps (against the midpoint method)", g, e, 1e-5
        )
    expect_close("the first logged loss (the loss at the start point p)", loss, expected_loss, 1e-5)
    return "your stateless train_step takes midpoint steps and logs the loss at p."


#: What each known mistake of the Heun step means on JAX (keys of heun_problem.judge): the
#: shared messages, and those that name the stateless API.
_HEUN_MESSAGES = heun_problem.SHARED_MESSAGES | {
    "not restored": "the optimizer stepped from the trial point p − h·g1: hand "
    "optimizer.stateless_apply the weights at p (the state's trainable values), not the trial "
    "list.",
    "gradient descent": "this is a gradient-descent step, p − h·g1: the second gradient changed "
    "nothing. Was it taken at the trial list, and does the optimizer receive the average "
    "(g1 + g2)/2?",
    "first rate": "the trial point used the first step's h. The check's learning rate changes "
    "every step (a schedule): read h from the state's optimizer values (learning_rate_in).",
    "both losses": "it is the mean of the losses at p and at the trial point: the loss tracker "
    "received both. Update the metrics once, with the loss at p.",
    "optimizer": "Return the trainable and optimizer values that optimizer.stateless_apply gives "
    "for the average of the two gradients, once per step: the optimizer's values count the "
    "steps.",
    "own update": "You moved the weights yourself: hand the average of the two gradients to "
    "optimizer.stateless_apply, so that momentum, Adam or a schedule treat it as any gradient, "
    "and return the optimizer values it gives.",
}


@functools.cache
def _library_batch_norm_run() -> tuple[list, list]:
    """The library's Heun step on the BatchNorm model (computed once per process)."""
    from course_lib.runge_kutta import RungeKuttaModel

    return _batch_norm_run(RungeKuttaModel, tableau="heun")


def _batch_norm_run(model_class: type, **settings: Any) -> tuple[list, list]:
    """One step of Dense(3) → BatchNormalization → Dense(1): trainable and non-trainable values."""
    rng = np.random.default_rng(6)
    x = rng.normal(size=(8, 2)).astype("float32")
    y = rng.normal(size=(8, 1)).astype("float32")
    inputs = keras.Input((2,))
    dense = keras.layers.Dense(3, kernel_initializer=_seeded(13))
    hidden = keras.layers.BatchNormalization()(dense(inputs))
    outputs = keras.layers.Dense(1, kernel_initializer=_seeded(14))(hidden)
    model = model_class(inputs=inputs, outputs=outputs, **settings)
    model.compile(optimizer=keras.optimizers.SGD(0.5), loss="mse")
    model.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0)
    return (
        [np.asarray(v.numpy()) for v in model.trainable_variables],
        [np.asarray(v.numpy()) for v in model.non_trainable_variables],
    )


def _check_heun_step(answer: Any) -> str:
    _require_a_jax_model_class(answer)
    try:
        run = heun_problem.train_on_the_quadratic(answer)
    except TypeError as error:
        if "'NoneType' object is not callable" not in str(error):
            raise
        raise Incorrect(
            "your step raised TypeError: 'NoneType' object is not callable, which is what "
            "reading a Keras variable inside fit's stateless step gives: during fit the variables "
            "hold no values, the state does. Did you read self.optimizer.learning_rate (or a "
            "weight) directly? Read h from the state's optimizer values (learning_rate_in)."
        ) from None
    heun_problem.judge(*run, _HEUN_MESSAGES)
    expected_weights, expected_statistics = _library_batch_norm_run()
    weights, statistics = _batch_norm_run(answer)
    if not all(
        np.allclose(a, b, atol=1e-6) for a, b in zip(statistics, expected_statistics, strict=True)
    ):
        raise Incorrect(
            "with BatchNormalization, your step leaves the moving statistics at "
            f"{[np.round(s, 4).tolist() for s in statistics]}; the first pass at p gives "
            f"{[np.round(s, 4).tolist() for s in expected_statistics]}. Start both passes from "
            "the input non-trainable state, and return the one the first pass (at p) produced."
        )
    for index, (a, b) in enumerate(zip(weights, expected_weights, strict=True)):
        expect_close(
            f"with BatchNormalization, weight {index} after one step (against the library's "
            "Heun step)",
            a,
            b,
            atol=1e-5,
        )
    return (
        f"{heun_problem.STEPS} steps on the quadratic are Heun's closed form with h read from the "
        "state, each logging the loss at p; with BatchNorm, the statistics move once, from p."
    )


_MISREADINGS = [
    ("heun", "these are Heun's steps: probe half a step ahead and step with g2 alone."),
    ("euler", "these are plain gradient steps: the step must use the gradient at the probe."),
]

heun_step = Exercise(
    title="Heun's stateless train_step",
    checker=_check_heun_step,
    hint=(
        "One gradient function, called twice, each time from the state you were handed: at p, "
        "and at the trial list. Which call's loss, predictions and non-trainable state belong "
        "in the logs and the returned state? Where does h come from when a schedule sets it? "
        "The optimizer's stateless_apply takes the weights the step starts from."
    ),
    solution=HeunModel,
)

midpoint_model = Exercise(
    title="The midpoint method as a stateless train_step",
    checker=_check_midpoint_model,
    hint=(
        "Start from HeunModel: the probe is h/2 along −g1, built from p (the arrays of the "
        "state), and the optimizer receives the gradient at the probe only. h comes from the "
        "optimizer's values in the state, as in learning_rate_in."
    ),
    solution=MidpointModel,
)

__all__ = [
    "HeunModel",
    "MidpointModel",
    "heun_step",
    "learning_rate_in",
    "midpoint_model",
    "update_metrics",
]
