"""Helpers for training steps that take several gradients per mini-batch (notebooks 04–06).

A Keras optimizer's ``update_step`` sees one gradient. Heun and Runge–Kutta (notebooks 04–05)
and SAM (notebook 06) need the gradient at other points too, on the *same* mini-batch, so they
own the training step and share these pieces:

* :func:`forward`: the loss and its gradient at the current weights, as Keras's step takes them;
* :func:`snapshot` and :func:`assign_all`: move the weights to a trial point and back *by value*
  (a snapshot that kept references would "restore" weights that have already moved);
* :func:`sum_replicas`: under ``tf.distribute.MirroredStrategy`` each replica's gradient is a
  partial sum, but a trial point must be built from the whole batch's gradient;
* :func:`batch_size_of`: the weight Keras gives a batch's loss in the logged running mean.

The idea of taking over the training step comes from Su Jianlin, "Keras之小众需求:自定义优化器"
(kexue.fm, 2018), which built Keras 2's ``model.train_function`` by hand.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras
import tensorflow as tf


def forward(model: keras.Model, x: Any, y: Any, sample_weight: Any, variables: list):
    """Predictions, loss and its gradient with respect to ``variables`` at the current weights."""
    with tf.GradientTape() as tape:
        if model._call_has_training_arg:
            y_pred = model(x, training=True)
        else:
            y_pred = model(x)
        loss = model._compute_loss(
            x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=True
        )
    gradients = tape.gradient(loss, variables)
    return y_pred, loss, gradients


def assign_all(variables: Sequence, values: Sequence) -> None:
    """Set each variable to the matching value."""
    for variable, value in zip(variables, values, strict=True):
        variable.assign(value)


def snapshot(variables: Sequence) -> list[tf.Tensor]:
    """Copies of the variables' current values (by value: later assigns don't change them)."""
    return [tf.identity(v.value) for v in variables]


def sum_replicas(gradients: list) -> list:
    """All-reduce (sum) per-replica gradients so that every replica holds the batch's gradient."""
    context = tf.distribute.get_replica_context()
    strategy = tf.distribute.get_strategy()
    if context is None or strategy.num_replicas_in_sync == 1:
        return gradients
    present = [g for g in gradients if g is not None]
    reduced = iter(context.all_reduce(tf.distribute.ReduceOp.SUM, present))
    return [None if g is None else next(reduced) for g in gradients]


def batch_size_of(x: Any) -> tf.Tensor:
    """The number of examples in the batch ``x`` (its first non-empty input's first axis)."""
    return tf.shape(next(i for i in tf.nest.flatten(x) if i is not None))[0]


__all__ = ["assign_all", "batch_size_of", "forward", "snapshot", "sum_replicas"]
