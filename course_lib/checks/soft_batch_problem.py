"""The small soft-batch problem that the checks of notebooks 03 and A1 both run.

Eight micro-batch gradients of one scalar weight, accumulated four at a time: the weight must
move only on every fourth micro-batch, by the learning rate times the mean of the four. NumPy
only, so that the Keras 2 appendix (a graph-mode kernel) can use it without loading Keras 3.
"""

from __future__ import annotations

import numpy as np

#: The micro-batch gradients, fed one per micro-batch.
GRADIENTS = (1.0, 3.0, -2.0, 6.0, 0.5, 0.5, 1.5, 1.5)
STEPS = 4
LEARNING_RATE = 0.1


def expected_trajectory() -> list[float]:
    """The variable after each micro-batch: it moves only on every 4th, by lr * mean."""
    value, trajectory = 1.0, []
    for k in range(len(GRADIENTS)):
        if (k + 1) % STEPS == 0:
            value -= LEARNING_RATE * float(np.mean(GRADIENTS[k + 1 - STEPS : k + 1]))
        trajectory.append(value)
    return trajectory


__all__ = ["GRADIENTS", "LEARNING_RATE", "STEPS", "expected_trajectory"]
