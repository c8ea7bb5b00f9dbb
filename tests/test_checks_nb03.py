"""Notebook 03's self-checks pass on their solutions and fail on known-wrong answers."""

from __future__ import annotations

from course_lib.checks import nb03
from course_lib.checks.soft_batch_problem import (
    GRADIENTS,
    LEARNING_RATE,
    MOMENTUM,
    STEPS,
    expected_momentum_trajectory,
)
from course_lib.soft_batch import SoftBatch

import ast
import re
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from keras import ops


def test_solutions_are_correct():
    assert nb03.momentum_that_waits.check(nb03.soft_momentum_step).status == "correct"
    result = nb03.builtin_schedule_rate.check(nb03.builtin_schedule_rate_solution)
    assert result.status == "correct", result


EXERCISES = [
    nb03.soft_batch,
    nb03.momentum_that_waits,
    nb03.builtin_schedule_rate,
    nb03.finite_steps_only,
]


@pytest.mark.parametrize("exercise", EXERCISES)
def test_not_attempted(exercise):
    def starter(*args, **kwargs):
        raise NotImplementedError

    assert exercise.check(None).status == "not attempted"
    assert exercise.check(starter).status == "not attempted"


# The wrapper's apply, which the lesson has the learner write ---------------------------------


class StarterSoftBatch(nb03.MySoftBatch):
    """The lesson's skeleton: build given, apply blank."""

    def apply(self, grads, trainable_variables=None):
        if not self.built:
            self.build(trainable_variables)
        raise NotImplementedError("accumulate, count, then ops.cond")


class _Accumulating(nb03.MySoftBatch):
    """Accumulates and counts as the lesson says; subclasses decide and update differently."""

    def apply(self, grads, trainable_variables=None):
        if not self.built:
            self.build(trainable_variables)
        for total, gradient in zip(self.sums, grads, strict=True):
            total.assign_add(gradient)
        self.count.assign_add(1)
        self.decide(trainable_variables)

    def mean(self):
        return [total / self.steps for total in self.sums]

    def reset(self):
        for total in self.sums:
            total.assign(ops.zeros_like(total))
        self.count.assign(0)


class SwitchStyleSoftBatch(_Accumulating):
    """A K.switch-style wrapper: step always, then select the old or new weights (state leaks)."""

    def decide(self, variables):
        is_update = ops.equal(self.count, self.steps)
        old = [tf.identity(v.value) for v in variables]
        self.inner.apply(self.mean(), variables)
        for variable, value in zip(variables, old, strict=True):
            variable.assign(ops.where(is_update, variable, value))
        for total in self.sums:
            total.assign(ops.where(is_update, ops.zeros_like(total), total))
        self.count.assign(ops.where(is_update, 0, self.count))


class PythonIfSoftBatch(_Accumulating):
    def decide(self, variables):
        if self.count == self.steps:
            self.inner.apply(self.mean(), variables)
            self.reset()


class SumNotMean(_Accumulating):
    def decide(self, variables):
        def update():
            self.inner.apply(list(self.sums), variables)
            self.reset()

        ops.cond(ops.equal(self.count, self.steps), update, lambda: None)


class SumsNeverEmptied(_Accumulating):
    def decide(self, variables):
        def update():
            self.inner.apply(self.mean(), variables)
            self.count.assign(0)

        ops.cond(ops.equal(self.count, self.steps), update, lambda: None)


class CounterNeverReset(_Accumulating):
    def decide(self, variables):
        def update():
            self.inner.apply(self.mean(), variables)
            for total in self.sums:
                total.assign(ops.zeros_like(total))

        ops.cond(ops.equal(self.count, self.steps), update, lambda: None)


class StepsEveryMicroBatch(nb03.MySoftBatch):
    def apply(self, grads, trainable_variables=None):
        if not self.built:
            self.build(trainable_variables)
        self.inner.apply(grads, trainable_variables)


def test_soft_batch_accepts_the_solution_and_the_library():
    assert nb03.soft_batch.check(nb03.MySoftBatch).correct
    assert nb03.soft_batch.check(SoftBatch).correct


@pytest.mark.parametrize(
    "wrong, phrase",
    [
        (SwitchStyleSoftBatch, "K.switch leak of the lesson's demo"),
        (PythonIfSoftBatch, "Python if"),
        (SumNotMean, "4 times their mean"),
        (SumsNeverEmptied, "empty the sums"),
        (CounterNeverReset, "was the counter reset"),
        (StepsEveryMicroBatch, "micro-batch 1 moved the weights"),
    ],
)
def test_soft_batch_names_the_mistake(wrong, phrase):
    result = nb03.soft_batch.check(wrong)
    assert result.status == "incorrect" and phrase in result.message, result


def test_soft_batch_leak_message_names_the_inner_state_that_moved():
    message = nb03.soft_batch.check(SwitchStyleSoftBatch).message
    assert "micro-batch 1" in message and "iteration 0 → 1" in message and "momentum" in message


def test_soft_batch_not_attempted():
    assert nb03.soft_batch.check(StarterSoftBatch).status == "not attempted"
    assert nb03.soft_batch.check(None).status == "not attempted"


# Momentum that waits ------------------------------------------------------------------------------


def test_expected_momentum_trajectory_is_keras_sgd_with_momentum_on_the_group_means():
    weight = keras.Variable(np.array(1.0, "float32"))
    sgd = keras.optimizers.SGD(LEARNING_RATE, momentum=MOMENTUM)
    weights = []
    for k in range(STEPS - 1, len(GRADIENTS), STEPS):
        mean = float(np.mean(GRADIENTS[k + 1 - STEPS : k + 1]))
        sgd.apply([ops.convert_to_tensor(np.float32(mean))], [weight])
        weights.append(float(weight.numpy()))
    expected, _ = expected_momentum_trajectory()
    np.testing.assert_allclose(weights, expected[STEPS - 1 :: STEPS], rtol=0, atol=1e-6)


def switch_style(weight, velocity, accumulator, count, gradient, steps, lr, momentum):
    """The notebook's K.switch demo: the velocity runs on every micro-batch."""
    accumulator.assign_add(gradient)
    count.assign_add(1)
    is_update = ops.equal(count, steps)
    velocity.assign(momentum * velocity + accumulator / steps)
    weight.assign(ops.where(is_update, weight - lr * velocity, weight))
    accumulator.assign(ops.where(is_update, 0.0, accumulator))
    count.assign(ops.where(is_update, 0, count))


def last_gradient_not_mean(weight, velocity, accumulator, count, gradient, steps, lr, momentum):
    accumulator.assign_add(gradient)
    count.assign_add(1)

    def update():
        velocity.assign(momentum * velocity + gradient)
        weight.assign_sub(lr * velocity)
        accumulator.assign(ops.zeros_like(accumulator))
        count.assign(0)

    ops.cond(ops.equal(count, steps), update, lambda: None)


def weight_before_velocity(weight, velocity, accumulator, count, gradient, steps, lr, momentum):
    accumulator.assign_add(gradient)
    count.assign_add(1)

    def update():
        weight.assign_sub(lr * velocity)  # steps with the previous velocity
        velocity.assign(momentum * velocity + accumulator / steps)
        accumulator.assign(ops.zeros_like(accumulator))
        count.assign(0)

    ops.cond(ops.equal(count, steps), update, lambda: None)


def never_reset(weight, velocity, accumulator, count, gradient, steps, lr, momentum):
    accumulator.assign_add(gradient)
    count.assign_add(1)

    def update():
        velocity.assign(momentum * velocity + accumulator / steps)
        weight.assign_sub(lr * velocity)

    ops.cond(ops.equal(count % steps, 0), update, lambda: None)


@pytest.mark.parametrize(
    "wrong", [switch_style, last_gradient_not_mean, weight_before_velocity, never_reset]
)
def test_wrong_momentum_is_incorrect(wrong):
    result = nb03.momentum_that_waits.check(wrong)
    assert result.status == "incorrect", result


def select_form(weight, velocity, accumulator, count, gradient, steps, lr, momentum):
    """No ops.cond at all: new values computed every time, only the selection assigned."""
    accumulator.assign_add(gradient)
    count.assign_add(1)
    is_update = ops.equal(count, steps)
    new_velocity = momentum * velocity + accumulator / steps
    velocity.assign(ops.where(is_update, new_velocity, velocity))
    weight.assign(ops.where(is_update, weight - lr * new_velocity, weight))
    accumulator.assign(ops.where(is_update, 0.0, accumulator))
    count.assign(ops.where(is_update, 0, count))


def test_a_selection_of_values_is_accepted_on_tensorflow_too():
    """The summary's claim: what leaks is an assignment, not a selection (A2's form on TF)."""
    result = nb03.momentum_that_waits.check(select_form)
    assert result.status == "correct", result


def test_the_leak_is_named():
    result = nb03.momentum_that_waits.check(switch_style)
    assert "micro-batch 1 changed the velocity" in result.message


# The built-in's schedule --------------------------------------------------------------------


def test_the_measured_rates_are_the_schedule_at_the_last_micro_batch_of_each_group():
    """The check's yardstick, measured on Keras, against the schedule read by hand."""
    schedule = keras.optimizers.schedules.ExponentialDecay(0.1, decay_steps=5, decay_rate=0.5)
    measured = nb03._keras_builtin_rates(schedule, steps=4, updates=3)
    np.testing.assert_allclose(measured, [float(schedule(k)) for k in (3, 7, 11)], rtol=1e-5)
    # and a wrapper's rate (the schedule at the update's number) is far from it
    assert abs(measured[1] - float(schedule(1))) > 0.01


def per_update(schedule, update, steps):
    return float(schedule(update))


def group_start(schedule, update, steps):
    return float(schedule(steps * update))


def one_too_far(schedule, update, steps):
    return float(schedule(steps * (update + 1)))


def floor_division(schedule, update, steps):
    return float(schedule(update // steps))


def crashes(schedule, update, steps):
    return schedule(update / 0)


@pytest.mark.parametrize(
    "wrong, phrase",
    [
        (per_update, "wrapper that counts real updates"),
        (group_start, "first micro-batch"),
        (one_too_far, "one micro-batch too far"),
        (floor_division, "Keras's built-in used"),
        (crashes, "ZeroDivisionError"),
    ],
)
def test_wrong_builtin_schedule_rate_is_incorrect(wrong, phrase):
    result = nb03.builtin_schedule_rate.check(wrong)
    assert result.status == "incorrect" and phrase in result.message, result


# A wrapper that steps only on finite gradients ------------------------------------------------


class _Wrapper(keras.optimizers.Optimizer):
    """The common part of the wrong answers below: build inner, decide in apply."""

    def __init__(self, inner, name="wrapper"):
        super().__init__(learning_rate=0.0, name=name)
        self.inner = inner

    def build(self, variables):
        super().build(variables)
        self.inner.build(variables)


class OnlyFirstGradient(_Wrapper):
    def apply(self, grads, trainable_variables=None):
        finite = ops.all(ops.isfinite(grads[0]))
        ops.cond(finite, lambda: self.inner.apply(grads, trainable_variables), lambda: None)


class NanOnly(_Wrapper):
    def apply(self, grads, trainable_variables=None):
        no_nan = ops.logical_not(ops.any(ops.stack([ops.any(ops.isnan(g)) for g in grads])))
        ops.cond(no_nan, lambda: self.inner.apply(grads, trainable_variables), lambda: None)


class ZerosInstead(_Wrapper):
    """Replaces bad entries by zeros and steps anyway: Adam's moments and counter still move."""

    def apply(self, grads, trainable_variables=None):
        cleaned = [ops.where(ops.isfinite(g), g, ops.zeros_like(g)) for g in grads]
        self.inner.apply(cleaned, trainable_variables)


class PythonIf(_Wrapper):
    """Runs eagerly, but a tensor has no truth value while fit traces its step."""

    def apply(self, grads, trainable_variables=None):
        if all(bool(ops.all(ops.isfinite(g))) for g in grads):
            self.inner.apply(grads, trainable_variables)


class InnerNotBuilt(keras.optimizers.Optimizer):
    def __init__(self, inner, name="wrapper"):
        super().__init__(learning_rate=0.0, name=name)
        self.inner = inner

    def apply(self, grads, trainable_variables=None):
        finite = ops.all(ops.stack([ops.all(ops.isfinite(g)) for g in grads]))
        ops.cond(finite, lambda: self.inner.apply(grads, trainable_variables), lambda: None)


def test_finite_steps_only_accepts_the_solution():
    result = nb03.finite_steps_only.check(nb03.FiniteStepsOnly)
    assert result.status == "correct", result.message


def no_wrapper(inner):
    return inner


@pytest.mark.parametrize("wrong", [OnlyFirstGradient, NanOnly, ZerosInstead, PythonIf, no_wrapper])
def test_finite_steps_only_rejects_wrong_wrappers(wrong):
    result = nb03.finite_steps_only.check(wrong)
    assert result.status == "incorrect", result


def test_finite_steps_only_names_what_went_wrong():
    assert "NaN in the second" in nb03.finite_steps_only.check(OnlyFirstGradient).message
    assert "infinity in the first" in nb03.finite_steps_only.check(NanOnly).message
    not_an_optimizer = nb03.finite_steps_only.check(lambda inner: inner.name)
    assert "must give a Keras optimizer" in not_an_optimizer.message


def test_finite_steps_only_solution_equals_keras_loss_scale_optimizer():
    """With scale 1 (halved to 0.5 on the skip: exact in binary), Keras's own skip is ours."""
    x, y, _ = nb03._nan_problem()
    ours = nb03._fit(nb03.FiniteStepsOnly(keras.optimizers.Adam(0.01)), x, y)
    keras.backend.clear_session()
    scaled = keras.optimizers.LossScaleOptimizer(keras.optimizers.Adam(0.01), initial_scale=1.0)
    theirs = nb03._fit(scaled, x, y)
    assert all(np.all(np.isfinite(w)) for w in ours)
    for a, b in zip(ours, theirs, strict=True):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)


def test_hints_and_solutions_print(capsys):
    nb03.momentum_that_waits.hint()
    nb03.finite_steps_only.solution()
    nb03.builtin_schedule_rate.solution()
    printed = capsys.readouterr().out
    assert "ops.cond" in printed and "class FiniteStepsOnly" in printed
    assert "def builtin_schedule_rate_solution" in printed


@pytest.mark.parametrize("exercise", EXERCISES)
def test_hints_do_not_contain_the_code_of_the_answer(exercise, capsys):
    exercise.hint()
    hint = capsys.readouterr().out
    giveaways = ("assign(", "assign_sub(", "isfinite(", "ops.all(", "ops.cond", "in build")
    giveaways += ("steps * update", "steps - 1", "+ steps", "MySoftBatch's")
    for giveaway in giveaways:
        assert giveaway not in hint, f"{exercise.title}: the hint shows {giveaway!r}"


def test_the_tests_that_the_soft_batch_feature_page_cites_exist():
    """The page notebook 03 links names the tests that prove each SoftBatch property."""
    root = Path(__file__).resolve().parents[1]
    notebook = (root / "notebooks" / "03_soft_batch.ipynb").read_text(encoding="utf-8")
    assert "../docs/soft_batch_features.md" in notebook, "notebook 03 no longer links the page"
    page = (root / "docs" / "soft_batch_features.md").read_text(encoding="utf-8")
    cited = set(re.findall(r"`(test_[a-z0-9_]+)(?:\[[a-z0-9_]+\])?`", page))
    tree = ast.parse((root / "tests" / "test_soft_batch.py").read_text(encoding="utf-8"))
    defined = {node.name for node in ast.walk(tree) if isinstance(node, ast.FunctionDef)}
    assert len(cited) >= 10, f"the table cites only {sorted(cited)}"
    assert cited <= defined, f"the page cites tests that do not exist: {sorted(cited - defined)}"
