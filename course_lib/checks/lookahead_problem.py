"""The Lookahead that the learner writes in notebook 07, and the problem that judges it (07, A2).

Notebook 07 has the learner write Lookahead's synchronisation inside a wrapper optimizer
(:class:`MyLookahead`, the notebook's class with the blanks filled); appendix A2 runs that class
on JAX, watches it fail, and has the learner write the same decisions as selections. Both checks
train the learner's optimizer with ``fit`` on one small problem and judge the weights after
every step with :func:`judge_lookahead`.

The problem: a linear regression (``Dense(1)``: a kernel and a bias, two variables) on eight
fixed examples, trained full-batch, so that every step sees the same data and the NumPy
reference needs no batching. The settings (learning rate 1/8, k = 3, α = 1/4) are exact in
binary, so the check is as tight as the float type allows; α ≠ 1/2 tells α from 1 − α.

When the weights part from the reference, the judge replays the usual mistakes in NumPy
(synchronising every step, never resetting the fast weights, a counter that never restarts,
α the wrong way round...) and names the one the learner's weights follow. Keras and NumPy only,
no TensorFlow: appendix A2 imports it in a JAX process.
"""

from __future__ import annotations

from course_lib.checks import Incorrect
from course_lib.environment import no_retracing_warning

import contextlib
from collections.abc import Callable
from typing import Any

import keras
import numpy as np
from keras import ops

#: The inner SGD's learning rate, Lookahead's k and α, and how many steps the check trains.
LEARNING_RATE, SYNC_PERIOD, SLOW_STEP_SIZE, STEPS = 0.125, 3, 0.25, 10


class MyLookahead(keras.optimizers.Optimizer):
    """Let `inner` take k fast steps, then pull the weights towards slow copies of them."""

    def __init__(self, inner, sync_period=5, slow_step_size=0.5, name="my_lookahead"):
        super().__init__(learning_rate=0.0, name=name)  # unused: the inner rate counts
        self.inner = inner
        self.sync_period = sync_period
        self.slow_step_size = slow_step_size

    def build(self, variables):
        super().build(variables)
        self.inner.build(variables)
        self.slow = [self.add_variable_from_reference(v, name="slow") for v in variables]
        self.count = self.add_variable(shape=(), dtype="int32", initializer="zeros", name="count")

    def apply(self, grads, trainable_variables=None):
        if not self.built:
            self.build(trainable_variables)

        def start_cycle():  # the slow weights start where the fast ones are
            for slow, fast in zip(self.slow, trainable_variables, strict=True):
                slow.assign(fast)

        ops.cond(ops.equal(self.count, 0), start_cycle, lambda: None)
        self.inner.apply(grads, trainable_variables)  # the fast step
        self.count.assign_add(1)

        def synchronise():
            for slow, fast in zip(self.slow, trainable_variables, strict=True):
                slow.assign(slow + self.slow_step_size * (fast - slow))
                fast.assign(slow)
            self.count.assign(0)

        ops.cond(ops.equal(self.count, self.sync_period), synchronise, lambda: None)


# --------------------------------------------------------------------------------------------
# The problem and its NumPy reference
# --------------------------------------------------------------------------------------------


def regression_problem() -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """Eight examples of three features, their targets, and the initial kernel and bias.

    The data are float32 numbers (held in float64), so that ``fit``, which hands NumPy inputs to
    the model in Keras's default float type, passes them on unrounded in either type.
    """
    rng = np.random.default_rng(26)
    x = rng.normal(size=(8, 3))
    y = x @ np.array([[1.0], [-2.0], [0.5]]) + 0.25 + 0.1 * rng.normal(size=(8, 1))
    as_float32 = [a.astype(np.float32).astype(np.float64) for a in (x, y)]
    return *as_float32, [np.array([[0.5], [0.25], [-0.5]]), np.array([0.0])]


def mse_gradient(weights: list[np.ndarray], x: np.ndarray, y: np.ndarray) -> list[np.ndarray]:
    """∇ of the mean squared error of ``x @ kernel + bias``: for the kernel, then the bias."""
    kernel, bias = weights
    residual = x @ kernel + bias - y
    return [2 * x.T @ residual / len(x), 2 * residual.sum(axis=0) / len(x)]


def regression_gradient(weights: list[np.ndarray]) -> list[np.ndarray]:
    """:func:`mse_gradient` on :func:`regression_problem`."""
    x, y, _ = regression_problem()
    return mse_gradient(weights, x, y)


def lookahead_reference(
    *,
    sync_every: int = SYNC_PERIOD,
    alpha: float = SLOW_STEP_SIZE,
    reset_fast: bool = True,
    restart_count: bool = True,
    fast_from_old_slow: bool = False,
) -> list[list[np.ndarray]]:
    """The weights after each of :data:`STEPS` steps of Lookahead around SGD, in NumPy.

    With the defaults, Lookahead itself: every ``sync_every``-th fast step,
    slow ← slow + α·(fast − slow) and fast ← slow. The keywords replay the usual mistakes:
    ``reset_fast=False`` leaves the fast weights where they are, ``restart_count=False`` counts
    on and so synchronises once, ``fast_from_old_slow`` sends the fast weights to the slow ones
    before these move.
    """
    fast = [w.copy() for w in regression_problem()[2]]
    slow, count, after_each_step = [w.copy() for w in fast], 0, []
    for _ in range(STEPS):
        if count == 0:
            slow = [w.copy() for w in fast]
        fast = [w - LEARNING_RATE * g for w, g in zip(fast, regression_gradient(fast), strict=True)]
        count += 1
        if count == sync_every:
            new_slow = [s + alpha * (f - s) for s, f in zip(slow, fast, strict=True)]
            if fast_from_old_slow:
                fast = [s.copy() for s in slow]
            elif reset_fast:
                fast = [s.copy() for s in new_slow]
            slow = new_slow
            count = 0 if restart_count else count
        after_each_step.append([w.copy() for w in fast])
    return after_each_step


#: Mistakes the judge recognises: the NumPy replay of each, and what to tell the learner.
MISTAKES: tuple[tuple[dict[str, Any], str], ...] = (
    (
        {"reset_fast": False},
        "your weights follow plain SGD: the synchronisation never reaches the model's weights. "
        "After the slow weights move, set the fast weights (the model's variables) to them.",
    ),
    (
        {"sync_every": 1},
        "you synchronise after every fast step: compare the count with sync_period, and "
        "synchronise only when they are equal.",
    ),
    (
        {"restart_count": False},
        f"you synchronise after step {SYNC_PERIOD} and never again: restart the count at 0 "
        "when you synchronise.",
    ),
    (
        {"alpha": 1 - SLOW_STEP_SIZE},
        "the slow weights move a fraction 1 − α of the way to the fast ones: "
        "slow + α·(fast − slow) moves them a fraction α.",
    ),
    (
        {"alpha": -SLOW_STEP_SIZE},
        "the slow weights move away from the fast ones: slow + α·(fast − slow) moves them "
        "towards them.",
    ),
    (
        {"fast_from_old_slow": True},
        "the fast weights go back to where the cycle started: move the slow weights first, "
        "then set the fast weights to the new slow ones.",
    ),
    *(
        (
            {"sync_every": period},
            f"you synchronise every {period} steps, not every sync_period = {SYNC_PERIOD}: "
            "count the fast step first, then compare the count with sync_period.",
        )
        for period in (SYNC_PERIOD - 1, SYNC_PERIOD + 1)
    ),
)


# --------------------------------------------------------------------------------------------
# The judge
# --------------------------------------------------------------------------------------------


def tolerance() -> float:
    """How closely the learner's weights must follow NumPy: float round-off of the float type."""
    return 1e-9 if keras.config.floatx() == "float64" else 2e-5


def _parts(got: list[np.ndarray], expected: list[np.ndarray]) -> bool:
    return any(
        float(np.max(np.abs(a - b))) > tolerance() for a, b in zip(got, expected, strict=True)
    )


def train_lookahead(answer: Callable[..., Any]) -> list[list[np.ndarray]]:
    """Train the regression with ``fit`` and ``answer(SGD, k, α)``: the weights after each step."""
    x, y, initial = regression_problem()
    optimizer = answer(
        keras.optimizers.SGD(LEARNING_RATE),
        sync_period=SYNC_PERIOD,
        slow_step_size=SLOW_STEP_SIZE,
    )
    if not isinstance(optimizer, keras.optimizers.Optimizer):
        raise Incorrect(
            "your class must be a keras.optimizers.Optimizer subclass, so that compile accepts "
            f"it; got {type(optimizer).__name__}."
        )
    inputs = keras.Input((3,))
    model = keras.Model(inputs, keras.layers.Dense(1)(inputs))
    model.set_weights(initial)
    model.compile(optimizer=optimizer, loss="mean_squared_error")
    return weights_after_each_step(model, x, y, STEPS)


def weights_after_each_step(
    model: Any, x: np.ndarray, y: np.ndarray, steps: int
) -> list[list[np.ndarray]]:
    """Train the compiled ``model`` full-batch for ``steps`` steps: its weights after each.

    One step per epoch, so that the weights read after each epoch are the model's on every
    backend (on JAX, ``fit`` writes them back at epoch ends, not after every batch).
    """
    after_each_step: list[list[np.ndarray]] = []
    record = keras.callbacks.LambdaCallback(
        on_epoch_end=lambda epoch, logs: after_each_step.append(model.get_weights())
    )
    quiet = contextlib.nullcontext()
    if keras.backend.backend() == "tensorflow":  # each answer is a new function to trace
        quiet = no_retracing_warning()
    with quiet:
        model.fit(
            x, y, batch_size=len(x), epochs=steps, shuffle=False, verbose=0, callbacks=[record]
        )
    return [[np.asarray(w, dtype=np.float64) for w in weights] for weights in after_each_step]


def judge_lookahead(answer: Callable[..., Any]) -> str:
    """Raise :class:`Incorrect` naming the mistake unless ``answer`` trains as Lookahead does."""
    got = train_lookahead(answer)
    expected = lookahead_reference()
    first = next((s for s in range(STEPS) if _parts(got[s], expected[s])), None)
    if first is None:
        return (
            f"{STEPS} steps of fit with k = {SYNC_PERIOD}, α = {SLOW_STEP_SIZE} around SGD follow "
            "Lookahead's formula: the weights are pulled back every k steps, and only then."
        )
    for mistake, message in MISTAKES:
        replay = lookahead_reference(**mistake)
        if not any(_parts(got[s], replay[s]) for s in range(STEPS)):
            raise Incorrect(message)
    step = first + 1
    kind = "a synchronisation" if step % SYNC_PERIOD == 0 else "an ordinary fast step"
    pairs = zip(got[first], expected[first], strict=True)
    gap = max(float(np.max(np.abs(a - b))) for a, b in pairs)
    raise Incorrect(
        f"the weights part from Lookahead's after step {step}, {kind} (k = {SYNC_PERIOD}), by "
        f"up to {gap:.3g}. On a synchronisation: slow ← slow + α·(fast − slow), then "
        "fast ← slow, then the count restarts; on other steps the wrapper writes no weight."
    )


__all__ = [
    "LEARNING_RATE",
    "MISTAKES",
    "SLOW_STEP_SIZE",
    "STEPS",
    "SYNC_PERIOD",
    "MyLookahead",
    "judge_lookahead",
    "lookahead_reference",
    "mse_gradient",
    "regression_gradient",
    "regression_problem",
    "tolerance",
    "train_lookahead",
    "weights_after_each_step",
]
