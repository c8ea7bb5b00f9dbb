"""The part of a multi-gradient training step that is the same on every backend.

Each backend's skeleton (:mod:`.tensorflow_backend`, :mod:`.jax_backend`) takes the first pass
at p its own way, builds the :class:`~.records.StepStart` and a
:class:`~.records.TrialPoints`, and then calls :func:`take_step`, which

1. adds the loss at p to the running mean that ``fit`` logs, as Keras's own step does;
2. runs the method: without a controller, the rule's direction for a step of the learning
   rate's size, applied by the compiled optimizer (:func:`apply_direction`); with one, the
   controller, which applies the step it accepts;
3. computes the compiled metrics from the first pass's predictions.

:func:`forward` is the pass itself, Keras's own forward pass and compiled loss, which each
backend runs under its own gradient machinery. Under a ``LossScaleOptimizer`` (mixed precision)
every pass differentiates the scaled loss and hands on unscaled gradients, and a step with a
gradient that is not finite is skipped as a whole (:mod:`.loss_scaling`).
"""

from __future__ import annotations

from course_lib.distribution import global_loss, replicas_in_sync
from course_lib.multi_gradient_step.loss_scaling import (
    RecordedTrialPoints,
    all_finite,
    apply_unless_skipped,
    kept_state,
    skip_logs,
)
from course_lib.multi_gradient_step.records import Batch, Method, StepStart, TrialPoints

from collections.abc import Sequence
from typing import Any

import keras
from keras import ops

__all__ = ["apply_direction", "forward", "take_step"]


def forward(model: keras.Model, batch: Batch) -> tuple[Any, Any]:
    """Predictions and loss at the model's current weights, as Keras's own training step."""
    y_pred = model(batch.x, training=True)
    loss = model.compute_loss(
        x=batch.x, y=batch.y, y_pred=y_pred, sample_weight=batch.sample_weight, training=True
    )
    return y_pred, loss


def apply_direction(model: keras.Model, gradients: Sequence[Any]) -> None:
    """The compiled optimizer applies the whole batch's direction ``gradients``.

    Under a TensorFlow distribution strategy the optimizer sums what the replicas hand it, so
    each hands its share, 1/replicas of the direction (with 2 replicas, exactly half). A
    ``LossScaleOptimizer``'s inner optimizer applies the direction, which is already unscaled;
    the skeleton decides whether the step is taken (:func:`.loss_scaling.apply_unless_skipped`).
    """
    replicas = replicas_in_sync()
    if replicas > 1:
        gradients = [None if g is None else g / replicas for g in gradients]
    optimizer = model.optimizer
    if isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
        optimizer = optimizer.inner_optimizer
    optimizer.apply_gradients(zip(gradients, model.trainable_variables, strict=True))


def _record_loss(model: keras.Model, batch: Batch, loss: Any) -> None:
    """The loss at p joins the mean that ``fit`` logs, weighted by the batch's size."""
    loss_metric = next(metric for metric in model.metrics if metric.name == "loss")
    size = ops.shape(next(i for i in keras.tree.flatten(batch.x) if i is not None))[0]
    loss_metric.update_state(global_loss(loss), sample_weight=size)


def take_step(
    model: keras.Model,
    method: Method,
    trial: TrialPoints,
    start: StepStart,
    y_pred: Any,
    loss: Any,
) -> dict[str, Any]:
    """The step from the first pass on: the method's step, and the logs at the start point."""
    _record_loss(model, start.batch, loss)
    if method.controller is None and start.loss_scale is None:
        direction = method.rule(trial, start, start.learning_rate)
        trial.restore(start)
        apply_direction(model, direction.gradients)
        added = direction.logs
    elif method.controller is None:
        added = _take_scaled_step(model, method, trial, start)
    else:
        added = method.controller.step(method.rule, trial, start, model)
    batch = start.batch
    logs = dict(model.compute_metrics(batch.x, batch.y, y_pred, sample_weight=batch.sample_weight))
    logs.update(added)
    return logs


def _take_scaled_step(
    model: keras.Model, method: Method, trial: TrialPoints, start: StepStart
) -> dict[str, Any]:
    """The rule's step under loss scaling: taken only if every gradient of the step is finite."""
    recorded = RecordedTrialPoints(trial)
    direction = method.rule(recorded, start, start.learning_rate)
    finite = all_finite(model.optimizer, start.gradients, *recorded.taken, direction.gradients)
    trial.restore(kept_state(start, finite))
    apply_unless_skipped(
        model, direction.gradients, finite, lambda gradients: apply_direction(model, gradients)
    )
    return {**direction.logs, **skip_logs(finite)}
