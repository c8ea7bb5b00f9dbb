"""Self-checks for notebook 03 (soft batch): a waiting momentum, a schedule, a wrapper.

* :data:`momentum_that_waits`: one micro-batch of soft-batch SGD with momentum whose velocity,
  like the weight, changes only on real updates (the fix of the notebook's ``K.switch`` demo).
* :data:`schedule_per_update`: the rate a schedule should give a micro-batch.
* :data:`finite_steps_only`: a wrapper optimizer that lets the inner optimizer step only when
  every gradient is finite, what ``keras.optimizers.LossScaleOptimizer`` does around its skips.

Each check runs a small case whose answer is known; ``tests/test_checks_nb03.py`` lists the
known-wrong answers each one must reject.
"""

from __future__ import annotations

from course_lib.checks import Exercise, Incorrect, expect_close
from course_lib.checks.soft_batch_problem import (
    GRADIENTS,
    LEARNING_RATE,
    MOMENTUM,
    STEPS,
    expected_momentum_trajectory,
)
from course_lib.soft_batch import scheduled_learning_rate

from collections.abc import Callable
from typing import Any

import keras
import numpy as np
from keras import ops

# --------------------------------------------------------------------------------------------
# Solutions
# --------------------------------------------------------------------------------------------


def soft_momentum_step(weight, velocity, accumulator, count, gradient, steps, lr, momentum):
    """One micro-batch of soft-batch SGD with momentum: the velocity waits for the update too.

    Accumulating and counting happen on every micro-batch; the velocity and the weight move
    only inside the branch that ``ops.cond`` runs on every ``steps``-th one.
    """
    accumulator.assign_add(gradient)
    count.assign_add(1)

    def update():
        velocity.assign(momentum * velocity + accumulator / steps)
        weight.assign_sub(lr * velocity)
        accumulator.assign(ops.zeros_like(accumulator))
        count.assign(0)

    ops.cond(ops.equal(count, steps), update, lambda: None)


class FiniteStepsOnly(keras.optimizers.Optimizer):
    """Let ``inner`` step only when every gradient is finite; otherwise change nothing.

    This is the skip of ``keras.optimizers.LossScaleOptimizer`` without the loss scaling: one
    NaN or infinity anywhere would poison the weights and the inner optimizer's slots, so the
    whole step is dropped, inner's counter included.
    """

    def __init__(self, inner, name="finite_steps_only"):
        super().__init__(learning_rate=0.0, name=name)  # unused: the inner rate counts
        self.inner = inner

    def build(self, variables):
        super().build(variables)
        self.inner.build(variables)  # here, not inside fit's compiled step

    def apply(self, grads, trainable_variables=None):
        if not self.built:
            self.build(trainable_variables)
        finite = ops.all(ops.stack([ops.all(ops.isfinite(g)) for g in grads]))
        ops.cond(finite, lambda: self.inner.apply(grads, trainable_variables), lambda: None)


# --------------------------------------------------------------------------------------------
# Checkers
# --------------------------------------------------------------------------------------------


def _check_soft_momentum_step(step: Callable[..., Any]) -> str:
    import tensorflow as tf

    weight, velocity = tf.Variable(1.0), tf.Variable(0.0)
    accumulator, count = tf.Variable(0.0), tf.Variable(0)

    @tf.function
    def run(gradient):
        step(weight, velocity, accumulator, count, gradient, STEPS, LEARNING_RATE, MOMENTUM)

    weights, velocities = [], []
    for gradient in GRADIENTS:
        run(tf.constant(gradient))
        weights.append(float(weight.numpy()))
        velocities.append(float(velocity.numpy()))
    before = list(zip([1.0, *weights[:-1]], [0.0, *velocities[:-1]], strict=True))
    for k, ((w0, v0), w1, v1) in enumerate(zip(before, weights, velocities, strict=True)):
        if (k + 1) % STEPS and (w1, v1) != (w0, v0):
            what = "velocity" if v1 != v0 else "weight"
            raise Incorrect(
                f"micro-batch {k + 1} changed the {what} (weight {w0:.6f} → {w1:.6f}, velocity "
                f"{v0:.6f} → {v1:.6f}); both must stay bit-identical until {STEPS} gradients "
                "are in."
            )
    expected_weights, expected_velocities = expected_momentum_trajectory()
    expect_close("the velocity after each micro-batch", velocities, expected_velocities)
    expect_close("the weight after each micro-batch", weights, expected_weights)
    if int(count.numpy()) != 0 or float(accumulator.numpy()) != 0.0:
        raise Incorrect(
            "after an update the accumulator and the counter must be reset to 0, got "
            f"accumulator={float(accumulator.numpy()):.4f}, count={int(count.numpy())}."
        )
    return "weight and velocity move once every 4 micro-batches, with the mean gradient."


def _check_scheduled_learning_rate(function: Callable[..., Any]) -> str:
    schedule = keras.optimizers.schedules.PiecewiseConstantDecay([1, 3], [0.1, 0.05, 0.01])
    for steps in (1, 2, 4):
        got = [float(function(schedule, seen, steps)) for seen in range(16)]
        expected = [float(scheduled_learning_rate(schedule, seen, steps)) for seen in range(16)]
        expect_close(f"the rates for micro-batches 0..15 with steps={steps}", got, expected)
    return "the schedule now advances once per real update."


#: Gradients for two variables (a 2-vector and a scalar), applied in order: a correct wrapper
#: takes the two finite steps and leaves everything untouched on the other two.
_GRADIENT_CASES = (
    ("finite", [[0.5, -1.0], 2.0]),
    ("NaN in the second variable's gradient only", [[0.3, 0.2], float("nan")]),
    ("an infinity in the first variable's gradient only", [[float("inf"), 0.1], -1.0]),
    ("finite", [[-0.2, 0.4], 0.5]),
)


def _make_optimizer(answer: Any, inner: keras.optimizers.Optimizer) -> keras.optimizers.Optimizer:
    optimizer = answer(inner)
    if not isinstance(optimizer, keras.optimizers.Optimizer):
        raise Incorrect(
            f"{getattr(answer, '__name__', answer)}(inner) must give a Keras optimizer (a "
            f"keras.optimizers.Optimizer subclass), got {type(optimizer).__name__}."
        )
    return optimizer


def _check_skips_bad_steps(answer: Any) -> None:
    """Apply four gradient lists in turn; compare with the inner optimizer alone on the good ones.

    Eagerly, so that each wrong answer gets a precise message; the fit below runs the wrapper
    inside the compiled training step, where a Python ``if`` on a tensor fails.
    """
    start = [np.array([1.0, -2.0], "float32"), np.array(0.5, "float32")]
    ours = [keras.Variable(value) for value in start]
    reference = [keras.Variable(value) for value in start]
    optimizer = _make_optimizer(answer, keras.optimizers.Adam(0.1))
    optimizer.build(ours)
    inner_alone = keras.optimizers.Adam(0.1)
    inner_alone.build(reference)

    for index, (label, gradients) in enumerate(_GRADIENT_CASES):
        gradients = [ops.convert_to_tensor(np.array(g, "float32")) for g in gradients]
        before = [v.numpy().copy() for v in ours]
        optimizer.apply(gradients, ours)
        after = [v.numpy() for v in ours]
        if label == "finite":
            inner_alone.apply(gradients, reference)
            for k, (got, expected) in enumerate(zip(after, reference, strict=True)):
                expect_close(
                    f"variable {k} after step {index + 1} (finite gradients: the inner Adam must "
                    "take its step, and be at the same point of its schedule as Adam alone)",
                    got,
                    expected.numpy(),
                )
        elif not all(np.array_equal(a, b) for a, b in zip(before, after, strict=True)):
            raise Incorrect(
                f"step {index + 1} had {label}, but the variables changed (to {after}); every "
                "gradient must be finite for a step to happen."
            )


def _nan_problem() -> tuple[np.ndarray, np.ndarray, list[int]]:
    """Regression data in 6 batches of 16; batch 2 has a NaN input, batch 4 an infinite target."""
    rng = np.random.default_rng(3)
    x = rng.normal(size=(96, 4)).astype("float32")
    y = (x @ rng.normal(size=(4, 1))).astype("float32")
    x[35, 1] = np.nan
    y[70, 0] = np.inf
    return x, y, [2, 4]


def _fit(optimizer: keras.optimizers.Optimizer, x: np.ndarray, y: np.ndarray) -> list[np.ndarray]:
    keras.utils.set_random_seed(7)
    model = keras.Sequential(
        [keras.Input((4,)), keras.layers.Dense(8, activation="tanh"), keras.layers.Dense(1)]
    )
    model.compile(optimizer=optimizer, loss="mse")
    model.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0)
    return model.get_weights()


def _check_trains_through_bad_batches(answer: Any) -> None:
    """In fit, the wrapper must train as the inner optimizer would without the bad batches."""
    x, y, bad = _nan_problem()
    got = _fit(_make_optimizer(answer, keras.optimizers.Adam(0.01)), x, y)
    keep = np.concatenate([np.arange(16 * b, 16 * (b + 1)) for b in range(6) if b not in bad])
    keras.backend.clear_session()
    expected = _fit(keras.optimizers.Adam(0.01), x[keep], y[keep])
    for index, (g, e) in enumerate(zip(got, expected, strict=True)):
        expect_close(
            f"weight {index} after fit (expected: Adam trained on the same data without the NaN "
            "and the infinite batch)",
            g,
            e,
        )


def _check_finite_steps_only(answer: Any) -> str:
    if not callable(answer):
        raise Incorrect(f"pass your class itself, got {type(answer).__name__}.")
    _check_skips_bad_steps(answer)
    keras.backend.clear_session()
    _check_trains_through_bad_batches(answer)
    return (
        "your wrapper skips every step with a NaN or an infinity, inner's state included, and "
        "trains through bad batches as if they were not there."
    )


# --------------------------------------------------------------------------------------------
# Exercises
# --------------------------------------------------------------------------------------------

momentum_that_waits = Exercise(
    title="Momentum that waits for the update",
    checker=_check_soft_momentum_step,
    hint=(
        "Compare switch_style_step with my_soft_sgd_step. Which assignments must run on every "
        "micro-batch, and which only when the group is complete? Only the second kind belongs "
        "in the function that ops.cond runs."
    ),
    solution=soft_momentum_step,
)

schedule_per_update = Exercise(
    title="A schedule that counts real updates",
    checker=_check_scheduled_learning_rate,
    hint=(
        "Write out, for steps=4, the micro-batch numbers 0 to 9 and, under each, the number of "
        "the real update it belongs to. What operation turns the first row into the second?"
    ),
    solution=scheduled_learning_rate,
)

finite_steps_only = Exercise(
    title="A wrapper that steps only on finite gradients",
    checker=_check_finite_steps_only,
    hint=(
        "The shape is MySoftBatch's, without the sums and the counter: build the inner "
        "optimizer in build, and in apply decide with ops.cond whether inner.apply runs. The "
        "decision is one boolean tensor, True only if no gradient holds a NaN or an infinity; "
        "keras.ops has functions that test elements and that reduce a tensor of booleans."
    ),
    solution=FiniteStepsOnly,
)

__all__ = [
    "FiniteStepsOnly",
    "finite_steps_only",
    "momentum_that_waits",
    "schedule_per_update",
    "soft_momentum_step",
]
