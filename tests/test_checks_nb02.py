"""The exercises of notebook 02 pass on their solutions and fail on known-wrong answers.

The learner-style classes have names without a leading underscore: Keras derives the optimizer's
name scope from the class name, and a scope may not start with "_".
"""

from __future__ import annotations

from course_lib.checks import nb02
from course_lib.handwritten import handwritten_gradients
from course_lib.optimizers import MomentumSGD

import keras
import numpy as np
import tensorflow as tf
from keras import ops

# Plain SGD and momentum: the lesson's own optimizers ----------------------------------------


class LearnerPlainSGD(keras.optimizers.Optimizer):
    """The lesson's skeleton with its blank filled as the prose says."""

    def __init__(self, learning_rate=0.01, **kwargs):
        super().__init__(learning_rate=learning_rate, **kwargs)

    def update_step(self, gradient, variable, learning_rate):
        learning_rate = ops.cast(learning_rate, variable.dtype)
        gradient = ops.cast(gradient, variable.dtype)
        self.assign_sub(variable, ops.multiply(gradient, learning_rate))


class NoCastSGD(LearnerPlainSGD):
    def update_step(self, gradient, variable, learning_rate):
        self.assign_sub(variable, gradient * learning_rate)


class CastAfterSGD(LearnerPlainSGD):
    def update_step(self, gradient, variable, learning_rate):
        self.assign_sub(variable, ops.cast(gradient * learning_rate, variable.dtype))


class LearningRateCastOnlySGD(LearnerPlainSGD):
    """Fails outright in float16: float32 gradient times float16 rate."""

    def update_step(self, gradient, variable, learning_rate):
        self.assign_sub(variable, gradient * ops.cast(learning_rate, variable.dtype))


class UphillSGD(LearnerPlainSGD):
    def update_step(self, gradient, variable, learning_rate):
        learning_rate = ops.cast(learning_rate, variable.dtype)
        self.assign_add(variable, ops.cast(gradient, variable.dtype) * learning_rate)


class DividedSGD(LearnerPlainSGD):
    """p − g / (1/η): the same mathematics, another rounding."""

    def update_step(self, gradient, variable, learning_rate):
        learning_rate = ops.cast(learning_rate, variable.dtype)
        self.assign_sub(variable, ops.cast(gradient, variable.dtype) / (1 / learning_rate))


class StarterPlainSGD(LearnerPlainSGD):
    def update_step(self, gradient, variable, learning_rate):
        raise NotImplementedError("cast, then p ← p − g·η")


def test_plain_sgd_check_both_ways():
    check = nb02.plain_sgd.check
    assert check(nb02.PlainSGD).correct
    assert check(LearnerPlainSGD).correct
    expected = {
        NoCastSGD: "rounded to float16 only when assigned",
        CastAfterSGD: "rounded to float16 only when assigned",
        LearningRateCastOnlySGD: "missing cast",
        UphillSGD: "uphill",
        DividedSGD: "not bit for bit",
    }
    for wrong, phrase in expected.items():
        result = check(wrong)
        assert result.status == "incorrect" and phrase in result.message, (wrong, result)
    assert "step 1, entry" in check(DividedSGD).message  # where the weights first part
    assert check(StarterPlainSGD).status == "not attempted"
    assert check(None).status == "not attempted"


class LearnerMomentumSGD(keras.optimizers.Optimizer):
    """The lesson's momentum skeleton filled in; subclasses change one step rule."""

    def __init__(self, learning_rate=0.01, momentum=0.9, nesterov=False, **kwargs):
        super().__init__(learning_rate=learning_rate, **kwargs)
        self.momentum = momentum
        self.nesterov = nesterov

    def build(self, variables):
        if self.built:
            return
        super().build(variables)
        self.velocities = []
        if self.momentum != 0:
            self.velocities = self.add_optimizer_variables(variables, "velocity")

    def update_step(self, gradient, variable, learning_rate):
        learning_rate = ops.cast(learning_rate, variable.dtype)
        gradient = ops.cast(gradient, variable.dtype)
        if self.momentum == 0:
            self.assign_sub(variable, ops.multiply(gradient, learning_rate))
            return
        velocity = self.velocities[self._get_variable_index(variable)]
        self.rule(velocity, variable, gradient, learning_rate, self.momentum)

    def rule(self, v, p, g, lr, mu):
        self.assign(v, v * mu - g * lr)
        self.assign_add(p, v * mu - g * lr if self.nesterov else v)

    def get_config(self):
        config = super().get_config()
        config.update({"momentum": self.momentum, "nesterov": self.nesterov})
        return config


class VelocityNotKept(LearnerMomentumSGD):
    def rule(self, v, p, g, lr, mu):
        self.assign_add(p, 0 * mu - g * lr)  # a fresh zero velocity at every step


class UphillMomentum(LearnerMomentumSGD):
    def rule(self, v, p, g, lr, mu):
        self.assign(v, v * mu + g * lr)
        self.assign_add(p, v)


class WeightBeforeVelocity(LearnerMomentumSGD):
    def rule(self, v, p, g, lr, mu):
        self.assign_add(p, v)
        self.assign(v, v * mu - g * lr)


class NesterovIgnored(LearnerMomentumSGD):
    def rule(self, v, p, g, lr, mu):
        self.assign(v, v * mu - g * lr)
        self.assign_add(p, v)


class NesterovWithoutGradient(LearnerMomentumSGD):
    def rule(self, v, p, g, lr, mu):
        self.assign(v, v * mu - g * lr)
        self.assign_add(p, v * mu if self.nesterov else v)


class NesterovInTwoAssignments(LearnerMomentumSGD):
    """(p + μv) − g·η: two roundings where Keras has one sum."""

    def rule(self, v, p, g, lr, mu):
        self.assign(v, v * mu - g * lr)
        if self.nesterov:
            self.assign_add(p, v * mu)
            self.assign_sub(p, g * lr)
        else:
            self.assign_add(p, v)


class MomentumWithoutCasts(LearnerMomentumSGD):
    def update_step(self, gradient, variable, learning_rate):
        if self.momentum == 0:
            self.assign_sub(variable, gradient * learning_rate)
            return
        velocity = self.velocities[self._get_variable_index(variable)]
        self.rule(velocity, variable, gradient, learning_rate, self.momentum)


class VelocityAtMomentumZero(LearnerMomentumSGD):
    """Indexes a velocity that build did not make when momentum is 0."""

    def update_step(self, gradient, variable, learning_rate):
        learning_rate = ops.cast(learning_rate, variable.dtype)
        gradient = ops.cast(gradient, variable.dtype)
        velocity = self.velocities[self._get_variable_index(variable)]
        self.rule(velocity, variable, gradient, learning_rate, self.momentum)


class MomentumWithoutConfig(LearnerMomentumSGD):
    def get_config(self):
        return keras.optimizers.Optimizer.get_config(self)


class StarterMomentumSGD(LearnerMomentumSGD):
    def build(self, variables):
        if self.built:
            return
        keras.optimizers.Optimizer.build(self, variables)
        raise NotImplementedError("one zero velocity per variable")


def test_momentum_sgd_check_both_ways():
    check = nb02.momentum_sgd.check
    assert check(nb02.MomentumSGD).correct
    assert check(LearnerMomentumSGD).correct
    expected = {
        VelocityNotKept: "does not carry over",
        UphillMomentum: "uphill",
        WeightBeforeVelocity: "velocity of the previous step",
        NesterovIgnored: "follow classic momentum",
        NesterovWithoutGradient: "p ← p + μv;",
        NesterovInTwoAssignments: "not bit for bit",
        MomentumWithoutCasts: "missing cast",
        VelocityAtMomentumZero: "with momentum=0",
        MomentumWithoutConfig: "'momentum'",
    }
    for wrong, phrase in expected.items():
        result = check(wrong)
        assert result.status == "incorrect" and phrase in result.message, (wrong, result)
    assert check(StarterMomentumSGD).status == "not attempted"
    assert check(None).status == "not attempted"


def test_the_momentum_misreadings_are_what_their_classes_compute():
    """The check's NumPy forms are the learner-style classes above, to float32 round-off."""
    history = nb02._history
    for cls, form, nesterov in [
        (VelocityNotKept, "plain", False),
        (UphillMomentum, "uphill", False),
        (WeightBeforeVelocity, "weight first", False),
        (NesterovWithoutGradient, "look-ahead without the gradient", True),
        (LearnerMomentumSGD, "nesterov", True),
    ]:
        got = history(cls(learning_rate=0.1, momentum=0.9, nesterov=nesterov))
        np.testing.assert_allclose(got, nb02._numpy_momentum(form, 0.1, 0.9), atol=1e-5)


class StarterSGD(keras.optimizers.Optimizer):
    """What the notebook hands out for sign descent: update_step still raises."""

    def update_step(self, gradient, variable, learning_rate):
        raise NotImplementedError


class LearnerSignSGD(keras.optimizers.Optimizer):
    def update_step(self, gradient, variable, learning_rate):
        self.assign_sub(variable, learning_rate * ops.sign(gradient))


class PlainStep(keras.optimizers.Optimizer):
    def update_step(self, gradient, variable, learning_rate):
        self.assign_sub(variable, ops.multiply(gradient, learning_rate))


class UphillSign(keras.optimizers.Optimizer):
    def update_step(self, gradient, variable, learning_rate):
        self.assign_add(variable, learning_rate * ops.sign(gradient))


class NoMove(keras.optimizers.Optimizer):
    def update_step(self, gradient, variable, learning_rate):
        pass


class SignOfTheVariable(keras.optimizers.Optimizer):
    def update_step(self, gradient, variable, learning_rate):
        self.assign_sub(variable, learning_rate * ops.sign(variable))


def test_sign_sgd_check_both_ways():
    assert nb02.sign_sgd.check(nb02.SignSGD).correct
    assert nb02.sign_sgd.check(LearnerSignSGD).correct
    plain = nb02.sign_sgd.check(PlainStep)
    assert plain.status == "incorrect" and "plain SGD" in plain.message
    uphill = nb02.sign_sgd.check(UphillSign)
    assert uphill.status == "incorrect" and "uphill" in uphill.message
    still = nb02.sign_sgd.check(NoMove)
    assert still.status == "incorrect" and "leaves the variables" in still.message
    wrong_sign = nb02.sign_sgd.check(SignOfTheVariable)
    assert wrong_sign.status == "incorrect" and "differs" in wrong_sign.message
    assert nb02.sign_sgd.check(nb02.SignSGD(0.1)).status == "incorrect"  # an instance
    assert nb02.sign_sgd.check(StarterSGD).status == "not attempted"
    assert nb02.sign_sgd.check(None).status == "not attempted"


def test_sign_descent_reference_is_what_keras_does_with_the_sign_of_the_gradient():
    """The NumPy reference equals Keras's SGD fed with sign(g): the check's yardstick is right."""
    start, gradients = nb02._start_and_gradients()
    variables = [keras.Variable(value) for value in start]
    sgd = keras.optimizers.SGD(0.1)
    for grads in gradients:
        sgd.apply([tf.constant(np.sign(g)) for g in grads], variables)
    for got, expected in zip(variables, nb02._sign_descent_in_numpy(0.1), strict=True):
        np.testing.assert_allclose(got.numpy(), expected, rtol=0, atol=1e-6)


class LearnerAdagrad(keras.optimizers.Optimizer):
    """A learner's Adagrad as the notebook's starter shapes it; subclasses make one mistake."""

    def __init__(self, learning_rate=0.001, initial_accumulator_value=0.1, epsilon=1e-7, **kw):
        super().__init__(learning_rate=learning_rate, **kw)
        self.initial_accumulator_value = initial_accumulator_value
        self.epsilon = epsilon

    def build(self, variables):
        if self.built:
            return
        super().build(variables)
        self.sums = self.add_optimizer_variables(
            variables, "sum", keras.initializers.Constant(self.initial_accumulator_value)
        )

    def update_step(self, gradient, variable, learning_rate):
        a = self.sums[self._get_variable_index(variable)]
        self.assign_add(a, gradient * gradient)
        self.assign_sub(variable, learning_rate * gradient / ops.sqrt(a + self.epsilon))

    def get_config(self):
        config = super().get_config()
        config["initial_accumulator_value"] = self.initial_accumulator_value
        config["epsilon"] = self.epsilon
        return config


class AdagradFromZero(LearnerAdagrad):
    def build(self, variables):
        if self.built:
            return
        keras.optimizers.Optimizer.build(self, variables)
        self.sums = self.add_optimizer_variables(variables, "sum")


class AdagradEpsilonOutside(LearnerAdagrad):
    def update_step(self, gradient, variable, learning_rate):
        a = self.sums[self._get_variable_index(variable)]
        self.assign_add(a, gradient * gradient)
        self.assign_sub(variable, learning_rate * gradient / (ops.sqrt(a) + self.epsilon))


class AdagradOldAccumulator(LearnerAdagrad):
    def update_step(self, gradient, variable, learning_rate):
        a = self.sums[self._get_variable_index(variable)]
        self.assign_sub(variable, learning_rate * gradient / ops.sqrt(a + self.epsilon))
        self.assign_add(a, gradient * gradient)


class AdagradNoConfig(LearnerAdagrad):
    def get_config(self):
        return keras.optimizers.Optimizer.get_config(self)


class AdagradPythonState(keras.optimizers.Optimizer):
    """Keeps the accumulators as plain tensors in a dict: not optimizer variables."""

    def __init__(self, learning_rate=0.001, initial_accumulator_value=0.1, epsilon=1e-7, **kw):
        super().__init__(learning_rate=learning_rate, **kw)
        self.initial_accumulator_value = initial_accumulator_value
        self.epsilon = epsilon
        self.sums = {}

    def update_step(self, gradient, variable, learning_rate):
        key = id(variable)
        total = self.sums.get(key, self.initial_accumulator_value) + gradient * gradient
        self.sums[key] = total
        self.assign_sub(variable, learning_rate * gradient / ops.sqrt(total + self.epsilon))


class StarterAdagrad(LearnerAdagrad):
    def build(self, variables):
        raise NotImplementedError

    def update_step(self, gradient, variable, learning_rate):
        raise NotImplementedError

    def get_config(self):
        raise NotImplementedError


def test_adagrad_solution_equals_keras():
    for hyperparameters in nb02._ADAGRAD_RUNS:
        ours = nb02._run(nb02.MinimalAdagrad(**hyperparameters))
        theirs = nb02._run(keras.optimizers.Adagrad(**hyperparameters))
        for a, b in zip(ours, theirs, strict=True):
            np.testing.assert_array_equal(a, b)


def test_adagrad_check_both_ways():
    assert nb02.adagrad.check(nb02.MinimalAdagrad).correct
    assert nb02.adagrad.check(LearnerAdagrad).correct
    expected = {
        AdagradFromZero: "start at 0",
        AdagradEpsilonOutside: "outside the square root",
        AdagradOldAccumulator: "add first",
        AdagradNoConfig: "'initial_accumulator_value'",
    }
    for wrong, phrase in expected.items():
        result = nb02.adagrad.check(wrong)
        assert result.status == "incorrect" and phrase in result.message, (wrong, result)
    assert nb02.adagrad.check(AdagradPythonState).status == "incorrect"
    assert nb02.adagrad.check(nb02.SignSGD).status == "incorrect"
    assert nb02.adagrad.check(StarterAdagrad).status == "not attempted"
    assert nb02.adagrad.check(None).status == "not attempted"


def test_label_smoothing_gradient_check_both_ways():
    check = nb02.label_smoothing_gradient.check
    assert check(nb02.label_smoothing_gradient_solution).correct

    def one_hot_only(weights, bias, x, y, smoothing):
        return handwritten_gradients(weights, bias, x, y)

    def sign_error(weights, bias, x, y, smoothing):
        grad_w, grad_b = nb02.label_smoothing_gradient_solution(weights, bias, x, y, smoothing)
        return -grad_w, -grad_b

    def summed(weights, bias, x, y, smoothing):
        grad_w, grad_b = nb02.label_smoothing_gradient_solution(weights, bias, x, y, smoothing)
        n = x.shape[0]
        return n * grad_w, n * grad_b

    def over_the_others(weights, bias, x, y, smoothing):
        k = weights.shape[1]
        one_hot = tf.one_hot(y, k)
        targets = (1 - smoothing) * one_hot + smoothing * (1 - one_hot) / (k - 1)
        delta = (tf.nn.softmax(tf.matmul(x, weights) + bias) - targets) / x.shape[0]
        return tf.matmul(x, delta, transpose_a=True), tf.reduce_sum(delta, 0)

    def scaled_gradient(weights, bias, x, y, smoothing):  # (1 - ε)·(P - Y): not the derivative
        grad_w, grad_b = handwritten_gradients(weights, bias, x, y)
        return (1 - smoothing) * grad_w, (1 - smoothing) * grad_b

    for wrong, phrase in [
        (one_hot_only, "one-hot one"),
        (sign_error, "wrong sign"),
        (summed, "too large"),
        (over_the_others, "K - 1 other classes"),
        (scaled_gradient, "differs"),
    ]:
        result = check(wrong)
        assert result.status == "incorrect" and phrase in result.message, (wrong, result)
    assert check(lambda w, b, x, y, s: w).status == "incorrect"


def test_label_smoothing_gradient_not_attempted():
    def starter(weights, bias, x, y, smoothing):
        raise NotImplementedError

    assert nb02.label_smoothing_gradient.check(starter).status == "not attempted"
    assert nb02.label_smoothing_gradient.check(None).status == "not attempted"


class LearnerAdam(keras.optimizers.Optimizer):
    """A learner's Adam as the notebook's starter shapes it; subclasses make one mistake each."""

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7, **kwargs):
        super().__init__(learning_rate=learning_rate, **kwargs)
        self.beta_1, self.beta_2, self.epsilon = beta_1, beta_2, epsilon

    def build(self, variables):
        if self.built:
            return
        super().build(variables)
        self.m = self.add_optimizer_variables(variables, "m")
        self.v = self.add_optimizer_variables(variables, "v")

    def moments(self, gradient, variable):
        index = self._get_variable_index(variable)
        m, v = self.m[index], self.v[index]
        self.assign_add(m, ops.multiply(ops.subtract(gradient, m), 1 - self.beta_1))
        self.assign_add(v, ops.multiply(ops.subtract(ops.square(gradient), v), 1 - self.beta_2))
        return m, v

    def powers(self, variable, offset=1):
        t = ops.cast(self.iterations + offset, variable.dtype)
        return (
            ops.power(ops.cast(self.beta_1, variable.dtype), t),
            ops.power(ops.cast(self.beta_2, variable.dtype), t),
        )

    def update_step(self, gradient, variable, learning_rate):
        lr = ops.cast(learning_rate, variable.dtype)
        gradient = ops.cast(gradient, variable.dtype)
        beta_1_power, beta_2_power = self.powers(variable)
        alpha = lr * ops.sqrt(1 - beta_2_power) / (1 - beta_1_power)
        m, v = self.moments(gradient, variable)
        self.assign_sub(
            variable, ops.divide(ops.multiply(m, alpha), ops.add(ops.sqrt(v), self.epsilon))
        )


class AdamEpsilonInRoot(LearnerAdam):
    def update_step(self, gradient, variable, learning_rate):
        lr = ops.cast(learning_rate, variable.dtype)
        gradient = ops.cast(gradient, variable.dtype)
        beta_1_power, beta_2_power = self.powers(variable)
        alpha = lr * ops.sqrt(1 - beta_2_power) / (1 - beta_1_power)
        m, v = self.moments(gradient, variable)
        self.assign_sub(variable, m * alpha / ops.sqrt(v + self.epsilon))


class AdamNoBiasCorrection(LearnerAdam):
    def update_step(self, gradient, variable, learning_rate):
        lr = ops.cast(learning_rate, variable.dtype)
        m, v = self.moments(ops.cast(gradient, variable.dtype), variable)
        self.assign_sub(variable, m * lr / (ops.sqrt(v) + self.epsilon))


class AdamAlgorithmOne(LearnerAdam):
    """The paper's Algorithm 1, as a learner would write it from the PDF."""

    def update_step(self, gradient, variable, learning_rate):
        lr = ops.cast(learning_rate, variable.dtype)
        gradient = ops.cast(gradient, variable.dtype)
        beta_1_power, beta_2_power = self.powers(variable)
        m, v = self.moments(gradient, variable)
        m_hat = m / (1 - beta_1_power)
        v_hat = v / (1 - beta_2_power)
        self.assign_sub(variable, lr * m_hat / (ops.sqrt(v_hat) + self.epsilon))


class AdamStepFromZero(LearnerAdam):
    def update_step(self, gradient, variable, learning_rate):
        lr = ops.cast(learning_rate, variable.dtype)
        gradient = ops.cast(gradient, variable.dtype)
        beta_1_power, beta_2_power = self.powers(variable, offset=0)
        alpha = lr * ops.sqrt(1 - beta_2_power) / (1 - beta_1_power)
        m, v = self.moments(gradient, variable)
        self.assign_sub(variable, m * alpha / (ops.sqrt(v) + self.epsilon))


class AdamTextbookAverages(LearnerAdam):
    """β·m + (1 - β)·g: Keras's mathematics, other roundings."""

    def update_step(self, gradient, variable, learning_rate):
        lr = ops.cast(learning_rate, variable.dtype)
        gradient = ops.cast(gradient, variable.dtype)
        beta_1_power, beta_2_power = self.powers(variable)
        alpha = lr * ops.sqrt(1 - beta_2_power) / (1 - beta_1_power)
        index = self._get_variable_index(variable)
        m, v = self.m[index], self.v[index]
        self.assign(m, self.beta_1 * m + (1 - self.beta_1) * gradient)
        self.assign(v, self.beta_2 * v + (1 - self.beta_2) * ops.square(gradient))
        self.assign_sub(
            variable, ops.divide(ops.multiply(m, alpha), ops.add(ops.sqrt(v), self.epsilon))
        )


class AdamCastsOneMinusBeta(LearnerAdam):
    def moments(self, gradient, variable):
        index, dtype = self._get_variable_index(variable), variable.dtype
        m, v = self.m[index], self.v[index]
        one_minus = ops.cast(1 - self.beta_1, dtype), ops.cast(1 - self.beta_2, dtype)
        self.assign_add(m, ops.multiply(ops.subtract(gradient, m), one_minus[0]))
        self.assign_add(v, ops.multiply(ops.subtract(ops.square(gradient), v), one_minus[1]))
        return m, v


class AdamOneMinusCastBeta(LearnerAdam):
    def moments(self, gradient, variable):
        index, dtype = self._get_variable_index(variable), variable.dtype
        m, v = self.m[index], self.v[index]
        one_minus = 1 - ops.cast(self.beta_1, dtype), 1 - ops.cast(self.beta_2, dtype)
        self.assign_add(m, ops.multiply(ops.subtract(gradient, m), one_minus[0]))
        self.assign_add(v, ops.multiply(ops.subtract(ops.square(gradient), v), one_minus[1]))
        return m, v


class AdamPythonBetaPowers(LearnerAdam):
    def powers(self, variable, offset=1):
        t = ops.cast(self.iterations + offset, variable.dtype)
        return ops.power(self.beta_1, t), ops.power(self.beta_2, t)


class AdamUncastGradient(LearnerAdam):
    def update_step(self, gradient, variable, learning_rate):
        lr = ops.cast(learning_rate, variable.dtype)
        beta_1_power, beta_2_power = self.powers(variable)
        alpha = lr * ops.sqrt(1 - beta_2_power) / (1 - beta_1_power)
        m, v = self.moments(gradient, variable)
        self.assign_sub(
            variable, ops.divide(ops.multiply(m, alpha), ops.add(ops.sqrt(v), self.epsilon))
        )


class AdamDefaultsOnly(LearnerAdam):
    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7, **kwargs):
        super().__init__(learning_rate=learning_rate, **kwargs)  # drops the hyperparameters


class StarterAdam(LearnerAdam):
    def build(self, variables):
        raise NotImplementedError

    def update_step(self, gradient, variable, learning_rate):
        raise NotImplementedError


def test_adam_solution_is_bit_identical_to_keras():
    for hyperparameters, dtype in zip(nb02._ADAM_RUNS, nb02._ADAM_DTYPES, strict=True):
        ours = nb02._train_adam_problem(nb02.MinimalAdam(**hyperparameters), dtype=dtype)
        keras_adam = nb02._train_adam_problem(keras.optimizers.Adam(**hyperparameters), dtype=dtype)
        assert (ours == keras_adam).all()
        # The problem is not trivial: the weights really move, by different amounts.
        assert (ours[-1] != ours[0]).all()


def test_adam_check_both_ways():
    assert nb02.adam.check(nb02.MinimalAdam).correct
    assert nb02.adam.check(LearnerAdam).correct
    expected = {
        AdamEpsilonInRoot: "inside the square root",
        AdamNoBiasCorrection: "no bias correction",
        AdamAlgorithmOne: "Algorithm 1",
        AdamStepFromZero: "NaN or infinite at step 1",
        AdamTextbookAverages: "not bit for bit",
        AdamDefaultsOnly: "default values",
        AdamCastsOneMinusBeta: "you cast 1 − β",
        AdamOneMinusCastBeta: "computed from the cast β",
        AdamPythonBetaPowers: "Python β's, uncast",
        AdamUncastGradient: "gradient is not cast",
    }
    for wrong, phrase in expected.items():
        result = nb02.adam.check(wrong)
        assert result.status == "incorrect" and phrase in result.message, (wrong, result)
        if wrong.__name__.startswith(("AdamCasts", "AdamOneMinus", "AdamPython", "AdamUncast")):
            assert "a cast in the wrong place" in result.message, result
    assert nb02.adam.check(MomentumSGD).status == "incorrect"


def test_adam_not_attempted():
    assert nb02.adam.check(StarterAdam).status == "not attempted"
    assert nb02.adam.check(None).status == "not attempted"


def test_hints_do_not_state_the_answers():
    """A hint guides; the code lines and formulas the exercises ask for are the answers."""
    hints = {
        nb02.plain_sgd: ["ops.cast", "assign_sub(", "multiply("],
        nb02.momentum_sgd: ["assign(", "μv", "mu *", "* momentum"],
        nb02.sign_sgd: ["ops.sign", "assign_sub(", "sign(g"],
        nb02.adagrad: ["Constant(", "assign_add(", "square(", "√(a + ε)"],
        nb02.label_smoothing_gradient: ["(P - T)", "P - t", "ε/K", "/ K", "1 - smoothing"],
        nb02.adam: ["sqrt(v) +", "√v +", "1 - beta", "iterations + 1", "(g - m)", "(g − m)"],
    }
    for exercise, answers in hints.items():
        for answer in answers:
            assert answer not in exercise._hint, f"{exercise.title}: hint contains {answer!r}"
