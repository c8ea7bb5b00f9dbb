"""The exercise of appendix A3 passes on its solution and fails on known-wrong answers (JAX)."""

from __future__ import annotations

from course_lib.checks import nbA3

import keras
import pytest

pytestmark = pytest.mark.skipif(
    keras.backend.backend() != "jax",
    reason="appendix A3's exercise runs on the JAX backend: run with KERAS_BACKEND=jax",
)


class HeunInstead(nbA3.MidpointModel):
    """Heun's rule: probe a whole step ahead, step with the average of the two slopes."""

    def train_step(self, state, data):
        import jax

        trainable, non_trainable, optimizer_values, metrics_values = state
        x, y = data
        gradient_of = jax.value_and_grad(self.loss_at, has_aux=True)
        (loss, (y_pred, new_non_trainable)), g1 = gradient_of(trainable, non_trainable, x, y)
        mapping = list(zip(self.optimizer.variables, optimizer_values, strict=True))
        with keras.StatelessScope(state_mapping=mapping):
            h = keras.ops.convert_to_tensor(self.optimizer.learning_rate)
        _, g2 = gradient_of(
            [p - h * g for p, g in zip(trainable, g1, strict=True)], non_trainable, x, y
        )
        direction = [(a + b) / 2 for a, b in zip(g1, g2, strict=True)]
        trainable, optimizer_values = self.optimizer.stateless_apply(
            optimizer_values, direction, trainable
        )
        loss_metric = self.metrics[0]
        values = loss_metric.stateless_update_state(metrics_values[:2], loss)
        logs = {"loss": loss_metric.stateless_result(values)}
        return logs, (trainable, new_non_trainable, optimizer_values, values + metrics_values[2:])


class GradientAtTheStart(nbA3.MidpointModel):
    """Probes, then steps with g1 anyway: a plain gradient step at twice the cost."""

    def train_step(self, state, data):
        import jax

        trainable, non_trainable, optimizer_values, metrics_values = state
        x, y = data
        gradient_of = jax.value_and_grad(self.loss_at, has_aux=True)
        (loss, (y_pred, new_non_trainable)), g1 = gradient_of(trainable, non_trainable, x, y)
        trainable, optimizer_values = self.optimizer.stateless_apply(
            optimizer_values, g1, trainable
        )
        loss_metric = self.metrics[0]
        values = loss_metric.stateless_update_state(metrics_values[:2], loss)
        logs = {"loss": loss_metric.stateless_result(values)}
        return logs, (trainable, new_non_trainable, optimizer_values, values + metrics_values[2:])


class Starter(keras.Model):
    def train_step(self, state, data):
        raise NotImplementedError  # your code here


def test_midpoint_check_both_ways():
    check = nbA3.midpoint_model.check
    assert check(nbA3.MidpointModel).status == "correct"
    heun = check(HeunInstead)
    assert heun.status == "incorrect" and "Heun" in heun.message
    euler = check(GradientAtTheStart)
    assert euler.status == "incorrect" and "plain gradient steps" in euler.message
    assert check(keras.Model).status == "incorrect"
    assert check(None).status == "not attempted"
    assert check(Starter).status == "not attempted"


# Heun's stateless train_step, which the appendix has the learner write ----------------------


def _heun(*, apply_to="p", g2_at="trial", rate="state", log="p", keep="first pass"):
    """A Heun model class with one known mistake (the defaults give Heun's step)."""

    class Variant(nbA3.HeunModel):
        def train_step(self, state, data):
            import jax

            trainable, non_trainable, optimizer_values, metrics_values = state
            x, y = data
            gradient_of = jax.value_and_grad(self.loss_at, has_aux=True)
            (loss, (y_pred, first_state)), g1 = gradient_of(trainable, non_trainable, x, y)
            if rate == "state":
                h = nbA3.learning_rate_in(self.optimizer, optimizer_values)
            else:
                h = self.optimizer.learning_rate  # the Python attribute
            trial = [p - h * g for p, g in zip(trainable, g1, strict=True)]
            chained = first_state if keep == "chained" else non_trainable
            point = trial if g2_at == "trial" else trainable
            (trial_loss, (_, trial_state)), g2 = gradient_of(point, chained, x, y)
            direction = [(a + b) / 2 for a, b in zip(g1, g2, strict=True)]
            trainable, optimizer_values = self.optimizer.stateless_apply(
                optimizer_values, direction, trainable if apply_to == "p" else trial
            )
            logged = loss if log == "p" else trial_loss
            logs, metrics_values = nbA3.update_metrics(self, metrics_values, logged, y, y_pred)
            kept = first_state if keep == "first pass" else trial_state
            return logs, (trainable, kept, optimizer_values, metrics_values)

    return Variant


def test_heun_step_check_passes_the_solution():
    result = nbA3.heun_step.check(nbA3.HeunModel)
    assert result.correct, result


@pytest.mark.parametrize(
    ("mistake", "phrase"),
    [
        ({"apply_to": "trial"}, "not the trial list"),
        ({"g2_at": "p"}, "gradient-descent step"),
        ({"rate": "attribute"}, "Read h from the state"),
        ({"log": "trial"}, "loss at the trial point"),
        ({"keep": "trial pass"}, "moving statistics"),
        ({"keep": "chained"}, "moving statistics"),
    ],
)
def test_heun_step_check_names_the_mistake(mistake, phrase):
    result = nbA3.heun_step.check(_heun(**mistake))
    assert result.status == "incorrect" and phrase in result.message, result


def test_heun_step_not_attempted():
    class StarterHeun(nbA3.HeunModel):
        def train_step(self, state, data):
            raise NotImplementedError("g1 at p, the trial list, g2, stateless_apply")

    assert nbA3.heun_step.check(StarterHeun).status == "not attempted"
    assert nbA3.heun_step.check(None).status == "not attempted"
