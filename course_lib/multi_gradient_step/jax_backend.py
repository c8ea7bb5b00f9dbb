"""The multi-gradient training step on JAX: a pure function of the training state.

Keras's JAX trainer calls ``train_step(state, data)`` with ``state`` the values of the model's
trainable, non-trainable, optimizer and metric variables, and expects the new values back. So
the step runs under one ``keras.StatelessScope`` over all of them, as ``optimizer.stateless_apply``
does: every ``assign`` of the shared step (the optimizer's update, the metrics, the controller's
step scale, :func:`course_lib.distribution.run_if`'s selection) records a new value, and the new
state is read off the scope at the end. A trial point is just another list of arrays:

1. the first pass at p runs Keras's own forward pass and compiled loss under a scope of its own
   (:meth:`StatelessTrialPoints.evaluate`), differentiated by ``jax.value_and_grad``: loss,
   predictions, ∇L(p), and the non-trainable state as the pass left it (BatchNorm's statistics
   moved once), which the step keeps (:meth:`StatelessTrialPoints.restore` writes it);
2. every trial pass starts from the *input* non-trainable state, so every pass evaluates the
   same function and none of them moves it: no weight is ever moved, so none is put back.

Under a ``LossScaleOptimizer`` every pass differentiates the scaled loss and unscales the
gradients (:mod:`.loss_scaling`); the scale is read from the state, like the learning rate.
The train function counts the skipped steps on the Python side, between the compiled steps
(the state ``fit`` hands the step has no room for a counter), as ``skipped_steps`` in the logs.

Under ``keras.distribution.DataParallel`` the step is one program over the global batch, sharded
over the devices (or the processes): every gradient is already the whole batch's. An adaptive
step on the intrusive route is refused (:mod:`course_lib.adaptive`): its step scale would live
outside the model, and so outside the state that ``fit`` hands the step.
"""

from __future__ import annotations

from course_lib.keras_internals import hand_state_to_fit
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
from typing import Any, NamedTuple

import jax
import keras
from keras import ops

__all__ = [
    "StatelessTrialPoints",
    "TrainState",
    "after_each_step",
    "keep_state_of_failed_step",
    "make_train_function",
    "train_step",
]


class TrainState(NamedTuple):
    """The values ``fit`` hands a JAX ``train_step``, in the order of the model's lists."""

    trainable: list
    non_trainable: list
    optimizer: list
    metrics: list


def _variable_groups(model: keras.Model) -> TrainState:
    """The model's variables, grouped and ordered as the state's values."""
    return TrainState(
        list(model.trainable_variables),
        list(model.non_trainable_variables),
        list(model.optimizer.variables),
        list(model.metrics_variables),
    )


def _assign_all(variables: Sequence[keras.Variable], values: Sequence[Any]) -> None:
    for variable, value in zip(variables, values, strict=True):
        variable.assign(value)


@dataclass(frozen=True, eq=False)
class StatelessTrialPoints:
    """Gradients of the step's loss at any weights, as pure functions of the state."""

    model: keras.Model
    #: The metric values the step started with (the compiled loss may track its own).
    metrics: list
    #: The ids of the controller's own variables, which :meth:`restore` leaves alone.
    own: frozenset = frozenset()

    def _loss_and_updates(
        self, trainable: list, non_trainable: list, metrics: list, batch: Batch, scale: Any
    ) -> tuple[Any, tuple]:
        variables = _variable_groups(self.model)
        mapping = [
            *zip(variables.trainable, trainable, strict=True),
            *zip(variables.non_trainable, non_trainable, strict=True),
            *zip(variables.metrics, metrics, strict=True),
        ]
        with keras.StatelessScope(state_mapping=mapping, collect_losses=True) as scope:
            y_pred, loss = forward(self.model, batch)
        new_non_trainable = [scope.get_current_value(v) for v in variables.non_trainable]
        new_metrics = [scope.get_current_value(v) for v in variables.metrics]
        return scaled(loss, scale), (loss, y_pred, new_non_trainable, new_metrics)

    def evaluate(
        self, weights: Sequence[Any], non_trainable: list, batch: Batch, scale: Any = None
    ) -> tuple[Any, tuple, list]:
        """``loss, (y_pred, non_trainable, metrics), gradients`` at ``weights``.

        Keras's own forward pass and compiled loss (layer losses and regularisers included);
        the non-trainable and metric values are those the pass would leave. With a loss
        ``scale`` the scaled loss is differentiated and the gradients unscaled.
        """
        grad_fn = jax.value_and_grad(self._loss_and_updates, has_aux=True)
        (_, (loss, *updates)), gradients = grad_fn(
            list(weights), non_trainable, self.metrics, batch, scale
        )
        return loss, tuple(updates), unscaled(gradients, scale)

    def gradients_at(self, start: StepStart, point: Sequence[Any]) -> list:
        return self.loss_and_gradients_at(start, point)[1]

    def loss_and_gradients_at(self, start: StepStart, point: Sequence[Any]) -> tuple[Any, list]:
        loss, _, gradients = self.evaluate(
            point, start.frozen_before, start.batch, start.loss_scale
        )
        return loss, gradients

    def restore(self, start: StepStart) -> None:
        """The non-trainable state becomes ``start.frozen_after`` (the weights never moved)."""
        variables = _variable_groups(self.model).non_trainable
        for variable, value in zip(variables, start.frozen_after, strict=True):
            if id(variable) not in self.own:
                variable.assign(value)


def train_step(
    model: keras.Model, method: Method, state: Sequence[list], data: Any
) -> tuple[dict, tuple]:
    """One step of ``method``: ``(logs, new state)``, a pure function of ``state`` and ``data``.

    Keras's JAX ``train_step`` contract, jitted by ``fit``; the logs describe the start point.
    """
    state = TrainState(*map(list, state))
    variables = _variable_groups(model)
    batch = Batch(*keras.utils.unpack_x_y_sample_weight(data))
    own = frozenset(id(v) for v in method.own_variables)
    trial = StatelessTrialPoints(model, state.metrics, own)
    mapping = [
        pair for group in zip(variables, state, strict=True) for pair in zip(*group, strict=True)
    ]
    with keras.StatelessScope(state_mapping=mapping) as scope:
        scale = loss_scale(model)
        loss, (y_pred, frozen_after, metrics), gradients = trial.evaluate(
            state.trainable, state.non_trainable, batch, scale
        )
        _assign_all(variables.metrics, metrics)
        rate = ops.convert_to_tensor(model.optimizer.learning_rate)
        start = StepStart(
            batch, state.trainable, state.non_trainable, frozen_after, gradients, rate, scale
        )
        logs = take_step(model, method, trial, start, y_pred, loss)
    new_state = tuple([scope.get_current_value(v) for v in group] for group in variables)
    return logs, new_state


def make_train_function(model: keras.Model, method: Method) -> Callable:
    """Keras's JAX train function ``(state, iterator) -> (logs, state)`` around ``method``'s step.

    Jitted as Keras's own ``make_train_function`` jits its step (the input state donated)
    unless the model runs eagerly or was compiled with ``jit_compile=False``. Under
    ``DataParallel`` the jit infers the replicated layout of the state from its inputs. Under a
    ``LossScaleOptimizer`` each step's logs gain ``skipped_steps``, counted here.
    """

    def step(state: Sequence[list], data: Any) -> tuple[dict, tuple]:
        return train_step(model, method, state, data)

    if not model.run_eagerly and model.jit_compile:
        step = jax.jit(step, donate_argnums=0)
    if scales_loss(model.optimizer):
        step = _counting_skipped_steps(step)
    return keras_train_function(model, step)


def _counting_skipped_steps(step: Callable) -> Callable:
    """``step``, whose logs count the skipped steps since it was made (``skipped_steps``).

    The count is added on the Python side after each compiled step, without waiting for it.
    """
    skipped = ops.zeros((), "int32")

    def counted(state: Sequence[list], data: Any) -> tuple[dict, tuple]:
        nonlocal skipped
        logs, state = step(state, data)
        logs = dict(logs)
        skipped = skipped + logs.pop(SKIPPED_LOG)
        logs[SKIPPED_STEPS] = skipped
        return logs, state

    return counted


def keep_state_of_failed_step(model: keras.Model, state: Sequence[list]) -> None:
    """Before a failed step raises: the model keeps the state that step returned.

    ``fit`` writes its last state back into the variables when it stops; the state it holds is
    the one *before* the failed step, already donated to that step and deleted.
    """
    state = TrainState(*state)
    for variables, values in zip(_variable_groups(model), state, strict=True):
        _assign_all(variables, values)
    hand_state_to_fit(model, state)


def after_each_step(
    function: Callable, model: keras.Model, check: Callable[[dict], None]
) -> Callable:
    """``function`` followed by ``check(logs)`` on the Python side (which may raise or warn).

    The new state lives outside the model until ``fit`` writes it back, so if ``check`` raises
    the model is handed that state first (:func:`keep_state_of_failed_step`).
    """

    def checked(*args: Any) -> tuple[dict, Any]:
        logs, state = function(*args)
        logs = dict(logs)
        try:
            check(logs)
        except Exception:
            keep_state_of_failed_step(model, state)
            raise
        return logs, state

    return checked
