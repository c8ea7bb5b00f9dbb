"""The notebook 07 checks pass on the library's solutions and fail on known-wrong answers."""

from __future__ import annotations

from course_lib import Lookahead, SAMModel
from course_lib.checks import lookahead_problem, nb07

import keras
import numpy as np
import pytest
import tensorflow as tf
from keras import ops


def _not_attempted(*args, **kwargs):
    raise NotImplementedError


def _scales(weights, eta):
    return [np.abs(np.asarray(w, dtype=float)) + eta for w in weights]


def sam_perturbation(gradients, rho):
    """SAM's ε = ρ·g/‖g‖, one norm over all the arrays (a NumPy reference for these tests)."""
    gradients = [np.asarray(g, dtype=float) for g in gradients]
    norm = np.sqrt(sum(np.sum(g**2) for g in gradients))
    return [rho * g / (norm + 1e-12) for g in gradients]


# ---- Lookahead's synchronisation (the lesson) ---------------------------------------------------


class _Lookahead(lookahead_problem.MyLookahead):
    """The notebook's MyLookahead with one piece of its synchronisation swapped for a mistake."""

    offset = 0  # synchronise when the count reaches sync_period + offset
    reset_fast = restart_count = True
    always = first_variable_only = fast_before_slow = False
    alpha = None  # the fraction the slow weights move; None: slow_step_size

    def apply(self, grads, trainable_variables=None):
        if not self.built:
            self.build(trainable_variables)

        def start_cycle():
            for slow, fast in zip(self.slow, trainable_variables, strict=True):
                slow.assign(fast)

        ops.cond(ops.equal(self.count, 0), start_cycle, lambda: None)
        self.inner.apply(grads, trainable_variables)
        self.count.assign_add(1)
        alpha = self.slow_step_size if self.alpha is None else self.alpha

        def synchronise():
            pairs = list(zip(self.slow, trainable_variables, strict=True))
            for slow, fast in pairs[:1] if self.first_variable_only else pairs:
                if self.fast_before_slow:
                    fast.assign(slow)
                    slow.assign(slow + alpha * (fast - slow))
                    continue
                slow.assign(slow + alpha * (fast - slow))
                if self.reset_fast:
                    fast.assign(slow)
            if self.restart_count:
                self.count.assign(0)

        due = ops.equal(self.count, self.sync_period + self.offset)
        ops.cond(ops.logical_or(due, self.always), synchronise, lambda: None)


class EverySteps(_Lookahead):
    always = True


class NeverResetsTheFastWeights(_Lookahead):
    reset_fast = False


class NeverRestartsTheCount(_Lookahead):
    restart_count = False


class AlphaTheWrongWayRound(_Lookahead):
    @property
    def alpha(self):
        return 1 - self.slow_step_size


class AwayFromTheFastWeights(_Lookahead):
    @property
    def alpha(self):
        return -self.slow_step_size


class FastWeightsToTheOldSlowOnes(_Lookahead):
    fast_before_slow = True


class ComparesBeforeCounting(_Lookahead):
    offset = -1


class OnlyTheFirstVariable(_Lookahead):
    first_variable_only = True


def test_lookahead_accepts_the_solution_and_the_library():
    assert nb07.lookahead.check(nb07.MyLookahead).correct
    assert nb07.lookahead.check(_Lookahead).correct
    assert nb07.lookahead.check(Lookahead).correct


@pytest.mark.parametrize(
    ("wrong", "says"),
    [
        (EverySteps, "after every fast step"),
        (NeverResetsTheFastWeights, "follow plain SGD"),
        (NeverRestartsTheCount, "never again: restart the count"),
        (AlphaTheWrongWayRound, "1 − α"),
        (AwayFromTheFastWeights, "away from the fast ones"),
        (FastWeightsToTheOldSlowOnes, "back to where the cycle started"),
        (ComparesBeforeCounting, "every 2 steps"),
        (OnlyTheFirstVariable, "after step 3, a synchronisation"),
    ],
)
def test_lookahead_names_the_mistake(wrong, says):
    result = nb07.lookahead.check(wrong)
    assert result.status == "incorrect", wrong.__name__
    assert says in result.message, result.message


def test_lookahead_not_attempted_on_the_notebooks_skeleton():
    class MyLookahead(lookahead_problem.MyLookahead):  # the skeleton's blanks, untouched
        def apply(self, grads, trainable_variables=None):
            if not self.built:
                self.build(trainable_variables)
            self.inner.apply(grads, trainable_variables)
            self.count.assign_add(1)

            def synchronise():
                raise NotImplementedError("the synchronisation")

            raise NotImplementedError("when to synchronise")

    assert nb07.lookahead.check(None).status == "not attempted"
    assert nb07.lookahead.check(MyLookahead).status == "not attempted"


def test_lookahead_reference_is_the_formula():
    """Three SGD steps by hand; the third completes a cycle (k = 3) and pulls back by α = 1/4."""
    x, y, initial = lookahead_problem.regression_problem()
    fast = [w.copy() for w in initial]
    for _ in range(3):
        gradient = lookahead_problem.regression_gradient(fast)
        fast = [w - 0.125 * g for w, g in zip(fast, gradient, strict=True)]
    pulled = [s + 0.25 * (f - s) for s, f in zip(initial, fast, strict=True)]
    third = lookahead_problem.lookahead_reference()[2]
    assert all(np.allclose(a, b, rtol=0, atol=1e-15) for a, b in zip(third, pulled, strict=True))
    kernel, bias = initial
    residual = x @ kernel + bias - y
    assert np.allclose(lookahead_problem.regression_gradient(initial)[1], 2 * residual.mean(0))


# ---- SAM's trial point (the lesson) -------------------------------------------------------------


class SAMVariant(nb07.SAMFrame):
    """SAM's trial point with one piece swapped for a known mistake."""

    sign, power, per_variable, second_tape, restore, guard = 1.0, 1.0, False, True, True, 1e-12

    def gradient_at_trial_point(self, x, y, g):
        variables = self.trainable_variables
        start = [tf.identity(v.value) for v in variables]
        squares = [tf.reduce_sum(gi * gi) for gi in g]
        norm = tf.sqrt(tf.add_n(squares)) ** self.power
        for v, gi, square in zip(variables, g, squares, strict=True):
            scale = tf.sqrt(square) if self.per_variable else norm
            v.assign_add(self.sign * self.rho * gi / (scale + self.guard))
        if not self.second_tape:
            sharp_g = g
        else:
            with tf.GradientTape() as tape:
                trial_loss = self.compute_loss(x=x, y=y, y_pred=self(x, training=True))
            sharp_g = tape.gradient(trial_loss, variables)
        for v, value in zip(variables, start, strict=True):
            if self.restore:
                v.assign(value)
        return sharp_g


class Downhill(SAMVariant):
    sign = -1.0


class NotNormalised(SAMVariant):
    power = 0.0


class NormSquared(SAMVariant):
    power = 2.0


class PerVariableNorm(SAMVariant):
    per_variable = True


class GradientAtTheStart(SAMVariant):
    second_tape = False


class NotRestored(SAMVariant):
    restore = False


class WithoutTheGuard(SAMVariant):
    guard = 0.0


class DividesNoNan(SAMVariant):
    """tf.math.divide_no_nan: no NaN at g = 0, but not ρ·g/(‖g‖ + 1e-12) near it either."""

    def gradient_at_trial_point(self, x, y, g):
        variables = self.trainable_variables
        start = [tf.identity(v.value) for v in variables]
        norm = tf.sqrt(tf.add_n([tf.reduce_sum(gi * gi) for gi in g]))
        for v, gi in zip(variables, g, strict=True):
            v.assign_add(tf.math.divide_no_nan(self.rho * gi, norm))
        with tf.GradientTape() as tape:
            trial_loss = self.compute_loss(x=x, y=y, y_pred=self(x, training=True))
        sharp_g = tape.gradient(trial_loss, variables)
        for v, value in zip(variables, start, strict=True):
            v.assign(value)
        return sharp_g


class HalfTheRadius(SAMVariant):
    def gradient_at_trial_point(self, x, y, g):
        self.rho = 0.25
        return super().gradient_at_trial_point(x, y, g)


def test_sam_accepts_the_solution_and_the_library():
    assert nb07.sam.check(nb07.MySAMModel).correct
    assert nb07.sam.check(SAMVariant).correct
    assert nb07.sam.check(SAMModel).correct


@pytest.mark.parametrize(
    ("wrong", "says"),
    [
        (Downhill, "downhill"),
        (NotNormalised, "divide by ‖g‖"),
        (NormSquared, "‖g‖²"),
        (PerVariableNorm, "one norm over all"),
        (GradientAtTheStart, "follow plain SGD"),
        (NotRestored, "put every variable back"),
        (HalfTheRadius, "part from SAM's at step 1"),
        (WithoutTheGuard, "Add the 1e-12 to ‖g‖"),
        (DividesNoNan, "Add the 1e-12 to ‖g‖"),
    ],
)
def test_sam_names_the_mistake(wrong, says):
    result = nb07.sam.check(wrong)
    assert result.status == "incorrect", wrong.__name__
    assert says in result.message, result.message


def test_sam_not_attempted_on_the_notebooks_skeleton():
    class MySAMModel(nb07.SAMFrame):
        def gradient_at_trial_point(self, x, y, g):
            variables = self.trainable_variables
            start = [tf.identity(v.value) for v in variables]  # noqa: F841
            raise NotImplementedError("the trial point, its gradient, back to p")

    assert nb07.sam.check(None).status == "not attempted"
    assert nb07.sam.check(MySAMModel).status == "not attempted"


def test_sam_reference_first_step_by_hand():
    _, _, initial = lookahead_problem.regression_problem()
    g = lookahead_problem.regression_gradient(initial)
    trial = [w + e for w, e in zip(initial, sam_perturbation(g, nb07.SAM_RHO), strict=True)]
    sharp = lookahead_problem.regression_gradient(trial)
    expected = [w - 0.125 * s for w, s in zip(initial, sharp, strict=True)]
    first = nb07.sam_reference()[0]
    assert all(np.allclose(a, b, rtol=0, atol=1e-15) for a, b in zip(first, expected, strict=True))


def test_adaptive_sam_accepts_the_solution_and_an_independent_derivation():
    assert nb07.adaptive_sam.check(nb07.adaptive_perturbation).correct

    def through_the_ball(weights, gradients, rho, eta=0.01):
        # ε = T∘δ with δ = ρ·(T∘g)/‖T∘g‖, the SAM step in the rescaled coordinates
        scaled = [t * np.asarray(g) for t, g in zip(_scales(weights, eta), gradients, strict=True)]
        deltas = sam_perturbation(scaled, rho)
        return [t * d for t, d in zip(_scales(weights, eta), deltas, strict=True)]

    assert nb07.adaptive_sam.check(through_the_ball).correct


def test_adaptive_sam_rejects_realistic_wrong_answers():
    def plain_sam(weights, gradients, rho, eta=0.01):
        return sam_perturbation(gradients, rho)

    def one_scale_only(weights, gradients, rho, eta=0.01):  # T∘g/‖T∘g‖: forgets to map δ back
        scaled = [t * np.asarray(g) for t, g in zip(_scales(weights, eta), gradients, strict=True)]
        return sam_perturbation(scaled, rho)

    def norm_of_the_plain_gradient(weights, gradients, rho, eta=0.01):
        norm = np.sqrt(sum(np.sum(np.square(g)) for g in gradients))
        return [
            rho * t**2 * g / norm for t, g in zip(_scales(weights, eta), gradients, strict=True)
        ]

    def per_variable_norm(weights, gradients, rho, eta=0.01):
        return [
            rho * t**2 * g / np.linalg.norm(t * g)
            for t, g in zip(_scales(weights, eta), gradients, strict=True)
        ]

    def without_eta(weights, gradients, rho, eta=0.01):
        return nb07.adaptive_perturbation(weights, gradients, rho, eta=0.0)

    def downhill(weights, gradients, rho, eta=0.01):
        return [-e for e in nb07.adaptive_perturbation(weights, gradients, rho, eta)]

    wrong_answers = (
        plain_sam,
        one_scale_only,
        norm_of_the_plain_gradient,
        per_variable_norm,
        without_eta,
        downhill,
    )
    for wrong in wrong_answers:
        result = nb07.adaptive_sam.check(wrong)
        assert result.status == "incorrect", wrong.__name__
    assert "‖ε/T‖" in nb07.adaptive_sam.check(one_scale_only).message


def test_adaptive_sam_not_attempted():
    assert nb07.adaptive_sam.check(None).status == "not attempted"
    assert nb07.adaptive_sam.check(_not_attempted).status == "not attempted"


def test_hints_do_not_contain_the_answers():
    assert "T²" not in nb07.adaptive_sam._hint
    for answer in ("finalize_variable_values", "ops.where", "momentum * average"):
        assert answer not in nb07.weight_average._hint, answer


# ---- the weight-averaging wrapper ----------------------------------------------------------------


class _Average(keras.optimizers.Optimizer):
    """A base for the wrong answers: each overrides one piece of the solution's recipe."""

    def __init__(self, inner, momentum=0.99, name="average"):
        super().__init__(learning_rate=0.0, name=name)
        self.inner = inner
        self.momentum = momentum

    def build(self, variables):
        super().build(variables)
        self.inner.build(variables)
        self.averages = [self.add_variable_from_reference(v, name="average") for v in variables]

    def momentum_now(self, variable):
        first = ops.equal(self.inner.iterations, 1)
        return ops.cast(ops.where(first, 0.0, self.momentum), variable.dtype)

    def average_all(self, variables):
        for average, variable in zip(self.averages, variables, strict=True):
            momentum = self.momentum_now(variable)
            average.assign(momentum * average + (1 - momentum) * variable)

    def apply(self, grads, trainable_variables=None):
        if not self.built:  # fit traces apply before anything has built the optimizer
            self.build(trainable_variables)
        self.inner.apply(grads, trainable_variables)
        self.average_all(trainable_variables)

    def finalize_variable_values(self, var_list):
        for variable, average in zip(var_list, self.averages, strict=True):
            variable.assign(average)


class NeverWritesTheAverages(_Average):
    def finalize_variable_values(self, var_list):
        pass


class StartsFromTheInitialWeights(_Average):
    def build(self, variables):
        super().build(variables)
        for average, variable in zip(self.averages, variables, strict=True):
            average.assign(variable)

    def momentum_now(self, variable):
        return ops.cast(self.momentum, variable.dtype)


class AveragesBeforeTheStep(_Average):
    def apply(self, grads, trainable_variables=None):
        if not self.built:
            self.build(trainable_variables)
        self.average_all(trainable_variables)
        self.inner.apply(grads, trainable_variables)

    def momentum_now(self, variable):  # the inner counter reads 0 before the first step
        first = ops.equal(self.inner.iterations, 0)
        return ops.cast(ops.where(first, 0.0, self.momentum), variable.dtype)


class MomentumTheWrongWayRound(_Average):
    def average_all(self, variables):
        for average, variable in zip(self.averages, variables, strict=True):
            momentum = self.momentum_now(variable)
            average.assign((1 - momentum) * average + momentum * variable)


class TrainsWithTheAverages(_Average):
    def apply(self, grads, trainable_variables=None):
        super().apply(grads, trainable_variables)
        for variable, average in zip(trainable_variables, self.averages, strict=True):
            variable.assign(average)


def test_weight_average_accepts_the_solution_and_an_independent_version():
    assert nb07.weight_average.check(nb07.WeightAverage).correct
    assert nb07.weight_average.check(_Average).correct


@pytest.mark.parametrize(
    "wrong",
    [
        NeverWritesTheAverages,
        StartsFromTheInitialWeights,
        AveragesBeforeTheStep,
        MomentumTheWrongWayRound,
        TrainsWithTheAverages,
    ],
)
def test_weight_average_rejects_realistic_wrong_answers(wrong):
    result = nb07.weight_average.check(wrong)
    assert result.status == "incorrect", wrong.__name__


def test_weight_average_names_the_missing_write_back():
    message = nb07.weight_average.check(NeverWritesTheAverages).message
    assert "not their average" in message


def test_weight_average_rejects_what_is_not_an_optimizer_and_a_python_if():
    assert nb07.weight_average.check(lambda inner, momentum: object()).status == "incorrect"

    class PythonIf(_Average):
        def momentum_now(self, variable):
            return 0.0 if self.inner.iterations == 1 else self.momentum

    result = nb07.weight_average.check(PythonIf)
    assert result.status == "incorrect"


def test_weight_average_not_attempted():
    class Starter(keras.optimizers.Optimizer):
        def __init__(self, inner, momentum=0.99, name="my_weight_average"):
            raise NotImplementedError

    assert nb07.weight_average.check(None).status == "not attempted"
    assert nb07.weight_average.check(Starter).status == "not attempted"


def test_the_reference_really_is_keras_exponential_moving_average():
    """Keras's use_ema, read against a NumPy average of SGD's own weights after every step."""
    x, y = nb07._regression_problem()
    keras.utils.set_random_seed(7)
    model = keras.Sequential(
        [keras.Input((4,)), keras.layers.Dense(8, activation="tanh"), keras.layers.Dense(1)]
    )
    model.compile(optimizer=keras.optimizers.SGD(0.05), loss="mse")
    seen = []
    record = keras.callbacks.LambdaCallback(
        on_train_batch_end=lambda batch, logs: seen.append(model.get_weights())
    )
    model.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0, callbacks=[record])
    average = seen[0]
    for weights in seen[1:]:
        average = [0.9 * a + 0.1 * w for a, w in zip(average, weights, strict=True)]
    expected = nb07._fit(keras.optimizers.SGD(0.05, use_ema=True, ema_momentum=0.9))
    assert len(seen) == 12
    assert nb07._largest_gap(average, expected) < 1e-6
