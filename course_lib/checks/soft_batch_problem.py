"""The small soft-batch problem that the checks of notebooks 03 and A1 both run.

Eight micro-batch gradients of one scalar weight, accumulated four at a time: the weight must
move only on every fourth micro-batch, by the learning rate times the mean of the four. With
momentum (notebook 03), the velocity too changes only on those micro-batches. NumPy only, so
that the Keras 2 appendix (a graph-mode kernel) can use it without loading Keras 3.
"""

from __future__ import annotations

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


__all__ = [
    "GRADIENTS",
    "LEARNING_RATE",
    "MOMENTUM",
    "STEPS",
    "expected_momentum_trajectory",
    "expected_trajectory",
]
