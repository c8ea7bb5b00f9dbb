"""Checks of appendix A2: correct on the library's solutions, incorrect on known-wrong answers.

Runs on TensorFlow and on JAX; the answer that uses ``ops.cond`` around assignments is rejected
on JAX only (on TensorFlow it is a correct step).
"""

from __future__ import annotations

from course_lib.checks import nbA2

import keras
import pytest
from keras import ops

BACKEND = keras.backend.backend()


def _not_attempted(*args):
    raise NotImplementedError


# Exercise 1: momentum that waits --------------------------------------------------------------
def test_momentum_that_waits_accepts_the_solution():
    result = nbA2.momentum_that_waits.check(nbA2.select_soft_momentum_step)
    assert result.correct, result.message


def test_momentum_that_waits_rejects_a_velocity_updated_every_micro_batch():
    """Notebook 03's switch_style_step: the velocity assignment sits outside the selection."""

    def velocity_always(weight, velocity, accumulator, count, gradient, steps, lr, momentum):
        accumulator.assign_add(gradient)
        count.assign_add(1)
        is_update = ops.equal(count.value, steps)
        velocity.assign(momentum * velocity.value + accumulator.value / steps)
        weight.assign(ops.where(is_update, weight.value - lr * velocity.value, weight.value))
        accumulator.assign(ops.where(is_update, 0.0, accumulator.value))
        count.assign(ops.where(is_update, 0, count.value))

    result = nbA2.momentum_that_waits.check(velocity_always)
    assert result.status == "incorrect"
    assert "micro-batch 1 changed the velocity" in result.message


def test_momentum_that_waits_rejects_the_weight_stepped_with_the_old_velocity():
    def old_velocity(weight, velocity, accumulator, count, gradient, steps, lr, momentum):
        accumulator.assign_add(gradient)
        count.assign_add(1)
        is_update = ops.equal(count.value, steps)
        new_velocity = momentum * velocity.value + accumulator.value / steps
        weight.assign(ops.where(is_update, weight.value - lr * velocity.value, weight.value))
        velocity.assign(ops.where(is_update, new_velocity, velocity.value))
        accumulator.assign(ops.where(is_update, 0.0, accumulator.value))
        count.assign(ops.where(is_update, 0, count.value))

    result = nbA2.momentum_that_waits.check(old_velocity)
    assert result.status == "incorrect"
    assert "the weight after each micro-batch differs" in result.message


def test_momentum_that_waits_rejects_an_accumulator_never_emptied():
    def never_empties(weight, velocity, accumulator, count, gradient, steps, lr, momentum):
        accumulator.assign_add(gradient)
        count.assign_add(1)
        is_update = ops.equal(count.value, steps)
        new_velocity = momentum * velocity.value + accumulator.value / steps
        velocity.assign(ops.where(is_update, new_velocity, velocity.value))
        weight.assign(ops.where(is_update, weight.value - lr * new_velocity, weight.value))
        count.assign(ops.where(is_update, 0, count.value))

    assert nbA2.momentum_that_waits.check(never_empties).status == "incorrect"


def cond_form(weight, velocity, accumulator, count, gradient, steps, lr, momentum):
    """Notebook 03's solution: the assignments inside the branch that ``ops.cond`` takes."""
    accumulator.assign_add(gradient)
    count.assign_add(1)

    def update():
        velocity.assign(momentum * velocity + accumulator / steps)
        weight.assign_sub(lr * velocity)
        accumulator.assign(ops.zeros_like(accumulator))
        count.assign(0)

    ops.cond(ops.equal(count, steps), update, lambda: None)


@pytest.mark.jax_only("on TensorFlow a cond whose branch assigns is a correct step")
def test_momentum_that_waits_rejects_a_cond_with_assignments_on_jax():
    result = nbA2.momentum_that_waits.check(cond_form)
    assert result.status == "incorrect"
    assert "compiled as JAX's trainer compiles it" in result.message


@pytest.mark.tensorflow_only("the cond form fails on JAX (tested there)")
def test_momentum_that_waits_accepts_notebook_03s_cond_form_on_tensorflow():
    assert nbA2.momentum_that_waits.check(cond_form).correct


def test_momentum_that_waits_not_attempted():
    assert nbA2.momentum_that_waits.check(None).status == "not attempted"
    assert nbA2.momentum_that_waits.check(_not_attempted).status == "not attempted"


def test_momentum_that_waits_hint_does_not_give_the_answer():
    assert "momentum * velocity" not in nbA2.momentum_that_waits._hint


# Exercise 2: Lookahead's synchronisation ------------------------------------------------------
def test_lookahead_sync_accepts_the_solution():
    result = nbA2.lookahead_sync.check(nbA2.select_lookahead_sync)
    assert result.correct, result.message


def test_lookahead_expectation_synchronises_and_moves():
    fasts, slows = nbA2.expected_lookahead()
    period = nbA2.SYNC_PERIOD
    assert fasts[period - 1] == slows[period - 1] != 0.0
    assert slows[0] == 0.0 and fasts[0] != 0.0


def test_lookahead_sync_rejects_a_slow_weight_left_behind():
    def slow_never_moves(fast, slow, count, period, alpha):
        count.assign_add(1)
        is_sync = ops.equal(count.value, period)
        pulled = slow.value + alpha * (fast.value - slow.value)
        fast.assign(ops.where(is_sync, pulled, fast.value))
        count.assign(ops.where(is_sync, 0, count.value))

    result = nbA2.lookahead_sync.check(slow_never_moves)
    assert result.status == "incorrect"
    assert "slow weight" in result.message


def test_lookahead_sync_rejects_a_counter_never_restarted():
    def never_restarts(fast, slow, count, period, alpha):
        count.assign_add(1)
        is_sync = ops.equal(count.value, period)
        pulled = slow.value + alpha * (fast.value - slow.value)
        fast.assign(ops.where(is_sync, pulled, fast.value))
        slow.assign(ops.where(is_sync, pulled, slow.value))

    result = nbA2.lookahead_sync.check(never_restarts)
    assert result.status == "incorrect"
    assert "step counter" in result.message


def test_lookahead_sync_rejects_the_slow_weight_updated_from_the_new_fast_one():
    """Assigning fast first, then computing slow's interpolation from the pulled fast weight."""

    def reads_after_writing(fast, slow, count, period, alpha):
        count.assign_add(1)
        is_sync = ops.equal(count.value, period)
        fast.assign(ops.where(is_sync, slow.value + alpha * (fast.value - slow.value), fast.value))
        slow.assign(ops.where(is_sync, slow.value + alpha * (fast.value - slow.value), slow.value))
        count.assign(ops.where(is_sync, 0, count.value))

    assert nbA2.lookahead_sync.check(reads_after_writing).status == "incorrect"


def test_lookahead_sync_not_attempted():
    assert nbA2.lookahead_sync.check(None).status == "not attempted"
    assert nbA2.lookahead_sync.check(_not_attempted).status == "not attempted"


def test_lookahead_sync_hint_does_not_give_the_answer():
    assert "alpha * (fast" not in nbA2.lookahead_sync._hint
