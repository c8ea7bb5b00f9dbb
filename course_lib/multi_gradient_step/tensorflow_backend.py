"""The multi-gradient training step on TensorFlow: a gradient tape and the model's variables.

Keras's TensorFlow trainer calls ``train_step(data)`` inside its train function (a replica
context) and expects the logs back. The step moves the model's own variables:

1. snapshot the trainable weights p and the non-trainable state (BatchNorm statistics, seeds)
   *by value* (a snapshot that kept references would "restore" weights that have already
   moved);
2. the first pass at p under a ``tf.GradientTape``: predictions, loss, gradient;
3. a trial point is reached by assigning it to the weights, with the non-trainable state put
   back first, so that every pass evaluates the same function (:class:`VariableTrialPoints`);
4. before the optimizer steps, the weights go back to p and the non-trainable state to where the
   first pass left it: BatchNorm's moving statistics move once per step, from p.

Under ``tf.distribute.MirroredStrategy`` each replica's gradient is its share of the batch's; the
trial points hand the rule the whole batch's gradient (``distribution.sum_replicas``), and
:func:`~.step.apply_direction` hands the optimizer each replica's share of the direction.

Under a ``LossScaleOptimizer`` every pass differentiates the scaled loss and unscales the
gradients (:mod:`.loss_scaling`), and the train function counts the skipped steps in a variable
of its own, ``skipped_steps`` in the logs.
"""

from __future__ import annotations

from course_lib.distribution import sum_replicas
from course_lib.keras_internals import make_train_function as keras_train_function
from course_lib.multi_gradient_step.loss_scaling import (
    SKIPPED_LOG,
    SKIPPED_STEPS,
    loss_scale,
    scaled,
    scales_loss,
    unscaled,
)
from course_lib.multi_gradient_step.records import Batch, Method, StepStart
from course_lib.multi_gradient_step.step import forward, take_step

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import keras
import tensorflow as tf
from keras import ops

__all__ = [
    "VariableTrialPoints",
    "after_each_step",
    "make_train_function",
    "snapshot",
    "train_step",
]


def snapshot(variables: Sequence[keras.Variable]) -> list[tf.Tensor]:
    """Copies of the variables' current values (by value: later assigns don't change them)."""
    return [tf.identity(v.value) for v in variables]


def _assign_all(variables: Sequence[keras.Variable], values: Sequence[Any]) -> None:
    for variable, value in zip(variables, values, strict=True):
        variable.assign(value)


@dataclass(frozen=True, eq=False)
class VariableTrialPoints:
    """Trial points on TensorFlow: the model's variables moved there, and put back.

    Holds only what every replica shares (the model and its variables), so that a controller
    may run it from cross-replica context; what each replica holds comes in ``start``.
    """

    model: keras.Model
    #: The trainable variables, in the order of every list of weights and gradients.
    variables: list
    #: The non-trainable variables put back around every pass (not the controller's own).
    frozen: list

    def forward(self, batch: Batch, scale: Any = None) -> tuple[Any, Any, list]:
        """Predictions, loss and this replica's gradient at the current weights.

        With a loss ``scale`` the tape differentiates the scaled loss; the gradient is unscaled.
        """
        with tf.GradientTape() as tape:
            y_pred, loss = forward(self.model, batch)
            differentiated = scaled(loss, scale)
        return y_pred, loss, unscaled(tape.gradient(differentiated, self.variables), scale)

    def gradients_at(self, start: StepStart, point: Sequence[Any]) -> list:
        _assign_all(self.variables, point)
        _assign_all(self.frozen, start.frozen_before)
        return sum_replicas(self.forward(start.batch, start.loss_scale)[2])

    def loss_and_gradients_at(self, start: StepStart, point: Sequence[Any]) -> tuple[Any, list]:
        _assign_all(self.variables, point)
        _assign_all(self.frozen, start.frozen_before)
        _, loss, gradients = self.forward(start.batch, start.loss_scale)
        return sum_replicas([loss])[0], sum_replicas(gradients)

    def restore(self, start: StepStart) -> None:
        _assign_all(self.variables, start.weights)
        _assign_all(self.frozen, start.frozen_after)


def train_step(model: keras.Model, method: Method, data: Any) -> dict[str, Any]:
    """One step of ``method`` on the mini-batch ``data``; the logs, taken at the start point."""
    own = {id(v) for v in method.own_variables}
    trial = VariableTrialPoints(
        model,
        list(model.trainable_variables),
        [v for v in model.non_trainable_variables if id(v) not in own],
    )
    weights, frozen_before = snapshot(trial.variables), snapshot(trial.frozen)
    batch = Batch(*keras.utils.unpack_x_y_sample_weight(data))
    scale = loss_scale(model)
    y_pred, loss, gradients = trial.forward(batch, scale)
    rate = ops.convert_to_tensor(model.optimizer.learning_rate)
    frozen_after = snapshot(trial.frozen)
    gradients = sum_replicas(gradients)
    start = StepStart(batch, weights, frozen_before, frozen_after, gradients, rate, scale)
    return take_step(model, method, trial, start, y_pred, loss)


def make_train_function(model: keras.Model, method: Method) -> Callable:
    """Keras's own train function (iterator -> logs) around ``method``'s step.

    Built with Keras's machinery, so ``steps_per_execution``, distribution and ``jit_compile``
    behave as in a standard ``fit``. Under a ``LossScaleOptimizer`` the logs count the skipped
    steps (``skipped_steps``) in a variable made here, updated inside the compiled step.
    """
    skipped = _skipped_steps_variable(model) if scales_loss(model.optimizer) else None

    def step(data: Any) -> dict[str, Any]:
        logs = train_step(model, method, data)
        if skipped is not None:
            skipped.assign_add(logs.pop(SKIPPED_LOG))
            logs[SKIPPED_STEPS] = ops.convert_to_tensor(skipped)
        return logs

    return keras_train_function(model, step)


def _skipped_steps_variable(model: keras.Model) -> keras.Variable:
    """The train function's count of skipped steps: replica 0's count under a strategy."""
    with model.distribute_strategy.scope():
        return keras.Variable(
            0,
            dtype="int32",
            trainable=False,
            aggregation="only_first_replica",
            name=SKIPPED_STEPS,
        )


def after_each_step(
    function: Callable, model: keras.Model, check: Callable[[dict], None]
) -> Callable:
    """``function`` followed by ``check(logs)`` on the Python side (which may raise or warn)."""
    del model  # The variables already hold the state the step left.

    def checked(*args: Any) -> dict[str, Any]:
        logs = dict(function(*args))
        check(logs)
        return logs

    return checked
