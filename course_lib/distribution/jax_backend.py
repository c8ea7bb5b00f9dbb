"""The cross-replica helpers on JAX: ``keras.distribution`` (see :mod:`course_lib.distribution`).

Under ``keras.distribution.DataParallel`` Keras's JAX trainer compiles *one* training step for
the global batch, sharded over the devices (and processes); XLA's SPMD partitioner inserts the
all-reduces. So every value the step computes is already the whole batch's: a gradient needs
no summing, the loss no rescaling, and a decision is taken once simply because there is one
program. Those helpers are plain calls here.

What differs is the decision itself. The trainer applies the optimizer *statelessly*: inside a
traced function, ``optimizer.stateless_apply`` records every ``assign`` as a new value instead
of writing it. A ``jax.lax.cond`` (``ops.cond``) whose branches assign variables then fails,
since the assignments are side effects of a traced branch. :func:`run_if` does what Keras's own
JAX optimizer does for its gradient accumulation: run the update unconditionally, then select,
variable by variable, the new value or the old one with ``ops.where``. Both branches are
computed, and that is harmless because what is selected are pure values, not side effects
(the opposite of the ``K.switch`` trap of notebook 03, where the assignments themselves ran).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

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
    """1: the step is one program over the global batch, each value the whole batch's."""
    return 1


def require_replica_context(where: str) -> None:
    """Nothing to check: JAX has no replica and cross-replica contexts."""
    del where


def sum_replicas(values: Sequence[Any]) -> list[Any]:
    return list(values)


def global_loss(loss: Any) -> Any:
    return loss


def in_cross_replica_context(fn: Callable[..., Any], *args: Any) -> Any:
    return fn(None, *args)


def for_each_replica(distribution: Any, fn: Callable[..., Any], *args: Any) -> Any:
    del distribution
    return fn(*args)


def first_replica(distribution: Any, values: Any) -> Any:
    del distribution
    return values


def update(distribution: Any, variable: Any, fn: Callable[..., Any], *args: Any) -> None:
    del distribution
    fn(variable, *args)


def run_if(condition: Any, fn: Callable[[], None], written: Sequence[Any]) -> None:
    """Run ``fn``, then keep its writes only where ``condition`` holds (``ops.where``).

    ``written`` must hold every variable ``fn`` assigns: a write to any other variable would
    stay, whatever the condition. Old values are read before ``fn`` runs; JAX arrays are
    immutable, so they are snapshots by value.
    """
    unique = list({id(v): v for v in written}.values())
    before = [v.value for v in unique]
    fn()
    for variable, old in zip(unique, before, strict=True):
        variable.assign(ops.where(condition, variable.value, old))
