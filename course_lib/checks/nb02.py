"""Self-checks for the exercises of notebook 02 (a minimal optimizer, hand-written gradients).

* :data:`plain_sgd`: a ``keras.optimizers.Optimizer`` subclass whose ``update_step`` is p ← p - η g.
* :data:`momentum_sgd`: the same with a velocity slot per variable and a complete ``get_config``.
* :data:`softmax_gradient`: the closed-form gradient of softmax regression.

Each answer is compared with Keras's own ``SGD`` or with ``tf.GradientTape`` on a small fixed
problem; common mistakes (a sign error, momentum applied twice, a forgotten mean, a
``get_config`` that drops a hyperparameter) get a message that names them. The solutions are the
library's: :class:`course_lib.optimizers.PlainSGD`, :class:`course_lib.optimizers.MomentumSGD`
and :func:`course_lib.handwritten.handwritten_gradients`.
"""

from __future__ import annotations

from course_lib.checks import Exercise, Incorrect, expect_close
from course_lib.handwritten import handwritten_gradients, tape_gradients
from course_lib.optimizers import MomentumSGD, PlainSGD

from typing import Any

import keras
import numpy as np
import tensorflow as tf

# --------------------------------------------------------------------------------------------
# A fixed little problem: two variables and four steps of fixed gradients
# --------------------------------------------------------------------------------------------


def _start_and_gradients() -> tuple[list[np.ndarray], list[list[np.ndarray]]]:
    rng = np.random.default_rng(2)
    start = [rng.normal(size=(3, 2)).astype("float32"), rng.normal(size=2).astype("float32")]
    gradients = [[rng.normal(size=v.shape).astype("float32") for v in start] for _ in range(4)]
    return start, gradients


def _run(optimizer: keras.optimizers.Optimizer) -> list[np.ndarray]:
    """Apply the four gradient sets, the first eagerly, the rest inside a tf.function.

    The graph part is what ``fit`` does; it catches Python-side state (a NumPy velocity, a
    ``.numpy()`` call) that works eagerly and fails or freezes in a graph.
    """
    start, gradients = _start_and_gradients()
    variables = [keras.Variable(value) for value in start]
    optimizer.apply([tf.constant(g) for g in gradients[0]], variables)

    @tf.function
    def apply(grads):
        optimizer.apply(grads, variables)

    for grads in gradients[1:]:
        apply([tf.constant(g) for g in grads])
    return [v.numpy() for v in variables]


def _same(first: list[np.ndarray], second: list[np.ndarray]) -> bool:
    return all(np.allclose(a, b, atol=1e-6) for a, b in zip(first, second, strict=True))


def _require_optimizer_class(answer: Any) -> None:
    if not (isinstance(answer, type) and issubclass(answer, keras.optimizers.Optimizer)):
        raise Incorrect(
            f"pass your class (a keras.optimizers.Optimizer subclass) itself, got "
            f"{type(answer).__name__}."
        )
    if answer.update_step is keras.optimizers.Optimizer.update_step:
        raise Incorrect("your class does not override update_step.")


# --------------------------------------------------------------------------------------------
# Checkers
# --------------------------------------------------------------------------------------------


def _check_plain_sgd(answer: Any) -> str:
    _require_optimizer_class(answer)
    got = _run(answer(learning_rate=0.1))
    expected = _run(keras.optimizers.SGD(learning_rate=0.1))
    start, gradients = _start_and_gradients()
    uphill = [s + 0.1 * sum(g[i] for g in gradients) for i, s in enumerate(start)]
    if _same(got, uphill):
        raise Incorrect("your variables go uphill: subtract learning_rate × gradient.")
    if _same(got, [v.copy() for v in start]):
        raise Incorrect("your update_step leaves the variables where they were: assign to them.")
    for index, (g, e) in enumerate(zip(got, expected, strict=True)):
        expect_close(f"variable {index} after 4 steps (against keras.optimizers.SGD)", g, e)
    return "your update_step matches keras.optimizers.SGD, eagerly and inside a tf.function."


def _check_momentum_sgd(answer: Any) -> str:
    _require_optimizer_class(answer)
    learning_rate, momentum = 0.05, 0.8
    optimizer = answer(learning_rate=learning_rate, momentum=momentum)
    got = _run(optimizer)
    expected = _run(keras.optimizers.SGD(learning_rate=learning_rate, momentum=momentum))
    if _same(got, _run(keras.optimizers.SGD(learning_rate=learning_rate))):
        raise Incorrect("your variables follow plain SGD: the velocity is not used.")
    if _same(got, _run(_MomentumTwice(learning_rate=learning_rate, momentum=momentum))):
        raise Incorrect(
            "momentum is applied twice: once in the velocity (v ← μv - ηg) is enough; "
            "then add v itself to the variable."
        )
    if _same(
        got,
        _run(keras.optimizers.SGD(learning_rate=learning_rate, momentum=momentum, nesterov=True)),
    ):
        raise Incorrect("this is Nesterov's update; the exercise asks for classic momentum.")
    for index, (g, e) in enumerate(zip(got, expected, strict=True)):
        expect_close(f"variable {index} after 4 steps (against SGD(momentum=0.8))", g, e)
    slots = [v for v in optimizer.variables if tuple(v.shape) in {(3, 2), (2,)}]
    if len(slots) < 2:
        raise Incorrect(
            "the velocity is not an optimizer variable: create it in build() with "
            "self.add_optimizer_variables(variables, 'velocity'), or it is not saved."
        )
    config = optimizer.get_config()
    if "momentum" not in config:
        raise Incorrect(
            "get_config() has no 'momentum': a saved model would come back with the default."
        )
    expect_close("get_config()['momentum']", config["momentum"], momentum)
    expect_close("get_config()['learning_rate']", config["learning_rate"], learning_rate)
    restored = answer.from_config(config)
    expect_close("from_config(get_config()).momentum", restored.momentum, momentum)
    return "your optimizer matches SGD(momentum=0.8), keeps its velocity as a slot and saves μ."


def _check_softmax_gradient(answer: Any) -> str:
    if not callable(answer):
        raise Incorrect(f"pass your function itself, got {type(answer).__name__}.")
    rng = np.random.default_rng(3)
    weights = tf.Variable(rng.normal(size=(5, 3)).astype("float32"))
    bias = tf.Variable(rng.normal(size=3).astype("float32"))
    x = tf.constant(rng.normal(size=(8, 5)).astype("float32"))
    y = tf.constant(rng.integers(0, 3, size=8).astype("int32"))
    result = answer(weights, bias, x, y)
    if not isinstance(result, (tuple, list)) or len(result) != 2:
        raise Incorrect("return a pair (gradient for weights, gradient for bias).")
    got_w, got_b = (np.asarray(g, dtype=np.float64) for g in result)
    want_w, want_b = (g.numpy().astype(np.float64) for g in tape_gradients(weights, bias, x, y))
    if got_w.shape == want_w.shape and np.allclose(got_w, -want_w, atol=1e-5):
        raise Incorrect(
            "your gradient has the wrong sign: it is softmax(Z) - onehot(y), not the reverse."
        )
    if got_w.shape == want_w.shape and np.allclose(got_w, 8 * want_w, atol=1e-4):
        raise Incorrect("your gradient is 8 times too large: the loss is a mean, divide by N = 8.")
    expect_close("your gradient for the weights (against tf.GradientTape)", got_w, want_w, 1e-5)
    if got_b.shape != want_b.shape and got_b.shape == (8, 3):
        raise Incorrect("your bias gradient has one row per example: sum ∂L/∂Z over the batch.")
    expect_close("your gradient for the bias (against tf.GradientTape)", got_b, want_b, 1e-5)
    return (
        "your closed-form gradient equals tf.GradientTape's: (softmax(Z) - Y)/N, Xᵀ·that, Σ rows."
    )


class _MomentumTwice(keras.optimizers.Optimizer):
    """A known mistake, to recognise it: p ← p + μ·v after v ← μ·v - η·g."""

    def __init__(self, learning_rate: float, momentum: float) -> None:
        # A name scope may not start with "_", which the class name would give.
        super().__init__(learning_rate=learning_rate, name="momentum_applied_twice")
        self.momentum = momentum

    def build(self, variables):
        if self.built:
            return
        super().build(variables)
        self.velocities = self.add_optimizer_variables(variables, "velocity")

    def update_step(self, gradient, variable, learning_rate):
        velocity = self.velocities[self._get_variable_index(variable)]
        velocity.assign(self.momentum * velocity - learning_rate * gradient)
        variable.assign_add(self.momentum * velocity)


plain_sgd = Exercise(
    title="Write update_step for plain SGD",
    checker=_check_plain_sgd,
    hint="self.assign_sub(variable, ...) with gradient × learning_rate; cast both to "
    "variable.dtype first, as Keras's SGD does.",
    solution=PlainSGD,
)

momentum_sgd = Exercise(
    title="Add momentum",
    checker=_check_momentum_sgd,
    hint="build(): self.velocities = self.add_optimizer_variables(variables, 'velocity'); "
    "update_step(): v = self.velocities[self._get_variable_index(variable)], v ← μv - ηg, "
    "p ← p + v; get_config(): super().get_config() plus 'momentum'.",
    solution=MomentumSGD,
)

softmax_gradient = Exercise(
    title="Derive the gradient of softmax regression",
    checker=_check_softmax_gradient,
    hint="With Z = XW + b and the mean cross-entropy, ∂L/∂Z = (softmax(Z) - onehot(y)) / N; "
    "the chain rule through Z = XW + b gives the rest.",
    solution=handwritten_gradients,
)

__all__ = ["momentum_sgd", "plain_sgd", "softmax_gradient"]
