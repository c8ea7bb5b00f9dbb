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
