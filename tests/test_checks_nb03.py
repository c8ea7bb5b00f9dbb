"""Notebook 03's self-checks pass on the library's solutions and fail on known-wrong answers."""

from __future__ import annotations

from course_lib.checks import nb03
from course_lib.soft_batch import scheduled_learning_rate, soft_sgd_step

import keras
import pytest
import tensorflow as tf
from keras import ops


def test_solutions_are_correct():
    assert nb03.accumulate_or_apply.check(soft_sgd_step).status == "correct"
    assert nb03.schedule_per_update.check(scheduled_learning_rate).status == "correct"


@pytest.mark.parametrize("exercise", [nb03.accumulate_or_apply, nb03.schedule_per_update])
def test_not_attempted(exercise):
    def starter(*args):
        raise NotImplementedError

    assert exercise.check(None).status == "not attempted"
    assert exercise.check(starter).status == "not attempted"


def every_step(variable, accumulator, count, gradient, steps, learning_rate):
    variable.assign_sub(learning_rate * gradient)


def sum_not_mean(variable, accumulator, count, gradient, steps, learning_rate):
    accumulator.assign_add(gradient)
    count.assign_add(1)

    def update():
        variable.assign_sub(learning_rate * accumulator)
        accumulator.assign(tf.zeros_like(accumulator))
        count.assign(0)

    ops.cond(ops.equal(count, steps), update, lambda: None)


def never_reset(variable, accumulator, count, gradient, steps, learning_rate):
    accumulator.assign_add(gradient)
    count.assign_add(1)
    ops.cond(
        ops.equal(count % steps, 0),
        lambda: variable.assign_sub(learning_rate * accumulator / steps),
        lambda: variable,
    )


def switch_like(variable, accumulator, count, gradient, steps, learning_rate):
    """Both branches run, as with K.switch: the 'skipped' step still writes a small update."""
    accumulator.assign_add(gradient)
    count.assign_add(1)
    is_update = ops.equal(count, steps)
    variable.assign_sub(ops.where(is_update, learning_rate * accumulator / steps, 1e-3 * gradient))
    accumulator.assign(ops.where(is_update, 0.0, accumulator))
    count.assign(ops.where(is_update, 0, count))


@pytest.mark.parametrize("wrong", [every_step, sum_not_mean, never_reset, switch_like])
def test_wrong_accumulate_or_apply_is_incorrect(wrong):
    result = nb03.accumulate_or_apply.check(wrong)
    assert result.status == "incorrect", result


def per_micro_batch(schedule, micro_batches_seen, steps):
    return float(schedule(micro_batches_seen))


def off_by_one(schedule, micro_batches_seen, steps):
    return float(schedule((micro_batches_seen + 1) // steps))


def crashes(schedule, micro_batches_seen, steps):
    return schedule(micro_batches_seen / 0)


@pytest.mark.parametrize("wrong", [per_micro_batch, off_by_one, crashes])
def test_wrong_schedule_is_incorrect(wrong):
    result = nb03.schedule_per_update.check(wrong)
    assert result.status == "incorrect", result


def test_hint_and_solution_print(capsys):
    nb03.accumulate_or_apply.hint()
    nb03.schedule_per_update.solution()
    printed = capsys.readouterr().out
    assert "ops.cond" in printed and "def scheduled_learning_rate" in printed


def test_scheduled_learning_rate_matches_the_schedule_at_the_update_index():
    schedule = keras.optimizers.schedules.PiecewiseConstantDecay([1], [0.1, 0.01])
    assert [scheduled_learning_rate(schedule, k, 4) for k in (0, 3, 4, 7, 8)] == pytest.approx(
        [0.1, 0.1, 0.1, 0.1, 0.01]
    )
    with pytest.raises(ValueError, match="steps must be at least 1"):
        scheduled_learning_rate(schedule, 0, 0)
