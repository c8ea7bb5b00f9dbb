"""Self-check for the exercise of appendix A3 (Heun as a stateless ``train_step`` on JAX).

* :data:`midpoint_model`: the midpoint method as ``train_step(state, data)`` on Keras's JAX
  backend, checked against the library's ``RungeKuttaModel(tableau="midpoint")``. A learner who
  probes a whole step ahead, or steps with the average of the two slopes (Heun's rule), is told so.

The solution is deliberately minimal (one fixed tableau, the loss metric only); the library's
general version is :mod:`course_lib.multi_gradient_step.jax_backend`.
"""

from __future__ import annotations

from course_lib.checks import Exercise, Incorrect, expect_close

from typing import Any

import keras
import numpy as np

RATE, STEPS = 0.3, 2


class MidpointModel(keras.Model):
    """The midpoint method as a stateless step: p ← p − h·∇L(p − h/2·∇L(p)), h from the state."""

    def loss_at(self, trainable, non_trainable, x, y):
        y_pred, non_trainable = self.stateless_call(trainable, non_trainable, x, training=True)
        return self.compute_loss(x, y, y_pred), (y_pred, non_trainable)

    def train_step(self, state, data):
        import jax

        trainable, non_trainable, optimizer_values, metrics_values = state
        x, y = data
        gradient_of = jax.value_and_grad(self.loss_at, has_aux=True)
        (loss, (y_pred, new_non_trainable)), g1 = gradient_of(trainable, non_trainable, x, y)
        mapping = list(zip(self.optimizer.variables, optimizer_values, strict=True))
        with keras.StatelessScope(state_mapping=mapping):
            h = keras.ops.convert_to_tensor(self.optimizer.learning_rate)
        probe = [p - h / 2 * g for p, g in zip(trainable, g1, strict=True)]
        _, g2 = gradient_of(probe, non_trainable, x, y)
        trainable, optimizer_values = self.optimizer.stateless_apply(
            optimizer_values, g2, trainable
        )
        logs, new_metrics, start = {}, [], 0
        for metric in self.metrics:
            values = metrics_values[start : start + len(metric.variables)]
            start += len(metric.variables)
            if metric.name == "loss":
                values = metric.stateless_update_state(values, loss)
            else:
                values = metric.stateless_update_state(values, y, y_pred)
            logs[metric.name] = metric.stateless_result(values)
            new_metrics += values
        return logs, (trainable, new_non_trainable, optimizer_values, new_metrics)


def _problem() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(5)
    x = rng.normal(size=(16, 3)).astype("float32")
    return x, np.tanh(x @ np.array([[1.0], [-1.0], [0.5]], "float32"))


def _fit(model_class: type, **settings: Any) -> tuple[list[np.ndarray], float]:
    """Two steps of a 3-4-1 tanh network at batch 8; its weights and the first logged loss."""
    import course_lib

    x, y = _problem()
    course_lib.set_seed(21)
    inputs = keras.Input((3,))
    hidden = keras.layers.Dense(4, activation="tanh")(inputs)
    model = model_class(inputs=inputs, outputs=keras.layers.Dense(1)(hidden), **settings)
    model.compile(optimizer=keras.optimizers.SGD(RATE), loss="mse")
    losses = []
    callback = keras.callbacks.LambdaCallback(
        on_train_batch_end=lambda batch, logs: losses.append(float(logs["loss"]))
    )
    model.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0, callbacks=[callback])
    return [v.numpy() for v in model.trainable_variables], losses[0]


def _check_midpoint_model(answer: Any) -> str:
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
    from course_lib.runge_kutta import RungeKuttaModel

    got, loss = _fit(answer)
    expected, expected_loss = _fit(RungeKuttaModel, tableau="midpoint")
    if not all(np.allclose(g, e, atol=1e-5) for g, e in zip(got, expected, strict=True)):
        for tableau, message in _MISREADINGS:
            wrong, _ = _fit(RungeKuttaModel, tableau=tableau)
            if all(np.allclose(g, w, atol=1e-5) for g, w in zip(got, wrong, strict=True)):
                raise Incorrect(message)
    for index, (g, e) in enumerate(zip(got, expected, strict=True)):
        expect_close(
            f"weight {index} after {STEPS} steps (against the midpoint method)", g, e, 1e-5
        )
    expect_close("the first logged loss (the loss at the start point p)", loss, expected_loss, 1e-5)
    return "your stateless train_step takes midpoint steps and logs the loss at p."


_MISREADINGS = [
    ("heun", "these are Heun's steps: probe half a step ahead and step with g2 alone."),
    ("euler", "these are plain gradient steps: the step must use the gradient at the probe."),
]

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

__all__ = ["MidpointModel", "midpoint_model"]
