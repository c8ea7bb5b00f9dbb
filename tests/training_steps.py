"""A hand-written training step on the current Keras backend, for tests that watch single steps.

``fit`` runs many steps between two looks at the variables; these tests need one micro-batch at
a time. :func:`manual_step` gives ``step(x, y)``: the gradient of the mean squared error, then
``optimizer.apply``, written each backend's way:

* TensorFlow: ``tf.GradientTape``, ``optimizer.apply`` on the variables, eagerly or inside a
  ``tf.function``;
* JAX: ``jax.grad`` of ``model.stateless_call``; eagerly ``optimizer.apply`` on the variables,
  compiled ``jax.jit`` around ``optimizer.stateless_apply`` (what Keras's JAX trainer does), the
  new values then written back to the variables.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import keras


def manual_step(
    model: keras.Model, optimizer: keras.optimizers.Optimizer, compiled: bool
) -> Callable[[Any, Any], None]:
    """``step(x, y)``: one gradient of the mean squared error, applied by ``optimizer``."""
    if keras.backend.backend() == "tensorflow":
        return _tensorflow_step(model, optimizer, compiled)
    return _jax_step(model, optimizer, compiled)


def _tensorflow_step(model, optimizer, compiled):
    import tensorflow as tf

    variables = model.trainable_variables

    def step(x, y):
        with tf.GradientTape() as tape:
            loss = keras.ops.mean(keras.losses.mean_squared_error(y, model(x)))
        optimizer.apply(tape.gradient(loss, variables), variables)

    return tf.function(step) if compiled else step


def _jax_step(model, optimizer, compiled):
    import jax

    variables = model.trainable_variables
    frozen = [v.value for v in model.non_trainable_variables]

    def loss(trainable, x, y):
        y_pred, _ = model.stateless_call(trainable, frozen, x)
        return keras.ops.mean(keras.losses.mean_squared_error(y, y_pred))

    if not compiled:

        def step(x, y):
            grads = jax.grad(loss)([v.value for v in variables], x, y)
            optimizer.apply(grads, variables)

        return step

    @jax.jit
    def stateless(trainable, optimizer_values, x, y):
        grads = jax.grad(loss)(trainable, x, y)
        return optimizer.stateless_apply(optimizer_values, grads, trainable)

    def step(x, y):
        trainable, optimizer_values = stateless(
            [v.value for v in variables], [v.value for v in optimizer.variables], x, y
        )
        for variable, value in zip(variables, trainable, strict=True):
            variable.assign(value)
        for variable, value in zip(optimizer.variables, optimizer_values, strict=True):
            variable.assign(value)

    return step
