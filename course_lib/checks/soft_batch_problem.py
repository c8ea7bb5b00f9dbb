"""The small soft-batch problem that notebook 03's check and appendix A2 (cells, check) share.

Eight micro-batch gradients of one scalar weight, accumulated four at a time: the weight must
move only on every fourth micro-batch, by the learning rate times the mean of the four. With
momentum (the exercises of 03 and A2), the velocity too changes only on those micro-batches.
NumPy only: it imports neither Keras nor TensorFlow, so it is the same yardstick on either
backend (TensorFlow in 03, JAX in A2), and importing it chooses no backend.
"""

from __future__ import annotations

from course_lib.checks import Incorrect, expect_close

from collections.abc import Callable
from typing import Any

import numpy as np

#: The micro-batch gradients, fed one per micro-batch.
GRADIENTS = (1.0, 3.0, -2.0, 6.0, 0.5, 0.5, 1.5, 1.5)
STEPS = 4
LEARNING_RATE = 0.1
#: The momentum of the soft-batch momentum exercise (notebook 03).
MOMENTUM = 0.9


def expected_trajectory() -> list[float]:
    """The variable after each micro-batch: it moves only on every 4th, by lr * mean."""
    value, trajectory = 1.0, []
    for k in range(len(GRADIENTS)):
        if (k + 1) % STEPS == 0:
            value -= LEARNING_RATE * float(np.mean(GRADIENTS[k + 1 - STEPS : k + 1]))
        trajectory.append(value)
    return trajectory


def expected_momentum_trajectory(momentum: float = MOMENTUM) -> tuple[list[float], list[float]]:
    """Weight and velocity after each micro-batch of soft-batch SGD with momentum.

    On every 4th micro-batch, and only then: velocity ← momentum·velocity + mean of the four
    gradients, weight ← weight − lr·velocity (Keras's SGD with momentum, written with a
    velocity of the opposite sign). Weight 1 and velocity 0 at the start.
    """
    weight, velocity, weights, velocities = 1.0, 0.0, [], []
    for k in range(len(GRADIENTS)):
        if (k + 1) % STEPS == 0:
            velocity = momentum * velocity + float(np.mean(GRADIENTS[k + 1 - STEPS : k + 1]))
            weight -= LEARNING_RATE * velocity
        weights.append(weight)
        velocities.append(velocity)
    return weights, velocities


def judge_soft_momentum_step(
    run_micro_batch: Callable[[float], None],
    weight: Any,
    velocity: Any,
    accumulator: Any,
    count: Any,
) -> None:
    """Feed :data:`GRADIENTS` to ``run_micro_batch`` one by one and judge the four variables.

    ``run_micro_batch(gradient)`` runs the learner's soft-batch momentum step once, compiled as
    the notebook compiles it (a ``tf.function``, a JAX-compiled function); the variables are
    read with ``.numpy()`` after each. Weight and velocity must stay bit-identical between
    updates, follow :func:`expected_momentum_trajectory`, and end with the accumulator and
    counter reset.
    """
    weights, velocities = [], []
    for gradient in GRADIENTS:
        run_micro_batch(gradient)
        weights.append(float(weight.numpy()))
        velocities.append(float(velocity.numpy()))
    before = list(zip([1.0, *weights[:-1]], [0.0, *velocities[:-1]], strict=True))
    for k, ((w0, v0), w1, v1) in enumerate(zip(before, weights, velocities, strict=True)):
        if (k + 1) % STEPS and (w1, v1) != (w0, v0):
            what = "velocity" if v1 != v0 else "weight"
            raise Incorrect(
                f"micro-batch {k + 1} changed the {what} (weight {w0:.6f} → {w1:.6f}, velocity "
                f"{v0:.6f} → {v1:.6f}); both must stay bit-identical until {STEPS} gradients "
                "are in."
            )
    expected_weights, expected_velocities = expected_momentum_trajectory()
    expect_close("the velocity after each micro-batch", velocities, expected_velocities)
    expect_close("the weight after each micro-batch", weights, expected_weights)
    if int(count.numpy()) != 0 or float(accumulator.numpy()) != 0.0:
        raise Incorrect(
            "after an update the accumulator and the counter must be reset to 0, got "
            f"accumulator={float(accumulator.numpy()):.4f}, count={int(count.numpy())}."
        )


__all__ = [
    "GRADIENTS",
    "LEARNING_RATE",
    "MOMENTUM",
    "STEPS",
    "expected_momentum_trajectory",
    "expected_trajectory",
    "judge_soft_momentum_step",
]
