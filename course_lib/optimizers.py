"""Minimal SGD optimizers written against the Keras 3 optimizer API (taught in notebook 02).

Two small classes show the whole contract a Keras 3 optimizer has to meet:

* :class:`PlainSGD`: only ``update_step`` (p ← p - η g); no slot variables.
* :class:`MomentumSGD`: ``build`` creates one velocity slot per trainable variable,
  ``update_step`` updates it (classic or Nesterov momentum), ``get_config`` adds the two
  hyperparameters so a saved model restores the same optimizer.

Both perform the very same tensor operations, in the same order, as ``keras.optimizers.SGD``,
so their weights after ``fit`` are bit-identical to Keras's at the same ``jit_compile`` setting
(``tests/test_optimizers.py`` proves it). Everything around ``update_step`` (building on the
first call, clipping, weight decay, the iteration counter) is inherited from Keras's
``BaseOptimizer.apply``, which notebook 01 reads.

Hyperparameters are checked when the optimizer is made, with a message that names the argument,
because a NaN learning rate or a momentum of 1 would otherwise train silently into garbage.
"""

from __future__ import annotations

from course_lib.keras_internals import variable_index
from course_lib.validation import is_number

import math
from typing import Any

import keras
from keras import ops

__all__ = ["MomentumSGD", "PlainSGD", "validate_learning_rate", "validate_momentum"]


def validate_learning_rate(learning_rate: Any) -> Any:
    """Return ``learning_rate`` as Keras accepts it, or raise a clear error.

    A number must be finite and non-negative (it is converted to ``float``: Keras itself rejects
    the integer ``1``). A ``LearningRateSchedule`` or a callable is passed through unchanged; it
    is evaluated only during training.
    """
    if isinstance(learning_rate, keras.optimizers.schedules.LearningRateSchedule) or callable(
        learning_rate
    ):
        return learning_rate
    if not is_number(learning_rate):
        raise TypeError(
            f"learning_rate={learning_rate!r} must be a number, a "
            "keras.optimizers.schedules.LearningRateSchedule or a callable; pass e.g. 0.01."
        )
    value = float(learning_rate)
    if not math.isfinite(value) or value < 0.0:
        raise ValueError(
            f"learning_rate={learning_rate!r} must be a finite number >= 0; pass e.g. 0.01."
        )
    return value


def validate_momentum(momentum: Any, nesterov: Any) -> tuple[float, bool]:
    """Return ``(momentum, nesterov)`` checked: momentum in [0, 1), Nesterov only with momentum.

    A momentum of 1 or more never forgets a gradient, so the velocity grows without bound.
    Nesterov's look-ahead with momentum 0 is plain SGD, which is almost surely not what the
    caller meant.
    """
    if not is_number(momentum):
        raise TypeError(f"momentum={momentum!r} must be a number in [0, 1); pass e.g. 0.9.")
    value = float(momentum)
    if not math.isfinite(value) or not 0.0 <= value < 1.0:
        raise ValueError(
            f"momentum={momentum!r} must lie in [0, 1) (0 is plain SGD); pass e.g. 0.9."
        )
    if not isinstance(nesterov, bool):
        raise TypeError(f"nesterov={nesterov!r} must be True or False.")
    if nesterov and value == 0.0:
        raise ValueError(
            "nesterov=True needs a momentum > 0 (with momentum=0 it is plain SGD); "
            "pass e.g. momentum=0.9, or nesterov=False."
        )
    return value, nesterov


@keras.saving.register_keras_serializable(package="course_lib")
class PlainSGD(keras.optimizers.Optimizer):
    """Gradient descent without momentum: p ← p - η g, the Euler step of the gradient flow.

    Equal, bit for bit, to ``keras.optimizers.SGD(learning_rate)``. The inherited keyword
    arguments (``clipnorm``, ``weight_decay``, ``gradient_accumulation_steps``...) work, since
    ``BaseOptimizer.apply`` handles them before calling :meth:`update_step`.
    """

    def __init__(self, learning_rate: Any = 0.01, name: str = "plain_sgd", **kwargs: Any) -> None:
        super().__init__(learning_rate=validate_learning_rate(learning_rate), name=name, **kwargs)

    def update_step(self, gradient: Any, variable: Any, learning_rate: Any) -> None:
        """p ← p - η g, for one variable (``apply`` loops over them)."""
        # Cast as Keras's SGD does, so float16 variables and float32 learning rates mix.
        learning_rate = ops.cast(learning_rate, variable.dtype)
        gradient = ops.cast(gradient, variable.dtype)
        self.assign_sub(variable, ops.multiply(gradient, learning_rate))

    # get_config: the base class already stores learning_rate and the common arguments.


@keras.saving.register_keras_serializable(package="course_lib")
class MomentumSGD(keras.optimizers.Optimizer):
    """SGD with classic or Nesterov momentum, with one velocity slot per variable.

    Classic:  v ← μ v - η g;  p ← p + v.
    Nesterov: v ← μ v - η g;  p ← p + μ v - η g  (a step from the look-ahead point).

    Equal, bit for bit, to ``keras.optimizers.SGD(learning_rate, momentum, nesterov)``.
    ``momentum=0`` is allowed and, as in Keras, creates no velocity and takes the plain step:
    under XLA the velocity route (0·v - η g, then p + v) may round differently from p - η g.
    """

    def __init__(
        self,
        learning_rate: Any = 0.01,
        momentum: float = 0.9,
        nesterov: bool = False,
        name: str = "momentum_sgd",
        **kwargs: Any,
    ) -> None:
        momentum, nesterov = validate_momentum(momentum, nesterov)
        super().__init__(learning_rate=validate_learning_rate(learning_rate), name=name, **kwargs)
        self.momentum = momentum
        self.nesterov = nesterov

    def build(self, variables: list[Any]) -> None:
        """Create the velocity slots (zeros shaped like each variable) unless momentum is 0."""
        if self.built:
            return
        super().build(variables)
        self.velocities = []
        if self.momentum != 0.0:
            # One slot per trainable variable, found again with variable_index(self, variable).
            self.velocities = self.add_optimizer_variables(variables, "velocity")

    def update_step(self, gradient: Any, variable: Any, learning_rate: Any) -> None:
        """Update the velocity of ``variable``, then the variable itself."""
        learning_rate = ops.cast(learning_rate, variable.dtype)
        gradient = ops.cast(gradient, variable.dtype)
        if self.momentum == 0.0:
            self.assign_sub(variable, ops.multiply(gradient, learning_rate))
            return
        momentum = ops.cast(self.momentum, variable.dtype)
        velocity = self.velocities[variable_index(self, variable)]
        self.assign(
            velocity,
            ops.subtract(ops.multiply(velocity, momentum), ops.multiply(gradient, learning_rate)),
        )
        if self.nesterov:
            self.assign_add(
                variable,
                ops.subtract(
                    ops.multiply(velocity, momentum), ops.multiply(gradient, learning_rate)
                ),
            )
        else:
            self.assign_add(variable, velocity)

    def get_config(self) -> dict[str, Any]:
        """The base config plus momentum and nesterov: without them a reload resets them."""
        config = super().get_config()
        config.update({"momentum": self.momentum, "nesterov": self.nesterov})
        return config
