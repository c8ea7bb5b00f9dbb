"""Self-checks for the exercises of notebook 02 (a minimal optimizer, hand-written gradients).

* :data:`plain_sgd`: a ``keras.optimizers.Optimizer`` subclass whose ``update_step`` is p ← p - η g.
* :data:`momentum_sgd`: the same with a velocity slot per variable and a complete ``get_config``.
* :data:`softmax_gradient`: the closed-form gradient of softmax regression.
* :data:`adam`: an ``update_step`` bit-identical to ``keras.optimizers.Adam``. The notebook never
  shows Adam's code, so this one asks for transfer: read Keras's source, notice that it uses the
  paper's "efficient" form (ε outside the square root, bias corrections folded into the step
  size), and reproduce its arithmetic exactly.

Each answer is compared with Keras's own ``SGD`` or ``Adam``, or with ``tf.GradientTape``, on a
small fixed problem; common mistakes (a sign error, momentum applied twice, a forgotten mean, a
``get_config`` that drops a hyperparameter, ε inside the square root, Adam without bias
correction or in the form of the paper's Algorithm 1) get a message that names them. The
solutions are the library's (:class:`course_lib.optimizers.PlainSGD`,
:class:`course_lib.optimizers.MomentumSGD`, :func:`course_lib.handwritten.handwritten_gradients`)
and, for Adam, :class:`MinimalAdam` below.
"""

from __future__ import annotations

from course_lib.checks import Exercise, Incorrect, expect_close
from course_lib.handwritten import handwritten_gradients, tape_gradients
from course_lib.optimizers import MomentumSGD, PlainSGD

import functools
from typing import Any

import keras
import numpy as np
import tensorflow as tf
from keras import ops

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


# --------------------------------------------------------------------------------------------
# Adam, bit for bit: the solution, the known misreadings, the check
# --------------------------------------------------------------------------------------------


class MinimalAdam(keras.optimizers.Optimizer):
    """Adam as ``keras.optimizers.Adam`` computes it, operation for operation (no AMSGrad).

    Two slots per variable: the first moment m and the second moment v. Keras uses the
    "efficient" form of Kingma & Ba (end of their section 2): the bias corrections are folded
    into the step size α_t = η·√(1 − β₂ᵗ)/(1 − β₁ᵗ), and ε is added to √v, not to √v̂. The
    moving averages are written as m + (g − m)(1 − β₁): the same mathematics as β₁m + (1 − β₁)g,
    but other roundings, so only this order is bit-identical.
    """

    def __init__(
        self,
        learning_rate: Any = 0.001,
        beta_1: float = 0.9,
        beta_2: float = 0.999,
        epsilon: float = 1e-7,
        name: str = "minimal_adam",
        **kwargs: Any,
    ) -> None:
        super().__init__(learning_rate=learning_rate, name=name, **kwargs)
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon

    def build(self, variables: list[Any]) -> None:
        if self.built:
            return
        super().build(variables)
        self.first_moments = self.add_optimizer_variables(variables, "first_moment")
        self.second_moments = self.add_optimizer_variables(variables, "second_moment")

    def update_step(self, gradient: Any, variable: Any, learning_rate: Any) -> None:
        learning_rate = ops.cast(learning_rate, variable.dtype)
        gradient = ops.cast(gradient, variable.dtype)
        step = ops.cast(self.iterations + 1, variable.dtype)  # t = 1 on the first update
        beta_1_power = ops.power(ops.cast(self.beta_1, variable.dtype), step)
        beta_2_power = ops.power(ops.cast(self.beta_2, variable.dtype), step)
        m = self.first_moments[self._get_variable_index(variable)]
        v = self.second_moments[self._get_variable_index(variable)]
        alpha = learning_rate * ops.sqrt(1 - beta_2_power) / (1 - beta_1_power)
        self.assign_add(m, ops.multiply(ops.subtract(gradient, m), 1 - self.beta_1))
        self.assign_add(v, ops.multiply(ops.subtract(ops.square(gradient), v), 1 - self.beta_2))
        self.assign_sub(
            variable, ops.divide(ops.multiply(m, alpha), ops.add(ops.sqrt(v), self.epsilon))
        )

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update({"beta_1": self.beta_1, "beta_2": self.beta_2, "epsilon": self.epsilon})
        return config


class _AdamMisreading(MinimalAdam):
    """Adam with one known misreading, so that the check can name it when an answer matches."""

    def __init__(self, form: str, **kwargs: Any) -> None:
        # A name scope may not start with "_", which the class name would give.
        super().__init__(name="adam_misreading", **kwargs)
        self.form = form

    def update_step(self, gradient: Any, variable: Any, learning_rate: Any) -> None:
        learning_rate = ops.cast(learning_rate, variable.dtype)
        gradient = ops.cast(gradient, variable.dtype)
        step = ops.cast(self.iterations + 1, variable.dtype)
        beta_1_power = ops.power(ops.cast(self.beta_1, variable.dtype), step)
        beta_2_power = ops.power(ops.cast(self.beta_2, variable.dtype), step)
        m = self.first_moments[self._get_variable_index(variable)]
        v = self.second_moments[self._get_variable_index(variable)]
        self.assign_add(m, ops.multiply(ops.subtract(gradient, m), 1 - self.beta_1))
        self.assign_add(v, ops.multiply(ops.subtract(ops.square(gradient), v), 1 - self.beta_2))
        if self.form == "algorithm 1":  # bias-corrected moments, then ε added to √v̂
            m_hat = m / (1 - beta_1_power)
            v_hat = v / (1 - beta_2_power)
            self.assign_sub(variable, learning_rate * m_hat / (ops.sqrt(v_hat) + self.epsilon))
            return
        if self.form == "no bias correction":
            alpha = learning_rate
        else:
            alpha = learning_rate * ops.sqrt(1 - beta_2_power) / (1 - beta_1_power)
        if self.form == "epsilon inside the root":
            denominator = ops.sqrt(ops.add(v, self.epsilon))
        else:
            denominator = ops.add(ops.sqrt(v), self.epsilon)
        self.assign_sub(variable, ops.divide(ops.multiply(m, alpha), denominator))


_ADAM_MISREADINGS = {
    "epsilon inside the root": "ε sits inside the square root, √(v + ε). Keras adds ε to √v "
    "(read the last assign_sub of Adam.update_step).",
    "no bias correction": "your steps have no bias correction: early on, m and v are biased "
    "towards their zero start, and Keras corrects for it with the powers β₁ᵗ and β₂ᵗ.",
    "algorithm 1": "this is Algorithm 1 of Kingma & Ba (bias-corrected m̂ and v̂, ε added to "
    "√v̂). Keras uses the paper's 'efficient' form instead: the corrections go into the step "
    "size, and ε is added to √v. With a fixed ε the two differ, most in the first steps.",
}

#: Hyperparameters of the two runs: large ε and small β's make every misreading visible, the
#: defaults check the arithmetic where learners use it.
_ADAM_RUNS = [
    {"learning_rate": 0.05, "beta_1": 0.8, "beta_2": 0.9, "epsilon": 0.01},
    {"learning_rate": 0.001, "beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-7},
]


def _train_adam_problem(optimizer: keras.optimizers.Optimizer, steps: int = 12) -> np.ndarray:
    """Train a linear least-squares model for ``steps`` steps; return every step's weights.

    The gradients come from a GradientTape on real data, so they change as the weights move,
    and span a few orders of magnitude, so that ε's place matters. The first step runs eagerly,
    the others inside a tf.function, as in ``fit``.
    """
    rng = np.random.default_rng(5)
    x = tf.constant(rng.normal(size=(16, 4)).astype("float32"))
    y = tf.constant(rng.normal(size=(16, 3)).astype("float32"))
    row_scales = np.array([[1.0], [0.1], [0.01], [3.0]])
    kernel = keras.Variable((rng.normal(size=(4, 3)) * row_scales).astype("float32"))
    bias = keras.Variable(np.zeros(3, "float32"))

    def train_step():
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.square(tf.matmul(x, kernel) + bias - y))
        optimizer.apply(tape.gradient(loss, [kernel, bias]), [kernel, bias])

    compiled = tf.function(train_step)
    history = []
    for index in range(steps):
        (train_step if index == 0 else compiled)()
        history.append(np.concatenate([kernel.numpy().ravel(), bias.numpy()]))
    return np.array(history)


@functools.cache
def _adam_reference(run: int, form: str = "keras") -> np.ndarray:
    """Keras's Adam (or a known misreading, or Keras with default β's and ε) on run ``run``.

    Deterministic, so computed once per process: a learner re-checking pays only for their own
    optimizer.
    """
    hyperparameters = _ADAM_RUNS[run]
    if form == "keras":
        return _train_adam_problem(keras.optimizers.Adam(**hyperparameters))
    if form == "defaults":
        defaults = {"beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-7}
        return _train_adam_problem(keras.optimizers.Adam(**{**hyperparameters, **defaults}))
    return _train_adam_problem(_AdamMisreading(form, **hyperparameters))


def _check_adam(answer: Any) -> str:
    _require_optimizer_class(answer)
    for run, hyperparameters in enumerate(_ADAM_RUNS):
        got = _train_adam_problem(answer(**hyperparameters))
        expected = _adam_reference(run)
        if np.array_equal(got, expected):
            continue
        label = "with " + ", ".join(f"{k}={v}" for k, v in hyperparameters.items())
        if not np.all(np.isfinite(got)):
            first = int(np.argmax(~np.all(np.isfinite(got), axis=1))) + 1
            raise Incorrect(
                f"{label}, your weights became NaN or infinite at step {first}. On the first "
                "update self.iterations is still 0: what is t in β₁ᵗ then?"
            )
        if run == 0:
            for form, message in _ADAM_MISREADINGS.items():
                if np.allclose(got, _adam_reference(run, form), rtol=1e-5, atol=1e-7):
                    raise Incorrect(f"{label}: {message}")
            if np.allclose(got, _adam_reference(run, "defaults"), rtol=1e-5, atol=1e-7):
                raise Incorrect(
                    f"{label}, your optimizer behaves as if beta_1, beta_2 and epsilon had their "
                    "default values: read them from self, not from constants."
                )
        if np.allclose(got, expected, rtol=1e-5, atol=1e-7):
            step = int(np.argmax(np.any(got != expected, axis=1))) + 1
            raise Incorrect(
                f"{label}, your weights equal Keras's to about 6 digits but not bit for bit "
                f"(first difference at step {step}): the same mathematics, other roundings. "
                "Reproduce Adam.update_step's arithmetic operation for operation: how does it "
                "write the moving averages, and where does the bias correction go?"
            )
        expect_close(f"your weights {label} (against keras.optimizers.Adam)", got, expected)
        raise Incorrect(f"your weights {label} differ from keras.optimizers.Adam's.")
    return "bit-identical to keras.optimizers.Adam over 12 training steps, with two settings."


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
    hint="Keras's SGD (notebook 01) has a branch for momentum 0: which of the three assign "
    "methods does it use there, and what does it cast first?",
    solution=PlainSGD,
)

momentum_sgd = Exercise(
    title="Add momentum",
    checker=_check_momentum_sgd,
    hint="Three places: the slots are made once, for all variables, where the base class "
    "is built; update_step finds this variable's slot by its index; and get_config extends "
    "the base class's dictionary rather than starting a new one. Which comes first in "
    "update_step: the new velocity, or the step that uses it?",
    solution=MomentumSGD,
)

softmax_gradient = Exercise(
    title="Derive the gradient of softmax regression",
    checker=_check_softmax_gradient,
    hint="Differentiate the loss of one example with respect to its own logits first (write "
    "log softmax as z_y − log Σ exp z_k); then account for the mean over N examples, and "
    "use the chain rule through Z = XW + b for W and for b separately.",
    solution=handwritten_gradients,
)

adam = Exercise(
    title="Adam, bit for bit",
    checker=_check_adam,
    hint="Print Adam's update_step with inspect.getsource (or notebook 01's show_lines). Note "
    "which quantities are slots (two per variable) and which are recomputed at every step "
    "from self.iterations; then copy its arithmetic in the same order, since a + b·c and "
    "(a·b) + c round differently.",
    solution=MinimalAdam,
)

__all__ = ["MinimalAdam", "adam", "momentum_sgd", "plain_sgd", "softmax_gradient"]
