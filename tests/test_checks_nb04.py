"""The exercises of notebook 04 pass on their solutions and fail on known-wrong answers."""

from __future__ import annotations

from course_lib.checks import nb04
from course_lib.data import train_batches
from course_lib.landscapes import Rosenbrock, runge_kutta_step
from course_lib.tableaux import ButcherTableau, get_tableau

import keras
import numpy as np
import pytest
import tensorflow as tf


@pytest.mark.parametrize("name", ["heun", "midpoint", "ralston"])
def test_two_stage_solution_is_the_named_tableaux(name):
    """α = c_2 of Heun, midpoint and Ralston gives exactly their tableau's step."""
    tableau = get_tableau(name)
    p, rosenbrock = np.array([-1.0, 1.5]), Rosenbrock()
    got = nb04.two_stage_step_solution(rosenbrock.gradient, p, 1e-3, tableau.c[1])
    expected = runge_kutta_step(rosenbrock.gradient, p, tableau, 1e-3)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-14)


@pytest.mark.parametrize("alpha", nb04._ALPHAS)
def test_two_stage_solution_is_second_order_for_every_alpha(alpha):
    """A tableau with these weights passes the library's order-2 conditions."""
    b2 = 1 / (2 * alpha)
    tableau = ButcherTableau(
        name="two_stage", c=(0.0, alpha), a=((0.0, 0.0), (alpha, 0.0)), b=(1 - b2, b2), order=2
    )
    p, rosenbrock = np.array([-1.0, 1.5]), Rosenbrock()
    got = nb04.two_stage_step_solution(rosenbrock.gradient, p, 1e-3, alpha)
    np.testing.assert_allclose(
        got, runge_kutta_step(rosenbrock.gradient, p, tableau, 1e-3), rtol=0, atol=1e-14
    )


def test_two_stage_step_check_both_ways():
    check = nb04.two_stage_step.check
    assert check(nb04.two_stage_step_solution).status == "correct"

    def euler(gradient, p, h, alpha):
        return p - h * gradient(p)

    def heun_weights(gradient, p, h, alpha):  # Heun copied, probe moved: first order
        g1 = gradient(p)
        return p - 0.5 * h * (g1 + gradient(p - alpha * h * g1))

    def heun_itself(gradient, p, h, alpha):  # ignores alpha: right on the quadratic only
        g1 = gradient(p)
        return p - 0.5 * h * (g1 + gradient(p - h * g1))

    def weights_swapped(gradient, p, h, alpha):
        g1 = gradient(p)
        b2 = 1 / (2 * alpha)
        return p - h * (b2 * g1 + (1 - b2) * gradient(p - alpha * h * g1))

    def weight_alpha(gradient, p, h, alpha):  # b2 = α: Ralston's 3/4 read as "2/3"
        g1 = gradient(p)
        return p - h * ((1 - alpha) * g1 + alpha * gradient(p - alpha * h * g1))

    result = check(euler)
    assert result.status == "incorrect" and "Euler" in result.message
    result = check(heun_weights)
    assert result.status == "incorrect" and "Heun's weights" in result.message
    result = check(heun_itself)
    assert result.status == "incorrect" and "Rosenbrock" in result.message
    result = check(weight_alpha)
    assert result.status == "incorrect" and "(hA)²/2" in result.message, result
    assert check(weights_swapped).status == "incorrect"  # at alpha = 1/2 this is Euler


def test_two_stage_step_not_attempted():
    def starter(gradient, p, h, alpha):
        raise NotImplementedError

    assert nb04.two_stage_step.check(None).status == "not attempted"
    assert nb04.two_stage_step.check(starter).status == "not attempted"
    assert nb04.two_stage_step.check(3).status == "incorrect"


# The training loop by hand, which the lesson has the learner write ----------------------------


def _loop(
    *, data="batch", loss="compiled", update="optimizer", when="every batch", record="before"
):
    """A train_by_hand with one known mistake (the defaults give the right loop)."""

    def train(model, x, y, batch_size, epochs):
        variables, losses, stale = model.trainable_variables, [], None
        for _ in range(epochs):
            for x_batch, y_batch in train_batches(x, y, batch_size):
                xs, ys = (x, y) if data == "whole" else (x_batch, y_batch)
                with tf.GradientTape() as tape:
                    y_pred = model(xs, training=True)
                    if loss == "per example":
                        value = keras.losses.mean_squared_error(ys, y_pred)
                    else:
                        value = model.compute_loss(x=xs, y=ys, y_pred=y_pred)
                gradients = tape.gradient(value, variables)
                if data == "stale":
                    stale = gradients if stale is None else stale
                    gradients = stale
                if update == "by hand":
                    for v, g in zip(variables, gradients, strict=True):
                        v.assign_sub(model.optimizer.learning_rate * g)
                elif when == "every batch":
                    model.optimizer.apply(gradients, variables)
                if record == "after":
                    value = model.compute_loss(x=xs, y=ys, y_pred=model(xs))
                losses.append(float(keras.ops.mean(value)))
            if when == "every epoch":
                model.optimizer.apply(gradients, variables)
        return losses

    return train


def test_training_loop_check_both_ways():
    check = nb04.training_loop.check
    assert check(nb04.train_by_hand).correct, check(nb04.train_by_hand)
    assert check(_loop()).correct
    expected = {
        "whole data set": _loop(data="whole"),
        "4 times the batch's gradient": _loop(loss="per example"),
        "the step before, again": _loop(data="stale"),
        "you moved the weights yourself": _loop(update="by hand"),
        "stepped 2 times for 4 batches": _loop(when="every epoch"),
        "the one after the step": _loop(record="after"),
    }
    for phrase, wrong in expected.items():
        result = check(wrong)
        assert result.status == "incorrect" and phrase in result.message, (phrase, result)


def test_training_loop_not_attempted():
    def starter(model, x, y, batch_size, epochs):  # the lesson's skeleton
        variables = model.trainable_variables
        losses = []
        for _ in range(epochs):
            for _x_batch, _y_batch in train_batches(x, y, batch_size):
                raise NotImplementedError("tape: forward pass and loss; gradient; apply")
        return losses, variables

    assert nb04.training_loop.check(starter).status == "not attempted"
    assert nb04.training_loop.check(None).status == "not attempted"


# Heun's train_step, which the lesson has the learner write ----------------------------------


def _heun(
    *,
    copy=True,
    probe=1.0,
    g2_at="trial",
    restore=True,
    direction="mean",
    rate="read",
    log="start",
    apply="optimizer",
):
    """A heun_train_step with one known mistake (the defaults give Heun's step)."""

    def train_step(self, data):
        x, y = data[0], data[1]
        variables = self.trainable_variables
        h = self.optimizer.learning_rate if rate == "read" else 0.2
        start = [tf.identity(v.value) if copy else v.value for v in variables]
        with tf.GradientTape() as tape:
            y_pred = self(x, training=True)
            loss = self.compute_loss(x=x, y=y, y_pred=y_pred)
        g1 = tape.gradient(loss, variables)
        if g2_at == "trial":
            for v, g in zip(variables, g1, strict=True):
                v.assign_sub(probe * h * g)
        with tf.GradientTape() as tape:
            trial_loss = self.compute_loss(x=x, y=y, y_pred=self(x, training=True))
        g2 = tape.gradient(trial_loss, variables)
        if restore:
            for v, value in zip(variables, start, strict=True):
                v.assign(value)
        combine = {
            "mean": lambda a, b: (a + b) / 2,
            "sum": lambda a, b: a + b,
            "g2": lambda a, b: b,
        }[direction]
        combined = [combine(a, b) for a, b in zip(g1, g2, strict=True)]
        if apply == "by hand":
            for v, g in zip(variables, combined, strict=True):
                v.assign_sub(h * g)
        else:
            for _ in range(2 if apply == "twice" else 1):
                self.optimizer.apply(combined, variables)
        for metric in self.metrics:
            if metric.name == "loss":
                for value in {"start": [loss], "trial": [trial_loss], "both": [loss, trial_loss]}[
                    log
                ]:
                    metric.update_state(value)
        return self.compute_metrics(x, y, y_pred)

    return train_step


def test_heun_step_check_passes_the_solution_and_a_model_class():
    check = nb04.heun_step.check
    assert check(nb04.heun_train_step).correct, check(nb04.heun_train_step)

    class Heun(keras.Model):
        train_step = nb04.heun_train_step

    assert check(Heun).correct


@pytest.mark.parametrize(
    ("mistake", "phrase"),
    [
        ({"restore": False}, "stepped from the trial point"),
        ({"copy": False}, "restores nothing"),
        ({"g2_at": "start"}, "gradient-descent step"),
        ({"direction": "g2"}, "g2 alone"),
        ({"direction": "sum"}, "twice the average"),
        ({"probe": -1.0}, "uphill"),
        ({"probe": 0.5}, "half a step"),
        ({"rate": "typed"}, "at step 2 (h = 0.12): the trial point used the first step's h"),
        ({"log": "trial"}, "loss at the trial point"),
        ({"log": "both"}, "received both"),
        ({"apply": "by hand"}, "You moved the weights yourself"),
        ({"apply": "twice"}, "stepped 6 times"),
    ],
)
def test_heun_step_check_names_the_mistake(mistake, phrase):
    result = nb04.heun_step.check(_heun(**mistake))
    assert result.status == "incorrect" and phrase in result.message, result


def test_heun_step_not_attempted():
    def starter(self, data):  # the lesson's skeleton
        x, y = data[0], data[1]
        raise NotImplementedError("copy p, g1 at p, trial point, g2, restore, apply the average")
        return x, y

    assert nb04.heun_step.check(starter).status == "not attempted"
    assert nb04.heun_step.check(None).status == "not attempted"


def test_heun_problem_is_the_closed_form_and_the_library():
    """heun_problem's step is (I − hA + (hA)²/2)p, and the library's Heun step trains it."""
    from course_lib.checks import heun_problem
    from course_lib.runge_kutta import RungeKuttaModel

    p = heun_problem.START
    for step in range(heun_problem.STEPS):
        hA = heun_problem.rate(step) * heun_problem.A
        expected = (np.eye(2) - hA + hA @ hA / 2) @ p
        np.testing.assert_allclose(heun_problem.heun_step(p, step), expected, atol=1e-14)
        p = expected

    class LibraryHeun(RungeKuttaModel):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, tableau="heun", **kwargs)

    points, losses, steps = nb04._run_on_the_quadratic(LibraryHeun)
    heun_problem.judge(points, losses, steps, {})  # raises Incorrect if the library left it


# Kutta's third-order method as a training step ------------------------------------------------


def test_kutta3_solution_equals_the_library_runge_kutta_model():
    from course_lib.runge_kutta import RungeKuttaModel

    def library_kutta3(inputs, outputs):
        return RungeKuttaModel(inputs=inputs, outputs=outputs, tableau="kutta3")

    ours, _ = nb04._fit_nonlinear(nb04.Kutta3Model, 0.5, 2)
    keras.backend.clear_session()
    library, _ = nb04._fit_nonlinear(library_kutta3, 0.5, 2)
    for a, b in zip(ours, library, strict=True):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)


def test_kutta3_model_accepts_the_solution():
    result = nb04.kutta3_model.check(nb04.Kutta3Model)
    assert result.status == "correct", result.message


class _Learner(keras.Model):
    """What a learner writes around the stages; subclasses get the stages wrong."""

    def _gradients(self, x, y):
        with tf.GradientTape() as tape:
            y_pred = self(x, training=True)
            loss = self.compute_loss(x=x, y=y, y_pred=y_pred)
        return tape.gradient(loss, self.trainable_variables), y_pred, loss

    def _finish(self, x, y, y_pred, loss, combined):
        self.optimizer.apply(combined, self.trainable_variables)
        for metric in self.metrics:
            if metric.name == "loss":
                metric.update_state(loss)
        return self.compute_metrics(x, y, y_pred)


class ThirdPointFromTheSecond(_Learner):
    def train_step(self, data):
        x, y = data[0], data[1]
        variables = self.trainable_variables
        start = [tf.identity(v.value) for v in variables]
        g1, y_pred, loss = self._gradients(x, y)
        h = self.optimizer.learning_rate
        for v, a in zip(variables, g1, strict=True):
            v.assign_sub(0.5 * h * a)
        g2, _, _ = self._gradients(x, y)
        for v, a, b in zip(variables, g1, g2, strict=True):
            v.assign_add(h * a - 2 * h * b)
        g3, _, _ = self._gradients(x, y)
        for v, p in zip(variables, start, strict=True):
            v.assign(p)
        combined = [(a + 4 * b + c) / 6 for a, b, c in zip(g1, g2, g3, strict=True)]
        return self._finish(x, y, y_pred, loss, combined)


class ReferenceSnapshotKutta(_Learner):
    """Snapshots with v.value: the restore restores nothing."""

    def train_step(self, data):
        x, y = data[0], data[1]
        variables = self.trainable_variables
        start = [v.value for v in variables]
        g1, y_pred, loss = self._gradients(x, y)
        h = self.optimizer.learning_rate
        for v, p, a in zip(variables, start, g1, strict=True):
            v.assign(p - 0.5 * h * a)
        g2, _, _ = self._gradients(x, y)
        for v, p, a, b in zip(variables, start, g1, g2, strict=True):
            v.assign(p + h * a - 2 * h * b)
        g3, _, _ = self._gradients(x, y)
        for v, p in zip(variables, start, strict=True):
            v.assign(p)
        combined = [(a + 4 * b + c) / 6 for a, b, c in zip(g1, g2, g3, strict=True)]
        return self._finish(x, y, y_pred, loss, combined)


class WrongWeights(nb04.Kutta3Model):
    """Equal weights for the three gradients."""

    def train_step(self, data):
        x, y = data[0], data[1]
        variables = self.trainable_variables
        start = [tf.identity(v.value) for v in variables]
        g1, y_pred, loss = self._gradients(x, y)
        h = self.optimizer.learning_rate
        for v, p, a in zip(variables, start, g1, strict=True):
            v.assign(p - 0.5 * h * a)
        g2, _, _ = self._gradients(x, y)
        for v, p, a, b in zip(variables, start, g1, g2, strict=True):
            v.assign(p + h * a - 2 * h * b)
        g3, _, _ = self._gradients(x, y)
        for v, p in zip(variables, start, strict=True):
            v.assign(p)
        equal = [(a + b + c) / 3 for a, b, c in zip(g1, g2, g3, strict=True)]
        self.optimizer.apply(equal, variables)
        for metric in self.metrics:
            if metric.name == "loss":
                metric.update_state(loss)
        return self.compute_metrics(x, y, y_pred)


def test_kutta3_model_rejects_known_mistakes():
    from course_lib.runge_kutta import RungeKuttaModel

    class Heun(RungeKuttaModel):
        def __init__(self, inputs, outputs):
            super().__init__(inputs=inputs, outputs=outputs, tableau="heun")

    expected = {
        Heun: "Heun's method",
        ThirdPointFromTheSecond: "starts from where the second stage left",
        ReferenceSnapshotKutta: "never go back to p",
        WrongWeights: "differs",
    }
    for wrong, phrase in expected.items():
        result = nb04.kutta3_model.check(wrong)
        assert result.status == "incorrect" and phrase in result.message, (wrong, result)
    result = nb04.kutta3_model.check(keras.Model)
    assert result.status == "incorrect" and "override train_step" in result.message


def test_kutta3_model_not_attempted():
    class Starter(keras.Model):
        def train_step(self, data):
            raise NotImplementedError

    assert nb04.kutta3_model.check(None).status == "not attempted"
    assert nb04.kutta3_model.check(Starter).status == "not attempted"


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


class ThroughTheOptimizer(nb04.NesterovModel):
    """Right weights, but the step hands the compiled optimizer a zero gradient as well."""

    def train_step(self, data):
        logs = super().train_step(data)
        zeros = [tf.zeros_like(v) for v in self.trainable_variables]
        self.optimizer.apply(zeros, self.trainable_variables)
        return logs


class LossAtP(_WithVelocities):
    """Nesterov's weights, but the loss logged at p instead of at the look-ahead point."""

    def train_step(self, data):
        x, y = data[0], data[1]
        variables = self.trainable_variables
        start = [tf.identity(v.value) for v in variables]
        _, y_pred, loss = self._gradients(x, y)  # at p: the loss logged
        for v, u in zip(variables, self.velocities, strict=True):
            v.assign_add(self.momentum * u)
        gradients, _, _ = self._gradients(x, y)
        h = self.optimizer.learning_rate
        for v, u, p, g in zip(variables, self.velocities, start, gradients, strict=True):
            u.assign(self.momentum * u - h * g)
            v.assign(p + u)
        return self._finish(x, y, y_pred, loss)


def test_nesterov_model_rejects_heavy_ball_keras_form_and_broken_restores():
    result = nb04.nesterov_model.check(HeavyBall)
    assert result.status == "incorrect" and "heavy-ball" in result.message
    for wrong in (KerasForm, NoRestore, ReferenceSnapshot):
        result = nb04.nesterov_model.check(wrong)
        assert result.status == "incorrect", (wrong.__name__, result)
        assert "first parts from Keras" in result.message, (wrong.__name__, result)
        assert "did not step, as it should not" in result.message, (wrong.__name__, result)
    result = nb04.nesterov_model.check(KerasForm)
    assert "after step 1 " in result.message, result
    result = nb04.nesterov_model.check(NoRestore)
    assert "after step 2 " in result.message and "after steps 1 to 1 they agree" in result.message
    result = nb04.nesterov_model.check(ThroughTheOptimizer)
    assert result.status == "incorrect" and "stepped 6 times" in result.message, result
    result = nb04.nesterov_model.check(LossAtP)
    assert result.status == "incorrect" and "at step 2 you log the loss" in result.message, result
    result = nb04.nesterov_model.check(NoVelocities)
    assert result.status == "incorrect" and "velocities" in result.message


def test_nesterov_model_not_attempted():
    class Starter(_WithVelocities):
        def train_step(self, data):
            raise NotImplementedError

    assert nb04.nesterov_model.check(None).status == "not attempted"
    assert nb04.nesterov_model.check(Starter).status == "not attempted"


def test_hints_do_not_contain_the_code_of_the_answer(capsys):
    giveaways = ("tf.identity", "ops.copy", "assign", "1/(2", "1 / (2", "2·alpha", "2 * alpha")
    giveaways += ("+ 4", "4·g2", "/ 6", "/6", "2 * h", "2h·g2")
    exercises = (nb04.training_loop, nb04.heun_step, nb04.two_stage_step, nb04.kutta3_model)
    for exercise in (*exercises, nb04.nesterov_model):
        exercise.hint()
        hint = capsys.readouterr().out
        for giveaway in giveaways:
            assert giveaway not in hint, f"{exercise.title}: the hint shows {giveaway!r}"
