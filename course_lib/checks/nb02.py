"""Self-checks for notebook 02 (a minimal optimizer, hand-written gradients).

Two checks judge what the learner writes inside the lesson, bit for bit against
``keras.optimizers.SGD`` (their solutions are the library's :class:`~course_lib.optimizers.PlainSGD`
and :class:`~course_lib.optimizers.MomentumSGD`):

* :data:`plain_sgd`: plain SGD's ``update_step``, p ← p − g·η.
* :data:`momentum_sgd`: momentum SGD's ``build``, ``update_step`` and ``get_config``, classic and
  Nesterov.

Both run in float32 and again on float16 variables fed float32 gradients, where a missing cast
changes the bits; a wrong answer is told where the weights first part from Keras's and, for the
known misreadings (no cast, wrong sign, a velocity that is not kept, classic momentum where
Nesterov was asked, an order of operations that rounds elsewhere), what it did.

The exercises at the end ask for something the notebook has not shown, so that they cannot be
solved by copying a cell:

* :data:`sign_sgd`: ``update_step`` for sign descent, p ← p − η·sign(g): a new update rule, no slot.
* :data:`adagrad`: Adagrad with ``build``, ``update_step`` and ``get_config``: one slot per
  variable that starts at ``initial_accumulator_value``, not at zero, and two new hyperparameters
  to save. Checked against ``keras.optimizers.Adagrad``.
* :data:`label_smoothing_gradient`: the closed-form gradient of softmax regression trained with
  label smoothing (Keras's ``CategoricalCrossentropy(label_smoothing=ε)``): the notebook's
  derivation, redone for targets that are not one-hot.
* :data:`adam`: an ``update_step`` bit-identical to ``keras.optimizers.Adam``. The notebook never
  shows Adam's code: read Keras's source, notice that it uses the paper's "efficient" form (ε
  outside the square root, bias corrections folded into the step size), and reproduce its
  arithmetic exactly, casts included (a third run on float64 variables fed float32 gradients
  shows a cast in the wrong place).

Each answer is compared with a NumPy loop, Keras's own optimizer, or ``tf.GradientTape``, on a
small fixed problem; common mistakes (a sign error, a slot that starts at zero, ε in the wrong
place, a gradient that ignores the smoothing, Adam without bias correction, in the form of the
paper's Algorithm 1, or with a cast in the wrong place) get a message that names them. The
solutions are :class:`SignSGD`, :class:`MinimalAdagrad`,
:func:`label_smoothing_gradient_solution` and :class:`MinimalAdam` below.
"""

from __future__ import annotations

from course_lib.checks import Exercise, Incorrect, expect_close
from course_lib.environment import no_retracing_warning
from course_lib.keras_internals import variable_index
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

    with no_retracing_warning():
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
# Plain SGD and momentum, bit for bit: the lesson's own optimizers
# --------------------------------------------------------------------------------------------
#
# Bit-identity is judged on a problem with many entries (130), so that a product rounded at
# another place shows in some of them, and in two variable dtypes: float32 (where a missing cast
# changes nothing) and float16 fed float32 gradients and a float32 learning rate (where it
# does). The first step runs eagerly, the others inside a tf.function, as in ``fit``.


def _sgd_problem() -> tuple[list[np.ndarray], list[list[np.ndarray]]]:
    rng = np.random.default_rng(11)
    start = [rng.normal(size=(13, 10)).astype("float32"), rng.normal(size=10).astype("float32")]
    gradients = [[rng.normal(size=v.shape).astype("float32") for v in start] for _ in range(4)]
    return start, gradients


def _history(optimizer: keras.optimizers.Optimizer, dtype: str = "float32") -> np.ndarray:
    """Every entry of both variables after each of four steps, one row per step (float64)."""
    start, gradients = _sgd_problem()
    variables = [keras.Variable(value.astype(dtype), dtype=dtype) for value in start]

    def flat() -> np.ndarray:
        return np.concatenate([v.numpy().astype(np.float64).ravel() for v in variables])

    optimizer.apply([tf.constant(g) for g in gradients[0]], variables)
    rows = [flat()]

    @tf.function
    def apply(grads):
        optimizer.apply(grads, variables)

    with no_retracing_warning():
        for grads in gradients[1:]:
            apply([tf.constant(g) for g in grads])
            rows.append(flat())
    return np.array(rows)


def _first_difference(got: np.ndarray, expected: np.ndarray) -> str:
    """'step k, entry j (ours x, Keras y)': where two histories first part."""
    step = int(np.argmax(np.any(got != expected, axis=1)))
    entry = int(np.argmax(got[step] != expected[step]))
    return (
        f"step {step + 1}, entry {entry} ({got[step, entry]:.9g} against Keras's "
        f"{expected[step, entry]:.9g})"
    )


def _numpy_momentum(form: str, learning_rate: float, momentum: float) -> np.ndarray:
    """Momentum SGD and its known misreadings in float64 NumPy, on the same problem."""
    start, gradients = _sgd_problem()
    p = np.concatenate([v.ravel() for v in start]).astype(np.float64)
    v = np.zeros_like(p)
    rows = []
    for grads in gradients:
        g = np.concatenate([x.ravel() for x in grads]).astype(np.float64)
        if form == "plain":
            p = p - learning_rate * g
        elif form == "uphill":
            v = momentum * v + learning_rate * g
            p = p + v
        elif form == "weight first":
            p, v = p + v, momentum * v - learning_rate * g
        elif form == "look-ahead without the gradient":
            v = momentum * v - learning_rate * g
            p = p + momentum * v
        elif form in ("classic", "nesterov"):
            v = momentum * v - learning_rate * g
            p = p + (momentum * v - learning_rate * g if form == "nesterov" else v)
        rows.append(p.copy())
    return np.array(rows)


_MOMENTUM_MISREADINGS = {
    "plain": "your weights follow plain SGD: the velocity does not carry over from one step to "
    "the next. Keep it in a slot made in build and assign its new value there (self.assign), "
    "so that the next step reads it.",
    "uphill": "your weights go uphill: with Keras's velocity v ← μv − ηg the step is p ← p + v; "
    "check the two signs.",
    "weight first": "you move the weight with the velocity of the previous step, then update "
    "it; Keras updates the velocity first and steps with the new one.",
    "classic": "your weights follow classic momentum, p ← p + v. Nesterov's step is taken from "
    "the look-ahead point: p ← p + μv − ηg, with the velocity just updated.",
    "look-ahead without the gradient": "your Nesterov step is p ← p + μv; it also takes this "
    "step's gradient: p ← p + μv − ηg, with the velocity just updated.",
}


def _check_bit_identical(got: np.ndarray, expected: np.ndarray, label: str, rule: str) -> None:
    """Raise Incorrect unless ``got`` is ``expected`` bit for bit; say how far off it is."""
    if np.array_equal(got, expected):
        return
    if not np.all(np.isfinite(got)):
        raise Incorrect(f"{label}, your weights became NaN or infinite.")
    if np.allclose(got, expected, rtol=1e-5, atol=1e-7):
        raise Incorrect(
            f"{label}, your weights equal Keras's to about 6 digits but not bit for bit: they "
            f"first part at {_first_difference(got, expected)}. The same mathematics, rounded at "
            f"other places. Keras computes {rule}, each operation rounded once: write the same "
            "operations in the same order."
        )
    expect_close(f"your weights {label} (against keras.optimizers.SGD)", got, expected)
    raise Incorrect(f"your weights {label} differ from keras.optimizers.SGD's.")


def _first_line(error: Exception) -> str:
    """An exception's message without TensorFlow's trailing '[Op:Mul] name:' part."""
    return str(error).split(" [Op:")[0].strip().splitlines()[0]


def _check_casts(answer: Any, hyperparameters: dict[str, Any]) -> None:
    """The float16 run: bit-identical only if learning rate and gradient are cast first."""
    label = (
        "with float16 variables, float32 gradients and the float32 learning rate Keras hands "
        "update_step"
    )
    cast_first = (
        "cast the learning rate and the gradient to variable.dtype before any arithmetic, as "
        "SGD.update_step does in its first two lines (notebook 01)"
    )
    try:
        got = _history(answer(**hyperparameters), "float16")
    except Exception as error:
        raise Incorrect(
            f"{label}, your update_step raised {type(error).__name__}: {_first_line(error)}. "
            f"That is what a missing cast does: {cast_first}."
        ) from None
    expected = _history(keras.optimizers.SGD(**hyperparameters), "float16")
    if not np.array_equal(got, expected):
        raise Incorrect(
            f"{label}, your weights part from Keras's at {_first_difference(got, expected)}, "
            f"though they matched in float32: the product was computed in float32 and rounded "
            f"to float16 only when assigned. C{cast_first[1:]}."
        )


def _check_plain_sgd(answer: Any) -> str:
    _require_optimizer_class(answer)
    got = _history(answer(learning_rate=0.1))
    expected = _history(keras.optimizers.SGD(learning_rate=0.1))
    start = np.concatenate([v.ravel() for v in _sgd_problem()[0]]).astype(np.float64)
    if np.array_equal(got[0], start):
        raise Incorrect("your update_step leaves the variables where they were: assign to them.")
    if np.allclose(got, 2 * start - expected, atol=1e-5):
        raise Incorrect("your variables go uphill: gradient descent subtracts η·g.")
    _check_bit_identical(got, expected, "in float32", "the product g·η, then p − g·η")
    _check_casts(answer, {"learning_rate": 0.1})
    return (
        "bit-identical to keras.optimizers.SGD over 4 steps, eagerly and in a tf.function, with "
        "float32 and float16 variables."
    )


#: The momentum runs: classic and Nesterov in float32; the classic one again in float16.
_MOMENTUM_RUNS = [
    {"learning_rate": 0.1, "momentum": 0.9, "nesterov": False},
    {"learning_rate": 0.1, "momentum": 0.9, "nesterov": True},
]


def _check_momentum_sgd(answer: Any) -> str:
    _require_optimizer_class(answer)
    for hyperparameters in _MOMENTUM_RUNS:
        nesterov = hyperparameters["nesterov"]
        label = f"with momentum=0.9, nesterov={nesterov}"
        optimizer = answer(**hyperparameters)
        got = _history(optimizer)
        expected = _history(keras.optimizers.SGD(**hyperparameters))
        if np.array_equal(got, expected):
            continue
        forms = ["plain", "uphill", "classic" if nesterov else "weight first"]
        forms += ["look-ahead without the gradient"] if nesterov else []
        for form in forms:
            if np.allclose(got, _numpy_momentum(form, 0.1, 0.9), atol=1e-5):
                raise Incorrect(f"{label}: {_MOMENTUM_MISREADINGS[form]}")
        rule = "v ← μv − g·η, then p ← p + " + ("μv − g·η" if nesterov else "v")
        _check_bit_identical(got, expected, label, rule)
    slots = [v for v in optimizer.variables if tuple(v.shape) in {(13, 10), (10,)}]
    if len(slots) < 2:
        raise Incorrect(
            "the velocities are not optimizer variables: create them in build() with "
            "self.add_optimizer_variables, so that they are saved with the model."
        )
    _check_casts(answer, _MOMENTUM_RUNS[0])
    try:
        plain = _history(answer(learning_rate=0.1, momentum=0.0))
    except Exception as error:
        raise Incorrect(
            f"with momentum=0 your optimizer raised {type(error).__name__}: "
            f"{_first_line(error)}. Keras creates no velocity then and takes the plain step "
            "p ← p − g·η."
        ) from None
    _check_bit_identical(
        plain, _history(keras.optimizers.SGD(0.1)), "with momentum=0", "the plain p − g·η"
    )
    config = optimizer.get_config()
    for key in ("momentum", "nesterov"):
        if key not in config:
            raise Incorrect(
                f"get_config() has no {key!r}: a saved model would come back with the default."
            )
    restored = answer.from_config(config)
    if (restored.momentum, restored.nesterov) != (0.9, True):
        raise Incorrect("from_config(get_config()) does not give back momentum=0.9, nesterov=True.")
    return (
        "bit-identical to keras.optimizers.SGD with classic and Nesterov momentum (and with "
        "momentum=0), in float32 and float16; the velocities are slots and the config keeps "
        "both hyperparameters."
    )


# --------------------------------------------------------------------------------------------
# Sign descent
# --------------------------------------------------------------------------------------------


class SignSGD(keras.optimizers.Optimizer):
    """Sign descent (signSGD): every entry moves by exactly η, against its gradient's sign."""

    def __init__(self, learning_rate: Any = 0.01, name: str = "sign_sgd", **kwargs: Any) -> None:
        super().__init__(learning_rate=learning_rate, name=name, **kwargs)

    def update_step(self, gradient: Any, variable: Any, learning_rate: Any) -> None:
        learning_rate = ops.cast(learning_rate, variable.dtype)
        gradient = ops.cast(gradient, variable.dtype)
        self.assign_sub(variable, ops.multiply(ops.sign(gradient), learning_rate))


def _sign_descent_in_numpy(learning_rate: float) -> list[np.ndarray]:
    start, gradients = _start_and_gradients()
    points = [value.astype(np.float64) for value in start]
    for grads in gradients:
        points = [p - learning_rate * np.sign(g) for p, g in zip(points, grads, strict=True)]
    return points


def _check_sign_sgd(answer: Any) -> str:
    _require_optimizer_class(answer)
    learning_rate = 0.1
    got = _run(answer(learning_rate=learning_rate))
    start, _ = _start_and_gradients()
    if _same(got, [v.copy() for v in start]):
        raise Incorrect("your update_step leaves the variables where they were: assign to them.")
    if _same(got, _run(keras.optimizers.SGD(learning_rate=learning_rate))):
        raise Incorrect(
            "your steps scale with the gradient's size (this is plain SGD): sign descent moves "
            "every entry by exactly the learning rate, whatever the gradient's size."
        )
    if _same(got, [2 * s - p for s, p in zip(start, _sign_descent_in_numpy(0.1), strict=True)]):
        raise Incorrect("your variables go uphill: step against the gradient's sign.")
    for index, (g, e) in enumerate(zip(got, _sign_descent_in_numpy(learning_rate), strict=True)):
        expect_close(f"variable {index} after 4 steps (against p ← p - η·sign(g) in NumPy)", g, e)
    return "each entry moved by η against its gradient's sign (0: stays), eagerly and compiled."


# --------------------------------------------------------------------------------------------
# Adagrad: a slot that does not start at zero
# --------------------------------------------------------------------------------------------


class MinimalAdagrad(keras.optimizers.Optimizer):
    """Adagrad: a ← a + g² (a starts at ``initial_accumulator_value``), p ← p − η·g/√(a + ε)."""

    def __init__(
        self,
        learning_rate: Any = 0.001,
        initial_accumulator_value: float = 0.1,
        epsilon: float = 1e-7,
        name: str = "minimal_adagrad",
        **kwargs: Any,
    ) -> None:
        super().__init__(learning_rate=learning_rate, name=name, **kwargs)
        self.initial_accumulator_value = initial_accumulator_value
        self.epsilon = epsilon

    def build(self, variables: list[Any]) -> None:
        if self.built:
            return
        super().build(variables)
        start = keras.initializers.Constant(self.initial_accumulator_value)
        self.accumulators = self.add_optimizer_variables(variables, "accumulator", start)

    def update_step(self, gradient: Any, variable: Any, learning_rate: Any) -> None:
        learning_rate = ops.cast(learning_rate, variable.dtype)
        gradient = ops.cast(gradient, variable.dtype)
        accumulator = self.accumulators[variable_index(self, variable)]
        self.assign_add(accumulator, ops.square(gradient))
        step = ops.multiply(learning_rate, gradient)
        self.assign_sub(variable, ops.divide(step, ops.sqrt(ops.add(accumulator, self.epsilon))))

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            {"initial_accumulator_value": self.initial_accumulator_value, "epsilon": self.epsilon}
        )
        return config


class _AdagradMisreading(MinimalAdagrad):
    """Adagrad with one known mistake, so that the check can name it when an answer matches."""

    def __init__(self, form: str, **kwargs: Any) -> None:
        super().__init__(name="adagrad_misreading", **kwargs)
        self.form = form

    def build(self, variables: list[Any]) -> None:
        if self.built:
            return
        keras.optimizers.Optimizer.build(self, variables)
        value = 0.0 if self.form == "starts at zero" else self.initial_accumulator_value
        start = keras.initializers.Constant(value)
        self.accumulators = self.add_optimizer_variables(variables, "accumulator", start)

    def update_step(self, gradient: Any, variable: Any, learning_rate: Any) -> None:
        accumulator = self.accumulators[variable_index(self, variable)]
        step = ops.multiply(learning_rate, gradient)
        if self.form == "old accumulator":  # the step first, with the accumulator as it was
            denominator = ops.sqrt(ops.add(accumulator, self.epsilon))
            self.assign_sub(variable, ops.divide(step, denominator))
            self.assign_add(accumulator, ops.square(gradient))
            return
        if self.form == "forgets":
            self.assign(accumulator, self.initial_accumulator_value + ops.square(gradient))
        else:
            self.assign_add(accumulator, ops.square(gradient))
        if self.form == "epsilon outside the root":
            denominator = ops.add(ops.sqrt(accumulator), self.epsilon)
        else:
            denominator = ops.sqrt(ops.add(accumulator, self.epsilon))
        self.assign_sub(variable, ops.divide(step, denominator))


_ADAGRAD_MISREADINGS = {
    "starts at zero": "your accumulators start at 0: Adagrad's start at initial_accumulator_value "
    "(add_optimizer_variables takes an initializer).",
    "epsilon outside the root": "ε sits outside the square root, √a + ε; the rule asks for "
    "√(a + ε).",
    "forgets": "your accumulator holds only the latest g² (plus its start value): it must keep "
    "adding, step after step.",
    "old accumulator": "you divide by the accumulator from before this step's g² was added: add "
    "first, then use it.",
}

#: A large ε and start value make every misreading visible; the defaults check normal use.
_ADAGRAD_RUNS = [
    {"learning_rate": 0.1, "initial_accumulator_value": 0.5, "epsilon": 0.25},
    {"learning_rate": 0.05, "initial_accumulator_value": 0.1, "epsilon": 1e-7},
]


def _check_adagrad(answer: Any) -> str:
    _require_optimizer_class(answer)
    for run, hyperparameters in enumerate(_ADAGRAD_RUNS):
        optimizer = answer(**hyperparameters)
        got = _run(optimizer)
        expected = _run(keras.optimizers.Adagrad(**hyperparameters))
        if _same(got, expected):
            continue
        label = "with " + ", ".join(f"{k}={v}" for k, v in hyperparameters.items())
        if run == 0:
            for form, message in _ADAGRAD_MISREADINGS.items():
                if _same(got, _run(_AdagradMisreading(form, **hyperparameters))):
                    raise Incorrect(f"{label}: {message}")
        for index, (g, e) in enumerate(zip(got, expected, strict=True)):
            expect_close(f"variable {index} {label} (against keras.optimizers.Adagrad)", g, e)
    slots = [v for v in optimizer.variables if tuple(v.shape) in {(3, 2), (2,)}]
    if len(slots) < 2:
        raise Incorrect(
            "the accumulators are not optimizer variables: create them in build() with "
            "self.add_optimizer_variables, or they are not saved."
        )
    config = optimizer.get_config()
    for key in ("initial_accumulator_value", "epsilon"):
        if key not in config:
            raise Incorrect(
                f"get_config() has no {key!r}: a saved model would come back with the default."
            )
    restored = answer.from_config(config)
    for key, value in _ADAGRAD_RUNS[-1].items():
        if key != "learning_rate":
            expect_close(f"from_config(get_config()).{key}", getattr(restored, key), value)
    return (
        "your Adagrad matches keras.optimizers.Adagrad, keeps its accumulators as slots and "
        "saves both new hyperparameters."
    )


# --------------------------------------------------------------------------------------------
# The gradient with label smoothing
# --------------------------------------------------------------------------------------------


def label_smoothing_gradient_solution(weights, bias, x, y, smoothing):
    """∂L/∂W and ∂L/∂b of softmax regression against smoothed targets.

    The derivation of the one-hot case goes through for any target row t that sums to 1:
    ∂L/∂Z = (softmax(Z) − T)/N. Keras's label smoothing makes t = (1 − ε)·onehot(y) + ε/K.
    """
    probabilities = tf.nn.softmax(tf.matmul(x, weights) + bias)
    classes = weights.shape[1]
    targets = (1.0 - smoothing) * tf.one_hot(y, depth=classes) + smoothing / classes
    grad_logits = (probabilities - targets) / tf.cast(tf.shape(x)[0], probabilities.dtype)
    return tf.matmul(x, grad_logits, transpose_a=True), tf.reduce_sum(grad_logits, axis=0)


def _smoothed_tape_gradients(weights, bias, x, y, smoothing):
    loss_fn = keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=smoothing)
    with tf.GradientTape() as tape:
        loss = loss_fn(tf.one_hot(y, weights.shape[1]), tf.matmul(x, weights) + bias)
    return tape.gradient(loss, [weights, bias])


def _smoothing_misreadings(weights, bias, x, y, smoothing) -> dict[str, np.ndarray]:
    """The weight gradient of known wrong answers, to name the mistake."""
    probabilities = tf.nn.softmax(tf.matmul(x, weights) + bias)
    classes, n = weights.shape[1], x.shape[0]
    one_hot = tf.one_hot(y, depth=classes)
    others = (1.0 - smoothing) * one_hot + smoothing * (1.0 - one_hot) / (classes - 1)
    targets = {
        "ignores the smoothing": one_hot,
        "spreads ε over the other classes": others,
    }
    return {
        form: tf.matmul(x, (probabilities - t) / n, transpose_a=True).numpy()
        for form, t in targets.items()
    }


_SMOOTHING_MESSAGES = {
    "ignores the smoothing": "your gradient is the one-hot one: with label smoothing the target "
    "row is no longer one-hot.",
    "spreads ε over the other classes": "you spread ε over the K - 1 other classes; Keras mixes "
    "the one-hot row with the uniform distribution over all K classes.",
}

#: (smoothing, classes, examples, features)
_SMOOTHING_CASES = [(0.2, 3, 8, 5), (0.5, 4, 6, 3)]


def _check_label_smoothing_gradient(answer: Any) -> str:
    if not callable(answer):
        raise Incorrect(f"pass your function itself, got {type(answer).__name__}.")
    rng = np.random.default_rng(3)
    for smoothing, classes, n, features in _SMOOTHING_CASES:
        weights = tf.Variable(rng.normal(size=(features, classes)).astype("float32"))
        bias = tf.Variable(rng.normal(size=classes).astype("float32"))
        x = tf.constant(rng.normal(size=(n, features)).astype("float32"))
        y = tf.constant(rng.integers(0, classes, size=n).astype("int32"))
        result = answer(weights, bias, x, y, smoothing)
        if not isinstance(result, (tuple, list)) or len(result) != 2:
            raise Incorrect("return a pair (gradient for weights, gradient for bias).")
        got_w, got_b = (np.asarray(g, dtype=np.float64) for g in result)
        want_w, want_b = (
            g.numpy().astype(np.float64)
            for g in _smoothed_tape_gradients(weights, bias, x, y, smoothing)
        )
        label = f"with label_smoothing={smoothing}, K={classes} classes, N={n} examples"
        if got_w.shape == want_w.shape and not np.allclose(got_w, want_w, atol=1e-5):
            if np.allclose(got_w, -want_w, atol=1e-5):
                raise Incorrect(f"{label}, your gradient has the wrong sign.")
            if np.allclose(got_w, n * want_w, atol=1e-4):
                raise Incorrect(
                    f"{label}, your gradient is {n} times too large: the loss is a mean."
                )
            for form, wrong in _smoothing_misreadings(weights, bias, x, y, smoothing).items():
                if np.allclose(got_w, wrong, atol=1e-5):
                    raise Incorrect(f"{label}: {_SMOOTHING_MESSAGES[form]}")
        expect_close(f"your weight gradient {label} (against tf.GradientTape)", got_w, want_w, 1e-5)
        expect_close(f"your bias gradient {label} (against tf.GradientTape)", got_b, want_b, 1e-5)
    return "your closed form equals tf.GradientTape's on Keras's label-smoothed loss."


# --------------------------------------------------------------------------------------------
# Adam, bit for bit: the solution, the known misreadings, the check
# --------------------------------------------------------------------------------------------


class MinimalAdam(keras.optimizers.Optimizer):
    """Adam as ``keras.optimizers.Adam`` computes it, operation for operation (no AMSGrad).

    Two slots per variable: the first moment m and the second moment v. Keras uses the
    "efficient" form of Kingma & Ba (just before their section 2.1): the bias corrections are folded
    into the step size α_t = η·√(1 − β₂ᵗ)/(1 − β₁ᵗ), and ε is added to √v, not to √v̂. The
    moving averages are written as m + (g − m)(1 − β₁): the same mathematics as β₁m + (1 − β₁)g,
    but other roundings, so only this order is bit-identical. The learning rate, the gradient and
    the β's inside the powers are cast to the variable's dtype; 1 − β₁ and 1 − β₂ stay Python
    numbers, as in Keras (casting them, or computing them from the cast β's, changes the bits).
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
        m = self.first_moments[variable_index(self, variable)]
        v = self.second_moments[variable_index(self, variable)]
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
        form, dtype = self.form, variable.dtype
        learning_rate = ops.cast(learning_rate, dtype)
        if form != "uncast gradient":
            gradient = ops.cast(gradient, dtype)
        step = ops.cast(self.iterations + 1, dtype)
        if form == "Python β in the powers":
            beta_1_power, beta_2_power = ops.power(self.beta_1, step), ops.power(self.beta_2, step)
        else:
            beta_1_power = ops.power(ops.cast(self.beta_1, dtype), step)
            beta_2_power = ops.power(ops.cast(self.beta_2, dtype), step)
        if form == "cast 1 − β":
            one_minus = ops.cast(1 - self.beta_1, dtype), ops.cast(1 - self.beta_2, dtype)
        elif form == "1 − cast β":
            one_minus = 1 - ops.cast(self.beta_1, dtype), 1 - ops.cast(self.beta_2, dtype)
        else:
            one_minus = 1 - self.beta_1, 1 - self.beta_2
        m = self.first_moments[variable_index(self, variable)]
        v = self.second_moments[variable_index(self, variable)]
        self.assign_add(m, ops.multiply(ops.subtract(gradient, m), one_minus[0]))
        self.assign_add(v, ops.multiply(ops.subtract(ops.square(gradient), v), one_minus[1]))
        if form == "algorithm 1":  # bias-corrected moments, then ε added to √v̂
            m_hat = m / (1 - beta_1_power)
            v_hat = v / (1 - beta_2_power)
            self.assign_sub(variable, learning_rate * m_hat / (ops.sqrt(v_hat) + self.epsilon))
            return
        if form == "no bias correction":
            alpha = learning_rate
        else:
            alpha = learning_rate * ops.sqrt(1 - beta_2_power) / (1 - beta_1_power)
        if form == "epsilon inside the root":
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

_KERAS_CASTS = (
    "Keras casts the learning rate, the gradient and β₁, β₂ inside the powers to the "
    "variable's dtype, and multiplies by 1 − self.beta_1 and 1 − self.beta_2 as Python numbers."
)

#: Casts in the wrong place. Only "1 − cast β" shows in float32; the others show where the
#: variables are float64 and the gradients float32 (the third run), each in its own digits.
_ADAM_CAST_MISREADINGS = {
    "1 − cast β": "you multiply by 1 − β computed from the cast β (a float32 0.8 is not 0.8, so "
    "1 − β changes in its last digits).",
    "cast 1 − β": "you cast 1 − β to the variable's dtype.",
    "Python β in the powers": "your powers β₁ᵗ and β₂ᵗ take the Python β's, uncast.",
    "uncast gradient": "your gradient is not cast: g² is computed in float32, then used "
    "in float64.",
}

#: Hyperparameters of the runs: large ε and small β's make every misreading visible, the
#: defaults check the arithmetic where learners use it; the third run repeats the first on
#: float64 variables fed float32 gradients, where a cast in the wrong place shows.
_ADAM_RUNS = [
    {"learning_rate": 0.05, "beta_1": 0.8, "beta_2": 0.9, "epsilon": 0.01},
    {"learning_rate": 0.001, "beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-7},
    {"learning_rate": 0.05, "beta_1": 0.8, "beta_2": 0.9, "epsilon": 0.01},
]
_ADAM_DTYPES = ["float32", "float32", "float64"]


def _train_adam_problem(
    optimizer: keras.optimizers.Optimizer, steps: int = 12, dtype: str = "float32"
) -> np.ndarray:
    """Train a linear least-squares model for ``steps`` steps; return every step's weights.

    The gradients come from a GradientTape on real data, so they change as the weights move,
    and span a few orders of magnitude, so that ε's place matters. They are handed to the
    optimizer in float32 whatever the variables' ``dtype`` (as a float32 loss scaled into a
    float64 model would give them). The first step runs eagerly, the others inside a
    tf.function, as in ``fit``.
    """
    rng = np.random.default_rng(5)
    x = tf.constant(rng.normal(size=(16, 4)).astype(dtype))
    y = tf.constant(rng.normal(size=(16, 3)).astype(dtype))
    row_scales = np.array([[1.0], [0.1], [0.01], [3.0]])
    kernel = keras.Variable((rng.normal(size=(4, 3)) * row_scales).astype(dtype), dtype=dtype)
    bias = keras.Variable(np.zeros(3, dtype), dtype=dtype)

    def train_step():
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.square(tf.matmul(x, kernel) + bias - y))
        gradients = [tf.cast(g, "float32") for g in tape.gradient(loss, [kernel, bias])]
        optimizer.apply(gradients, [kernel, bias])

    compiled = tf.function(train_step)
    history = []
    with no_retracing_warning():
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
    hyperparameters, dtype = _ADAM_RUNS[run], _ADAM_DTYPES[run]
    if form == "keras":
        return _train_adam_problem(keras.optimizers.Adam(**hyperparameters), dtype=dtype)
    if form == "defaults":
        defaults = {"beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-7}
        optimizer = keras.optimizers.Adam(**{**hyperparameters, **defaults})
        return _train_adam_problem(optimizer, dtype=dtype)
    return _train_adam_problem(_AdamMisreading(form, **hyperparameters), dtype=dtype)


def _check_adam(answer: Any) -> str:
    _require_optimizer_class(answer)
    for run, hyperparameters in enumerate(_ADAM_RUNS):
        dtype = _ADAM_DTYPES[run]
        got = _train_adam_problem(answer(**hyperparameters), dtype=dtype)
        expected = _adam_reference(run)
        if np.array_equal(got, expected):
            continue
        label = "with " + ", ".join(f"{k}={v}" for k, v in hyperparameters.items())
        if dtype != "float32":
            label += f", {dtype} variables and float32 gradients"
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
        for form, message in _ADAM_CAST_MISREADINGS.items():
            if np.array_equal(got, _adam_reference(run, form)):
                raise Incorrect(f"{label}, a cast in the wrong place: {message} {_KERAS_CASTS}")
        if np.allclose(got, expected, rtol=1e-5, atol=1e-7):
            step = int(np.argmax(np.any(got != expected, axis=1))) + 1
            if dtype != "float32":
                raise Incorrect(
                    f"{label}, your weights part from Keras's at step {step}, though they "
                    f"matched with float32 variables: a cast in the wrong place. {_KERAS_CASTS}"
                )
            raise Incorrect(
                f"{label}, your weights equal Keras's to about 6 digits but not bit for bit "
                f"(first difference at step {step}): the same mathematics, other roundings. "
                "Reproduce Adam.update_step's arithmetic operation for operation: how does it "
                "write the moving averages, and where does the bias correction go?"
            )
        expect_close(f"your weights {label} (against keras.optimizers.Adam)", got, expected)
        raise Incorrect(f"your weights {label} differ from keras.optimizers.Adam's.")
    return (
        "bit-identical to keras.optimizers.Adam over 12 training steps, with two settings, and "
        "with float64 variables fed float32 gradients."
    )


plain_sgd = Exercise(
    title="Plain SGD's update_step",
    checker=_check_plain_sgd,
    hint="Notebook 01 printed SGD.update_step: without momentum it is its first two lines and "
    "its last one. Which dtype must the learning rate and the gradient have before they meet, "
    "and which of the three assign methods moves a variable downhill by a tensor?",
    solution=PlainSGD,
)

momentum_sgd = Exercise(
    title="Momentum SGD: build, update_step and get_config",
    checker=_check_momentum_sgd,
    hint="build: one zero slot per variable from self.add_optimizer_variables, and none when "
    "momentum is 0. update_step: find the variable's slot with self._get_variable_index, cast "
    "as for plain SGD, assign the new velocity first and only then move the variable (with "
    "Nesterov, from the look-ahead point). get_config: the base class's dictionary plus your "
    "two hyperparameters.",
    solution=MomentumSGD,
)

sign_sgd = Exercise(
    title="Sign descent",
    checker=_check_sign_sgd,
    hint="Only the direction of each entry's step comes from the gradient; its length is the "
    "learning rate. Which keras.ops function keeps only the signs of a tensor's entries, and "
    "which of the three assign methods moves a variable downhill? Cast as notebook 01's SGD does.",
    solution=SignSGD,
)

adagrad = Exercise(
    title="Adagrad: a slot that does not start at zero",
    checker=_check_adagrad,
    hint="The same three places as for momentum. In build, the slots need a starting value: "
    "read the signature of add_optimizer_variables (its last argument, and keras.initializers). "
    "In update_step, follow the two formulas in their order. In get_config, extend the base "
    "class's dictionary with both new hyperparameters.",
    solution=MinimalAdagrad,
)

label_smoothing_gradient = Exercise(
    title="The gradient with label smoothing",
    checker=_check_label_smoothing_gradient,
    hint="Redo the notebook's derivation with a target row t that still sums to 1 but is not "
    "one-hot: the loss of one example is −Σ_k t_k·log softmax(z)_k. Where did the one-hot "
    "derivation use that the target was one-hot, and where only that it sums to 1? Then build "
    "the smoothed rows as the exercise states them.",
    solution=label_smoothing_gradient_solution,
)

adam = Exercise(
    title="Adam, bit for bit",
    checker=_check_adam,
    hint="Print Adam's update_step with inspect.getsource (or notebook 01's show_lines). Note "
    "which quantities are slots (two per variable) and which are recomputed at every step "
    "from self.iterations; then copy its arithmetic in the same order, since (a + b)·c and "
    "a·c + b·c round differently.",
    solution=MinimalAdam,
)

__all__ = [
    "MinimalAdagrad",
    "MinimalAdam",
    "SignSGD",
    "adagrad",
    "adam",
    "label_smoothing_gradient",
    "label_smoothing_gradient_solution",
    "momentum_sgd",
    "plain_sgd",
    "sign_sgd",
]
