"""The multi-gradient training step on Keras's JAX backend: a pure function of the state.

On TensorFlow (:mod:`course_lib.multi_gradient_step`) a step that takes several gradients
snapshots the weights, moves the model's variables to each trial point and puts them back. Keras's
JAX trainer calls ``train_step(state, data)`` instead, with ``state`` the values of the model's
trainable, non-trainable, optimizer and metric variables, and expects the new values back. The
step is then a pure function, and a trial point is just another list of arrays:

1. the first pass at p through ``model.compute_loss_and_updates`` (Keras's own stateless forward
   pass: ``stateless_call`` and the compiled loss) under ``jax.value_and_grad``: loss, predictions,
   ∇L(p), and the non-trainable state as the pass left it (BatchNorm's statistics moved once);
2. the method's direction rule takes gradients at trial points of its choice
   (:meth:`StatelessTrialPoints.gradients_at`), each pass starting from the *input*
   non-trainable state, so every pass evaluates the same function and none of them moves it;
3. the optimizer applies the direction with ``optimizer.stateless_apply``; a rule may ask that it
   be applied only where a condition holds (the adaptive step's accept/reject): both outcomes are
   computed and ``jnp.where`` selects one, since a traced branch cannot have side effects;
4. the loss and the compiled metrics are updated from the first pass (the start point), under a
   ``keras.StatelessScope`` over the metric variables.

The step size h of a Runge–Kutta rule is the optimizer's *current* learning rate, read from the
optimizer variables in ``state`` (a ``StatelessScope`` over them): a schedule is evaluated at the
state's iteration count, not at the stale Python-side variable.

Under ``keras.distribution.DataParallel`` the step is one program over the global batch, sharded
over the devices (or the processes): every gradient is already the whole batch's, so no rule
needs an all-reduce. That holds on both routes below; the intrusive route's ``jax.jit`` infers
the replicated layout of the state from its inputs (tests/test_jax_training_steps.py trains
both routes over 2 devices and over 2 processes, equal to one device).

Both ways in are supported: the clean route's models (their ``train_step`` dispatches here) and
the intrusive route (:func:`make_train_function` builds Keras's train function around a jitted
stateless step), except an adaptive step on the intrusive route, whose step-size variable lives
outside the model and so outside the state that ``fit`` hands the step.
"""

from __future__ import annotations

from course_lib.keras_internals import hand_state_to_fit
from course_lib.keras_internals import make_train_function as keras_train_function
from course_lib.multi_gradient_step import Batch, StepStart

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import jax
import keras
from keras import ops

__all__ = [
    "StatelessDirection",
    "StatelessTrialPoints",
    "TrainState",
    "current_learning_rate",
    "keep_state_of_failed_step",
    "make_train_function",
    "stateless_multi_gradient_step",
]


class TrainState(NamedTuple):
    """The values ``fit`` hands a JAX ``train_step``, in the order of the model's lists."""

    trainable: list
    non_trainable: list
    optimizer: list
    metrics: list


@dataclass(frozen=True)
class StatelessDirection:
    """What a stateless direction rule returns.

    ``gradients`` go to ``optimizer.stateless_apply`` (one per trainable variable). Where
    ``apply_if`` (a scalar bool) is given, the update is kept only where it holds, otherwise the
    weights and the optimizer state stay as they were. ``updates`` are new values of the
    method's own non-trainable variables (the adaptive step scale). ``logs`` join the step's.
    """

    gradients: list
    logs: Mapping[str, Any] = field(default_factory=dict)
    apply_if: Any = None
    updates: Sequence[tuple[keras.Variable, Any]] = ()


def current_learning_rate(optimizer: keras.optimizers.Optimizer, optimizer_values: list) -> Any:
    """The optimizer's learning rate at the state's values (schedules at its iteration count)."""
    mapping = list(zip(optimizer.variables, optimizer_values, strict=True))
    with keras.StatelessScope(state_mapping=mapping):
        return ops.convert_to_tensor(optimizer.learning_rate)


@dataclass(frozen=True, eq=False)
class StatelessTrialPoints:
    """Gradients of the step's loss at any weights, as pure functions of the state."""

    model: keras.Model
    batch: Batch
    state: TrainState
    #: The optimizer's learning rate at this step (a Runge–Kutta rule's step size h).
    learning_rate: Any

    def forward(self, weights: Sequence[Any]) -> tuple[tuple, list]:
        """``(loss, y_pred, non_trainable, metrics), gradient`` at ``weights``, from the state.

        Keras's own stateless forward pass and loss; the non-trainable state returned is the one
        this pass would leave, the metric values those of the compiled loss's own trackers.
        """
        grad_fn = jax.value_and_grad(self.model.compute_loss_and_updates, has_aux=True)
        (_, aux), gradients = grad_fn(
            list(weights),
            self.state.non_trainable,
            self.state.metrics,
            self.batch.x,
            self.batch.y,
            self.batch.sample_weight,
            training=True,
            optimizer_variables=self.state.optimizer,
        )
        return aux, list(gradients)

    def gradients_at(self, start: StepStart, point: Sequence[Any]) -> list:
        """∇L at the weights ``point``, on the step's batch and its input non-trainable state."""
        del start  # Every pass starts from the same input state: nothing to put back.
        return self.forward(point)[1]

    def value_of(self, variable: keras.Variable) -> Any:
        """A non-trainable variable's value in the input state (the method's own variables)."""
        return self.state.non_trainable[_index_of(self.model.non_trainable_variables, variable)]


#: A stateless method's rule: from the start of the step to the direction the optimizer applies.
StatelessRule = Callable[[StatelessTrialPoints, StepStart], StatelessDirection]


def _index_of(variables: Sequence[keras.Variable], variable: keras.Variable) -> int:
    return next(i for i, v in enumerate(variables) if v is variable)


def _metrics_at_start(model: keras.Model, metrics: list, batch: Batch, loss: Any, y_pred: Any):
    """The logs and new metric values for the start point, as Keras's own JAX step takes them."""
    mapping = list(zip(model.metrics_variables, metrics, strict=True))
    with keras.StatelessScope(state_mapping=mapping) as scope:
        loss_metric = next(metric for metric in model.metrics if metric.name == "loss")
        size = next(i for i in keras.tree.flatten(batch.x) if i is not None).shape[0]
        loss_metric.update_state(loss, sample_weight=size)
        logs = dict(model.compute_metrics(batch.x, batch.y, y_pred, batch.sample_weight))
    new = [scope.get_current_value(v) for v in model.metrics_variables]
    return logs, [old if value is None else value for value, old in zip(new, metrics, strict=True)]


def _select(condition: Any, new: list, old: list) -> list:
    """``new`` where the scalar ``condition`` holds, else ``old``, value by value."""
    if condition is None:
        return new
    return [ops.where(condition, n, o) for n, o in zip(new, old, strict=True)]


def stateless_multi_gradient_step(
    model: keras.Model, state: Sequence[list], data: Any, rule: StatelessRule
) -> tuple[dict, tuple]:
    """One training step of ``model`` whose direction comes from ``rule``: ``(logs, new state)``.

    A pure function of ``state`` and ``data`` (Keras's JAX ``train_step`` contract), jitted by
    ``fit``; the logs describe the start point, as a standard step's.
    """
    state = TrainState(*map(list, state))
    x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
    batch = Batch(x, y, sample_weight)
    optimizer = model.optimizer
    rate = current_learning_rate(optimizer, state.optimizer)
    trial = StatelessTrialPoints(model, batch, state, rate)
    (loss, y_pred, non_trainable, metrics), gradients = trial.forward(state.trainable)
    start = StepStart(batch, state.trainable, state.non_trainable, non_trainable, gradients)

    direction = rule(trial, start)
    trainable, optimizer_values = optimizer.stateless_apply(
        state.optimizer, direction.gradients, state.trainable
    )
    trainable = _select(direction.apply_if, list(trainable), state.trainable)
    optimizer_values = _select(direction.apply_if, list(optimizer_values), state.optimizer)
    for variable, value in direction.updates:
        non_trainable[_index_of(model.non_trainable_variables, variable)] = value

    logs, metrics = _metrics_at_start(model, metrics, batch, loss, y_pred)
    logs.update(direction.logs)
    return logs, (trainable, non_trainable, optimizer_values, metrics)


def keep_state_of_failed_step(model: keras.Model, state: Sequence[list]) -> None:
    """Before a failed step raises: the model keeps the state that step returned.

    ``fit`` writes its last state back into the variables when it stops; the state it holds is
    the one *before* the failed step, already donated to that step and deleted.
    """
    state = TrainState(*state)
    groups = (
        (model.trainable_variables, state.trainable),
        (model.non_trainable_variables, state.non_trainable),
        (model.optimizer.variables, state.optimizer),
        (model.metrics_variables, state.metrics),
    )
    for variables, values in groups:
        for variable, value in zip(variables, values, strict=True):
            variable.assign(value)
    hand_state_to_fit(model, state)


def make_train_function(model: keras.Model, rule: StatelessRule) -> Callable:
    """Keras's JAX train function ``(state, iterator) -> (logs, state)`` around ``rule``'s step.

    For the intrusive route. Jitted as Keras's own ``make_train_function`` jits its step (the
    input state donated) unless the model runs eagerly or was compiled with ``jit_compile=False``.
    """

    def step(state: Sequence[list], data: Any) -> tuple[dict, tuple]:
        return stateless_multi_gradient_step(model, state, data, rule)

    if not model.run_eagerly and model.jit_compile:
        step = jax.jit(step, donate_argnums=0)
    return keras_train_function(model, step)
