"""Self-checks for notebook 03 (soft batch): the accumulate-or-apply cond, and the schedule fix.

Each exercise is run on a small case whose answer is known in closed form; see
``tests/test_checks_nb03.py`` for the known-wrong answers each check must reject.
"""

from __future__ import annotations

from course_lib.checks import Exercise, Incorrect, expect_close
from course_lib.checks.soft_batch_problem import (
    GRADIENTS,
    LEARNING_RATE,
    STEPS,
    expected_trajectory,
)
from course_lib.soft_batch import scheduled_learning_rate, soft_sgd_step

from collections.abc import Callable
from typing import Any


def _check_soft_sgd_step(step: Callable[..., Any]) -> str:
    import tensorflow as tf

    variable = tf.Variable(1.0)
    accumulator = tf.Variable(0.0)
    count = tf.Variable(0)

    @tf.function
    def run(gradient):
        step(variable, accumulator, count, gradient, STEPS, LEARNING_RATE)

    got = []
    for gradient in GRADIENTS:
        run(tf.constant(gradient))
        got.append(float(variable.numpy()))
    expected = expected_trajectory()
    for k, (before, after) in enumerate(zip([1.0, *got[:-1]], got, strict=True)):
        if (k + 1) % STEPS and after != before:
            raise Incorrect(
                f"micro-batch {k + 1} moved the variable from {before:.6f} to {after:.6f}; it "
                f"must stay bit-identical until {STEPS} gradients are in."
            )
    expect_close("the variable after each micro-batch", got, expected, atol=1e-6)
    if int(count.numpy()) != 0 or float(accumulator.numpy()) != 0.0:
        raise Incorrect(
            "after an update the accumulator and the counter must be reset to 0, got "
            f"accumulator={float(accumulator.numpy()):.4f}, count={int(count.numpy())}."
        )
    return "the variable moves once every 4 micro-batches, by the mean gradient."


def _check_scheduled_learning_rate(function: Callable[..., Any]) -> str:
    import keras

    schedule = keras.optimizers.schedules.PiecewiseConstantDecay([1, 3], [0.1, 0.05, 0.01])
    for steps in (1, 2, 4):
        got = [float(function(schedule, seen, steps)) for seen in range(16)]
        expected = [float(scheduled_learning_rate(schedule, seen, steps)) for seen in range(16)]
        expect_close(f"the rates for micro-batches 0..15 with steps={steps}", got, expected)
    return "the schedule now advances once per real update."


accumulate_or_apply = Exercise(
    title="Accumulate or apply with ops.cond",
    checker=_check_soft_sgd_step,
    hint=(
        "Always add the gradient and count it. Then ops.cond(ops.equal(count, steps), update, "
        "lambda: None), where update() subtracts learning_rate * accumulator / steps and resets "
        "both the accumulator and the counter."
    ),
    solution=soft_sgd_step,
)

schedule_per_update = Exercise(
    title="A schedule that counts real updates",
    checker=_check_scheduled_learning_rate,
    hint="Micro-batches 0..steps-1 belong to update 0; integer division maps one to the other.",
    solution=scheduled_learning_rate,
)

__all__ = ["schedule_per_update", "accumulate_or_apply"]
