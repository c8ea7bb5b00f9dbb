"""Checks of appendix A2: correct on the library's solutions, incorrect on known-wrong answers.

Runs on TensorFlow and on JAX; the answer that uses ``ops.cond`` around assignments is rejected
on JAX only (on TensorFlow it is a correct step).
"""

from __future__ import annotations

from course_lib import Lookahead
from course_lib.checks import nbA2
from course_lib.checks.lookahead_problem import MyLookahead
from course_lib.keras_internals import built_variables

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


# The lesson: notebook 07's Lookahead, its synchronisation as a selection ------------------------
class SelectVariant(nbA2.MySelectLookahead):
    """The solution with its synchronisation swapped for ``synchronise`` (given the weights)."""

    def synchronise(self, weights):
        syncing = ops.equal(self.count.value, self.sync_period)
        for slow, fast in zip(self.slow, weights, strict=True):
            pulled = slow.value + self.slow_step_size * (fast.value - slow.value)
            slow.assign(ops.where(syncing, pulled, slow.value))
            fast.assign(ops.where(syncing, pulled, fast.value))
        self.count.assign(ops.where(syncing, 0, self.count.value))

    def apply(self, grads, trainable_variables=None):
        if not self.built:
            self.build(trainable_variables)
        weights = trainable_variables
        weights = built_variables(self) if weights is None else weights
        starting = ops.equal(self.count.value, 0)
        for slow, fast in zip(self.slow, weights, strict=True):
            slow.assign(ops.where(starting, fast.value, slow.value))
        self.inner.apply(grads, weights)
        self.count.assign_add(1)
        self.synchronise(weights)


class SynchronisesUnderCond(SelectVariant):
    def synchronise(self, weights):
        def branch():
            for slow, fast in zip(self.slow, weights, strict=True):
                slow.assign(slow + self.slow_step_size * (fast - slow))
                fast.assign(slow)
            self.count.assign(0)

        ops.cond(ops.equal(self.count, self.sync_period), branch, lambda: None)


class NeverRestartsTheCount(SelectVariant):
    def synchronise(self, weights):
        syncing = ops.equal(self.count.value, self.sync_period)
        for slow, fast in zip(self.slow, weights, strict=True):
            pulled = slow.value + self.slow_step_size * (fast.value - slow.value)
            slow.assign(ops.where(syncing, pulled, slow.value))
            fast.assign(ops.where(syncing, pulled, fast.value))


class SelectsTheWrongWayRound(SelectVariant):
    """ops.where(condition, old, new): the pull happens on every step but the k-th."""

    def synchronise(self, weights):
        syncing = ops.equal(self.count.value, self.sync_period)
        for slow, fast in zip(self.slow, weights, strict=True):
            pulled = slow.value + self.slow_step_size * (fast.value - slow.value)
            slow.assign(ops.where(syncing, slow.value, pulled))
            fast.assign(ops.where(syncing, fast.value, pulled))
        self.count.assign(ops.where(syncing, 0, self.count.value))


def test_select_lookahead_accepts_the_solution_and_the_library():
    assert nbA2.select_lookahead.check(nbA2.MySelectLookahead).correct
    assert nbA2.select_lookahead.check(SelectVariant).correct
    assert nbA2.select_lookahead.check(Lookahead).correct


@pytest.mark.jax_only("on TensorFlow notebook 07's class and a cond are correct (tested there)")
def test_select_lookahead_names_what_fails_on_jax():
    message = nbA2.select_lookahead.check(MyLookahead).message
    assert "trainable_variables is None" in message, message
    message = nbA2.select_lookahead.check(SynchronisesUnderCond).message
    assert "cannot be assigned in a branch of ops.cond" in message, message


@pytest.mark.tensorflow_only("the cond forms fail on JAX (tested there)")
def test_select_lookahead_accepts_the_cond_forms_on_tensorflow():
    assert nbA2.select_lookahead.check(MyLookahead).correct
    assert nbA2.select_lookahead.check(SynchronisesUnderCond).correct


def test_select_lookahead_names_the_mistake():
    message = nbA2.select_lookahead.check(NeverRestartsTheCount).message
    assert "never again: restart the count" in message, message
    result = nbA2.select_lookahead.check(SelectsTheWrongWayRound)
    assert result.status == "incorrect"
    assert "part from Lookahead's after step 1, an ordinary fast step" in result.message


def test_select_lookahead_not_attempted_on_the_notebooks_skeleton():
    class MySelectLookahead(SelectVariant):
        def synchronise(self, weights):
            raise NotImplementedError("the synchronisation, as a selection")

    assert nbA2.select_lookahead.check(None).status == "not attempted"
    assert nbA2.select_lookahead.check(MySelectLookahead).status == "not attempted"


def test_select_lookahead_hint_does_not_give_the_answer():
    assert "ops.where(syncing" not in nbA2.select_lookahead._hint


# What the notebook prints of a failed fit ------------------------------------------------------
def test_failure_summary_drops_keras_header_and_colour_codes():
    error = TypeError(
        "Exception encountered when calling MyLookahead.apply().\n\n"
        "\x1b[1m'NoneType' object is not iterable\x1b[0m\n\nArguments received: ..."
    )
    assert nbA2.failure_summary(error, width=20) == "TypeError: 'NoneType' object is..."
