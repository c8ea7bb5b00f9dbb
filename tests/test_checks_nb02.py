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
