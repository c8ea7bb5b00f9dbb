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


# Nesterov momentum as a training step --------------------------------------------------------


def test_nesterov_solution_is_the_textbook_method_in_numpy():
    """p + μ·v of the solution equals Keras's weights, and p itself follows the NumPy recursion."""
    x, y, weights = nb04._nonlinear_problem()
    h, mu = nb04.NESTEROV_RATE, nb04.NESTEROV_MOMENTUM

    def gradient(params):
        w1, b1, w2, b2 = params
        hidden = np.tanh(x @ w1 + b1)
        residual = 2 * (hidden @ w2 + b2 - y) / len(x)
        back = (residual @ w2.T) * (1 - hidden**2)
        return [x.T @ back, back.sum(axis=0), hidden.T @ residual, residual.sum(axis=0)]

    p = [w.astype(np.float64) for w in weights]
    v = [np.zeros_like(w) for w in p]
    for _ in range(nb04.NESTEROV_STEPS):
        g = gradient([a + mu * b for a, b in zip(p, v, strict=True)])
        v = [mu * b - h * c for b, c in zip(v, g, strict=True)]
        p = [a + b for a, b in zip(p, v, strict=True)]
    model, _ = nb04._train_nonlinear(
        nb04.NesterovModel, keras.optimizers.SGD(h), nb04.NESTEROV_STEPS, momentum=mu
    )
    for ours, expected in zip(model.trainable_variables, p, strict=True):
        np.testing.assert_allclose(ours.numpy(), expected, rtol=0, atol=1e-5)


def test_nesterov_model_accepts_the_solution():
    result = nb04.nesterov_model.check(nb04.NesterovModel)
    assert result.status == "correct", result.message


class _WithVelocities(keras.Model):
    def __init__(self, *args, momentum=0.9, **kwargs):
        super().__init__(*args, **kwargs)
        self.momentum = momentum
        self.velocities = [
            keras.Variable(np.zeros(v.shape, dtype="float32"), trainable=False)
            for v in self.trainable_variables
        ]

    def _gradients(self, x, y):
        with tf.GradientTape() as tape:
            y_pred = self(x, training=True)
            loss = self.compute_loss(x=x, y=y, y_pred=y_pred)
        return tape.gradient(loss, self.trainable_variables), y_pred, loss

    def _finish(self, x, y, y_pred, loss):
        for metric in self.metrics:
            if metric.name == "loss":
                metric.update_state(loss)
        return self.compute_metrics(x, y, y_pred)


class HeavyBall(_WithVelocities):
    """The gradient at p, not at the look-ahead point."""

    def train_step(self, data):
        x, y = data[0], data[1]
        gradients, y_pred, loss = self._gradients(x, y)
        h = self.optimizer.learning_rate
        for v, u, g in zip(self.trainable_variables, self.velocities, gradients, strict=True):
            u.assign(self.momentum * u - h * g)
            v.assign_add(u)
        return self._finish(x, y, y_pred, loss)


class KerasForm(_WithVelocities):
    """Keras's own rewrite: the weights hold the look-ahead point, so p + μ·v is one step ahead."""

    def train_step(self, data):
        x, y = data[0], data[1]
        gradients, y_pred, loss = self._gradients(x, y)
        h = self.optimizer.learning_rate
        for v, u, g in zip(self.trainable_variables, self.velocities, gradients, strict=True):
            u.assign(self.momentum * u - h * g)
            v.assign_add(self.momentum * u - h * g)
        return self._finish(x, y, y_pred, loss)


class NoRestore(_WithVelocities):
    """Probes the look-ahead point but updates from there instead of from p."""

    def train_step(self, data):
        x, y = data[0], data[1]
        for v, u in zip(self.trainable_variables, self.velocities, strict=True):
            v.assign_add(self.momentum * u)
        gradients, y_pred, loss = self._gradients(x, y)
        h = self.optimizer.learning_rate
        for v, u, g in zip(self.trainable_variables, self.velocities, gradients, strict=True):
            u.assign(self.momentum * u - h * g)
            v.assign_add(u)
        return self._finish(x, y, y_pred, loss)


class ReferenceSnapshot(_WithVelocities):
    """Restores from `v.value`: inside fit's tf.function that is the moved variable."""

    def train_step(self, data):
        x, y = data[0], data[1]
        start = [v.value for v in self.trainable_variables]
        for v, u in zip(self.trainable_variables, self.velocities, strict=True):
            v.assign_add(self.momentum * u)
        gradients, y_pred, loss = self._gradients(x, y)
        h = self.optimizer.learning_rate
        for v, u, p, g in zip(
            self.trainable_variables, self.velocities, start, gradients, strict=True
        ):
            u.assign(self.momentum * u - h * g)
            v.assign(p + u)
        return self._finish(x, y, y_pred, loss)


class NoVelocities(keras.Model):
    """Accepts the momentum but keeps no velocities (and takes plain SGD steps)."""

    def __init__(self, *args, momentum=0.9, **kwargs):
        super().__init__(*args, **kwargs)

    def train_step(self, data):
        return super().train_step(data)


def test_nesterov_model_rejects_heavy_ball_keras_form_and_broken_restores():
    result = nb04.nesterov_model.check(HeavyBall)
    assert result.status == "incorrect" and "heavy-ball" in result.message
    for wrong in (KerasForm, NoRestore, ReferenceSnapshot):
        result = nb04.nesterov_model.check(wrong)
        assert result.status == "incorrect", (wrong.__name__, result)
    result = nb04.nesterov_model.check(NoVelocities)
    assert result.status == "incorrect" and "velocities" in result.message


def test_nesterov_model_not_attempted():
    class Starter(_WithVelocities):
        def train_step(self, data):
            raise NotImplementedError

    assert nb04.nesterov_model.check(None).status == "not attempted"
    assert nb04.nesterov_model.check(Starter).status == "not attempted"


def test_hints_do_not_contain_the_code_of_the_answer(capsys):
    for exercise in (nb04.ralston_step, nb04.midpoint_model, nb04.snapshot, nb04.nesterov_model):
        exercise.hint()
        hint = capsys.readouterr().out
        for giveaway in ("tf.identity", "ops.copy", "assign", "2/3", "(2/3)", "0.75", "3·g2/4"):
            assert giveaway not in hint, f"{exercise.title}: the hint shows {giveaway!r}"
