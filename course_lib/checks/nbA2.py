"""Self-checks for appendix A2 (the same optimizers on JAX): decisions written as selections.

* :data:`momentum_that_waits`: notebook 03's soft-batch momentum, written in the select form
  JAX's stateless step allows: every value computed, then ``ops.where`` keeps new or old.
* :data:`lookahead_sync`: Lookahead's synchronisation (notebook 07) in the same form.

Each check runs the learner's function compiled as the current backend's trainer compiles a
step (:func:`course_lib.stateless.compiled`): on JAX an ``ops.cond`` whose branch assigns fails
there, as it would inside ``fit``. ``tests/test_checks_nbA2.py`` lists the wrong answers each
check rejects.
"""

from __future__ import annotations

from course_lib.checks import Exercise, Incorrect, expect_close
from course_lib.checks.soft_batch_problem import (
    LEARNING_RATE,
    MOMENTUM,
    STEPS,
    judge_soft_momentum_step,
)
from course_lib.stateless import compiled

from collections.abc import Callable
from typing import Any

import keras
from keras import ops

# --------------------------------------------------------------------------------------------
# Solutions
# --------------------------------------------------------------------------------------------


def select_soft_momentum_step(weight, velocity, accumulator, count, gradient, steps, lr, momentum):
    """One micro-batch of soft-batch SGD with momentum, as a selection of values.

    The new velocity and weight are computed on every micro-batch, as plain values; only the
    selection ``ops.where(is_update, new, old)`` is assigned, so between updates both variables
    are written with their old values, bit for bit.
    """
    accumulator.assign_add(gradient)
    count.assign_add(1)
    is_update = ops.equal(count.value, steps)
    new_velocity = momentum * velocity.value + accumulator.value / steps
    new_weight = weight.value - lr * new_velocity
    velocity.assign(ops.where(is_update, new_velocity, velocity.value))
    weight.assign(ops.where(is_update, new_weight, weight.value))
    accumulator.assign(ops.where(is_update, ops.zeros_like(accumulator.value), accumulator.value))
    count.assign(ops.where(is_update, 0, count.value))


def select_lookahead_sync(fast, slow, count, period, alpha):
    """Lookahead's bookkeeping after one inner step, as a selection of values.

    Count the step; on every ``period``-th one pull the fast weight towards the slow one,
    ``slow + alpha·(fast − slow)``, make that the new slow weight too, and restart the count.
    """
    count.assign_add(1)
    is_sync = ops.equal(count.value, period)
    pulled = slow.value + alpha * (fast.value - slow.value)
    fast.assign(ops.where(is_sync, pulled, fast.value))
    slow.assign(ops.where(is_sync, pulled, slow.value))
    count.assign(ops.where(is_sync, 0, count.value))


# --------------------------------------------------------------------------------------------
# Checkers
# --------------------------------------------------------------------------------------------


def _run_compiled(step: Callable[..., None], variables: list[keras.Variable], *args: Any) -> None:
    """Run ``step`` compiled as fit would, with a message that names JAX's rule if it fails."""
    try:
        compiled(step, variables)(*args)
    except (Incorrect, NotImplementedError):
        raise
    except Exception as error:
        if keras.backend.backend() == "jax":
            raise Incorrect(
                f"your step failed when compiled as JAX's trainer compiles it "
                f"({type(error).__name__}). Inside that step a variable cannot be assigned in "
                "a branch that may not run: compute the new values, then assign a selection."
            ) from None
        raise


def _check_soft_momentum_step(step: Callable[..., Any]) -> str:
    weight, velocity = keras.Variable(1.0), keras.Variable(0.0)
    accumulator, count = keras.Variable(0.0), keras.Variable(0, dtype="int32")
    variables = [weight, velocity, accumulator, count]

    def one_micro_batch(gradient):
        step(weight, velocity, accumulator, count, gradient, STEPS, LEARNING_RATE, MOMENTUM)

    def run_micro_batch(gradient):
        _run_compiled(one_micro_batch, variables, ops.convert_to_tensor(gradient))

    judge_soft_momentum_step(run_micro_batch, weight, velocity, accumulator, count)
    return "weight and velocity move once every 4 micro-batches, in a compiled step."


#: The lookahead check's inner steps: the fast weight moves by these, one per step.
FAST_MOVES = (0.5, -0.25, 1.0, 0.75, -0.5, 0.25, 0.5, -1.0)
SYNC_PERIOD = 3
SLOW_STEP = 0.5


def expected_lookahead() -> tuple[list[float], list[float]]:
    """Fast and slow weight after each step (both start at 0), from the formula in NumPy."""
    fast, slow, count, fasts, slows = 0.0, 0.0, 0, [], []
    for move in FAST_MOVES:
        fast, count = fast + move, count + 1
        if count == SYNC_PERIOD:
            fast = slow = slow + SLOW_STEP * (fast - slow)
            count = 0
        fasts.append(fast)
        slows.append(slow)
    return fasts, slows


def _check_lookahead_sync(sync: Callable[..., Any]) -> str:
    fast, slow, count = keras.Variable(0.0), keras.Variable(0.0), keras.Variable(0, dtype="int32")
    variables = [fast, slow, count]

    def one_step(move):
        fast.assign_add(move)  # what the inner optimizer does
        sync(fast, slow, count, SYNC_PERIOD, SLOW_STEP)

    fasts, slows, counts = [], [], []
    for move in FAST_MOVES:
        _run_compiled(one_step, variables, ops.convert_to_tensor(move))
        fasts.append(float(fast.numpy()))
        slows.append(float(slow.numpy()))
        counts.append(int(count.numpy()))
    expected_counts = [(k + 1) % SYNC_PERIOD for k in range(len(FAST_MOVES))]
    if counts != expected_counts:
        raise Incorrect(
            f"the step counter reads {counts}, expected {expected_counts}: count every step "
            f"and restart at 0 on each {SYNC_PERIOD}rd."
        )
    expected_fasts, expected_slows = expected_lookahead()
    expect_close("the slow weight after each step", slows, expected_slows)
    expect_close("the fast weight after each step", fasts, expected_fasts)
    return f"fast and slow weights meet every {SYNC_PERIOD} steps, as the formula says."


# --------------------------------------------------------------------------------------------
# Exercises
# --------------------------------------------------------------------------------------------

momentum_that_waits = Exercise(
    title="Momentum that waits, as a selection",
    checker=_check_soft_momentum_step,
    hint=(
        "Start from your select_soft_sgd_step. Which two values does an update change now? "
        "Compute each new value from the old ones first, as a plain tensor, and assign only "
        "what ops.where picks; mind which velocity the weight's new value needs."
    ),
    solution=select_soft_momentum_step,
)

lookahead_sync = Exercise(
    title="Lookahead's synchronisation, as a selection",
    checker=_check_lookahead_sync,
    hint=(
        "Three variables change on a synchronisation step, and only one of them on the others. "
        "Compute the interpolated weight once, from the values before anything is assigned, "
        "then let one boolean tensor select for each variable."
    ),
    solution=select_lookahead_sync,
)

__all__ = [
    "expected_lookahead",
    "lookahead_sync",
    "momentum_that_waits",
    "select_lookahead_sync",
    "select_soft_momentum_step",
]
