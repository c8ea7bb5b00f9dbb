"""Cross-replica helpers shared by the wrappers and the training steps (notebooks 03, 05, 07, A2).

Data-parallel training splits each batch across devices. Three mechanisms of the course need
more than a plain step then:

* a *trial point* (Heun, Runge–Kutta, SAM) is built from the whole batch's gradient, but a
  replica may hold only its part: :func:`sum_replicas` all-reduces it first;
* a *decision* (SoftBatch's "is the group complete?", Lookahead's "synchronise now?", the
  adaptive step's accept/reject loop) is data-dependent control flow around variables: it must
  be taken once for all replicas (:func:`in_cross_replica_context`, :func:`update`,
  :func:`for_each_replica`), and its branch must write only where it is taken (:func:`run_if`);
* the logged loss is the global batch's: :func:`global_loss`.

These few functions are the whole contract between the mechanisms and a Keras backend; each
backend supplies them in a module of its own:

* TensorFlow, ``tf.distribute.MirroredStrategy``: :mod:`.tensorflow_backend` (replica and
  cross-replica contexts, ``merge_call``; a decision is ``tf.cond``);
* JAX, ``keras.distribution.DataParallel`` over devices and processes: :mod:`.jax_backend`
  (one SPMD program sees the global batch, so most helpers are plain calls; a decision computes
  its update and selects new or old values with ``ops.where``, because the JAX trainer applies
  the optimizer statelessly and a traced branch cannot assign variables).

Keras fixes its backend when it is first imported (``KERAS_BACKEND``), so the implementation is
chosen once, here. On one device every helper reduces to a plain call on both backends.
"""

from __future__ import annotations

from course_lib.environment import backend_module

from collections.abc import Callable, Sequence
from typing import Any

__all__ = [
    "BACKENDS",
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

#: The Keras backends course_lib's wrappers and training steps support, and their modules.
BACKENDS: dict[str, str] = {
    "tensorflow": "course_lib.distribution.tensorflow_backend",
    "jax": "course_lib.distribution.jax_backend",
}


_backend = backend_module(BACKENDS, "optimizer wrappers and training steps")


def replicas_in_sync() -> int:
    """How many replicas each hold only their share of a step's gradient.

    TensorFlow: the strategy's replicas (1 without one). JAX: 1, also under ``DataParallel``,
    since the step is one program over the global batch.
    """
    return _backend.replicas_in_sync()


def require_replica_context(where: str) -> None:
    """Raise unless called in a replica context (inside ``strategy.run`` or ``model.fit``)."""
    _backend.require_replica_context(where)


def sum_replicas(values: Sequence[Any]) -> list[Any]:
    """All-reduce (sum) per-replica values, so that every replica holds the batch's total.

    ``None`` entries (variables without a gradient) stay ``None``. Called in a replica context;
    where each value is already the batch's (one device, JAX), they come back unchanged.
    """
    return _backend.sum_replicas(values)


def global_loss(loss: Any) -> Any:
    """The loss of the whole batch from one replica's loss (which is divided by the replicas)."""
    return _backend.global_loss(loss)


def in_cross_replica_context(fn: Callable[..., Any], *args: Any) -> Any:
    """Call ``fn(distribution, *args)`` once for all replicas, in cross-replica context.

    Called in a replica context. Per-replica ``args`` reach ``fn`` as per-replica values; pass
    them on to :func:`for_each_replica`, or read replica 0's with :func:`first_replica`.
    ``distribution`` is the backend's handle for the other helpers (on JAX: ``None``).
    """
    return _backend.in_cross_replica_context(fn, *args)


def for_each_replica(distribution: Any, fn: Callable[..., Any], *args: Any) -> Any:
    """Run ``fn(*args)`` on every replica, from cross-replica context.

    Per-replica ``args`` are unwrapped: each replica sees its own part.
    """
    return _backend.for_each_replica(distribution, fn, *args)


def first_replica(distribution: Any, values: Any) -> Any:
    """Replica 0's part of per-replica ``values`` that are equal on every replica."""
    return _backend.first_replica(distribution, values)


def update(distribution: Any, variable: Any, fn: Callable[..., Any], *args: Any) -> None:
    """Apply ``fn(copy, *args)`` to every replica's copy of ``variable`` (cross-replica context).

    ``variable`` is a Keras variable; per-replica ``args`` are unwrapped for each copy.
    """
    _backend.update(distribution, variable, fn, *args)


def run_if(condition: Any, fn: Callable[[], None], written: Sequence[Any]) -> None:
    """Let ``fn``'s assignments take effect only where the scalar ``condition`` is true.

    ``written`` lists every variable ``fn`` may assign. TensorFlow runs ``fn`` under
    ``ops.cond``, so it runs only when the condition holds. JAX runs it always and then sets
    each of ``written`` to ``ops.where(condition, new value, old value)``: the same result,
    and the only form a stateless, traced optimizer step allows.
    """
    _backend.run_if(condition, fn, written)
