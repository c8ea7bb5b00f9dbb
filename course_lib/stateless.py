"""Run code that assigns Keras variables the way each backend's trainer compiles it (appendix A2).

TensorFlow compiles a training step into a graph in which ``variable.assign`` is an operation
that writes the variable when it runs. JAX compiles pure functions only: its trainer hands the
variables' values in, runs the step under a ``keras.StatelessScope`` that records every
``assign`` as a new value instead of writing it, and hands the new values back. That is why an
``ops.cond`` whose branch assigns works on TensorFlow and fails on JAX, and why the JAX form of a
decision computes both outcomes and selects one with ``ops.where``.

:func:`compiled` gives the same code both treatments, so a notebook or a check can run a
learner's step as ``fit`` would run it on the current backend.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import keras

__all__ = ["compiled"]


def compiled(fn: Callable[..., None], variables: Sequence[keras.Variable]) -> Callable[..., None]:
    """``fn(*args)`` compiled as this backend's trainer compiles a step that writes ``variables``.

    TensorFlow: ``tf.function(fn)``; the assignments write the variables. JAX: ``jax.jit`` of
    a pure function of the variables' values, with ``fn`` run under a ``keras.StatelessScope``;
    the values it computed are written back afterwards, outside the compiled function. On JAX,
    ``variables`` must list every variable ``fn`` assigns.
    """
    variables = list(variables)
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        return tf.function(fn)

    import jax

    @jax.jit
    def pure(values: list[Any], *args: Any) -> list[Any]:
        mapping = list(zip(variables, values, strict=True))
        with keras.StatelessScope(state_mapping=mapping) as scope:
            fn(*args)
        return [scope.get_current_value(v) for v in variables]

    def run(*args: Any) -> None:
        new_values = pure([v.value for v in variables], *args)
        for variable, value in zip(variables, new_values, strict=True):
            variable.assign(value)

    return run
