"""Cross-replica helpers shared by the wrappers and the training steps (notebooks 03, 05 and 07).

Under ``tf.distribute.MirroredStrategy`` Keras runs the training step once per replica, each on
its share of the batch. Three mechanisms of the course need more than that:

* a *trial point* (Heun, Runge–Kutta, SAM) is built from the whole batch's gradient, but each
  replica holds only its part: :func:`sum_replicas` all-reduces it first;
* a *decision* (SoftBatch's "is the group complete?", Lookahead's "synchronise now?", the
  adaptive step's accept/reject loop) is data-dependent control flow around variables that every
  replica holds a copy of, and TensorFlow cannot all-reduce inside control flow that runs in a
  replica context. So the decision runs once, in cross-replica context
  (:func:`in_cross_replica_context`), and from there updates every copy (:func:`update`) or runs
  a function on every replica (:func:`for_each_replica`). This is the pattern of Keras's own
  ``LossScaleOptimizer`` for its "apply only if finite" step, with the public ``merge_call``;
* the logged loss is the global batch's, while each replica's loss is divided by the number of
  replicas: :func:`global_loss` multiplies it back, as Keras's own step does.

On one device the same code runs: ``merge_call`` then calls the function in the default
strategy's cross-replica context, and every helper reduces to a plain call. Keeping these few
functions in one module is what lets another backend supply its own versions.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import tensorflow as tf

__all__ = [
    "first_replica",
    "for_each_replica",
    "global_loss",
    "in_cross_replica_context",
    "replicas_in_sync",
    "require_replica_context",
    "sum_replicas",
    "update",
]


def replicas_in_sync() -> int:
    """How many replicas share each batch (1 without a distribution strategy)."""
    return tf.distribute.get_strategy().num_replicas_in_sync


def require_replica_context(where: str) -> None:
    """Raise unless called in a replica context (inside ``strategy.run`` or ``model.fit``)."""
    if tf.distribute.in_cross_replica_context():
        raise ValueError(
            f"{where} must be called in a replica context (inside strategy.run or model.fit), "
            "not in a cross-replica context."
        )


def sum_replicas(values: Sequence[Any]) -> list[Any]:
    """All-reduce (sum) per-replica values, so that every replica holds the batch's total.

    ``None`` entries (variables without a gradient) stay ``None``. Called in a replica context;
    on one device the values come back unchanged.
    """
    values = list(values)
    context = tf.distribute.get_replica_context()
    if context is None or replicas_in_sync() == 1:
        return values
    present = [v for v in values if v is not None]
    reduced = iter(context.all_reduce(tf.distribute.ReduceOp.SUM, present))
    return [None if v is None else next(reduced) for v in values]


def global_loss(loss: Any) -> Any:
    """The loss of the whole batch from one replica's loss (which is divided by the replicas)."""
    replicas = replicas_in_sync()
    if replicas == 1:
        return loss
    return loss * tf.cast(replicas, loss.dtype)


def in_cross_replica_context(fn: Callable[..., Any], *args: Any) -> Any:
    """Call ``fn(distribution, *args)`` once for all replicas, in cross-replica context.

    Called in a replica context. Per-replica ``args`` reach ``fn`` as per-replica values; pass
    them on to :func:`for_each_replica`, or read replica 0's with :func:`first_replica`.
    """
    return tf.distribute.get_replica_context().merge_call(fn, args=args)


def for_each_replica(
    distribution: tf.distribute.Strategy, fn: Callable[..., Any], *args: Any
) -> Any:
    """Run ``fn(*args)`` on every replica, from cross-replica context.

    Per-replica ``args`` are unwrapped: each replica sees its own part.
    """
    return distribution.extended.call_for_each_replica(fn, args=args)


def first_replica(distribution: tf.distribute.Strategy, values: Any) -> Any:
    """Replica 0's part of per-replica ``values`` that are equal on every replica."""
    return tf.nest.map_structure(
        lambda value: distribution.experimental_local_results(value)[0], values
    )


def update(
    distribution: tf.distribute.Strategy, variable: Any, fn: Callable[..., Any], *args: Any
) -> None:
    """Apply ``fn(copy, *args)`` to every replica's copy of ``variable`` (cross-replica context).

    ``variable`` is a Keras variable; per-replica ``args`` are unwrapped for each copy.
    """
    distribution.extended.update(variable.value, fn, args=args, group=False)
