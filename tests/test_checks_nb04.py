"""The exercises of notebook 04 pass on their solutions and fail on known-wrong answers."""

from __future__ import annotations

from course_lib.checks import nb04
from course_lib.landscapes import Rosenbrock, runge_kutta_step
from course_lib.tableaux import get_tableau

import keras
import numpy as np
import tensorflow as tf


def test_ralston_solution_equals_the_tableau_step():
    p = np.array([-1.0, 1.5])
    rosenbrock = Rosenbrock()
    got = nb04.ralston_step_solution(rosenbrock.gradient, p, 1e-3)
    expected = runge_kutta_step(rosenbrock.gradient, p, get_tableau("ralston"), 1e-3)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-14)


def test_ralston_step_accepts_the_solution():
    assert nb04.ralston_step.check(nb04.ralston_step_solution).status == "correct"


def test_ralston_step_rejects_euler_heun_and_wrong_weights():
    def euler(gradient, p, h):
        return p - h * gradient(p)

    def heun(gradient, p, h):
        g1 = gradient(p)
        return p - 0.5 * h * (g1 + gradient(p - h * g1))

    def swapped_weights(gradient, p, h):
        g1 = gradient(p)
        return p - h * (0.75 * g1 + 0.25 * gradient(p - 2 / 3 * h * g1))

    result = nb04.ralston_step.check(euler)
    assert result.status == "incorrect" and "Euler" in result.message
    result = nb04.ralston_step.check(heun)
    assert result.status == "incorrect" and "Heun" in result.message
    assert nb04.ralston_step.check(swapped_weights).status == "incorrect"


def test_ralston_step_not_attempted():
    def starter(gradient, p, h):
        raise NotImplementedError

    assert nb04.ralston_step.check(None).status == "not attempted"
    assert nb04.ralston_step.check(starter).status == "not attempted"


def test_midpoint_solution_equals_the_library_midpoint_model():
    from course_lib.runge_kutta import RungeKuttaModel

    def library_midpoint(inputs, outputs):
        return RungeKuttaModel(inputs=inputs, outputs=outputs, tableau="midpoint")

    ours, _ = nb04._fit_nonlinear(nb04.MidpointModel, 0.5, 2)
    keras.backend.clear_session()
    library, _ = nb04._fit_nonlinear(library_midpoint, 0.5, 2)
    for a, b in zip(ours, library, strict=True):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)


def test_midpoint_model_accepts_the_solution():
    result = nb04.midpoint_model.check(nb04.MidpointModel)
    assert result.status == "correct", result.message


def _midpoint_with_reference_snapshot() -> type:
    class ByReference(keras.Model):
        def train_step(self, data):
            x, y = data[0], data[1]
            variables = self.trainable_variables
            start = [v.value for v in variables]  # the bug: references
            with tf.GradientTape() as tape:
                y_pred = self(x, training=True)
                loss = self.compute_loss(x=x, y=y, y_pred=y_pred)
            g1 = tape.gradient(loss, variables)
            h = self.optimizer.learning_rate
            for v, g in zip(variables, g1, strict=True):
                v.assign_sub(0.5 * h * g)
            with tf.GradientTape() as tape:
                half_loss = self.compute_loss(x=x, y=y, y_pred=self(x, training=True))
            g2 = tape.gradient(half_loss, variables)
            for v, value in zip(variables, start, strict=True):
                v.assign(value)
            self.optimizer.apply(g2, variables)
            for metric in self.metrics:
                if metric.name == "loss":
                    metric.update_state(loss)
            return self.compute_metrics(x, y, y_pred)

    return ByReference


def test_midpoint_model_rejects_euler_heun_and_a_reference_snapshot():
    class EulerStep(keras.Model):
        def train_step(self, data):
            return super().train_step(data)

    from course_lib.runge_kutta import RungeKuttaModel

    class Heun(RungeKuttaModel):
        def __init__(self, inputs, outputs):
            super().__init__(inputs=inputs, outputs=outputs, tableau="heun")

    assert nb04.midpoint_model.check(keras.Model).status == "incorrect"
    result = nb04.midpoint_model.check(EulerStep)
    assert result.status == "incorrect" and "Euler" in result.message
    assert nb04.midpoint_model.check(Heun).status == "incorrect"
    assert nb04.midpoint_model.check(_midpoint_with_reference_snapshot()).status == "incorrect"


def test_midpoint_model_not_attempted():
    class Starter(keras.Model):
        def train_step(self, data):
            raise NotImplementedError

    assert nb04.midpoint_model.check(None).status == "not attempted"
    assert nb04.midpoint_model.check(Starter).status == "not attempted"


def test_snapshot_accepts_copies():
    assert nb04.snapshot.check(nb04.snapshot_solution).status == "correct"
    copy = nb04.snapshot.check(lambda variables: [keras.ops.copy(v) for v in variables])
    assert copy.status == "correct", copy.message


def test_snapshot_rejects_references():
    for wrong in (
        lambda variables: list(variables),
        lambda variables: [v.value for v in variables],
    ):
        result = nb04.snapshot.check(wrong)
        assert result.status == "incorrect" and "reference" in result.message


def test_snapshot_not_attempted():
    def starter(variables):
        raise NotImplementedError

    assert nb04.snapshot.check(starter).status == "not attempted"
