"""The cross-replica helpers on TensorFlow: ``tf.distribute`` (see :mod:`course_lib.distribution`).

Under ``tf.distribute.MirroredStrategy`` Keras runs the training step once per replica, each on
its share of the batch, and TensorFlow cannot all-reduce inside control flow that runs in a
replica context. So a decision runs once, in cross-replica context (``merge_call``), and from
there updates every replica's copy of a variable or runs a function on every replica. This is
the pattern of Keras's own ``LossScaleOptimizer`` for its "apply only if finite" step, with the
public ``merge_call``. On one device the same code runs: ``merge_call`` then calls the function
in the default strategy's cross-replica context, and every helper reduces to a plain call.

A decision is ``ops.cond`` (``tf.cond``): only the branch that is taken runs, so a branch may
assign variables.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import tensorflow as tf
from keras import ops

__all__ = [
    "first_replica",
    "for_each_replica",
    "global_loss",
    "in_cross_replica_context",
    "replicas_in_sync",
    "require_replica_context",
    "run_if",
    "sum_replicas",
    "update",
]


def replicas_in_sync() -> int:
    return tf.distribute.get_strategy().num_replicas_in_sync


def require_replica_context(where: str) -> None:
    if tf.distribute.in_cross_replica_context():
        raise ValueError(
            f"{where} must be called in a replica context (inside strategy.run or model.fit), "
            "not in a cross-replica context."
        )


def sum_replicas(values: Sequence[Any]) -> list[Any]:
    values = list(values)
    context = tf.distribute.get_replica_context()
    if context is None or replicas_in_sync() == 1:
        return values
    present = [v for v in values if v is not None]
    reduced = iter(context.all_reduce(tf.distribute.ReduceOp.SUM, present))
    return [None if v is None else next(reduced) for v in values]


def global_loss(loss: Any) -> Any:
    replicas = replicas_in_sync()
    if replicas == 1:
        return loss
    return loss * tf.cast(replicas, loss.dtype)


def in_cross_replica_context(fn: Callable[..., Any], *args: Any) -> Any:
    return tf.distribute.get_replica_context().merge_call(fn, args=args)


def for_each_replica(
    distribution: tf.distribute.Strategy, fn: Callable[..., Any], *args: Any
) -> Any:
    return distribution.extended.call_for_each_replica(fn, args=args)


def first_replica(distribution: tf.distribute.Strategy, values: Any) -> Any:
    return tf.nest.map_structure(
        lambda value: distribution.experimental_local_results(value)[0], values
    )


def update(
    distribution: tf.distribute.Strategy, variable: Any, fn: Callable[..., Any], *args: Any
) -> None:
    distribution.extended.update(variable.value, fn, args=args, group=False)


def run_if(condition: Any, fn: Callable[[], None], written: Sequence[Any]) -> None:
    """``tf.cond``: the branch not taken never runs, so ``written`` need not be listed."""
    del written
    ops.cond(condition, fn, lambda: None)
