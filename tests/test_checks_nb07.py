"""The notebook 07 checks pass on the library's solutions and fail on known-wrong answers."""

from __future__ import annotations

from course_lib.checks import nb07
from course_lib.sam import sam_perturbation

import keras
import numpy as np
import pytest
from keras import ops


def _not_attempted(*args, **kwargs):
    raise NotImplementedError


def _scales(weights, eta):
    return [np.abs(np.asarray(w, dtype=float)) + eta for w in weights]


def test_adaptive_sam_accepts_the_solution_and_an_independent_derivation():
    assert nb07.adaptive_sam.check(nb07.adaptive_perturbation).correct

    def through_the_ball(weights, gradients, rho, eta=0.01):
        # ε = T∘δ with δ = ρ·(T∘g)/‖T∘g‖, the SAM step in the rescaled coordinates
        scaled = [t * np.asarray(g) for t, g in zip(_scales(weights, eta), gradients, strict=True)]
        deltas = sam_perturbation(scaled, rho)
        return [t * d.numpy() for t, d in zip(_scales(weights, eta), deltas, strict=True)]

    assert nb07.adaptive_sam.check(through_the_ball).correct


def test_adaptive_sam_rejects_realistic_wrong_answers():
    def plain_sam(weights, gradients, rho, eta=0.01):
        return [e.numpy() for e in sam_perturbation(gradients, rho)]

    def one_scale_only(weights, gradients, rho, eta=0.01):  # T∘g/‖T∘g‖: forgets to map δ back
        scaled = [t * np.asarray(g) for t, g in zip(_scales(weights, eta), gradients, strict=True)]
        return [e.numpy() for e in sam_perturbation(scaled, rho)]

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
