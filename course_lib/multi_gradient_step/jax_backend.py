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
   moved once), which the step keeps;
2. every trial pass starts from the *input* non-trainable state, so every pass evaluates the
   same function and none of them moves it: there is nothing to put back.

Under ``keras.distribution.DataParallel`` the step is one program over the global batch, sharded
over the devices (or the processes): every gradient is already the whole batch's. An adaptive
step on the intrusive route is refused (:mod:`course_lib.adaptive`): its step scale would live
outside the model, and so outside the state that ``fit`` hands the step.
"""

from __future__ import annotations

from course_lib.keras_internals import hand_state_to_fit
from course_lib.keras_internals import make_train_function as keras_train_function
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

    def _loss_and_updates(
        self, trainable: list, non_trainable: list, metrics: list, batch: Batch
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
        return loss, (y_pred, new_non_trainable, new_metrics)

    def evaluate(self, weights: Sequence[Any], non_trainable: list, batch: Batch):
        """``(loss, (y_pred, non_trainable, metrics)), gradients`` at ``weights``.

        Keras's own forward pass and compiled loss (layer losses and regularisers included);
        the non-trainable and metric values are those the pass would leave.
        """
        grad_fn = jax.value_and_grad(self._loss_and_updates, has_aux=True)
        value, gradients = grad_fn(list(weights), non_trainable, self.metrics, batch)
        return value, list(gradients)

    def gradients_at(self, start: StepStart, point: Sequence[Any]) -> list:
        return self.evaluate(point, start.frozen_before, start.batch)[1]

    def restore(self, start: StepStart) -> None:
        """Nothing to do: a trial pass changes no variable."""
        del start


def train_step(
    model: keras.Model, method: Method, state: Sequence[list], data: Any
) -> tuple[dict, tuple]:
    """One step of ``method``: ``(logs, new state)``, a pure function of ``state`` and ``data``.

    Keras's JAX ``train_step`` contract, jitted by ``fit``; the logs describe the start point.
    """
    state = TrainState(*map(list, state))
    variables = _variable_groups(model)
    batch = Batch(*keras.utils.unpack_x_y_sample_weight(data))
    trial = StatelessTrialPoints(model, state.metrics)
    mapping = [
        pair for group in zip(variables, state, strict=True) for pair in zip(*group, strict=True)
    ]
    with keras.StatelessScope(state_mapping=mapping) as scope:
        (loss, (y_pred, frozen_after, metrics)), gradients = trial.evaluate(
            state.trainable, state.non_trainable, batch
        )
        _assign_all(variables.non_trainable, frozen_after)
        _assign_all(variables.metrics, metrics)
        rate = ops.convert_to_tensor(model.optimizer.learning_rate)
        start = StepStart(
            batch, state.trainable, state.non_trainable, frozen_after, gradients, rate
        )
        logs = take_step(model, method, trial, start, y_pred, loss)
    new_state = tuple([scope.get_current_value(v) for v in group] for group in variables)
    return logs, new_state


def make_train_function(model: keras.Model, method: Method) -> Callable:
    """Keras's JAX train function ``(state, iterator) -> (logs, state)`` around ``method``'s step.

    Jitted as Keras's own ``make_train_function`` jits its step (the input state donated)
    unless the model runs eagerly or was compiled with ``jit_compile=False``. Under
    ``DataParallel`` the jit infers the replicated layout of the state from its inputs.
    """

    def step(state: Sequence[list], data: Any) -> tuple[dict, tuple]:
        return train_step(model, method, state, data)

    if not model.run_eagerly and model.jit_compile:
        step = jax.jit(step, donate_argnums=0)
    return keras_train_function(model, step)


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
