"""The exercises of notebook 02 pass on their solutions and fail on known-wrong answers.

The learner-style classes have names without a leading underscore: Keras derives the optimizer's
name scope from the class name, and a scope may not start with "_".
"""

from __future__ import annotations

from course_lib.checks import nb02
from course_lib.handwritten import handwritten_gradients
from course_lib.optimizers import MomentumSGD, PlainSGD

import keras
import tensorflow as tf
from keras import ops


class StarterSGD(keras.optimizers.Optimizer):
    """What the notebook hands out: every method still raises."""

    def __init__(self, learning_rate=0.01, momentum=0.9, **kwargs):
        super().__init__(learning_rate=learning_rate, **kwargs)
        self.momentum = momentum

    def build(self, variables):
        raise NotImplementedError

    def update_step(self, gradient, variable, learning_rate):
        raise NotImplementedError

    def get_config(self):
        raise NotImplementedError


class UphillSGD(keras.optimizers.Optimizer):
    def update_step(self, gradient, variable, learning_rate):
        self.assign_add(variable, ops.multiply(gradient, learning_rate))


class NoMoveSGD(keras.optimizers.Optimizer):
    def update_step(self, gradient, variable, learning_rate):
        pass


class LearnerMomentum(keras.optimizers.Optimizer):
    """A learner's momentum SGD; subclasses below introduce one mistake each."""

    def __init__(self, learning_rate=0.01, momentum=0.9, **kwargs):
        super().__init__(learning_rate=learning_rate, **kwargs)
        self.momentum = momentum

    def build(self, variables):
        if self.built:
            return
        super().build(variables)
        self.velocities = self.add_optimizer_variables(variables, "velocity")

    def update_step(self, gradient, variable, learning_rate):
        v = self.velocities[self._get_variable_index(variable)]
        self.assign(v, self.momentum * v - learning_rate * gradient)
        self.assign_add(variable, v)

    def get_config(self):
        config = super().get_config()
        config["momentum"] = self.momentum
        return config


class MomentumTwice(LearnerMomentum):
    def update_step(self, gradient, variable, learning_rate):
        v = self.velocities[self._get_variable_index(variable)]
        self.assign(v, self.momentum * v - learning_rate * gradient)
        self.assign_add(variable, self.momentum * v)


class MomentumSignError(LearnerMomentum):
    def update_step(self, gradient, variable, learning_rate):
        v = self.velocities[self._get_variable_index(variable)]
        self.assign(v, self.momentum * v + learning_rate * gradient)
        self.assign_add(variable, v)


class MomentumNoConfig(LearnerMomentum):
    def get_config(self):
        return keras.optimizers.Optimizer.get_config(self)


class MomentumIgnored(LearnerMomentum):
    def update_step(self, gradient, variable, learning_rate):
        self.assign_sub(variable, learning_rate * gradient)


def test_plain_sgd_check_both_ways():
    assert nb02.plain_sgd.check(PlainSGD).correct
    assert nb02.plain_sgd.check(keras.optimizers.SGD).correct  # Keras's own passes too
    uphill = nb02.plain_sgd.check(UphillSGD)
    assert uphill.status == "incorrect" and "uphill" in uphill.message
    still = nb02.plain_sgd.check(NoMoveSGD)
    assert still.status == "incorrect" and "leaves the variables" in still.message
    assert nb02.plain_sgd.check(StarterSGD).status == "not attempted"
    assert nb02.plain_sgd.check(None).status == "not attempted"
    assert nb02.plain_sgd.check(PlainSGD(0.1)).status == "incorrect"  # an instance, not a class


def test_momentum_check_both_ways():
    assert nb02.momentum_sgd.check(MomentumSGD).correct
    assert nb02.momentum_sgd.check(LearnerMomentum).correct
    twice = nb02.momentum_sgd.check(MomentumTwice)
    assert twice.status == "incorrect" and "applied twice" in twice.message
    sign = nb02.momentum_sgd.check(MomentumSignError)
    assert sign.status == "incorrect" and "differs" in sign.message
    no_config = nb02.momentum_sgd.check(MomentumNoConfig)
    assert no_config.status == "incorrect" and "'momentum'" in no_config.message
    ignored = nb02.momentum_sgd.check(MomentumIgnored)
    assert ignored.status == "incorrect" and "plain SGD" in ignored.message
    assert nb02.momentum_sgd.check(PlainSGD).status == "incorrect"
    assert nb02.momentum_sgd.check(StarterSGD).status == "not attempted"


def test_softmax_gradient_check_both_ways():
    assert nb02.softmax_gradient.check(handwritten_gradients).correct

    def sign_error(weights, bias, x, y):
        grad_w, grad_b = handwritten_gradients(weights, bias, x, y)
        return -grad_w, -grad_b

    def summed(weights, bias, x, y):
        grad_w, grad_b = handwritten_gradients(weights, bias, x, y)
        return 8 * grad_w, 8 * grad_b

    def bias_per_example(weights, bias, x, y):
        logits = tf.matmul(x, weights) + bias
        delta = (tf.nn.softmax(logits) - tf.one_hot(y, 3)) / 8
        return tf.matmul(x, delta, transpose_a=True), delta

    def no_softmax(weights, bias, x, y):
        delta = (tf.matmul(x, weights) + bias - tf.one_hot(y, 3)) / 8
        return tf.matmul(x, delta, transpose_a=True), tf.reduce_sum(delta, 0)

    sign = nb02.softmax_gradient.check(sign_error)
    assert sign.status == "incorrect" and "wrong sign" in sign.message
    mean = nb02.softmax_gradient.check(summed)
    assert mean.status == "incorrect" and "mean" in mean.message
    rows = nb02.softmax_gradient.check(bias_per_example)
    assert rows.status == "incorrect" and "sum" in rows.message
    assert nb02.softmax_gradient.check(no_softmax).status == "incorrect"
    assert nb02.softmax_gradient.check(lambda w, b, x, y: w).status == "incorrect"


def test_softmax_gradient_not_attempted():
    def starter(weights, bias, x, y):
        raise NotImplementedError

    assert nb02.softmax_gradient.check(starter).status == "not attempted"
    assert nb02.softmax_gradient.check(None).status == "not attempted"


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


class AdamDefaultsOnly(LearnerAdam):
    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7, **kwargs):
        super().__init__(learning_rate=learning_rate, **kwargs)  # drops the hyperparameters


class StarterAdam(LearnerAdam):
    def build(self, variables):
        raise NotImplementedError

    def update_step(self, gradient, variable, learning_rate):
        raise NotImplementedError


def test_adam_solution_is_bit_identical_to_keras():
    for hyperparameters in nb02._ADAM_RUNS:
        ours = nb02._train_adam_problem(nb02.MinimalAdam(**hyperparameters))
        keras_adam = nb02._train_adam_problem(keras.optimizers.Adam(**hyperparameters))
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
    }
    for wrong, phrase in expected.items():
        result = nb02.adam.check(wrong)
        assert result.status == "incorrect" and phrase in result.message, (wrong, result)
    assert nb02.adam.check(MomentumSGD).status == "incorrect"


def test_adam_not_attempted():
    assert nb02.adam.check(StarterAdam).status == "not attempted"
    assert nb02.adam.check(None).status == "not attempted"


def test_hints_do_not_state_the_answers():
    """A hint guides; the code lines and formulas the exercises ask for are the answers."""
    hints = {
        nb02.plain_sgd: ["assign_sub(variable", "gradient × learning_rate"],
        nb02.momentum_sgd: ["add_optimizer_variables(", "v ← μv", "p ← p + v"],
        nb02.softmax_gradient: ["softmax(Z) - onehot", "(P - Y)", "/ N"],
        nb02.adam: ["sqrt(v) +", "√v +", "1 - beta", "iterations + 1", "(g - m)", "(g − m)"],
    }
    for exercise, answers in hints.items():
        for answer in answers:
            assert answer not in exercise._hint, f"{exercise.title}: hint contains {answer!r}"
